//! [`Completion`]: openraft's responder for a client write, as a callback.
//!
//! openraft hands each applied entry's response (or the reason it will never be applied) to
//! the responder given with the write. Ours runs a closure on the spot, in the state machine's
//! task: the proposer's closure sends each request's outcome straight to the request that
//! waits for it, with no task in between.

use openraft::raft::responder::Responder;

use crate::TypeConfig;

/// Runs a closure with the result of a write.
pub struct Completion<T>(Box<dyn FnOnce(T) + Send>);

impl<T> Completion<T> {
    /// A responder that calls `f` with the result.
    pub(crate) fn new(f: impl FnOnce(T) + Send + 'static) -> Self {
        Completion(Box::new(f))
    }
}

impl<T: openraft::OptionalSend + 'static> Responder<TypeConfig, T> for Completion<T> {
    fn on_complete(self, result: T) {
        (self.0)(result)
    }
}
