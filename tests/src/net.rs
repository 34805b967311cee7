//! Small socket and name helpers shared by the servers and harnesses of the kit.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use anyhow::{Context, bail};
use hickory_proto::rr::Name;
use socket2::{Domain, Protocol, Socket, Type};

/// Parses a DNS name written in a test (`"www.example.test."`; a missing trailing dot is added).
/// ASCII keeps its case (for 0x20 tests); other text goes through IDNA.
///
/// # Panics
/// On a name hickory cannot parse: names in tests are literals, so a bad one is a bug in the test.
pub fn name(s: &str) -> Name {
    let parsed = if s.is_ascii() {
        Name::from_ascii(s)
    } else {
        Name::from_utf8(s)
    };
    let mut name = parsed.unwrap_or_else(|e| panic!("invalid DNS name {s:?}: {e}"));
    name.set_fqdn(true);
    name
}

/// A port on 127.0.0.1 free for both UDP and TCP at the time of the call (for programs such as
/// `named` that cannot be told to pick one themselves; another process may take it afterwards).
pub fn free_port() -> anyhow::Result<u16> {
    let (udp, tcp) = bind_udp_tcp(0)?;
    let port = udp.local_addr()?.port();
    drop((udp, tcp));
    Ok(port)
}

/// Binds UDP and TCP on the same 127.0.0.1 port; port 0 picks one free for both.
pub(crate) fn bind_udp_tcp(port: u16) -> anyhow::Result<(UdpSocket, TcpListener)> {
    let tries = if port == 0 { 50 } else { 1 };
    let mut last_error = None;
    for _ in 0..tries {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).context("bind UDP 127.0.0.1")?;
        let addr = udp.local_addr()?;
        match bind_tcp(addr) {
            Ok(tcp) => return Ok((udp, tcp)),
            // The kernel's free UDP port may be busy for TCP: try another one.
            Err(e) => last_error = Some(e),
        }
    }
    match last_error {
        Some(e) => Err(e.context("no port free for both UDP and TCP")),
        None => bail!("no port free for both UDP and TCP"),
    }
}

/// A listening, non-blocking TCP socket with `SO_REUSEADDR`, so a server that was stopped can
/// listen on its old port again although connections from before linger in TIME_WAIT.
pub(crate) fn bind_tcp(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("bind TCP {addr}"))?;
    socket.listen(128)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
