//! Listeners (query path step 0 and 9): UDP sockets (one `SO_REUSEPORT` socket per worker)
//! and TCP (pipelined, idle timeout, connection cap), each tagged with a view.
//!
//! Sockets are bound before anything is served (app phase 2) with `SO_REUSEPORT`, so a second
//! zonegate can bind the same addresses during a rolling update. Every query loads the
//! current snapshot; a miss is answered asynchronously (over UDP within the socket's task,
//! over TCP in a task of its own), counted in [`Inflight`] so a drain can wait for it.

mod frame;
mod slots;
mod tcp;
mod udp;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::sync::{Notify, watch};

use crate::config::Listen;
use crate::metrics::Label;
use crate::pipeline::{ListenerInfo, Snapshot};

pub use frame::FrameDecoder;
pub use tcp::serve as serve_tcp;
pub use udp::serve as serve_udp;

/// State every listener task shares.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub inflight: Inflight,
    /// Flips to true when the process starts draining.
    pub shutdown: watch::Receiver<bool>,
}

/// Counts queries that are being answered asynchronously, so a drain can wait for them.
#[derive(Default)]
pub struct Inflight {
    count: AtomicUsize,
    idle: Notify,
}

/// Decrements the in-flight count when dropped.
pub struct InflightGuard<'a>(&'a Inflight);

impl Inflight {
    pub fn enter(&self) -> InflightGuard<'_> {
        self.count.fetch_add(1, Ordering::AcqRel);
        InflightGuard(self)
    }
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
    /// Resolves when nothing is in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// One listen address, bound.
pub struct Bound {
    pub info: ListenerInfo,
    /// The real address (port 0 resolved).
    pub address: SocketAddr,
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: Option<std::net::TcpListener>,
}

/// Binds `workers` UDP sockets and one TCP listener on `listen.address`, all with
/// `SO_REUSEPORT`. Port 0 takes the kernel's choice for the first socket and reuses it for
/// the others. `index` is the listener's position in `config.listeners`.
pub fn bind(listen: &Listen, index: usize, workers: usize) -> io::Result<Bound> {
    // Port 0: the kernel picks a port free for UDP, which TCP may still hold: try again.
    let attempts = if listen.address.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        match bind_once(listen, index, workers) {
            Ok(b) => return Ok(b),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

fn bind_once(listen: &Listen, index: usize, workers: usize) -> io::Result<Bound> {
    let mut address = listen.address;
    let mut udp = Vec::new();
    if listen.udp {
        for _ in 0..workers.max(1) {
            let s = socket(address, Type::DGRAM, Protocol::UDP)?;
            s.bind(&SockAddr::from(address))?;
            address = local_addr(&s)?;
            // Bursts of queries queue here while a worker is busy.
            let _ = s.set_recv_buffer_size(4 << 20);
            udp.push(s.into());
        }
    }
    let tcp = if listen.tcp {
        let s = socket(address, Type::STREAM, Protocol::TCP)?;
        s.bind(&SockAddr::from(address))?;
        s.listen(1024)?;
        address = local_addr(&s)?;
        Some(s.into())
    } else {
        None
    };
    let info = ListenerInfo {
        view: Arc::from(listen.view.as_str()),
        server: Label::from(format!("dns://{address}").as_str()),
        index,
    };
    Ok(Bound {
        info,
        address,
        udp,
        tcp,
    })
}

fn socket(addr: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

fn local_addr(s: &Socket) -> io::Result<SocketAddr> {
    s.local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("socket has no IP address"))
}
