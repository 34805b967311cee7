//! TCP: a connection cap, pipelined queries (answers written as they complete, each with
//! its own ID), an idle timeout that also bounds how long a frame may take to arrive (so a
//! slow client cannot hold a connection slot forever), and a per-connection query cap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::Shared;
use crate::metrics::ReasonLabels;
use crate::pipeline::{ListenerInfo, Step};
use crate::policy::Transport;

/// Accepts connections until shutdown (drain), then closes the listening socket.
pub async fn serve(listener: TcpListener, info: ListenerInfo, shared: Arc<Shared>) {
    let max = shared.snapshot.load().config.server.tcp_max_connections;
    let slots = Arc::new(Semaphore::new(max));
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
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            let mut framed = Vec::with_capacity(reply.len() + 2);
            framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
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
    let mut read = BufReader::new(read);
    let mut shutdown = shared.shutdown.clone();
    let mut served: u32 = 0;
    loop {
        let frame = tokio::select! {
            f = read_frame(&mut read, idle) => f,
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
/// arrive within `idle`.
async fn read_frame(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    idle: Duration,
) -> Option<Vec<u8>> {
    tokio::time::timeout(idle, async {
        let len = read.read_u16().await.ok()? as usize;
        let mut buf = vec![0u8; len];
        read.read_exact(&mut buf).await.ok()?;
        Some(buf)
    })
    .await
    .ok()
    .flatten()
}
