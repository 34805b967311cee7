//! UDP transport to an upstream (query path step 6). Queries go out on a small per-server
//! pool of connected sockets: the kernel picks each socket's random ephemeral port and
//! drops datagrams from any other address, every query gets a random free ID, and a
//! socket is retired after `QUERIES_PER_SOCKET` queries so ports keep changing — the
//! spoofing resistance of issue 6 at a fraction of a fresh socket's cost per query.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::mmsg::{self, Datagram, RecvBatch};

use super::demux::{self, Demux, Registered, Unregister};
use super::server::AttemptError;

/// Sockets per server; a query picks one at random.
pub(crate) const POOL_SIZE: usize = 4;
/// Queries a socket carries before a fresh one (a new random port) replaces it.
pub(crate) const QUERIES_PER_SOCKET: u32 = 256;
/// Larger than any answer to our 1232-byte EDNS size; a datagram filling it is not trusted.
const RECV_BUF: usize = 4096;
/// Answers read per system call.
const RECV_BATCH: usize = 8;

/// One connected socket, its in-flight queries and its reader task.
struct Sock {
    sock: UdpSocket,
    demux: Demux,
    used: AtomicU32,
    retired: AtomicBool,
    /// Queries waiting to be sent (see [`Sock::send`]).
    outbox: Mutex<Vec<Outgoing>>,
}

/// A registered query's datagram.
struct Outgoing {
    message: Vec<u8>,
    id: u16,
    token: u64,
}

impl Datagram for Outgoing {
    fn bytes(&self) -> &[u8] {
        &self.message
    }
    /// The socket is connected to the server.
    fn to(&self) -> Option<SocketAddr> {
        None
    }
}

impl Sock {
    /// Queues a registered query's datagram. The first query to queue one yields once, so
    /// queries leaving in the same scheduler pass join it, then sends them all with
    /// `sendmmsg`. A datagram the kernel refuses fails its query at once (its waiter is
    /// removed: the socket looks closed to it) and retires the socket, as a failed `send`
    /// did. If the sending query is cancelled meanwhile, the queue goes out on drop.
    async fn send(&self, message: Vec<u8>, id: u16, token: u64) {
        let first = {
            let mut q = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
            q.push(Outgoing { message, id, token });
            q.len() == 1
        };
        if !first {
            return;
        }
        let guard = FlushOnDrop(self);
        tokio::task::yield_now().await;
        std::mem::forget(guard);
        let batch = self.take_outbox();
        let fd = self.sock.as_raw_fd();
        let mut done = 0;
        while done < batch.len() {
            let rest = &batch[done..];
            let sent = (self.sock)
                .async_io(Interest::WRITABLE, || mmsg::send(fd, rest))
                .await;
            done += self.sent(sent, &batch[done]);
        }
    }

    fn take_outbox(&self) -> Vec<Outgoing> {
        std::mem::take(&mut *self.outbox.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Accounts for one `sendmmsg`: how many datagrams it disposed of (a refused one fails
    /// its query).
    fn sent(&self, result: std::io::Result<usize>, first: &Outgoing) -> usize {
        match result {
            Ok(n) => n.max(1),
            Err(e) => {
                tracing::debug!(error = %e, "upstream udp send failed");
                self.retired.store(true, Ordering::Release);
                self.demux.unregister(first.id, first.token);
                1
            }
        }
    }
}

/// Sends the outbox without waiting (best effort) if the query that was to send it is
/// dropped before it did.
struct FlushOnDrop<'a>(&'a Sock);

impl Drop for FlushOnDrop<'_> {
    fn drop(&mut self) {
        let s = self.0;
        let batch = s.take_outbox();
        let fd = s.sock.as_raw_fd();
        let mut done = 0;
        while done < batch.len() {
            done += s.sent(mmsg::send(fd, &batch[done..]), &batch[done]);
        }
    }
}

/// The UDP client of one server.
pub(crate) struct UdpPool {
    addr: SocketAddr,
    expire: Duration,
    metrics: Arc<Metrics>,
    slots: [Mutex<Option<Arc<Sock>>>; POOL_SIZE],
}

impl UdpPool {
    pub(crate) fn new(addr: SocketAddr, expire: Duration, metrics: Arc<Metrics>) -> Self {
        UdpPool {
            addr,
            expire,
            metrics,
            slots: Default::default(),
        }
    }

