//! TCP: a connection cap, pipelined queries (answers written as they complete, each with
//! its own ID), an idle timeout that also bounds how long a frame may take to arrive (so a
//! slow client cannot hold a connection slot forever), and a per-connection query cap. At
//! the cap a new connection closes the idlest one (`slots`), so slow clients cannot starve
//! new ones.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::Shared;
use super::frame::FrameDecoder;
use super::slots::{ADMIT_WAIT, Admission, Slot, SlotGuard, Slots};
use crate::metrics::ReasonLabels;
use crate::pipeline::{ListenerInfo, Step};
use crate::policy::Transport;

/// Accepts connections until shutdown (drain), then closes the listening socket.
pub async fn serve(listener: TcpListener, info: ListenerInfo, shared: Arc<Shared>) {
    let (max, idle) = {
        let s = shared.snapshot.load();
        (
            s.config.server.tcp_max_connections,
            s.config.server.tcp_idle_timeout,
        )
    };
    let slots = Slots::new(max, idle, Instant::now());
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "tcp accept");
                continue;
            }
        };
        let Some(slot) = admit(&slots, &stream, &shared).await else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, peer, info.clone(), shared.clone(), slot));
    }
}

/// A slot for `stream`. At the cap with nothing closable yet, waits up to [`ADMIT_WAIT`]
/// for a connection to become closable (new connections wait in the kernel's backlog
/// meanwhile, and a query sent on this one waits unread, which keeps it from being closed
/// in turn); `None` when there is still no room.
async fn admit(slots: &Arc<Slots>, stream: &TcpStream, shared: &Shared) -> Option<SlotGuard> {
    let fd = Some(stream.as_raw_fd());
    let deadline = Instant::now() + ADMIT_WAIT;
    loop {
        let now = Instant::now();
        match slots.admit(fd, now) {
            Admission::Admitted(slot) => return Some(slot),
            Admission::Evicted(slot) => {
                count_drop(shared, "tcp_idle_evicted");
                return Some(slot);
            }
            Admission::Full => {}
        }
        let wait = slots
            .closable_in(now)
            .filter(|wait| now + *wait <= deadline);
        let Some(wait) = wait else {
            count_drop(shared, "tcp_connection_limit");
            return None;
        };
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
    }
}

fn count_drop(shared: &Shared, reason: &'static str) {
    let snapshot = shared.snapshot.load();
    snapshot
        .metrics
        .dropped
        .get_or_create(&ReasonLabels { reason })
        .inc();
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    info: ListenerInfo,
    shared: Arc<Shared>,
    slot: SlotGuard,
) {
    let (mut read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            // Egress caps TCP answers at 65,535 bytes; anything longer cannot be framed.
            let Ok(len) = u16::try_from(reply.len()) else {
                continue;
            };
            let mut framed = Vec::with_capacity(reply.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&reply);
            if write.write_all(&framed).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
    let (idle, max_queries) = {
        let s = shared.snapshot.load();
        (
            s.config.server.tcp_idle_timeout,
            s.config.server.tcp_max_queries,
        )
    };
    let mut frames = FrameDecoder::new();
    let mut shutdown = shared.shutdown.clone();
    let mut served: u32 = 0;
    loop {
        let frame = tokio::select! {
            f = read_frame(&mut read, &mut frames, &slot.slot, idle) => f,
            _ = shutdown.wait_for(|s| *s) => None,
            () = slot.slot.evict.notified() => None,
        };
        let Some(frame) = frame else { break };
        let started = Instant::now();
        slot.slot.touch(slot.slots().millis(started));
        let snapshot = shared.snapshot.load_full();
        match snapshot.prepare(&frame, peer, Transport::Tcp, &info, started) {
            Step::Reply(reply) => {
                if tx.send(reply).await.is_err() {
                    break;
                }
            }
            Step::Drop => {}
            Step::Forward(pending) => {
                let tx = tx.clone();
                let shared = shared.clone();
                let busy = slot.slot.clone();
                busy.start();
                tokio::spawn(async move {
                    let _guard = shared.inflight.enter();
                    let reply = snapshot.complete(pending).await;
                    let _ = tx.send(reply).await;
                    busy.done();
                });
            }
        }
        served += 1;
        if max_queries != 0 && served >= max_queries {
            break;
        }
    }
    drop(tx);
    // Answers still being forwarded hold a sender; the writer ends after the last one.
    let _ = writer.await;
    // The slot goes before the socket closes: `Slots` never looks at a reused descriptor.
    drop(slot);
    drop(read);
}

/// Reads one length-prefixed message; None on EOF, error, or when the whole frame does not
/// arrive within `idle`. Reads only when no complete frame is buffered, so `frames` holds
/// at most one partial frame plus one read. A read that leaves a partial frame marks `slot`
/// stalled (the first to close for room if it never completes a query).
async fn read_frame(
    read: &mut OwnedReadHalf,
    frames: &mut FrameDecoder,
    slot: &Slot,
    idle: Duration,
) -> Option<Vec<u8>> {
    tokio::time::timeout(idle, async {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(frame) = frames.next_frame() {
                return Some(frame);
            }
            match read.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => {
                    frames.push(&chunk[..n]);
                    if !frames.has_frame() {
                        slot.stalled();
                    }
                }
            }
        }
    })
    .await
    .ok()
    .flatten()
}
