//! TCP transport to an upstream (query path step 6): one reused connection per server,
//! pipelined (many queries in flight, answers demultiplexed by ID), closed after `expire`
//! without a frame and reopened on the next query after any failure.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use crate::metrics::Metrics;

use super::demux::{Demux, Unregister};
use super::server::AttemptError;

/// One open connection: a writer task fed by `tx`, a reader task dispatching answers.
struct Conn {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    demux: Arc<Demux>,
}

/// The reusable, pipelined TCP client of one server.
pub(crate) struct TcpClient {
    addr: SocketAddr,
    expire: Duration,
    metrics: Arc<Metrics>,
    conn: Mutex<Option<Arc<Conn>>>,
    /// Serializes connecting, so concurrent first queries share one connection.
    connecting: tokio::sync::Mutex<()>,
}

impl TcpClient {
    pub(crate) fn new(addr: SocketAddr, expire: Duration, metrics: Arc<Metrics>) -> Self {
        TcpClient {
            addr,
            expire,
            metrics,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// Sends `query` with a fresh random ID and waits up to `timeout` for its answer. A
    /// reused connection found closed is replaced once within the same deadline.
    pub(crate) async fn exchange(
        &self,
        query: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, AttemptError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let fut = async {
            let (conn, reused) = self.connection().await?;
            match send(&conn, query).await {
                Err(AttemptError::Closed) if reused => {
                    let (conn, _) = self.connection().await?;
                    send(&conn, query).await
                }
                other => other,
            }
        };
        tokio::time::timeout_at(deadline, fut)
            .await
            .map_err(|_| AttemptError::Timeout)?
    }

    /// The current connection, or a new one; `true` when it was already open.
    async fn connection(&self) -> Result<(Arc<Conn>, bool), AttemptError> {
        if let Some(c) = self.current() {
            return Ok((c, true));
        }
        let _connecting = self.connecting.lock().await;
        if let Some(c) = self.current() {
            return Ok((c, true)); // another query connected while we waited
        }
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let fresh = Arc::new(self.start(stream));
        *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(fresh.clone());
        Ok((fresh, false))
    }

    fn current(&self) -> Option<Arc<Conn>> {
        let slot = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref().filter(|c| !c.demux.is_dead()).cloned()
    }

    fn start(&self, stream: TcpStream) -> Conn {
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let demux = Arc::new(Demux::default());
        let writer = tokio::spawn(write_loop(wr, rx, demux.clone()));
        let reader = ReadLoop {
            rd,
            expire: self.expire,
            demux: demux.clone(),
            metrics: self.metrics.clone(),
        };
        tokio::spawn(reader.run(writer.abort_handle()));
        Conn { tx, demux }
    }
}

async fn send(conn: &Conn, query: &[u8]) -> Result<Bytes, AttemptError> {
    let r = conn.demux.register(query)?;
    let _unregister = Unregister(&conn.demux, r.id, r.token);
    let mut frame = Vec::with_capacity(r.message.len() + 2);
    frame.extend_from_slice(&(r.message.len() as u16).to_be_bytes());
    frame.extend_from_slice(&r.message);
    conn.tx.send(frame).map_err(|_| AttemptError::Closed)?;
    r.answer.await.map_err(|_| AttemptError::Closed)
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    demux: Arc<Demux>,
) {
    while let Some(frame) = rx.recv().await {
        if wr.write_all(&frame).await.is_err() {
            demux.close();
            return;
        }
    }
    // Every handle dropped (group replaced): the write half closes, the server hangs up.
}

struct ReadLoop {
    rd: OwnedReadHalf,
    expire: Duration,
    demux: Arc<Demux>,
    metrics: Arc<Metrics>,
}

impl ReadLoop {
    async fn run(mut self, writer: tokio::task::AbortHandle) {
        // Ends when the connection is closed or reset, or after `expire` without a frame
        // (idle, or stuck mid-frame: a half-read frame cannot be resumed either way).
        let expire = self.expire;
        while let Ok(Ok(frame)) = tokio::time::timeout(expire, read_frame(&mut self.rd)).await {
            self.demux.dispatch(frame, &self.metrics);
        }
        self.demux.close();
        writer.abort();
    }
}

async fn read_frame(rd: &mut OwnedReadHalf) -> std::io::Result<Vec<u8>> {
    let len = rd.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    rd.read_exact(&mut buf).await?;
    Ok(buf)
}
