//! The index of the fan-out hub: which subscribers a change to a key (or to a task of a
//! queue) concerns. Keys and queues are looked up in hash maps; prefixes in another, probed
//! once for each length that some watched prefix has (so a change costs one lookup per
//! distinct prefix length, however many prefixes are watched).

use std::collections::{BTreeMap, HashMap};

use super::Filter;

/// Watched keys, prefixes and queues, each to the subscribers watching it.
pub(super) struct Index<T> {
    next_id: u64,
    keys: HashMap<String, HashMap<u64, T>>,
    queues: HashMap<String, HashMap<u64, T>>,
    prefixes: HashMap<String, HashMap<u64, T>>,
    /// Length of each watched prefix, with how many distinct prefixes have it.
    prefix_lens: BTreeMap<usize, usize>,
}

/// Removes subscriber `id` from the group of `name`, and the group once it is empty.
fn remove_from<T>(groups: &mut HashMap<String, HashMap<u64, T>>, name: &str, id: u64) {
    if let Some(group) = groups.get_mut(name) {
        group.remove(&id);
        if group.is_empty() {
            groups.remove(name);
        }
    }
}

impl<T> Index<T> {
    /// Adds a subscriber to `filter`; the id removes it again.
    pub(super) fn insert(&mut self, filter: &Filter, subscriber: T) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        match filter {
            Filter::Key(k) => {
                self.keys
                    .entry(k.clone())
                    .or_default()
                    .insert(id, subscriber);
            }
            Filter::Prefix(p) => {
                let group = self.prefixes.entry(p.clone()).or_default();
                if group.is_empty() {
                    *self.prefix_lens.entry(p.len()).or_default() += 1;
                }
                group.insert(id, subscriber);
            }
            Filter::Queue(q) => {
                self.queues
                    .entry(q.clone())
                    .or_default()
                    .insert(id, subscriber);
            }
        }
        id
    }

    /// Removes the subscriber `id` of `filter`.
    pub(super) fn remove(&mut self, filter: &Filter, id: u64) {
        match filter {
            Filter::Key(k) => remove_from(&mut self.keys, k, id),
            Filter::Queue(q) => remove_from(&mut self.queues, q, id),
            Filter::Prefix(p) => {
                let Some(group) = self.prefixes.get_mut(p) else {
                    return;
                };
                group.remove(&id);
                if group.is_empty() {
                    self.prefixes.remove(p);
                    if let Some(n) = self.prefix_lens.get_mut(&p.len()) {
                        *n -= 1;
                        if *n == 0 {
                            self.prefix_lens.remove(&p.len());
                        }
                    }
                }
            }
        }
    }

    /// Every subscriber a change to a task of `queue` concerns.
    pub(super) fn matching_queue<'a>(&'a self, queue: &str) -> impl Iterator<Item = &'a T> + 'a {
        self.queues.get(queue).into_iter().flat_map(|g| g.values())
    }

    /// Every subscriber a change to `key` concerns.
    pub(super) fn matching<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a T> + 'a {
        let exact = self.keys.get(key).into_iter().flat_map(|g| g.values());
        let under = self
            .prefix_lens
            .range(..=key.len())
            .filter(move |(&len, _)| key.is_char_boundary(len))
            .filter_map(move |(&len, _)| self.prefixes.get(&key[..len]))
            .flat_map(|g| g.values());
        exact.chain(under)
    }

    /// Every subscriber.
    pub(super) fn all(&self) -> impl Iterator<Item = &T> {
        self.keys
            .values()
            .chain(self.prefixes.values())
            .flat_map(|g| g.values())
    }
}

impl<T> Default for Index<T> {
    fn default() -> Self {
        Index {
            next_id: 0,
            keys: HashMap::new(),
            queues: HashMap::new(),
            prefixes: HashMap::new(),
            prefix_lens: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matching(index: &Index<&'static str>, key: &str) -> Vec<&'static str> {
        let mut got: Vec<_> = index.matching(key).copied().collect();
        got.sort_unstable();
        got
    }

    #[test]
    fn a_change_reaches_its_key_and_every_prefix_above_it_and_nothing_else() {
        let mut index = Index::default();
        let key = |k: &str| Filter::Key(k.to_owned());
        let prefix = |p: &str| Filter::Prefix(p.to_owned());
        index.insert(&key("cfg/a"), "key cfg/a");
        index.insert(&prefix("cfg/"), "prefix cfg/");
        let every = index.insert(&prefix(""), "every key");
        index.insert(&prefix("cfg/a"), "prefix cfg/a");
        index.insert(&prefix("é"), "prefix é");
        index.insert(&key("other"), "key other");

        assert_eq!(
            matching(&index, "cfg/a"),
            ["every key", "key cfg/a", "prefix cfg/", "prefix cfg/a"]
        );
        assert_eq!(
            matching(&index, "cfg/ab"),
            ["every key", "prefix cfg/", "prefix cfg/a"]
        );
        assert_eq!(matching(&index, "cfg"), ["every key"]);
        assert_eq!(matching(&index, "éa"), ["every key", "prefix é"]);
        // Watched prefix lengths 2 and 4 fall inside its characters: probed, no panic.
        assert_eq!(matching(&index, "aéé"), ["every key"]);

        index.remove(&prefix(""), every);
        assert_eq!(matching(&index, "cfg"), Vec::<&str>::new());
        assert_eq!(index.all().count(), 5);
    }

    #[test]
    fn queues_and_keys_of_one_name_never_cross() {
        let mut index = Index::default();
        let q = index.insert(&Filter::Queue("jobs".into()), "queue jobs");
        index.insert(&Filter::Key("jobs".into()), "key jobs");
        index.insert(&Filter::Prefix(String::new()), "every key");
        index.insert(&Filter::Queue("mail".into()), "queue mail");
        assert_eq!(matching(&index, "jobs"), ["every key", "key jobs"]);
        let queue: Vec<_> = index.matching_queue("jobs").copied().collect();
        assert_eq!(queue, ["queue jobs"]);
        index.remove(&Filter::Queue("jobs".into()), q);
        assert_eq!(index.matching_queue("jobs").count(), 0);
        assert_eq!(index.matching_queue("mail").count(), 1);
    }
}
