//! Batched UDP I/O for the listeners and upstream sockets: `recvmmsg(2)` and `sendmmsg(2)`
//! move up to [`BATCH`] datagrams per system call, so a burst of queries (or answers) costs
//! one call instead of one per datagram. The only `unsafe` of the data path lives here:
//! plain system calls over buffers this module owns, with the headers built on the stack
//! per call.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::ptr;

/// Datagrams per system call.
pub(crate) const BATCH: usize = 32;
/// Room for the largest UDP payload, so no query is ever cut short.
pub(crate) const MAX_DATAGRAM: usize = 65_535;

/// Receive buffers for up to [`BATCH`] datagrams of `slot` bytes each. The buffer is
/// allocated zeroed and only the pages a datagram is written to become resident (a query
/// touches one page per slot).
pub(crate) struct RecvBatch {
    bufs: Box<[u8]>,
    slot: usize,
    addrs: Box<[libc::sockaddr_storage]>,
    lens: [usize; BATCH],
    peers: [Option<SocketAddr>; BATCH],
    count: usize,
}

impl RecvBatch {
    /// `slots` (at most [`BATCH`]) datagrams of up to `slot` bytes per call; a longer one
    /// is cut to `slot` bytes (callers that must notice use a slot longer than they accept).
    pub(crate) fn new(slots: usize, slot: usize) -> Self {
        let slots = slots.clamp(1, BATCH);
        let slot = slot.max(1);
        // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
        let zero: libc::sockaddr_storage = unsafe { mem::zeroed() };
        RecvBatch {
            bufs: vec![0u8; slots * slot].into_boxed_slice(),
            slot,
            addrs: vec![zero; slots].into_boxed_slice(),
            lens: [0; BATCH],
            peers: [None; BATCH],
            count: 0,
        }
    }

    /// Receives up to a batch of datagrams without blocking (`WouldBlock` when there are
    /// none).
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: zeroed iovec/mmsghdr are valid (null pointers, zero lengths); every
        // header is filled in below before the call.
        let mut iovs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        let slots = self.bufs.chunks_exact_mut(self.slot);
        let count = self.addrs.len();
        for (i, (buf, addr)) in slots.zip(self.addrs.iter_mut()).enumerate() {
            iovs[i] = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = ptr::from_mut(addr).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: the first `count` (≤ BATCH) headers each point at their own iovec (into
        // `bufs`, `slot` bytes each) and their own sockaddr_storage, alive for the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        for (i, h) in hdrs.iter().enumerate().take(n) {
            self.lens[i] = (h.msg_len as usize).min(self.slot);
            self.peers[i] = to_std(&self.addrs[i]);
        }
        self.count = n;
        Ok(n)
    }

    /// The `i`th datagram of the last batch and its sender (None: not an IP address).
    pub(crate) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.count {
            return None;
        }
        let start = i * self.slot;
        let data = self.bufs.get(start..start + self.lens[i])?;
        Some((data, self.peers[i]?))
    }
}

/// A datagram to send: its bytes and, on an unconnected socket, where to.
pub(crate) trait Datagram {
    fn bytes(&self) -> &[u8];
    /// None on a connected socket.
    fn to(&self) -> Option<SocketAddr>;
}

/// A reply and its destination (the listeners).
impl Datagram for (Vec<u8>, SocketAddr) {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
    fn to(&self) -> Option<SocketAddr> {
        Some(self.1)
    }
}

/// Sends `out[..]` with as few `sendmmsg` calls as possible; returns how many were handed to
/// the kernel (at least one unless the first failed: its error).
pub(crate) fn send<D: Datagram>(fd: RawFd, out: &[D]) -> io::Result<usize> {
    let n = out.len().min(BATCH);
    // Only the entries used are initialised (a batch is often a few datagrams, and the
    // whole arrays are 6.5 KiB).
    let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; BATCH];
    let mut hdrs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; BATCH];
    let mut addrs = [const { MaybeUninit::<libc::sockaddr_storage>::uninit() }; BATCH];
    for (i, d) in out.iter().take(n).enumerate() {
        let bytes = d.bytes();
        let iov = iovs[i].write(libc::iovec {
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        });
        // SAFETY: an all-zero mmsghdr is valid (null name: no address, as on a connected
        // socket; no control data).
        let h = &mut hdrs[i].write(unsafe { mem::zeroed() }).msg_hdr;
        if let Some(to) = d.to() {
            // SAFETY: an all-zero sockaddr_storage is valid.
            let addr = addrs[i].write(unsafe { mem::zeroed() });
            h.msg_namelen = from_std(to, addr);
            h.msg_name = ptr::from_mut(addr).cast();
        }
        h.msg_iov = iov;
        h.msg_iovlen = 1;
    }
    // SAFETY: the first `n` headers are initialised and point at live iovecs over the
    // datagrams (only read by the kernel) and at initialised socket addresses of the given
    // lengths, or at none.
    let sent = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr().cast(), n as libc::c_uint, 0) };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// A kernel socket address as a std one (None for other families).
