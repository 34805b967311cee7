//! The UDP loop: one task per socket. Queries arrive in batches (`recvmmsg`); hits are
//! answered inline and their replies leave together (`sendmmsg`). Misses are answered in the
//! same task (a `FuturesUnordered` of [`miss`]es, not a task each), and the replies of misses
//! whose answers came in together leave together too.
//!
//! Drain (rolling restart): closing a socket of a `SO_REUSEPORT` group drops the datagrams
//! queued on it, and an open socket nobody reads keeps receiving its share of new ones. So on
//! shutdown the socket first leaves the group's selection without closing: Linux (≥ 5.3)
//! never picks a *connected* UDP socket for a datagram from another peer
//! (`reuseport_select_sock_by_hash` skips them), so connecting it to its own address sends
//! every new datagram to the other process's sockets while this one answers what is already
//! queued, until it has been quiet for [`DRAIN_QUIET`].

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::{FutureExt, future};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::Shared;
use crate::mmsg::{self, BATCH, MAX_DATAGRAM, RecvBatch};
use crate::pipeline::{ListenerInfo, Pending, Snapshot, Step};
use crate::policy::Transport;

/// A draining socket that received nothing for this long has nothing queued any more.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// A reply and where it goes.
type Reply = (Vec<u8>, SocketAddr);

/// Serves one UDP socket until shutdown, then drains it.
pub async fn serve(socket: UdpSocket, info: ListenerInfo, shared: Arc<Shared>) {
    let fd = socket.as_raw_fd();
    let mut batch = RecvBatch::new(BATCH, MAX_DATAGRAM);
    let mut out: Vec<Reply> = Vec::with_capacity(BATCH);
    let mut misses = FuturesUnordered::new();
    let mut shutdown = shared.shutdown.clone();
    // ERROR too, as tokio's own receive: a pending ICMP error is reported, not waited on.
    let ready = Interest::READABLE | Interest::ERROR;
    loop {
        let mut answered = false;
        tokio::select! {
            received = socket.async_io(ready, || batch.recv(fd)) => match received {
                Ok(n) => handle(&batch, n, &mut out, &info, &shared, |snapshot, pending, peer| {
                    misses.push(miss(snapshot, pending, peer, shared.clone()));
                }),
                // ICMP errors from earlier sends surface here on some kernels: not fatal.
                Err(e) => tracing::debug!(error = %e, "udp receive"),
            },
            Some(reply) = misses.next(), if !misses.is_empty() => {
                out.extend(reply);
                answered = true;
            }
            _ = shutdown.wait_for(|s| *s) => break,
        }
        if answered {
            // Let the other upstream readers of this pass hand over their answers too, so
            // the replies of misses answered together leave together.
            tokio::task::yield_now().await;
            collect(&mut misses, &mut out);
        }
        flush(&socket, &mut out).await;
    }
    drain(&socket, &mut batch, &mut out, misses, miss, &info, &shared).await;
}

/// Answers the first `n` datagrams of `batch`: the replies of hits go to `out`, each miss to
/// `on_miss` (with the snapshot it was matched in).
fn handle(
    batch: &RecvBatch,
    n: usize,
    out: &mut Vec<Reply>,
    info: &ListenerInfo,
    shared: &Shared,
    mut on_miss: impl FnMut(Arc<Snapshot>, Box<Pending>, SocketAddr),
) {
    let snapshot = shared.snapshot.load_full();
    for (packet, peer) in (0..n).filter_map(|i| batch.get(i)) {
        let started = Instant::now();
        match snapshot.prepare(packet, peer, Transport::Udp, info, started) {
            Step::Reply(reply) => out.push((reply, peer)),
            Step::Drop => {}
            Step::Forward(pending) => on_miss(snapshot.clone(), pending, peer),
        }
    }
}

/// A miss, answered within the listener's task: its reply leaves with the others that are
/// ready at the same time, in one `sendmmsg`, and it costs no task of its own. Counted in
/// flight so a drain waits for it. A panic answers nothing and is logged; the listener
/// carries on.
fn miss(
    snapshot: Arc<Snapshot>,
    pending: Box<Pending>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> impl Future<Output = Option<Reply>> {
    let answer = async move {
        let _guard = shared.inflight.enter();
        let reply = snapshot.complete(pending).await;
        (reply, peer)
    };
    AssertUnwindSafe(answer).catch_unwind().map(|r| match r {
        Ok(reply) => Some(reply),
        Err(_) => {
            tracing::error!("answering a forwarded query panicked; no reply sent");
            None
        }
    })
}

/// Adds the replies of the misses already finished to `out`.
fn collect<F: Future<Output = Option<Reply>>>(
    misses: &mut FuturesUnordered<F>,
    out: &mut Vec<Reply>,
) {
    while out.len() < BATCH {
        match misses.next().now_or_never() {
            Some(Some(reply)) => out.extend(reply),
            _ => break,
        }
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

/// Leaves the reuseport selection, then answers what is queued until quiet and finishes
/// the misses in flight (all of it bounded by the drain timeout). New misses start with
/// `start` ([`miss`], passed in because its future type has no name to write here).
async fn drain<F: Future<Output = Option<Reply>>>(
    socket: &UdpSocket,
    batch: &mut RecvBatch,
    out: &mut Vec<Reply>,
    mut misses: FuturesUnordered<F>,
    start: fn(Arc<Snapshot>, Box<Pending>, SocketAddr, Arc<Shared>) -> F,
    info: &ListenerInfo,
    shared: &Arc<Shared>,
) {
    if let Err(e) = detach(socket).await {
        tracing::warn!(error = %e, "udp drain: could not leave the reuseport group; queued queries may be lost");
    }
    let fd = socket.as_raw_fd();
    let deadline = tokio::time::Instant::now() + shared.snapshot.load().config.server.drain_timeout;
    let ready = Interest::READABLE | Interest::ERROR;
    let mut quiet = false;
    while !(quiet && misses.is_empty()) {
        let received = async {
            if quiet {
                future::pending().await
            } else {
                tokio::time::timeout(DRAIN_QUIET, socket.async_io(ready, || batch.recv(fd))).await
            }
        };
        tokio::select! {
            r = received => match r {
                Ok(Ok(n)) => handle(batch, n, out, info, shared, |snapshot, pending, peer| {
                    misses.push(start(snapshot, pending, peer, shared.clone()));
                }),
                Ok(Err(e)) => tracing::debug!(error = %e, "udp receive while draining"),
                Err(_) => quiet = true,
            },
            Some(reply) = misses.next(), if !misses.is_empty() => {
                out.extend(reply);
                collect(&mut misses, out);
            }
            () = tokio::time::sleep_until(deadline) => break,
        }
        flush(socket, out).await;
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
