//! `Client`: a real DNS client for tests, over UDP and TCP (pipelined too), with the knobs a
//! forwarder test needs (DO, CD, EDNS size or none, id) and raw sends for malformed input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::net::name;

/// A DNS client. Options are set builder-style; queries are `async`.
///
/// Defaults: RD set, EDNS with a 1232-byte UDP size, DO and CD clear, a random id, 2 s timeout.
#[derive(Clone, Debug)]
pub struct Client {
    recursion_desired: bool,
    checking_disabled: bool,
    dnssec_ok: bool,
    edns_udp_size: Option<u16>,
    id: Option<u16>,
    timeout: Duration,
}

/// An answer: the parsed message, the bytes it was parsed from, and the time it took.
#[derive(Clone, Debug)]
pub struct Response {
    /// The parsed message.
    pub message: Message,
    /// The bytes as received (without the TCP length prefix).
    pub raw: Vec<u8>,
    /// From sending the query (or connecting, over TCP) to receiving the answer.
    pub elapsed: Duration,
}

/// An open TCP connection, for pipelining, partial frames and watching the server close it.
#[derive(Debug)]
pub struct TcpConn {
    stream: TcpStream,
    timeout: Duration,
    sent_at: Instant,
}

impl Default for Client {
    fn default() -> Self {
        Client {
            recursion_desired: true,
            checking_disabled: false,
            dnssec_ok: false,
            edns_udp_size: Some(1232),
            id: None,
            timeout: Duration::from_secs(2),
        }
    }
}

impl Client {
    /// A client with the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the RD bit (default on).
    pub fn recursion_desired(mut self, on: bool) -> Self {
        self.recursion_desired = on;
        self
    }

    /// Sets the CD bit.
    pub fn checking_disabled(mut self, on: bool) -> Self {
        self.checking_disabled = on;
        self
    }

    /// Sets the DO bit (adds EDNS if it was turned off).
    pub fn dnssec_ok(mut self, on: bool) -> Self {
        self.dnssec_ok = on;
        if on {
            self.edns_udp_size.get_or_insert(1232);
        }
        self
    }

    /// Sends EDNS with this UDP payload size.
    pub fn edns_udp_size(mut self, size: u16) -> Self {
        self.edns_udp_size = Some(size);
        self
    }

    /// Sends no OPT record (and so no DO bit).
    pub fn no_edns(mut self) -> Self {
        self.edns_udp_size = None;
        self.dnssec_ok = false;
        self
    }

    /// Uses this id instead of a random one.
    pub fn id(mut self, id: u16) -> Self {
        self.id = Some(id);
        self
    }

    /// How long to wait for a connection or an answer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The query this client would send for (name, qtype).
    ///
    /// # Panics
    /// If `qname` does not parse as a DNS name.
    pub fn build_query(&self, qname: &str, qtype: RecordType) -> Message {
        let mut query = Message::new(
            self.id.unwrap_or_else(rand::random),
            MessageType::Query,
            OpCode::Query,
        );
        query.metadata.recursion_desired = self.recursion_desired;
        query.metadata.checking_disabled = self.checking_disabled;
        query.add_query(Query::query(name(qname), qtype));
        if let Some(size) = self.edns_udp_size {
            let mut edns = Edns::new();
            edns.set_max_payload(size);
            edns.set_dnssec_ok(self.dnssec_ok);
            query.set_edns(edns);
        }
        query
    }

    /// Asks (name, qtype) over UDP. Errors on timeout, unparsable answers and a wrong id.
    pub async fn query_udp(
        &self,
        addr: SocketAddr,
        qname: &str,
        qtype: RecordType,
    ) -> anyhow::Result<Response> {
        self.exchange_udp(addr, &self.build_query(qname, qtype))
            .await
    }

    /// Asks (name, qtype) over TCP on a new connection.
    pub async fn query_tcp(
        &self,
        addr: SocketAddr,
        qname: &str,
        qtype: RecordType,
    ) -> anyhow::Result<Response> {
        self.exchange_tcp(addr, &self.build_query(qname, qtype))
            .await
    }

