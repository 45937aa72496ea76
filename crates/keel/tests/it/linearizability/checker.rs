//! A linearizability checker for histories of registers: the Wing–Gong search with Lowe's
//! memoisation, as Porcupine does it.
//!
//! A history is a list of operations, each with the time it was invoked and the time it
//! returned. It is linearizable if every operation can be given one instant between its
//! invocation and its return such that, taken in the order of those instants, the
//! operations are a legal run of the model: a register per key with put, get and
//! compare-and-swap. Keys are independent (linearizability is local), so each key's
//! operations are checked on their own.
//!
//! An operation that timed out may or may not have happened (as Jepsen treats it): its
//! return time is infinite and its result unknown. A put or swap with an unknown result is
//! applied if it is placed while its condition holds, and otherwise changes nothing;
//! placing it after everything else stands for "it never happened". A read with an unknown
//! result says nothing and is left out.
//!
//! The search walks the events in time order, tries to place the earliest pending call
//! next, and backtracks when it meets the return of a call it could not place. A set of
//! (placed operations, register value) pairs already explored cuts repeated work.

use std::collections::{BTreeMap, HashSet};

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Wrote `value`.
    Put { value: String },
    /// Read the key: Some(value), or None when it was absent.
    Get { found: Option<String> },
    /// If the value was `expect`, wrote `value`; `swapped` says whether it did.
    Cas {
        expect: String,
        value: String,
        swapped: bool,
    },
    /// A put whose result is unknown.
    PutUnknown { value: String },
    /// A swap whose result is unknown.
    CasUnknown { expect: String, value: String },
}

/// One operation on one key, with its invocation and return times (any unit; `None`: it
/// never returned).
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub op: Op,
    pub invoked: u64,
    pub returned: Option<u64>,
}

/// The checker's verdict.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// The first key found with no legal order.
    NotLinearizable {
        key: String,
    },
    /// The search gave up after this many steps on a key.
    GaveUp {
        key: String,
        steps: u64,
    },
}

/// Checks a whole history, key by key, each key starting absent. Gives up on a key after
/// `max_steps` search steps.
pub fn check(history: &[Entry], max_steps: u64) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for e in history {
        // A read that never returned says nothing.
        if e.returned.is_none() && matches!(e.op, Op::Get { .. }) {
            continue;
        }
        by_key.entry(&e.key).or_default().push(e);
    }
    for (key, ops) in by_key {
        match check_key(&ops, max_steps) {
            Some(true) => {}
            Some(false) => {
                return Verdict::NotLinearizable {
                    key: key.to_owned(),
                }
            }
            None => {
                return Verdict::GaveUp {
                    key: key.to_owned(),
                    steps: max_steps,
                }
            }
        }
    }
    Verdict::Linearizable
}

/// An event in the doubly linked list the search walks.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call, the index of its return event.
    partner: usize,
    prev: usize,
    next: usize,
}

const HEAD: usize = 0;
const NONE: usize = usize::MAX;

/// An operation with its values interned as numbers (0: absent), for a compact search state.
#[derive(Clone, Copy)]
enum Step {
    Put(u32),
    Get(u32),
    Cas {
        expect: u32,
        value: u32,
        swapped: bool,
    },
    CasUnknown {
        expect: u32,
        value: u32,
    },
}

impl Step {
    /// The register's next value, or None if the operation cannot happen in this state.
    fn apply(self, state: u32) -> Option<u32> {
        match self {
            Step::Put(v) => Some(v),
            Step::Get(v) => (v == state).then_some(state),
            Step::Cas {
                expect,
                value,
                swapped,
            } => match (swapped, state == expect) {
                (true, true) => Some(value),
                (false, false) => Some(state),
                _ => None,
            },
            Step::CasUnknown { expect, value } => Some(if state == expect { value } else { state }),
        }
    }
}

/// The id standing for every value no operation ever observes (no read returns it, no swap
/// expects it): such values are interchangeable, so giving them one id loses nothing and
/// lets the search recognise more states as already explored.
const UNOBSERVED: u32 = u32::MAX;

