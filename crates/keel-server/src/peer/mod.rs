//! Peer traffic: [`HttpTransport`] makes this node's calls on others, and [`routes`] answers
//! theirs under `/raft/`. The calls and their bodies are keel-raft's
//! ([`keel_raft::peer`]); this module only carries them over HTTP.

mod routes;
mod transport;

pub(crate) use routes::routes;
pub use transport::HttpTransport;
