//! A small fake upstream on 127.0.0.1 (UDP and TCP on one port) that can answer, delay,
//! drop, truncate, SERVFAIL, misbehave, reset and count what it received.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// How the fake answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Mode {
    Answer,
    Delay(Duration),
    Drop,
    /// UDP: TC=1 with no records; TCP: the full answer.
    TruncateUdp,
    Servfail,
    /// A misbehaving response first, then the right one.
    WrongIdFirst,
    WrongQuestionFirst,
    GarbageFirst,
    /// Only a wrong-ID response.
    OnlyWrongId,
    /// UDP: the right answer, but sent from another port.
    WrongSource,
    /// TCP: collect this many queries on a connection, then answer them in reverse order.
    ReverseBatch(usize),
}

pub(super) struct Fake {
    pub(super) addr: SocketAddr,
    mode: Mutex<Mode>,
    /// Queries other than the `. NS` health probe, as received.
    queries: Mutex<Vec<Vec<u8>>>,
    /// Source addresses of UDP queries.
    pub(super) peers: Mutex<Vec<SocketAddr>>,
    pub(super) probes: AtomicUsize,
    pub(super) udp: AtomicUsize,
    pub(super) tcp: AtomicUsize,
    pub(super) tcp_conns: AtomicUsize,
    /// Close the next this-many TCP connections after reading one query, unanswered.
    pub(super) resets: AtomicUsize,
    pub(super) received: Notify,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        for t in self.tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
    }
}

impl Fake {
    pub(super) async fn start(mode: Mode) -> Arc<Fake> {
        let (udp, tcp) = bind_pair().await;
        let fake = Arc::new(Fake {
            addr: udp.local_addr().expect("addr"),
            mode: Mutex::new(mode),
            queries: Mutex::default(),
            peers: Mutex::default(),
            probes: AtomicUsize::new(0),
            udp: AtomicUsize::new(0),
            tcp: AtomicUsize::new(0),
            tcp_conns: AtomicUsize::new(0),
            resets: AtomicUsize::new(0),
            received: Notify::new(),
            tasks: Mutex::default(),
        });
        let weak = Arc::downgrade(&fake);
        let u = tokio::spawn(serve_udp(Arc::new(udp), weak.clone()));
        let t = tokio::spawn(serve_tcp(tcp, weak));
        fake.tasks.lock().expect("lock").extend([u, t]);
        fake
    }

    pub(super) fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("lock") = mode;
    }

    fn mode(&self) -> Mode {
        *self.mode.lock().expect("lock")
    }

    pub(super) fn queries(&self) -> Vec<Vec<u8>> {
        self.queries.lock().expect("lock").clone()
    }

    pub(super) fn query_count(&self) -> usize {
        self.queries.lock().expect("lock").len()
    }

    /// Waits until `pred` holds, re-checking after each received query (bounded).
    pub(super) async fn wait_until(&self, pred: impl Fn(&Fake) -> bool) {
        for _ in 0..1000 {
            let notified = self.received.notified();
            if pred(self) {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), notified).await;
        }
        panic!("condition never held");
    }

    fn record(&self, q: &[u8]) {
        if q.get(12) == Some(&0) && q.get(13..15) == Some(&[0, 2]) {
            self.probes.fetch_add(1, Ordering::SeqCst);
        } else {
            self.queries.lock().expect("lock").push(q.to_vec());
        }
        self.received.notify_waiters();
    }
}

async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
        let addr = tcp.local_addr().expect("addr");
        if let Ok(udp) = UdpSocket::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// The answer to `q`: header and question copied, QR/RA set, one A record 192.0.2.1.
pub(super) fn answer(q: &[u8], rcode: u8, tc: bool) -> Vec<u8> {
    let qend = question_end(q);
    let mut r = q[..qend].to_vec();
    r[2] = (r[2] | 0x80) & !0x02 | if tc { 0x02 } else { 0 };
    r[3] = 0x80 | rcode;
    r[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if rcode == 0 && !tc {
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
    }
    r
}

fn question_end(q: &[u8]) -> usize {
    let mut pos = 12;
    while q[pos] != 0 {
        pos += 1 + q[pos] as usize;
    }
    pos + 5
}

/// The responses to send for `q` over `tcp` or UDP, in order.
fn responses(q: &[u8], mode: Mode, tcp: bool) -> Vec<Vec<u8>> {
    let good = answer(q, 0, false);
    let mut wrong_id = good.clone();
    wrong_id[1] ^= 0x5a;
    let mut wrong_q = good.clone();
    wrong_q[13] ^= 0x01;
    match mode {
        Mode::Answer | Mode::Delay(_) | Mode::ReverseBatch(_) | Mode::WrongSource => vec![good],
        Mode::Drop => vec![],
        Mode::TruncateUdp if !tcp => vec![answer(q, 0, true)],
        Mode::TruncateUdp => vec![good],
        Mode::Servfail => vec![answer(q, 2, false)],
        Mode::WrongIdFirst => vec![wrong_id, good],
        Mode::WrongQuestionFirst => vec![wrong_q, good],
        Mode::GarbageFirst => vec![b"\x01\x02garbage".to_vec(), good],
        Mode::OnlyWrongId => vec![wrong_id],
    }
}

async fn serve_udp(sock: Arc<UdpSocket>, fake: std::sync::Weak<Fake>) {
    let mut buf = vec![0u8; 4096];
    while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
        let Some(f) = fake.upgrade() else { return };
        let q = buf[..n].to_vec();
        f.udp.fetch_add(1, Ordering::SeqCst);
        f.peers.lock().expect("lock").push(peer);
        f.record(&q);
        let mode = f.mode();
        let sock = sock.clone();
        tokio::spawn(async move {
            if let Mode::Delay(d) = mode {
                tokio::time::sleep(d).await;
            }
            let other = match mode {
                Mode::WrongSource => UdpSocket::bind("127.0.0.1:0").await.ok(),
                _ => None,
            };
            for r in responses(&q, mode, false) {
                let _ = other.as_ref().unwrap_or(&sock).send_to(&r, peer).await;
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, fake: std::sync::Weak<Fake>) {
    while let Ok((stream, _)) = listener.accept().await {
        let Some(f) = fake.upgrade() else { return };
        f.tcp_conns.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(serve_conn(stream, Arc::downgrade(&f)));
    }
}

async fn serve_conn(stream: TcpStream, fake: std::sync::Weak<Fake>) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            let mut frame = (r.len() as u16).to_be_bytes().to_vec();
            frame.extend_from_slice(&r);
            if wr.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    let mut batch = Vec::new();
    while let Ok(len) = rd.read_u16().await {
        let mut q = vec![0u8; len as usize];
        if rd.read_exact(&mut q).await.is_err() {
            return;
        }
        let Some(f) = fake.upgrade() else { return };
        f.tcp.fetch_add(1, Ordering::SeqCst);
        f.record(&q);
        let take = |n: &AtomicUsize| {
            n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        };
        if take(&f.resets).is_ok() {
            return; // dropping both halves closes the connection unanswered
        }
        let mode = f.mode();
        if let Mode::ReverseBatch(n) = mode {
            batch.push(q);
            if batch.len() == n {
                for q in batch.drain(..).rev() {
                    let _ = tx.send(answer(&q, 0, false));
                }
            }
            continue;
        }
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Mode::Delay(d) = mode {
                tokio::time::sleep(d).await;
            }
            for r in responses(&q, mode, true) {
                let _ = tx.send(r);
            }
        });
    }
}