    /// Sends `query` over UDP and returns the first datagram back, which must carry its id.
    pub async fn exchange_udp(
        &self,
        addr: SocketAddr,
        query: &Message,
    ) -> anyhow::Result<Response> {
        let bytes = query.to_vec().context("encode query")?;
        let start = Instant::now();
        let raw = self
            .udp_exchange(addr, &bytes)
            .await?
            .ok_or_else(|| anyhow!("no answer from {addr} over UDP within {:?}", self.timeout))?;
        Response::for_query(raw, start.elapsed(), query.id)
    }

    /// Sends `query` on a new TCP connection and returns the first answer, which must carry its id.
    pub async fn exchange_tcp(
        &self,
        addr: SocketAddr,
        query: &Message,
    ) -> anyhow::Result<Response> {
        let start = Instant::now();
        let mut conn = self.connect_tcp(addr).await?;
        conn.send(query).await?;
        let response = conn.recv().await?;
        Response::for_query(response.raw, start.elapsed(), query.id)
    }

    /// Sends every question on one TCP connection in a single write, then collects as many
    /// answers, in the order they arrive. Query i has id `base + i`, base being this client's id
    /// or a random one.
    pub async fn query_tcp_pipelined(
        &self,
        addr: SocketAddr,
        questions: &[(&str, RecordType)],
    ) -> anyhow::Result<Vec<Response>> {
        let base: u16 = self.id.unwrap_or_else(rand::random);
        let mut bytes = Vec::new();
        for (i, (qname, qtype)) in questions.iter().enumerate() {
            let mut query = self.build_query(qname, *qtype);
            query.metadata.id = base.wrapping_add(u16::try_from(i).context("too many questions")?);
            bytes.extend_from_slice(&frame(&query.to_vec()?)?);
        }
        let mut conn = self.connect_tcp(addr).await?;
        conn.send_bytes(&bytes).await?;
        let mut responses = Vec::with_capacity(questions.len());
        for i in 0..questions.len() {
            responses.push(
                conn.recv()
                    .await
                    .with_context(|| format!("answer {} of {}", i + 1, questions.len()))?,
            );
        }
        Ok(responses)
    }

    /// Sends `bytes` as one datagram; the first datagram back, or None on timeout or error.
    pub async fn send_raw_udp(&self, addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
        self.udp_exchange(addr, bytes).await.ok().flatten()
    }

    /// Sends `bytes` as one length-prefixed frame on a new TCP connection; the first frame back,
    /// or None on timeout, close or error. For broken framing use [`Client::connect_tcp`].
    pub async fn send_raw_tcp(&self, addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut conn = self.connect_tcp(addr).await.ok()?;
        conn.send_frame(bytes).await.ok()?;
        conn.recv_frame().await
    }

    /// Opens a TCP connection that uses this client's timeout.
    pub async fn connect_tcp(&self, addr: SocketAddr) -> anyhow::Result<TcpConn> {
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("TCP connect to {addr} timed out"))?
            .with_context(|| format!("TCP connect to {addr}"))?;
        Ok(TcpConn {
            stream,
            timeout: self.timeout,
            sent_at: Instant::now(),
        })
    }

    async fn udp_exchange(
        &self,
        addr: SocketAddr,
        bytes: &[u8],
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let local: IpAddr = if addr.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let socket = UdpSocket::bind((local, 0)).await.context("bind UDP")?;
        // Connected: datagrams from anyone else are filtered out, ICMP errors reported.
        socket.connect(addr).await?;
        socket
            .send(bytes)
            .await
            .with_context(|| format!("send to {addr}"))?;
        let mut buf = vec![0; 65535];
        match tokio::time::timeout(self.timeout, socket.recv(&mut buf)).await {
            Ok(Ok(len)) => Ok(Some(buf[..len].to_vec())),
            Ok(Err(e)) => Err(anyhow::Error::from(e).context(format!("receive from {addr}"))),
            Err(_) => Ok(None),
        }
    }
}

impl TcpConn {
    /// Sends one query as a frame.
    pub async fn send(&mut self, query: &Message) -> anyhow::Result<()> {
        self.send_frame(&query.to_vec().context("encode query")?)
            .await
    }

    /// Sends `bytes` behind a two-byte length prefix.
    pub async fn send_frame(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.send_bytes(&frame(bytes)?).await
    }

