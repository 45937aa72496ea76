//! keel's HTTP API bodies: the public protocol, kept apart from internal types. One module
//! per capability, and the error codes every capability shares.

mod cluster;
mod error;
mod kv;
mod lease;
mod queue;
mod txn;
mod watch;

pub use cluster::{
    ClusterStatus, LeaderResponse, Member, RemoveResponse, StateHash, TransferLeaderRequest,
};
pub use error::{Code, ErrorBody, ErrorDetail};
pub use kv::{
    decode_value, encode_value, DeleteResponse, IncrResponse, KeyValue, ListResponse,
    RevisionResponse,
};
pub use lease::{
    LeaseGrantRequest, LeaseInfo, LeaseList, LeaseResponse, LeaseRevokeResponse, LeaseSummary,
};
pub use queue::{
    claim_token, parse_claim_token, ClaimResponse, ClaimedTask, CompleteRequest, EnqueueResponse,
    ExtendRequest, FailRequest, QueueInfo, QueueList, TaskChangedResponse, TaskInfo, TaskList,
    TaskState, TasksDeletedResponse,
};
pub use txn::{
    Compare, CompareOp, CompareState, CompareTarget, CompleteOp, EnqueueOp, IncrOp, KeyOp,
    PrefixOp, PutOp, TxnOp, TxnRequest, TxnResponse, TxnResult,
};
pub use watch::{
    TaskEventKind, TaskWatchEvent, WatchChange, WatchCompacted, WatchEvent, WatchEventType,
    WatchProgress, WatchSnapshot, WsMessage, WsRequest, WsWatch,
};
