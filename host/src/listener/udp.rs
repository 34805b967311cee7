//! The UDP loop: one task per socket; hits answered inline, misses in their own task.
//!
//! Drain (rolling restart): closing a socket of a `SO_REUSEPORT` group drops the datagrams
//! queued on it, and an open socket nobody reads keeps receiving its share of new ones. So on
//! shutdown the socket first leaves the group's selection without closing: Linux (≥ 5.3)
//! never picks a *connected* UDP socket for a datagram from another peer
//! (`reuseport_select_sock_by_hash` skips them), so connecting it to its own address sends
//! every new datagram to the other process's sockets while this one answers what is already
//! queued, until it has been quiet for [`DRAIN_QUIET`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::Shared;
use crate::pipeline::{ListenerInfo, Step};
use crate::policy::Transport;

/// A draining socket that received nothing for this long has nothing queued any more.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// Serves one UDP socket until shutdown, then drains it.
pub async fn serve(socket: UdpSocket, info: ListenerInfo, shared: Arc<Shared>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65_535];
    let mut shutdown = shared.shutdown.clone();
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        match received {
            Ok((len, peer)) => handle(&socket, &buf[..len], peer, &info, &shared).await,
            // ICMP errors from earlier sends surface here on some kernels: not fatal.
            Err(e) => tracing::debug!(error = %e, "udp receive"),
        }
    }
    drain(&socket, &mut buf, &info, &shared).await;
}

async fn handle(
    socket: &Arc<UdpSocket>,
    packet: &[u8],
    peer: SocketAddr,
    info: &ListenerInfo,
    shared: &Arc<Shared>,
) {
    let started = Instant::now();
    let snapshot = shared.snapshot.load_full();
    match snapshot.prepare(packet, peer, Transport::Udp, info, started) {
        Step::Reply(reply) => {
            let _ = socket.send_to(&reply, peer).await;
        }
        Step::Drop => {}
        Step::Forward(pending) => {
            let socket = socket.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                let _guard = shared.inflight.enter();
                let reply = snapshot.complete(pending).await;
                let _ = socket.send_to(&reply, peer).await;
            });
        }
    }
}

/// Leaves the reuseport selection, then answers what is queued until quiet (bounded by the
/// drain timeout).
async fn drain(socket: &Arc<UdpSocket>, buf: &mut [u8], info: &ListenerInfo, shared: &Arc<Shared>) {
    if let Err(e) = detach(socket).await {
        tracing::warn!(error = %e, "udp drain: could not leave the reuseport group; queued queries may be lost");
    }
    let deadline = Instant::now() + shared.snapshot.load().config.server.drain_timeout;
    while Instant::now() < deadline {
        match tokio::time::timeout(DRAIN_QUIET, socket.recv_from(buf)).await {
            Ok(Ok((len, peer))) => handle(socket, &buf[..len], peer, info, shared).await,
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
