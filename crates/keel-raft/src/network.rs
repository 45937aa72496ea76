//! The peer network, on openraft's `RaftNetworkV2`: every Raft RPC becomes one
//! [`PeerCall`] through the node's [`Transport`], its body postcard; a snapshot is streamed
//! from its file. [`Peers`] is the handle the rest of the crate calls other nodes through.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode, OptionalSend};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::peer::{decode, encode, PeerCall, PeerError, PeerFuture, Transport};
use crate::{Snapshot, SnapshotData, SnapshotMeta, TypeConfig, Vote};

/// How this node reaches the others: a [`Transport`], shared.
#[derive(Clone)]
pub struct Peers(Arc<dyn Transport>);

impl Peers {
    /// Calls through `transport`.
    pub fn new(transport: Arc<dyn Transport>) -> Peers {
        Peers(transport)
    }

    /// A node with no way to reach others (tests of a one-member group): every call fails.
    pub fn none() -> Peers {
        Peers(Arc::new(NoTransport))
    }

    /// Sends `request` as `call` to `addr` and decodes the answer.
    pub(crate) async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        call: PeerCall,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let body = encode(call.name(), request)?;
        let answer = self.0.call(addr, call, body, timeout).await?;
        decode(call.name(), &answer)
    }

    async fn send_snapshot<Resp: DeserializeOwned>(
        &self,
        addr: &str,
        head: Vec<u8>,
        file: &Path,
    ) -> Result<Resp, PeerError> {
        let answer = self.0.send_snapshot(addr, head, file).await?;
        decode("snapshot answer", &answer)
    }
}

impl Default for Peers {
    fn default() -> Self {
        Peers::none()
    }
}

impl fmt::Debug for Peers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Peers")
    }
}

struct NoTransport;

impl NoTransport {
    fn refuse(addr: &str) -> PeerError {
        PeerError::Unreachable {
            addr: addr.to_owned(),
            why: "this node was started without a peer transport".into(),
        }
    }
}

impl Transport for NoTransport {
    fn call<'a>(
        &'a self,
        addr: &'a str,
        _call: PeerCall,
        _body: Vec<u8>,
        _timeout: Duration,
    ) -> PeerFuture<'a, Result<Vec<u8>, PeerError>> {
        Box::pin(async move { Err(Self::refuse(addr)) })
    }

    fn send_snapshot<'a>(
        &'a self,
        addr: &'a str,
        _head: Vec<u8>,
        _file: &'a Path,
    ) -> PeerFuture<'a, Result<Vec<u8>, PeerError>> {
        Box::pin(async move { Err(Self::refuse(addr)) })
    }
}

/// What a node answers a Raft RPC with: the RPC's response, or why Raft could not handle it.
pub(crate) type RpcAnswer<T> = Result<T, String>;

/// The head of a snapshot install: the leader's vote and the snapshot's metadata.
pub(crate) type SnapshotHead = (Vote, SnapshotMeta);

/// Every member's address as the latest membership records it, shared by all connections:
/// openraft keeps a replication stream when a member's address changes, so a connection
/// looks its peer's address up for every call.
#[derive(Clone, Default)]
pub(crate) struct Addresses(Arc<std::sync::RwLock<std::collections::BTreeMap<u64, String>>>);

impl Addresses {
    pub(crate) fn set(&self, members: impl Iterator<Item = (u64, String)>) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.clear();
        map.extend(members);
    }

    fn get(&self, id: u64) -> Option<String> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        map.get(&id).cloned()
    }
}

/// Creates connections to peers.
#[derive(Clone)]
pub(crate) struct Network {
    pub(crate) peers: Peers,
    addresses: Addresses,
    /// The peers last found unreachable: each loss and return is logged once.
    down: Arc<std::sync::Mutex<std::collections::BTreeSet<u64>>>,
}

impl Network {
    pub(crate) fn new(peers: Peers, addresses: Addresses) -> Network {
        Network {
            peers,
            addresses,
            down: Arc::default(),
        }
    }
}

/// A connection to one peer.
pub(crate) struct Peer {
    target: u64,
    /// Its address when the connection was made (used until the membership names one).
    first_addr: String,
    addresses: Addresses,
    peers: Peers,
    down: Arc<std::sync::Mutex<std::collections::BTreeSet<u64>>>,
}

impl Peer {
    /// The peer's address now.
    fn addr(&self) -> String {
        self.addresses
            .get(self.target)
            .unwrap_or_else(|| self.first_addr.clone())
    }

    /// Logs a change of the peer's reachability.
    fn reached(&self, addr: &str, reachable: Result<(), &PeerError>) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        match reachable {
            Ok(()) => {
                if down.remove(&self.target) {
                    tracing::info!(node_id = self.target, addr, "peer reachable again");
                }
            }
            Err(e) => {
                if down.insert(self.target) {
                    tracing::warn!(node_id = self.target, addr, error = %e, "peer unreachable");
                }
            }
        }
    }

    fn failed(&self, e: PeerError) -> RPCError<TypeConfig> {
        let any = AnyError::error(format!("node {}: {e}", self.target));
        match e {
            PeerError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&any)),
            _ => RPCError::Network(NetworkError::new(&any)),
        }
    }

    async fn rpc<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        call: PeerCall,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let addr = self.addr();
        let answer: Result<RpcAnswer<Resp>, PeerError> = self
            .peers
            .call(&addr, call, request, option.hard_ttl())
            .await;
        self.reached(&addr, answer.as_ref().map(drop));
        let answer = answer.map_err(|e| self.failed(e))?;
        answer.map_err(|why| self.failed(PeerError::Refused { addr, why }))
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            target,
            first_addr: node.addr.clone(),
            addresses: self.addresses.clone(),
            peers: self.peers.clone(),
            down: self.down.clone(),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(PeerCall::Append, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(PeerCall::Vote, &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(PeerCall::PreVote, &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let head: SnapshotHead = (vote, snapshot.meta.clone());
        let head = encode("snapshot head", &head)
            .map_err(|e| StreamingError::Network(NetworkError::new(&AnyError::new(&e))))?;
        let path = snapshot.snapshot.path.clone();
        let addr = self.addr();
        tracing::info!(target = self.target, file = %path.display(), "sending a snapshot");
        let send = self
            .peers
            .send_snapshot::<RpcAnswer<SnapshotResponse<TypeConfig>>>(&addr, head, &path);
        let answer = tokio::select! {
            answer = send => answer,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        let answer = answer.map_err(|e| StreamingError::from(self.failed(e)))?;
        answer.map_err(|why| StreamingError::from(self.failed(PeerError::Refused { addr, why })))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(PeerCall::TransferLeader, &req, &option).await
    }
}