fn to_std(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(a.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large
            // and aligned enough for.
            let a: &libc::sockaddr_in = unsafe { &*ptr::from_ref(a).cast() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(a.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*ptr::from_ref(a).cast() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let port = u16::from_be(a.sin6_port);
            Some(SocketAddrV6::new(ip, port, a.sin6_flowinfo, a.sin6_scope_id).into())
        }
        _ => None,
    }
}

/// Writes `addr` into `out`; returns its length.
fn from_std(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in.
            let s: &mut libc::sockaddr_in = unsafe { &mut *ptr::from_mut(out).cast() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = a.port().to_be();
            s.sin_addr = libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let s: &mut libc::sockaddr_in6 = unsafe { &mut *ptr::from_mut(out).cast() };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = a.port().to_be();
            s.sin6_flowinfo = a.flowinfo();
            s.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            s.sin6_scope_id = a.scope_id();
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn addresses_round_trip() {
        let cases: [SocketAddr; 3] = [
            "127.0.0.1:53".parse().unwrap_or_else(|_| unreachable!()),
            "[::1]:5353".parse().unwrap_or_else(|_| unreachable!()),
            SocketAddrV6::new(Ipv6Addr::LOCALHOST, 9, 7, 3).into(),
        ];
        for addr in cases {
            // SAFETY: all-zero sockaddr_storage is valid.
            let mut s: libc::sockaddr_storage = unsafe { mem::zeroed() };
            from_std(addr, &mut s);
            assert_eq!(to_std(&s), Some(addr));
        }
    }

    #[test]
    fn a_connected_batch_arrives_in_order() -> io::Result<()> {
        let server = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let client = std::net::UdpSocket::bind("127.0.0.1:0")?;
        client.connect(server.local_addr()?)?;
        let out: Vec<Connected> = (1..=5u8)
            .map(|i| Connected(vec![i; usize::from(i)]))
            .collect();
        let mut sent = 0;
        while sent < out.len() {
            sent += send(client.as_raw_fd(), &out[sent..])?;
        }
        let mut batch = RecvBatch::new(4, 16);
        let mut got = Vec::new();
        while got.len() < out.len() {
            let n = batch.recv(server.as_raw_fd())?;
            got.extend((0..n).filter_map(|i| batch.get(i)).map(|(d, _)| d.to_vec()));
        }
        let want: Vec<Vec<u8>> = out.into_iter().map(|c| c.0).collect();
        assert_eq!(got, want);
        Ok(())
    }

    /// A datagram for a connected socket.
    struct Connected(Vec<u8>);

    impl Datagram for Connected {
        fn bytes(&self) -> &[u8] {
            &self.0
        }
        fn to(&self) -> Option<SocketAddr> {
            None
        }
    }

    #[test]
    fn a_batch_goes_out_and_comes_back_in_order() -> io::Result<()> {
        let server = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let client = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let to = server.local_addr()?;
        let out: Vec<(Vec<u8>, SocketAddr)> = (0..40u8)
            .map(|i| (vec![i; usize::from(i) + 1], to))
            .collect();
        let mut sent = 0;
        while sent < out.len() {
            sent += send(client.as_raw_fd(), &out[sent..])?;
        }
        let mut batch = RecvBatch::new(BATCH, MAX_DATAGRAM);
        let mut got = Vec::new();
        while got.len() < out.len() {
            let n = batch.recv(server.as_raw_fd())?;
            for i in 0..n {
                let (data, from) = batch.get(i).ok_or(io::ErrorKind::InvalidData)?;
                assert_eq!(from, client.local_addr()?);
                got.push(data.to_vec());
            }
        }
        let want: Vec<Vec<u8>> = out.into_iter().map(|(d, _)| d).collect();
        assert_eq!(got, want);
        let empty = batch.recv(server.as_raw_fd());
        assert_eq!(
            empty.err().map(|e| e.kind()),
            Some(io::ErrorKind::WouldBlock)
        );
        Ok(())
    }
}