    /// Sends `query` under a random ID and waits up to `timeout` for the matching answer;
    /// anything else arriving meanwhile is counted and ignored.
    pub(crate) async fn exchange(
        &self,
        query: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, AttemptError> {
        let fut = async {
            let (s, r) = match self.register(query, timeout) {
                // The socket closed between pick and registration: once more, on another.
                Err(AttemptError::Closed) => self.register(query, timeout)?,
                other => other?,
            };
            let _unregister = Unregister(&s.demux, r.id, r.token);
            s.send(r.message, r.id, r.token).await;
            // A closed demux means the socket failed (ICMP port unreachable, …).
            r.answer.await.map_err(|_| AttemptError::Closed)
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| AttemptError::Timeout)?
    }

    fn register(
        &self,
        query: &[u8],
        timeout: Duration,
    ) -> Result<(Arc<Sock>, Registered), AttemptError> {
        let s = self.pick(timeout)?;
        let r = s.demux.register(query)?;
        Ok((s, r))
    }

    /// A random slot's socket, opening a new one when the slot is empty or its socket
    /// retired; takes the socket out of the slot when this query uses it up.
    fn pick(&self, timeout: Duration) -> Result<Arc<Sock>, AttemptError> {
        let slot = &self.slots[rand::random_range(0..POOL_SIZE)];
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        let s = match slot.as_ref().filter(|s| !s.retired.load(Ordering::Acquire)) {
            Some(s) => s.clone(),
            None => slot.insert(self.open(timeout)?).clone(),
        };
        if s.used.fetch_add(1, Ordering::Relaxed) + 1 >= QUERIES_PER_SOCKET {
            s.retired.store(true, Ordering::Release);
            *slot = None;
        }
        Ok(s)
    }

    /// Binds a socket on a kernel-chosen port, connects it and starts its reader. Plain
    /// syscalls that never block, so this runs under the slot's lock.
    fn open(&self, timeout: Duration) -> Result<Arc<Sock>, AttemptError> {
        let local: SocketAddr = match self.addr {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let std = std::net::UdpSocket::bind(local)?;
        std.connect(self.addr)?;
        std.set_nonblocking(true)?;
        let s = Arc::new(Sock {
            sock: UdpSocket::from_std(std)?,
            demux: Demux::default(),
            used: AtomicU32::new(0),
            retired: AtomicBool::new(false),
            outbox: Mutex::new(Vec::new()),
        });
        let tick = timeout.min(self.expire);
        tokio::spawn(read_loop(
            s.clone(),
            tick,
            self.expire,
            self.metrics.clone(),
        ));
        Ok(s)
    }
}

/// Dispatches answers until the socket fails, or has nothing in flight and is retired or
/// has been idle for `expire`. Checks that every `tick`, on one timer for the socket's
/// life (not one per datagram).
async fn read_loop(s: Arc<Sock>, tick: Duration, expire: Duration, metrics: Arc<Metrics>) {
    let mut batch = RecvBatch::new(RECV_BATCH, RECV_BUF);
    let fd = s.sock.as_raw_fd();
    let mut last = Instant::now();
    let check = tokio::time::sleep(tick);
    tokio::pin!(check);
    loop {
        tokio::select! {
            biased;
            r = s.sock.async_io(Interest::READABLE | Interest::ERROR, || batch.recv(fd)) => match r {
                Ok(n) => {
                    last = Instant::now();
                    for (answer, _) in (0..n).filter_map(|i| batch.get(i)) {
                        if answer.len() < RECV_BUF {
                            s.demux.dispatch(answer.to_vec(), &metrics);
                        } else {
                            demux::ignored(&metrics);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "upstream udp socket failed");
                    break;
                }
            },
            () = &mut check => check.as_mut().reset(Instant::now() + tick),
        }
        let done = s.retired.load(Ordering::Acquire) || last.elapsed() >= expire;
        if done && s.demux.close_if_idle() {
            break;
        }
    }
    s.retired.store(true, Ordering::Release);
    s.demux.close();
}