fn intern<'a>(ops: &[&'a Entry]) -> Vec<Step> {
    let mut observed: HashSet<&'a str> = HashSet::new();
    for e in ops {
        match &e.op {
            Op::Get { found: Some(v) } => {
                observed.insert(v);
            }
            Op::Cas { expect, .. } | Op::CasUnknown { expect, .. } => {
                observed.insert(expect);
            }
            _ => {}
        }
    }
    let mut ids: std::collections::HashMap<&'a str, u32> = std::collections::HashMap::new();
    let mut id = |v: &'a str| -> u32 {
        if !observed.contains(v) {
            return UNOBSERVED;
        }
        let next = ids.len() as u32 + 1;
        *ids.entry(v).or_insert(next)
    };
    ops.iter()
        .map(|e| match &e.op {
            Op::Put { value } | Op::PutUnknown { value } => Step::Put(id(value)),
            Op::Get { found } => Step::Get(found.as_deref().map_or(0, &mut id)),
            Op::Cas {
                expect,
                value,
                swapped,
            } => Step::Cas {
                expect: id(expect),
                value: id(value),
                swapped: *swapped,
            },
            Op::CasUnknown { expect, value } => Step::CasUnknown {
                expect: id(expect),
                value: id(value),
            },
        })
        .collect()
}

