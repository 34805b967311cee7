//! Ingress checks and egress shaping (query path steps 1 and 8).
//!
//! `parse` is one linear function of early returns, header first: every malformed stage maps
//! to exactly one outcome (drop, or an RCODE). `finalize` turns any answer (cached, upstream,
//! synthesized) into what this client may receive: its ID and question case, its EDNS state,
//! and its UDP size (truncated with TC=1 beyond it).

use std::net::SocketAddr;

use crate::policy::Transport;
use crate::wire::{self, Edns, HEADER_LEN, Header, Question};

/// RCODEs we produce.
pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
    /// Extended RCODE 16 (upper bits 1 in the OPT record, lower bits 0).
    pub const BADVERS: u16 = 16;
}

/// Class IN.
pub const CLASS_IN: u16 = 1;
/// The smallest UDP payload every client accepts.
pub const MIN_UDP_SIZE: u16 = 512;

/// A query that passed the ingress checks.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: u16,
    pub rd: bool,
    pub cd: bool,
    pub question: Question,
    /// The question name as the client wrote it (original case), for echoing back.
    pub question_bytes: Box<[u8]>,
    pub edns: Option<Edns>,
    pub client: SocketAddr,
    pub transport: Transport,
    /// Size of the query on the wire.
    pub size: usize,
}

impl Request {
    /// The DO bit (DNSSEC OK) of the client's EDNS.
    pub fn do_bit(&self) -> bool {
        self.edns.is_some_and(|e| e.do_bit)
    }
    /// The largest response this client can take over its transport.
    pub fn max_response(&self, our_udp_size: u16) -> usize {
        match self.transport {
            Transport::Tcp => u16::MAX as usize,
            Transport::Udp => match self.edns {
                Some(e) => e
                    .udp_size
                    .clamp(MIN_UDP_SIZE, our_udp_size.max(MIN_UDP_SIZE))
                    as usize,
                None => MIN_UDP_SIZE as usize,
            },
        }
    }
}

/// Why a packet is not answered from the zone path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// Not answered at all (no header, or not a query); the reason is a metric label.
    Drop(&'static str),
    /// Answered with this RCODE (possibly extended) and nothing else.
    Answer(Box<ErrorReply>),
}

/// Enough of a bad request to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    pub rcode: u16,
    pub reply: Vec<u8>,
    /// The question if it could be read (for logs and metrics).
    pub question: Option<Question>,
}

/// Step 1: the ingress checks.
pub fn parse(packet: &[u8], client: SocketAddr, transport: Transport) -> Result<Request, Rejected> {
    let Ok(h) = Header::new(packet) else {
        return Err(Rejected::Drop("short"));
    };
    if h.qr() {
        return Err(Rejected::Drop("response"));
    }
    if h.opcode() != 0 {
        return Err(reject(packet, None, None, rcode::NOTIMP as u16));
    }
    if h.qdcount() != 1 {
        return Err(reject(packet, None, None, rcode::FORMERR as u16));
    }
    let Ok(question) = wire::read_question(packet) else {
        return Err(reject(packet, None, None, rcode::FORMERR as u16));
    };
    let edns = match read_edns(packet, question.end) {
        Ok(e) => e,
        Err(_) => return Err(reject(packet, Some(question), None, rcode::FORMERR as u16)),
    };
    if let Some(e) = edns.filter(|e| e.version != 0) {
        return Err(reject(packet, Some(question), Some(e), rcode::BADVERS));
    }
    if question.qclass != CLASS_IN {
        return Err(reject(packet, Some(question), edns, rcode::REFUSED as u16));
    }
    if matches!(question.qtype, 251 | 252) {
        // IXFR/AXFR: a cache does not transfer zones.
        return Err(reject(packet, Some(question), edns, rcode::REFUSED as u16));
    }
    let question_bytes = packet[question.name_range.0..question.name_range.1].into();
    Ok(Request {
        id: h.id(),
        rd: h.rd(),
        cd: h.cd(),
        question,
        question_bytes,
        edns,
        client,
        transport,
        size: packet.len(),
    })
}

