//! TCP transport to an upstream (query path step 6): one reused connection per server,
//! pipelined (many queries in flight, answers demultiplexed by ID), closed after `expire`
//! idle and reopened on the next query after any failure.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

use super::message;
use super::server::AttemptError;

/// A query waiting for its answer on a connection.
struct Waiter {
    query: Vec<u8>,
    reply: oneshot::Sender<Bytes>,
}

/// In-flight queries of one connection; `dead` is set under the same lock so a query
/// never registers on a connection that has stopped reading.
#[derive(Default)]
struct Pending {
    waiters: HashMap<u16, Waiter>,
    dead: bool,
}

type Shared = Arc<Mutex<Pending>>;

fn lock(p: &Shared) -> std::sync::MutexGuard<'_, Pending> {
    p.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One open connection: a writer task fed by `tx`, a reader task dispatching answers.
struct Conn {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    pending: Shared,
    dead: Arc<AtomicBool>,
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

/// Removes a waiter when its query ends for any reason (answer, timeout, cancellation).
struct Unregister<'a>(&'a Shared, u16);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        lock(self.0).waiters.remove(&self.1);
    }
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
            match self.send(&conn, query).await {
                Err(AttemptError::Closed) if reused => {
                    let (conn, _) = self.connection().await?;
                    self.send(&conn, query).await
                }
                other => other,
            }
        };
        tokio::time::timeout_at(deadline, fut)
            .await
            .map_err(|_| AttemptError::Timeout)?
    }

    async fn send(&self, conn: &Conn, query: &[u8]) -> Result<Bytes, AttemptError> {
        let (id, rx) = {
            let mut p = lock(&conn.pending);
            if p.dead {
                return Err(AttemptError::Closed);
            }
            let id = free_id(&p.waiters).ok_or(AttemptError::Io("no free ID".into()))?;
            let (reply, rx) = oneshot::channel();
            let msg = message::with_id(query, id);
            let mut frame = Vec::with_capacity(msg.len() + 2);
            frame.extend_from_slice(&(msg.len() as u16).to_be_bytes());
            frame.extend_from_slice(&msg);
            p.waiters.insert(id, Waiter { query: msg, reply });
            conn.tx.send(frame).map_err(|_| AttemptError::Closed)?;
            (id, rx)
        };
        let _unregister = Unregister(&conn.pending, id);
        rx.await.map_err(|_| AttemptError::Closed)
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
        slot.as_ref()
            .filter(|c| !c.dead.load(Ordering::Acquire))
            .cloned()
    }

    fn start(&self, stream: TcpStream) -> Conn {
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Shared::default();
        let dead = Arc::new(AtomicBool::new(false));
        let closer = Closer {
            pending: pending.clone(),
            dead: dead.clone(),
        };
        let writer = tokio::spawn(write_loop(wr, rx, closer.clone()));
        let reader = ReadLoop {
            rd,
            expire: self.expire,
            closer,
            metrics: self.metrics.clone(),
        };
        tokio::spawn(reader.run(writer.abort_handle()));
        Conn { tx, pending, dead }
    }
}

/// A random ID not in flight on this connection (bounded tries; `None` only when the
/// connection is nearly saturated).
fn free_id(waiters: &HashMap<u16, Waiter>) -> Option<u16> {
    (0..64)
        .map(|_| rand::random::<u16>())
        .find(|id| !waiters.contains_key(id))
}

/// Marks a connection dead and fails its in-flight queries (their senders are dropped).
#[derive(Clone)]
struct Closer {
    pending: Shared,
    dead: Arc<AtomicBool>,
}

impl Closer {
    fn close(&self) {
        let mut p = lock(&self.pending);
        p.dead = true;
        self.dead.store(true, Ordering::Release);
        p.waiters.clear();
    }
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Vec<u8>>, c: Closer) {
    while let Some(frame) = rx.recv().await {
        if wr.write_all(&frame).await.is_err() {
            c.close();
            return;
        }
    }
    // Every handle dropped (group replaced): the write half closes, the server hangs up.
}

struct ReadLoop {
    rd: OwnedReadHalf,
    expire: Duration,
    closer: Closer,
    metrics: Arc<Metrics>,
}

impl ReadLoop {
    async fn run(mut self, writer: tokio::task::AbortHandle) {
        // Ends when the connection is closed or reset, or after `expire` without a frame
        // (idle, or stuck mid-frame: a half-read frame cannot be resumed either way).
        let expire = self.expire;
        while let Ok(Ok(frame)) = tokio::time::timeout(expire, read_frame(&mut self.rd)).await {
            self.dispatch(frame);
        }
        self.closer.close();
        writer.abort();
    }

    fn dispatch(&self, frame: Vec<u8>) {
        let mut p = lock(&self.closer.pending);
        let id = crate::wire::Header::new(&frame).map(|h| h.id());
        let matched = id.ok().filter(|id| {
            p.waiters
                .get(id)
                .is_some_and(|w| message::matches(&w.query, &frame))
        });
        match matched.and_then(|id| p.waiters.remove(&id)) {
            Some(w) => {
                let _ = w.reply.send(Bytes::from(frame));
            }
            None => super::udp::ignored(&self.metrics),
        }
    }
}

async fn read_frame(rd: &mut OwnedReadHalf) -> std::io::Result<Vec<u8>> {
    let len = rd.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    rd.read_exact(&mut buf).await?;
    Ok(buf)
}
