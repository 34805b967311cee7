//! The UDP loop: one task per socket. Queries arrive in batches (`recvmmsg`); hits are
//! answered inline and their replies leave together (`sendmmsg`); misses get their own task,
//! and the replies of misses that complete together leave together too ([`Replies`]).
//!
//! Drain (rolling restart): closing a socket of a `SO_REUSEPORT` group drops the datagrams
//! queued on it, and an open socket nobody reads keeps receiving its share of new ones. So on
//! shutdown the socket first leaves the group's selection without closing: Linux (≥ 5.3)
//! never picks a *connected* UDP socket for a datagram from another peer
//! (`reuseport_select_sock_by_hash` skips them), so connecting it to its own address sends
//! every new datagram to the other process's sockets while this one answers what is already
//! queued, until it has been quiet for [`DRAIN_QUIET`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::Shared;
use crate::mmsg::{self, BATCH, MAX_DATAGRAM, RecvBatch};
use crate::pipeline::{ListenerInfo, Step};
use crate::policy::Transport;

/// A draining socket that received nothing for this long has nothing queued any more.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// Serves one UDP socket until shutdown, then drains it.
pub async fn serve(socket: UdpSocket, info: ListenerInfo, shared: Arc<Shared>) {
    let socket = Arc::new(socket);
    let fd = socket.as_raw_fd();
    let mut batch = RecvBatch::new(BATCH, MAX_DATAGRAM);
    let mut out: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
    let replies = Arc::new(Replies::default());
    let mut shutdown = shared.shutdown.clone();
    loop {
        // ERROR too, as tokio's own receive: a pending ICMP error is reported, not waited on.
        let ready = Interest::READABLE | Interest::ERROR;
        let received = tokio::select! {
            r = socket.async_io(ready, || batch.recv(fd)) => r,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        match received {
            Ok(n) => handle(&socket, &batch, n, &mut out, &replies, &info, &shared).await,
            // ICMP errors from earlier sends surface here on some kernels: not fatal.
            Err(e) => tracing::debug!(error = %e, "udp receive"),
        }
    }
    drain(&socket, &mut batch, &mut out, &replies, &info, &shared).await;
}

/// Answers the first `n` datagrams of `batch`: hits together, misses each in its own task.
async fn handle(
    socket: &Arc<UdpSocket>,
    batch: &RecvBatch,
    n: usize,
    out: &mut Vec<(Vec<u8>, SocketAddr)>,
    replies: &Arc<Replies>,
    info: &ListenerInfo,
    shared: &Arc<Shared>,
) {
    let snapshot = shared.snapshot.load_full();
    for (packet, peer) in (0..n).filter_map(|i| batch.get(i)) {
        let started = Instant::now();
        match snapshot.prepare(packet, peer, Transport::Udp, info, started) {
            Step::Reply(reply) => out.push((reply, peer)),
            Step::Drop => {}
            Step::Forward(pending) => {
                let socket = socket.clone();
                let shared = shared.clone();
                let snapshot = snapshot.clone();
                let replies = replies.clone();
                tokio::spawn(async move {
                    let _guard = shared.inflight.enter();
                    let reply = snapshot.complete(pending).await;
                    replies.send(&socket, reply, peer).await;
                });
            }
        }
    }
    flush(socket, out).await;
}

/// Replies of misses waiting to be sent. The first miss to queue one becomes the sender:
/// it yields once, so misses completing in the same scheduler pass (answers that came in
/// together) queue theirs, then sends them all. Its task is in flight until they are sent,
/// so a drain still waits for every reply.
#[derive(Default)]
struct Replies {
    queue: Mutex<Vec<(Vec<u8>, SocketAddr)>>,
}

impl Replies {
    async fn send(&self, socket: &UdpSocket, reply: Vec<u8>, peer: SocketAddr) {
        let first = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.push((reply, peer));
            q.len() == 1
        };
        if !first {
            return;
        }
        tokio::task::yield_now().await;
        let mut batch =
            std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
        flush(socket, &mut batch).await;
    }
}

/// Sends every reply of a batch; a reply the kernel refuses is dropped, as a failed
/// `send_to` was. Bounded: each round sends or drops at least one reply.
async fn flush(socket: &UdpSocket, out: &mut Vec<(Vec<u8>, SocketAddr)>) {
    let fd = socket.as_raw_fd();
    let mut done = 0;
    while done < out.len() {
        let rest = &out[done..];
        match socket
            .async_io(Interest::WRITABLE, || mmsg::send(fd, rest))
            .await
        {
            Ok(n) => done += n.max(1),
            Err(e) => {
                tracing::debug!(error = %e, "udp send");
                done += 1;
            }
        }
    }
    out.clear();
}

/// Leaves the reuseport selection, then answers what is queued until quiet (bounded by the
/// drain timeout).
async fn drain(
    socket: &Arc<UdpSocket>,
    batch: &mut RecvBatch,
    out: &mut Vec<(Vec<u8>, SocketAddr)>,
    replies: &Arc<Replies>,
    info: &ListenerInfo,
    shared: &Arc<Shared>,
) {
    if let Err(e) = detach(socket).await {
        tracing::warn!(error = %e, "udp drain: could not leave the reuseport group; queued queries may be lost");
    }
    let fd = socket.as_raw_fd();
    let deadline = Instant::now() + shared.snapshot.load().config.server.drain_timeout;
    let ready = Interest::READABLE | Interest::ERROR;
    while Instant::now() < deadline {
        let received = socket.async_io(ready, || batch.recv(fd));
        match tokio::time::timeout(DRAIN_QUIET, received).await {
            Ok(Ok(n)) => handle(socket, batch, n, out, replies, info, shared).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "udp receive while draining"),
            Err(_) => break,
        }
    }
}

/// Connects the socket to its own address: no peer sends from there, so nothing new arrives.
async fn detach(socket: &UdpSocket) -> std::io::Result<()> {
    let mut own = socket.local_addr()?;
    if own.ip().is_unspecified() {
        own.set_ip(match own.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    socket.connect(own).await
}