/// Reads the OPT record of a query's additional section (answer and authority are skipped).
fn read_edns(packet: &[u8], mut pos: usize) -> Result<Option<Edns>, wire::WireError> {
    let h = Header::new(packet)?;
    let mut found = None;
    for i in 0..(h.ancount() as usize + h.nscount() as usize + h.arcount() as usize) {
        let rr = wire::read_record(packet, pos)?;
        let in_additional = i >= h.ancount() as usize + h.nscount() as usize;
        if rr.rtype == wire::TYPE_OPT {
            if !in_additional || found.is_some() || packet[rr.start] != 0 {
                return Err(wire::WireError::BadOpt);
            }
            found = Some(Edns {
                udp_size: wire::u16_at(packet, rr.ttl_at - 2)?,
                version: packet[rr.ttl_at + 1],
                do_bit: packet[rr.ttl_at + 2] & 0x80 != 0,
                range: (rr.start, rr.end),
            });
        }
        pos = rr.end;
    }
    Ok(found)
}

fn reject(packet: &[u8], question: Option<Question>, edns: Option<Edns>, code: u16) -> Rejected {
    let reply = error_reply(packet, question.as_ref(), edns, code);
    Rejected::Answer(Box::new(ErrorReply {
        rcode: code,
        reply,
        question,
    }))
}

/// A response with no records: the request's header bits, its question (as written) if
/// readable, our OPT if the client sent one, and `code` (extended codes go into the OPT).
pub fn error_reply(
    packet: &[u8],
    question: Option<&Question>,
    edns: Option<Edns>,
    code: u16,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&packet[..2]);
    let opcode_rd = packet[2] & 0x79; // opcode and RD
    out.push(0x80 | opcode_rd); // QR=1
    out.push(0x80 | (packet[3] & 0x10) | (code & 0x0f) as u8); // RA, CD, rcode
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    if let Some(q) = question {
        out.extend_from_slice(&packet[HEADER_LEN..q.end]);
        out[5] = 1;
    }
    if let Some(e) = edns {
        wire::push_opt(
            &mut out,
            crate::DEFAULT_UDP_SIZE,
            (code >> 4) as u8,
            e.do_bit,
        );
    }
    out
}

/// A NOERROR/NXDOMAIN/REFUSED reply for `req` with no records.
pub fn reply_with_rcode(req: &Request, code: u8, our_udp_size: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + req.question_bytes.len());
    out.extend_from_slice(&req.id.to_be_bytes());
    out.push(0x80 | if req.rd { 1 } else { 0 });
    out.push(0x80 | if req.cd { 0x10 } else { 0 } | code);
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&req.question_bytes);
    out.extend_from_slice(&req.question.qtype.to_be_bytes());
    out.extend_from_slice(&req.question.qclass.to_be_bytes());
    if let Some(e) = req.edns {
        wire::push_opt(&mut out, our_udp_size, 0, e.do_bit);
    }
    out
}

/// Step 8: shapes an answer (from the cache, an upstream or a policy) for this client.
///
/// `answer` must have the same question as `req` (checked by the upstream client); its ID
/// and EDNS are replaced, the question takes the client's case, and a UDP answer larger than
/// the client can take is cut to header + question (+ OPT) with TC=1.
pub fn finalize(mut answer: Vec<u8>, req: &Request, our_udp_size: u16) -> Vec<u8> {
    if answer.len() < HEADER_LEN {
        return reply_with_rcode(req, rcode::SERVFAIL, our_udp_size);
    }
    wire::set_id(&mut answer, req.id);
    answer[2] = (answer[2] & !0x01) | u8::from(req.rd);
    answer[3] |= 0x80; // RA
    let (qs, qe) = req.question.name_range;
    if answer
        .get(qs..qe)
        .is_some_and(|n| n.len() == req.question_bytes.len())
    {
        answer[qs..qe].copy_from_slice(&req.question_bytes);
    }
    let opt = wire::find_opt(&answer).ok().flatten();
    match (req.edns, opt) {
        (None, Some(o)) => wire::remove_record(&mut answer, o.range),
        (Some(e), None) => wire::push_opt(&mut answer, our_udp_size, 0, e.do_bit),
        (Some(_), Some(o)) => {
            // The payload size is the OPT's CLASS field, just before its TTL. Found from the
            // record, not assumed one byte in: an upstream may write the owner as a pointer.
            if let Ok(rr) = wire::read_record(&answer, o.range.0) {
                let at = rr.ttl_at - 2;
                answer[at..at + 2].copy_from_slice(&our_udp_size.to_be_bytes());
            }
        }
        (None, None) => {}
    }
    if answer.len() > req.max_response(our_udp_size) {
        return truncated(req, answer[3] & 0x0f, our_udp_size);
    }
    answer
}

fn truncated(req: &Request, code: u8, our_udp_size: u16) -> Vec<u8> {
    let mut out = reply_with_rcode(req, code, our_udp_size);
    out[2] |= 0x02;
    out
}

#[cfg(test)]
mod tests;
