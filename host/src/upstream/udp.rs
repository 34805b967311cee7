//! UDP transport to an upstream (query path step 6). Each attempt uses a fresh socket
//! connected to the server: the kernel picks a random ephemeral source port and drops
//! datagrams from any other address, and the ID is random — together the spoofing
//! resistance of issue 6. Responses that do not match are counted and ignored.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;

use crate::metrics::{Metrics, ReasonLabels};

use super::message;
use super::server::AttemptError;

/// Larger than any answer to our 1232-byte EDNS size; a datagram filling it is not trusted.
const RECV_BUF: usize = 4096;

/// Sends `query` (its ID replaced by a random one) and waits up to `timeout` for the
/// matching response.
pub(crate) async fn exchange(
    server: SocketAddr,
    query: &[u8],
    timeout: Duration,
    metrics: &Metrics,
) -> Result<Bytes, AttemptError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(server).await?;
    let query = message::with_id(query, rand::random::<u16>());
    sock.send(&query).await?;
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| AttemptError::Timeout)??;
        let resp = &buf[..n];
        if n < RECV_BUF && message::matches(&query, resp) {
            return Ok(Bytes::copy_from_slice(resp));
        }
        ignored(metrics);
    }
}

/// Counts a response that failed the checks (wrong ID or question, garbage).
pub(crate) fn ignored(metrics: &Metrics) {
    let reason = ReasonLabels {
        reason: "upstream_mismatch",
    };
    metrics.dropped.get_or_create(&reason).inc();
}