    /// Sends `bytes` as they are (a partial frame, several frames, a lying length prefix).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.sent_at = Instant::now();
        self.stream.write_all(bytes).await.context("TCP write")
    }

    /// The next answer on the connection, whatever its id; `elapsed` counts from the last send.
    pub async fn recv(&mut self) -> anyhow::Result<Response> {
        let raw = self.recv_frame().await.ok_or_else(|| {
            anyhow!(
                "no answer over TCP within {:?} (or connection closed)",
                self.timeout
            )
        })?;
        Response::parse(raw, self.sent_at.elapsed())
    }

    /// The next frame, or None on timeout, close or error.
    pub async fn recv_frame(&mut self) -> Option<Vec<u8>> {
        let read = async {
            let len = self.stream.read_u16().await.ok()?;
            let mut frame = vec![0; usize::from(len)];
            self.stream.read_exact(&mut frame).await.ok()?;
            Some(frame)
        };
        tokio::time::timeout(self.timeout, read)
            .await
            .ok()
            .flatten()
    }

    /// Waits up to the timeout for the server to close or reset the connection, discarding any
    /// bytes it sends first; true if it did.
    pub async fn closed_by_peer(&mut self) -> bool {
        let wait = async {
            let mut buf = [0u8; 4096];
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(self.timeout, wait).await.is_ok()
    }

    /// The underlying stream, for anything else.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

impl Response {
    /// Parses an answer, whatever its id.
    pub fn parse(raw: Vec<u8>, elapsed: Duration) -> anyhow::Result<Self> {
        let message =
            Message::from_vec(&raw).with_context(|| format!("unparsable answer {raw:02x?}"))?;
        Ok(Response {
            message,
            raw,
            elapsed,
        })
    }

    fn for_query(raw: Vec<u8>, elapsed: Duration, id: u16) -> anyhow::Result<Self> {
        let response = Self::parse(raw, elapsed)?;
        if response.message.id != id {
            bail!(
                "answer id {} does not match query id {id}",
                response.message.id
            );
        }
        Ok(response)
    }

    /// The RCODE.
    pub fn rcode(&self) -> ResponseCode {
        self.message.response_code
    }

    /// The answer section.
    pub fn answers(&self) -> &[Record] {
        &self.message.answers
    }

    /// The addresses of the A records in the answer section.
    pub fn ipv4(&self) -> Vec<Ipv4Addr> {
        self.answers()
            .iter()
            .filter_map(|r| {
                if let RData::A(a) = &r.data {
                    Some(a.0)
                } else {
                    None
                }
            })
            .collect()
    }

    /// The addresses of the AAAA records in the answer section.
    pub fn ipv6(&self) -> Vec<Ipv6Addr> {
        self.answers()
            .iter()
            .filter_map(|r| {
                if let RData::AAAA(a) = &r.data {
                    Some(a.0)
                } else {
                    None
                }
            })
            .collect()
    }

    /// The smallest TTL in the answer section, else in the authority section (negative answers).
    pub fn min_ttl(&self) -> Option<u32> {
        let ttls = |records: &[Record]| records.iter().map(|r| r.ttl).min();
        ttls(&self.message.answers).or_else(|| ttls(&self.message.authorities))
    }

    /// The TC bit.
    pub fn truncated(&self) -> bool {
        self.message.truncation
    }
}

fn frame(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let len = u16::try_from(bytes.len()).context("message longer than a TCP frame")?;
    let mut frame = Vec::with_capacity(bytes.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(bytes);
    Ok(frame)
}

/// One blocking UDP query, for harnesses that wait for a server outside any runtime.
pub(crate) fn probe_udp_blocking(
    addr: SocketAddr,
    qname: &str,
    qtype: RecordType,
    wait: Duration,
) -> Option<Message> {
    let query = Client::new().build_query(qname, qtype);
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    socket.connect(addr).ok()?;
    socket.set_read_timeout(Some(wait)).ok()?;
    socket.send(&query.to_vec().ok()?).ok()?;
    let mut buf = vec![0; 65535];
    let len = socket.recv(&mut buf).ok()?;
    Message::from_vec(&buf[..len])
        .ok()
        .filter(|m| m.id == query.id)
}
