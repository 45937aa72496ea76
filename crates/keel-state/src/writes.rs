//! The write context of one command: the revision it writes at, the time it runs at, and the
//! change events it makes. Every family's `apply` writes through it, so the revision bump and
//! the change feed are done once, in [`crate::Store::apply`].

use crate::{Event, Revision};

/// The writes of one command, all at one revision.
#[derive(Debug)]
pub(crate) struct Writes {
    /// The revision this command's changes get.
    pub(crate) revision: Revision,
    /// The request's time, never earlier than any time applied before.
    pub(crate) now_ms: u64,
    /// The changes so far, in order.
    pub(crate) events: Vec<Event>,
}

impl Writes {
    /// A context for the command applied after `current`.
    pub(crate) fn after(current: Revision, now_ms: u64) -> Self {
        Writes {
            revision: current + 1,
            now_ms,
            events: Vec::new(),
        }
    }

    /// The store's revision once these writes are committed: unchanged if there are none.
    pub(crate) fn revision_after(&self) -> Revision {
        if self.events.is_empty() {
            self.revision - 1
        } else {
            self.revision
        }
    }
}
