//! TCP: a connection cap, pipelined queries (answers written as they complete, each with
//! its own ID), an idle timeout that also bounds how long a frame may take to arrive (so a
//! slow client cannot hold a connection slot forever), and a per-connection query cap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::Shared;
use super::frame::FrameDecoder;
use crate::metrics::ReasonLabels;
use crate::pipeline::{ListenerInfo, Step};
use crate::policy::Transport;

/// Accepts connections until the task is aborted (drain).
pub async fn serve(listener: TcpListener, info: ListenerInfo, shared: Arc<Shared>) {
    let max = shared.snapshot.load().config.server.tcp_max_connections;
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "tcp accept");
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared
                .snapshot
                .load()
                .metrics
                .dropped
                .get_or_create(&ReasonLabels {
                    reason: "tcp_connection_limit",
                })
                .inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            peer,
            info.clone(),
            shared.clone(),
            permit,
        ));
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    info: ListenerInfo,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
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
            f = read_frame(&mut read, &mut frames, idle) => f,
            _ = shutdown.wait_for(|s| *s) => None,
        };
        let Some(frame) = frame else { break };
        let started = Instant::now();
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
                tokio::spawn(async move {
                    let _guard = shared.inflight.enter();
                    let reply = snapshot.complete(pending).await;
                    let _ = tx.send(reply).await;
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
}

/// Reads one length-prefixed message; None on EOF, error, or when the whole frame does not
/// arrive within `idle`. Reads only when no complete frame is buffered, so `frames` holds
/// at most one partial frame plus one read.
async fn read_frame(
    read: &mut OwnedReadHalf,
    frames: &mut FrameDecoder,
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
                Ok(n) => frames.push(&chunk[..n]),
            }
        }
    })
    .await
    .ok()
    .flatten()
}
