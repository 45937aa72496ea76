//! Reads of keys now or as of a past revision: the current value with every later change in
//! the history undone.

use std::collections::BTreeMap;

use super::{KeyValue, Kv};
use crate::history::History;
use crate::{ListPage, ListQuery, Revision};

/// A key's value as of revision `at`, which the caller has checked is readable.
pub(crate) fn get_at(kv: &Kv, history: &History, key: &str, at: Revision) -> Option<KeyValue> {
    let mut value = kv.get(key).cloned();
    // Undo every later change to the key, newest first; what remains is the state at `at`.
    for set in history.after(at).rev() {
        for event in set.key_events().filter(|e| e.key == key) {
            value = event.prev.clone();
        }
    }
    value
}

/// A page of keys, now (`at` = `None`, read at `current`) or as of a readable past revision.
pub(crate) fn list_at(
    kv: &Kv,
    history: &History,
    current: Revision,
    query: &ListQuery,
) -> ListPage {
    let after = query.after.as_deref();
    let now = kv.range(&query.prefix, after);
    let (revision, mut items): (Revision, Box<dyn Iterator<Item = (String, KeyValue)>>) =
        match query.revision {
            None => (current, Box::new(now.map(|(k, v)| (k.clone(), v.clone())))),
            Some(at) => {
                let overrides = undo_overrides(history, at, &query.prefix, after);
                (at, Box::new(merge_overrides(now, overrides)))
            }
        };
    let page: Vec<(String, KeyValue)> = items.by_ref().take(query.limit).collect();
    let more = items.next().is_some();
    ListPage {
        revision,
        items: page,
        more,
    }
}

/// For each key under `prefix` (after `after`) changed since `at`, its value at `at`.
fn undo_overrides(
    history: &History,
    at: Revision,
    prefix: &str,
    after: Option<&str>,
) -> BTreeMap<String, Option<KeyValue>> {
    let mut overrides = BTreeMap::new();
    for set in history.after(at).rev() {
        for event in set.key_events() {
            let in_range =
                event.key.starts_with(prefix) && after.is_none_or(|a| event.key.as_str() > a);
            if in_range {
                overrides.insert(event.key.clone(), event.prev.clone());
            }
        }
    }
    overrides
}

/// Merges the current range (sorted) with per-key overrides (sorted) into the range as of a
/// past revision: an override replaces the current value, `None` hides the key.
fn merge_overrides<'a>(
    current: impl Iterator<Item = (&'a String, &'a KeyValue)> + 'a,
    overrides: BTreeMap<String, Option<KeyValue>>,
) -> impl Iterator<Item = (String, KeyValue)> + 'a {
    let mut current = current.peekable();
    let mut overrides = overrides.into_iter().peekable();
    std::iter::from_fn(move || loop {
        let take_override = match (current.peek(), overrides.peek()) {
            (None, None) => return None,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((ck, _)), Some((ok, _))) => ok <= *ck,
        };
        if take_override {
            let (key, value) = overrides.next()?;
            if current.peek().is_some_and(|(ck, _)| **ck == key) {
                current.next();
            }
            if let Some(kv) = value {
                return Some((key, kv));
            }
        } else {
            let (k, v) = current.next()?;
            return Some((k.clone(), v.clone()));
        }
    })
}
