//! A fault-injecting TCP proxy for peer traffic: one in front of each node, which advertises
//! the proxy's address. Each node listens on its own loopback address and makes its peer
//! connections from it, so a proxy knows which node a connection comes from and can drop
//! traffic by direction: a cut from A to B is a rule in B's proxy against A's address.
//!
//! A cut connection is black-holed, not closed — bytes stop flowing, as when packets are
//! dropped — and is closed when the cut heals; a new connection during a cut is accepted and
//! held the same way. A delay holds every chunk in both directions for that long.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Default, PartialEq, Eq)]
struct Rules {
    /// Sources whose traffic is dropped.
    cut: HashSet<IpAddr>,
    /// Drop everything, from any source.
    isolated: bool,
    delay: Duration,
}

impl Rules {
    fn blocks(&self, from: IpAddr) -> bool {
        self.isolated || self.cut.contains(&from)
    }
}

/// A proxy listening on a loopback port, forwarding to one node.
pub struct Proxy {
    pub addr: SocketAddr,
    rules: watch::Sender<Rules>,
    target: Arc<Mutex<Option<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1 at a free port; forwards nowhere until [`Proxy::forward_to`].
    pub async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (rules, _) = watch::channel(Rules::default());
        let target = Arc::new(Mutex::new(None));
        let task = tokio::spawn(accept(listener, rules.subscribe(), target.clone()));
        Proxy {
            addr,
            rules,
            target,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where connections go (the node's listen address, once it is known).
    pub fn forward_to(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = Some(target);
    }

    /// Drops everything that arrives from `from`.
    pub fn cut_from(&self, from: IpAddr) {
        self.rules.send_modify(|r| {
            r.cut.insert(from);
        });
    }

    /// Drops everything, from anyone.
    pub fn isolate(&self) {
        self.rules.send_modify(|r| r.isolated = true);
    }

    /// Holds every chunk for `delay` in both directions.
    pub fn delay(&self, delay: Duration) {
        self.rules.send_modify(|r| r.delay = delay);
    }

    /// Lifts every cut and delay; black-holed connections are closed.
    pub fn heal(&self) {
        self.rules.send_replace(Rules::default());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(
    listener: TcpListener,
    rules: watch::Receiver<Rules>,
    target: Arc<Mutex<Option<SocketAddr>>>,
) {
    // Bounded by the test's life: the task is aborted when the proxy is dropped.
    loop {
        let Ok((inbound, peer)) = listener.accept().await else {
            return;
        };
        let rules = rules.clone();
        let target = *target.lock().unwrap();
        tokio::spawn(async move {
            let from = peer.ip();
            let blocked = |r: &Rules| r.blocks(from);
            if blocked(&rules.borrow()) {
                hold_until_healed(rules, from).await;
                return; // closes `inbound`
            }
            let Some(target) = target else { return };
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let (mut ri, mut wi) = inbound.into_split();
            let (mut ro, mut wo) = outbound.into_split();
            let cut_off = tokio::select! {
                _ = pump(&mut ri, &mut wo, &rules) => false,
                _ = pump(&mut ro, &mut wi, &rules) => false,
                _ = cut(rules.clone(), from) => true,
            };
            if cut_off {
                // Both sockets stay open, silent, until the cut heals; then they close.
                hold_until_healed(rules, from).await;
            }
        });
    }
}

/// Resolves when traffic from `from` starts being dropped.
async fn cut(mut rules: watch::Receiver<Rules>, from: IpAddr) {
    let _ = rules.wait_for(|r| r.blocks(from)).await;
}

/// Resolves when traffic from `from` flows again (or the proxy is gone).
async fn hold_until_healed(mut rules: watch::Receiver<Rules>, from: IpAddr) {
    let _ = rules.wait_for(|r| !r.blocks(from)).await;
}

async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    rules: &watch::Receiver<Rules>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = rules.borrow().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