/// Some(linearizable) or None when the search gave up.
fn check_key(ops: &[&Entry], max_steps: u64) -> Option<bool> {
    let steps_of = intern(ops);
    // Events in time order; at equal times calls come first (the operations overlap).
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, e) in ops.iter().enumerate() {
        order.push((e.invoked, true, i));
        order.push((e.returned.unwrap_or(u64::MAX), false, i));
    }
    order.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
    // events[0] is the head sentinel.
    let mut events = vec![Event {
        op: NONE,
        is_call: false,
        partner: NONE,
        prev: NONE,
        next: 1,
    }];
    let mut return_of = vec![NONE; ops.len()];
    for (n, &(_, is_call, op)) in order.iter().enumerate() {
        let at = n + 1;
        events.push(Event {
            op,
            is_call,
            partner: NONE,
            prev: at - 1,
            next: if n + 1 == order.len() { NONE } else { at + 1 },
        });
        if !is_call {
            return_of[op] = at;
        }
    }
    for e in events.iter_mut().skip(1) {
        if e.is_call {
            e.partner = return_of[e.op];
        }
    }
    let lift = |events: &mut Vec<Event>, call: usize| {
        let ret = events[call].partner;
        for at in [call, ret] {
            let (p, n) = (events[at].prev, events[at].next);
            events[p].next = n;
            if n != NONE {
                events[n].prev = p;
            }
        }
    };
    let unlift = |events: &mut Vec<Event>, call: usize| {
        let ret = events[call].partner;
        for at in [ret, call] {
            let (p, n) = (events[at].prev, events[at].next);
            events[p].next = at;
            if n != NONE {
                events[n].prev = at;
            }
        }
    };
    let mut placed = vec![0u64; ops.len().div_ceil(64)];
    let flip = |placed: &mut Vec<u64>, op: usize| placed[op / 64] ^= 1 << (op % 64);
    let mut seen: HashSet<(Vec<u64>, u32)> = HashSet::new();
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut state: u32 = 0;
    let mut at = events[HEAD].next;
    let mut steps = 0u64;
    while events[HEAD].next != NONE {
        steps += 1;
        if steps > max_steps {
            return None;
        }
        // Every call's return follows it in the list, and the last event is a return, so the
        // walk meets a return before it could run off the end.
        let e = events[at];
        if e.is_call {
            if let Some(next) = steps_of[e.op].apply(state) {
                flip(&mut placed, e.op);
                if seen.insert((placed.clone(), next)) {
                    stack.push((at, std::mem::replace(&mut state, next)));
                    lift(&mut events, at);
                    at = events[HEAD].next;
                    continue;
                }
                flip(&mut placed, e.op);
            }
            at = e.next;
        } else {
            // The return of a call not yet placed: nothing placed so far leads anywhere.
            let Some((call, prior)) = stack.pop() else {
                return Some(false);
            };
            flip(&mut placed, events[call].op);
            state = prior;
            unlift(&mut events, call);
            at = events[call].next;
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(v: &str, a: u64, b: u64) -> Entry {
        entry(Op::Put { value: v.into() }, a, Some(b))
    }

    fn get(found: Option<&str>, a: u64, b: u64) -> Entry {
        entry(
            Op::Get {
                found: found.map(Into::into),
            },
            a,
            Some(b),
        )
    }

    fn cas(expect: &str, v: &str, swapped: bool, a: u64, b: u64) -> Entry {
        entry(
            Op::Cas {
                expect: expect.into(),
                value: v.into(),
                swapped,
            },
            a,
            Some(b),
        )
    }

    fn entry(op: Op, invoked: u64, returned: Option<u64>) -> Entry {
        Entry {
            key: "k".into(),
            op,
            invoked,
            returned,
        }
    }

    fn ok(h: &[Entry]) -> bool {
        match check(h, 1_000_000) {
            Verdict::Linearizable => true,
            Verdict::NotLinearizable { .. } => false,
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn sequential_histories() {
        assert!(ok(&[put("a", 0, 1), get(Some("a"), 2, 3)]));
        assert!(ok(&[get(None, 0, 1), put("a", 2, 3)]));
        // A read after a completed write must see it (or a later one).
        assert!(!ok(&[put("a", 0, 1), get(None, 2, 3)]));
        assert!(!ok(&[put("a", 0, 1), put("b", 2, 3), get(Some("a"), 4, 5)]));
    }

    #[test]
    fn overlapping_operations_may_take_either_order() {
        // The read overlaps the write: both answers are fine.
        assert!(ok(&[put("a", 0, 10), get(None, 1, 2)]));
        assert!(ok(&[put("a", 0, 10), get(Some("a"), 1, 2)]));
        // Two reads during one write cannot see it and then not see it.
        assert!(!ok(&[
            put("a", 0, 10),
            get(Some("a"), 1, 2),
            get(None, 3, 4)
        ]));
        // Two overlapping writes, then reads that agree on one order.
        assert!(ok(&[
            put("a", 0, 5),
            put("b", 1, 6),
            get(Some("a"), 7, 8),
            get(Some("a"), 9, 10)
        ]));
        assert!(!ok(&[
            put("a", 0, 5),
            put("b", 1, 6),
            get(Some("a"), 7, 8),
            get(Some("b"), 9, 10)
        ]));
    }

    #[test]
    fn compare_and_swap() {
        assert!(ok(&[
            put("a", 0, 1),
            cas("a", "b", true, 2, 3),
            get(Some("b"), 4, 5)
        ]));
        assert!(ok(&[
            put("a", 0, 1),
            cas("x", "b", false, 2, 3),
            get(Some("a"), 4, 5)
        ]));
        // It cannot swap what is not there, nor fail to swap what is.
        assert!(!ok(&[put("a", 0, 1), cas("x", "b", true, 2, 3)]));
        assert!(!ok(&[put("a", 0, 1), cas("a", "b", false, 2, 3)]));
        // Two swaps from the same value cannot both succeed.
        assert!(!ok(&[
            put("a", 0, 1),
            cas("a", "b", true, 2, 5),
            cas("a", "c", true, 3, 6)
        ]));
    }

    #[test]
    fn a_timed_out_write_may_or_may_not_have_happened() {
        let lost = entry(Op::PutUnknown { value: "a".into() }, 0, None);
        assert!(ok(&[lost.clone(), get(None, 5, 6)]));
        assert!(ok(&[lost.clone(), get(Some("a"), 5, 6)]));
        // But once seen, it cannot be unseen.
        assert!(!ok(&[lost.clone(), get(Some("a"), 5, 6), get(None, 7, 8)]));
        let swap = entry(
            Op::CasUnknown {
                expect: "a".into(),
                value: "b".into(),
            },
            2,
            None,
        );
        assert!(ok(&[put("a", 0, 1), swap.clone(), get(Some("a"), 5, 6)]));
        assert!(ok(&[put("a", 0, 1), swap.clone(), get(Some("b"), 5, 6)]));
        assert!(!ok(&[put("a", 0, 1), swap, get(Some("c"), 5, 6)]));
        // A write nobody read can still explain a failed swap.
        let unseen = entry(Op::PutUnknown { value: "y".into() }, 2, None);
        assert!(ok(&[put("a", 0, 1), unseen, cas("a", "z", false, 5, 6)]));
        assert!(!ok(&[put("a", 0, 1), cas("a", "z", false, 5, 6)]));
        // A read that never returned is left out.
        assert!(ok(&[entry(
            Op::Get {
                found: Some("zzz".into())
            },
            0,
            None
        )]));
    }

    #[test]
    fn keys_are_checked_apart() {
        let mut other = put("x", 0, 1);
        other.key = "other".into();
        let mut stale = get(None, 2, 3);
        stale.key = "other".into();
        assert_eq!(
            check(&[put("a", 0, 1), get(Some("a"), 2, 3), other, stale], 1000),
            Verdict::NotLinearizable {
                key: "other".into()
            }
        );
    }

    #[test]
    fn many_concurrent_clients_are_checked_quickly() {
        // 6 clients, 200 rounds each of a write then a read of what it wrote, overlapping.
        let mut h = Vec::new();
        for round in 0..200u64 {
            for c in 0..6u64 {
                let t = round * 100 + c;
                let v = format!("c{c}-{round}");
                h.push(put(&v, t, t + 50));
            }
            let t = round * 100 + 60;
            h.push(get(Some(&format!("c5-{round}")), t, t + 10));
        }
        assert!(ok(&h));
    }
}
