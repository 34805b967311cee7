//! The UDP loop: one task per socket. Queries arrive in batches (`recvmmsg`); hits are
//! answered inline and their replies leave together (`sendmmsg`); misses get their own task,
//! and the replies of misses that complete together leave together too ([`Replies`]).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::Shared;
use crate::mmsg::{self, BATCH, MAX_DATAGRAM, RecvBatch};
use crate::pipeline::{ListenerInfo, Step};
use crate::policy::Transport;

/// Serves one UDP socket until the task is aborted (drain).
pub async fn serve(socket: UdpSocket, info: ListenerInfo, shared: Arc<Shared>) {
    let socket = Arc::new(socket);
    let fd = socket.as_raw_fd();
    let mut batch = RecvBatch::new(BATCH, MAX_DATAGRAM);
    let mut out: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
    let replies = Arc::new(Replies::default());
    loop {
        // ERROR too, as tokio's own receive: a pending ICMP error is reported, not waited on.
        let ready = Interest::READABLE | Interest::ERROR;
        let n = match socket.async_io(ready, || batch.recv(fd)).await {
            Ok(n) => n,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some kernels: not fatal.
                tracing::debug!(error = %e, "udp receive");
                continue;
            }
        };
        let snapshot = shared.snapshot.load_full();
        for (packet, peer) in (0..n).filter_map(|i| batch.get(i)) {
            let started = Instant::now();
            match snapshot.prepare(packet, peer, Transport::Udp, &info, started) {
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
        flush(&socket, &mut out).await;
    }
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
