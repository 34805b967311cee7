//! The UDP loop: one task per socket; hits answered inline, misses in their own task.

use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;

use super::Shared;
use crate::pipeline::{ListenerInfo, Step};
use crate::policy::Transport;

/// Serves one UDP socket until the task is aborted (drain).
pub async fn serve(socket: UdpSocket, info: ListenerInfo, shared: Arc<Shared>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65_535];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some kernels: not fatal.
                tracing::debug!(error = %e, "udp receive");
                continue;
            }
        };
        let started = Instant::now();
        let snapshot = shared.snapshot.load_full();
        match snapshot.prepare(&buf[..len], peer, Transport::Udp, &info, started) {
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
}
