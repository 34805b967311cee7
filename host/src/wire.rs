//! Minimal DNS wire-format walking for the hot path.
//!
//! Ingress, the cache and egress need a handful of facts about a packet (header bits, the
//! question, where the TTLs and the OPT record are). Walking the bytes once gives those
//! without hickory's full `Message` decode, so cache hits never allocate a message.

use thiserror::Error;

/// Header length.
pub const HEADER_LEN: usize = 12;
/// OPT pseudo-record type.
pub const TYPE_OPT: u16 = 41;
/// SOA record type.
pub const TYPE_SOA: u16 = 6;
/// Longest name on the wire.
pub const MAX_NAME_LEN: usize = 255;

/// Why a packet could not be walked.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    #[error("packet shorter than its header or its sections")]
    Truncated,
    #[error("bad name (label too long, name over 255 octets, or a compression loop)")]
    BadName,
    #[error("reserved label type")]
    BadLabel,
    #[error("more than one OPT record, or one outside the additional section")]
    BadOpt,
}

/// Reads a big-endian u16 at `pos`.
#[inline]
pub fn u16_at(buf: &[u8], pos: usize) -> Result<u16, WireError> {
    match buf.get(pos..pos + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(WireError::Truncated),
    }
}

/// Reads a big-endian u32 at `pos`.
#[inline]
pub fn u32_at(buf: &[u8], pos: usize) -> Result<u32, WireError> {
    match buf.get(pos..pos + 4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(WireError::Truncated),
    }
}

/// Header accessors over a packet of at least [`HEADER_LEN`] bytes.
#[derive(Clone, Copy)]
pub struct Header<'a>(&'a [u8]);

impl<'a> Header<'a> {
    /// Wraps `buf` if it holds a full header.
    pub fn new(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Header(buf))
    }
    pub fn id(&self) -> u16 {
        u16::from_be_bytes([self.0[0], self.0[1]])
    }
    pub fn qr(&self) -> bool {
        self.0[2] & 0x80 != 0
    }
    pub fn opcode(&self) -> u8 {
        (self.0[2] >> 3) & 0x0f
    }
    pub fn tc(&self) -> bool {
        self.0[2] & 0x02 != 0
    }
    pub fn rd(&self) -> bool {
        self.0[2] & 0x01 != 0
    }
    pub fn cd(&self) -> bool {
        self.0[3] & 0x10 != 0
    }
    pub fn rcode(&self) -> u8 {
        self.0[3] & 0x0f
    }
    pub fn qdcount(&self) -> u16 {
        u16::from_be_bytes([self.0[4], self.0[5]])
    }
    pub fn ancount(&self) -> u16 {
        u16::from_be_bytes([self.0[6], self.0[7]])
    }
    pub fn nscount(&self) -> u16 {
        u16::from_be_bytes([self.0[8], self.0[9]])
    }
    pub fn arcount(&self) -> u16 {
        u16::from_be_bytes([self.0[10], self.0[11]])
    }
}

/// Sets the ID of a packet.
#[inline]
pub fn set_id(buf: &mut [u8], id: u16) {
    buf[..2].copy_from_slice(&id.to_be_bytes());
}

/// Skips a (possibly compressed) name starting at `pos`; returns the position after it.
pub fn skip_name(buf: &[u8], mut pos: usize) -> Result<usize, WireError> {
    loop {
        let len = *buf.get(pos).ok_or(WireError::Truncated)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Ok(pos + 1),
            0x00 => pos += 1 + len as usize,
            0xc0 => {
                if pos + 2 > buf.len() {
                    return Err(WireError::Truncated);
                }
                return Ok(pos + 2);
            }
            _ => return Err(WireError::BadLabel),
        }
    }
}

/// Reads the name at `pos` into `out` as uncompressed, lowercased wire format, following
/// compression pointers (each must point strictly backwards, so loops are impossible).
/// Returns the position after the name at `pos`.
pub fn read_name_lower(buf: &[u8], pos: usize, out: &mut Vec<u8>) -> Result<usize, WireError> {
    out.clear();
    let mut cursor = pos;
    let mut end = None;
    let mut limit = pos;
    loop {
        let len = *buf.get(cursor).ok_or(WireError::Truncated)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                out.push(0);
                if out.len() > MAX_NAME_LEN {
                    return Err(WireError::BadName);
                }
                return Ok(end.unwrap_or(cursor + 1));
            }
            0x00 => {
                let label = buf
                    .get(cursor + 1..cursor + 1 + len as usize)
                    .ok_or(WireError::Truncated)?;
                out.push(len);
                out.extend(label.iter().map(u8::to_ascii_lowercase));
                if out.len() > MAX_NAME_LEN {
                    return Err(WireError::BadName);
                }
                cursor += 1 + len as usize;
            }
            0xc0 => {
                let target = (u16_at(buf, cursor)? & 0x3fff) as usize;
                if target >= limit {
                    return Err(WireError::BadName);
                }
                end.get_or_insert(cursor + 2);
                limit = target;
                cursor = target;
            }
            _ => return Err(WireError::BadLabel),
        }
    }
}

/// Renders uncompressed wire-format name bytes as text with a trailing dot (`www.example.`).
pub fn name_to_string(wire: &[u8]) -> String {
    let mut s = String::with_capacity(wire.len() + 1);
    let mut pos = 0;
    while let Some(&len) = wire.get(pos) {
        if len == 0 {
            break;
        }
        let label = wire.get(pos + 1..pos + 1 + len as usize).unwrap_or(&[]);
        for &b in label {
            match b {
                b'.' | b'\\' => {
                    s.push('\\');
                    s.push(b as char);
                }
                0x21..=0x7e => s.push(b as char),
                _ => s.push_str(&format!("\\{b:03}")),
            }
        }
        s.push('.');
        pos += 1 + len as usize;
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

/// The question of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Uncompressed, lowercased wire-format name.
    pub name: Vec<u8>,
    pub qtype: u16,
    pub qclass: u16,
    /// Byte range of the question's name in the packet as sent (original case).
    pub name_range: (usize, usize),
    /// Position just after the question.
    pub end: usize,
}

/// Reads the first question (at offset 12).
pub fn read_question(buf: &[u8]) -> Result<Question, WireError> {
    let mut name = Vec::with_capacity(64);
    let after = read_name_lower(buf, HEADER_LEN, &mut name)?;
    let qtype = u16_at(buf, after)?;
    let qclass = u16_at(buf, after + 2)?;
    Ok(Question {
        name,
        qtype,
        qclass,
        name_range: (HEADER_LEN, after),
        end: after + 4,
    })
}

/// One resource record's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPos {
    pub start: usize,
    pub rtype: u16,
    /// Offset of the 32-bit TTL field.
    pub ttl_at: usize,
    pub rdata_at: usize,
    pub end: usize,
}

/// Reads the record starting at `pos`.
pub fn read_record(buf: &[u8], pos: usize) -> Result<RecordPos, WireError> {
    let after_name = skip_name(buf, pos)?;
    let rtype = u16_at(buf, after_name)?;
    let ttl_at = after_name + 4;
    let rdlen = u16_at(buf, after_name + 8)? as usize;
    let rdata_at = after_name + 10;
    let end = rdata_at + rdlen;
    if end > buf.len() {
        return Err(WireError::Truncated);
    }
    Ok(RecordPos {
        start: pos,
        rtype,
        ttl_at,
        rdata_at,
        end,
    })
}

/// The EDNS0 facts of an OPT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub do_bit: bool,
    pub version: u8,
    /// Byte range of the OPT record.
    pub range: (usize, usize),
}

/// Everything the cache and egress need to know about a response, from one walk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// End of the question section.
    pub question_end: usize,
    /// End of the last record: bytes after it belong to no section (a sender's garbage) and
    /// must not be kept, or a record appended later (our OPT) would be unreachable.
    pub end: usize,
    /// TTL offsets of every record except OPT.
    pub ttl_offsets: Vec<usize>,
    /// Smallest TTL over all records except OPT (None when there are none).
    pub min_ttl: Option<u32>,
    /// For negative caching: min(SOA TTL, SOA MINIMUM) of the first SOA in the authority section.
    pub soa_negative_ttl: Option<u32>,
    pub opt: Option<Edns>,
}

/// Walks a whole message.
pub fn layout(buf: &[u8]) -> Result<Layout, WireError> {
    let h = Header::new(buf)?;
    let mut pos = HEADER_LEN;
    for _ in 0..h.qdcount() {
        pos = skip_name(buf, pos)? + 4;
    }
    if pos > buf.len() {
        return Err(WireError::Truncated);
    }
    let mut out = Layout {
        question_end: pos,
        end: pos,
        ..Layout::default()
    };
    let (an, ns) = (h.ancount() as usize, h.nscount() as usize);
    let total = an + ns + h.arcount() as usize;
    for i in 0..total {
        let rr = read_record(buf, pos)?;
        if rr.rtype == TYPE_OPT {
            // RFC 6891 §6.1.1: at most one, in the additional section. Another one would
            // survive egress (which handles the first) and reach the client.
            if out.opt.is_some() || i < an + ns {
                return Err(WireError::BadOpt);
            }
            out.opt = Some(Edns {
                udp_size: u16_at(buf, rr.ttl_at - 2)?,
                version: buf[rr.ttl_at + 1],
                do_bit: buf[rr.ttl_at + 2] & 0x80 != 0,
                range: (rr.start, rr.end),
            });
        } else {
            let ttl = u32_at(buf, rr.ttl_at)?;
            out.min_ttl = Some(out.min_ttl.map_or(ttl, |m| m.min(ttl)));
            out.ttl_offsets.push(rr.ttl_at);
            let in_authority = (an..an + ns).contains(&i);
            if in_authority && rr.rtype == TYPE_SOA && out.soa_negative_ttl.is_none() {
                // Within the record: a short SOA must not borrow the next record's bytes.
                let minimum = soa_minimum(&buf[..rr.end], rr.rdata_at)?;
                out.soa_negative_ttl = Some(minimum.min(ttl));
            }
        }
        pos = rr.end;
        out.end = pos;
    }
    Ok(out)
}

/// The MINIMUM field of SOA rdata at `pos` (after MNAME, RNAME and four 32-bit fields).
fn soa_minimum(buf: &[u8], pos: usize) -> Result<u32, WireError> {
    let pos = skip_name(buf, skip_name(buf, pos)?)?;
    u32_at(buf, pos + 16)
}

/// Removes the OPT record at `range` (which must be in the additional section) and
/// decrements ARCOUNT.
pub fn remove_record(buf: &mut Vec<u8>, range: (usize, usize)) {
    buf.drain(range.0..range.1);
    let ar = u16::from_be_bytes([buf[10], buf[11]]).saturating_sub(1);
    buf[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// The full RCODE of `buf`: the header's 4 bits (`header_rcode`) plus the extended bits of its
/// OPT record (`opt`, where it was found), so BADVERS (16) is not mistaken for NOERROR.
/// Saturates at 255.
pub fn full_rcode(buf: &[u8], header_rcode: u8, opt: Option<&Edns>) -> u8 {
    let extended = opt
        .and_then(|o| read_record(buf, o.range.0).ok())
        .and_then(|rr| buf.get(rr.ttl_at).copied())
        .unwrap_or(0);
    u8::try_from((u16::from(extended) << 4) | u16::from(header_rcode)).unwrap_or(u8::MAX)
}

/// Finds the OPT record of a message without collecting anything else.
pub fn find_opt(buf: &[u8]) -> Result<Option<Edns>, WireError> {
    let h = Header::new(buf)?;
    let mut pos = HEADER_LEN;
    for _ in 0..h.qdcount() {
        pos = skip_name(buf, pos)? + 4;
    }
    let (before_additional, ar) = (h.ancount() as usize + h.nscount() as usize, h.arcount());
    for _ in 0..before_additional {
        pos = read_record(buf, pos)?.end;
    }
    for _ in 0..ar {
        let rr = read_record(buf, pos)?;
        if rr.rtype == TYPE_OPT {
            return Ok(Some(Edns {
                udp_size: u16_at(buf, rr.ttl_at - 2)?,
                version: buf[rr.ttl_at + 1],
                do_bit: buf[rr.ttl_at + 2] & 0x80 != 0,
                range: (rr.start, rr.end),
            }));
        }
        pos = rr.end;
    }
    Ok(None)
}

/// Appends an OPT record (no options) and increments ARCOUNT.
pub fn push_opt(buf: &mut Vec<u8>, udp_size: u16, ext_rcode: u8, do_bit: bool) {
    buf.push(0); // root owner
    buf.extend_from_slice(&TYPE_OPT.to_be_bytes());
    buf.extend_from_slice(&udp_size.to_be_bytes());
    buf.extend_from_slice(&[ext_rcode, 0, if do_bit { 0x80 } else { 0 }, 0]);
    buf.extend_from_slice(&[0, 0]);
    let ar = u16::from_be_bytes([buf[10], buf[11]]).saturating_add(1);
    buf[10..12].copy_from_slice(&ar.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in s.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    }

    #[test]
    fn reads_lowercased_names_and_follows_backward_pointers() {
        let mut buf = vec![0u8; 12];
        buf.extend(name("WWW.Example.COM"));
        let ptr_at = buf.len();
        buf.extend([0xc0, 12]);
        let mut out = Vec::new();
        assert_eq!(read_name_lower(&buf, 12, &mut out), Ok(ptr_at));
        assert_eq!(out, name("www.example.com"));
        assert_eq!(read_name_lower(&buf, ptr_at, &mut out), Ok(ptr_at + 2));
        assert_eq!(name_to_string(&out), "www.example.com.");
    }

    #[test]
    fn rejects_loops_forward_pointers_and_long_names() {
        let mut out = Vec::new();
        let mut self_loop = vec![0u8; 12];
        self_loop.extend([0xc0, 12]);
        assert_eq!(
            read_name_lower(&self_loop, 12, &mut out),
            Err(WireError::BadName)
        );
        let mut forward = vec![0u8; 12];
        forward.extend([0xc0, 14, 0]);
        assert_eq!(
            read_name_lower(&forward, 12, &mut out),
            Err(WireError::BadName)
        );
        let mut long = vec![0u8; 12];
        for _ in 0..5 {
            long.push(63);
            long.extend([b'a'; 63]);
        }
        long.push(0);
        assert_eq!(
            read_name_lower(&long, 12, &mut out),
            Err(WireError::BadName)
        );
        let mut reserved = vec![0u8; 12];
        reserved.extend([0x40, 0]);
        assert_eq!(
            read_name_lower(&reserved, 12, &mut out),
            Err(WireError::BadLabel)
        );
        assert_eq!(
            read_name_lower(&[0u8; 12], 12, &mut out),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn layout_ends_at_the_last_record_not_at_trailing_bytes() {
        // Found by the upstream_response fuzz target: an answer with one byte after its
        // last record, whose OPT (appended by egress) then could not be walked.
        let mut msg = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        msg.extend(name("a.example"));
        msg.extend([0, 1, 0, 1]);
        let question_end = msg.len();
        msg.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        let end = msg.len();
        msg.push(0xff);
        let l = layout(&msg).unwrap();
        assert_eq!((l.question_end, l.end), (question_end, end));
        let mut bare = msg[..question_end].to_vec();
        bare[7] = 0; // no answer
        assert_eq!(layout(&bare).unwrap().end, question_end);
    }

    #[test]
    fn soa_minimum_is_read_within_the_soa_record() {
        // Found by the upstream_response fuzz target: a SOA with empty RDATA took its
        // MINIMUM from the bytes after it, and the cached copy (without them) no longer
        // walked.
        let mut msg = vec![0, 1, 0x81, 0x83, 0, 1, 0, 0, 0, 1, 0, 0];
        msg.extend(name("a.example"));
        msg.extend([0, 1, 0, 1]);
        msg.extend(name("example"));
        msg.extend([0, 6, 0, 1, 0, 0, 0, 60, 0, 0]); // SOA, TTL 60, RDLENGTH 0
        msg.extend([0u8; 30]); // what it must not read
        assert_eq!(layout(&msg), Err(WireError::Truncated));
        let mut good = msg[..msg.len() - 32].to_vec();
        let mut rdata = name("ns.example");
        rdata.extend(name("h.example"));
        rdata.extend([0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 30]);
        good.extend((rdata.len() as u16).to_be_bytes());
        good.extend(rdata);
        assert_eq!(layout(&good).unwrap().soa_negative_ttl, Some(30));
    }

    #[test]
    fn layout_accepts_one_opt_in_the_additional_section_only() {
        // Found by the upstream_response fuzz target: with two OPT records, egress removed
        // the first for a client without EDNS and passed the second on.
        let base = |an: u8, ar: u8| {
            let mut m = vec![0, 1, 0x81, 0x80, 0, 1, 0, an, 0, 0, 0, ar];
            m.extend(name("a.example"));
            m.extend([0, 1, 0, 1]);
            m
        };
        let opt = [0u8, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0];
        let one = [base(0, 1), opt.to_vec()].concat();
        assert!(layout(&one).unwrap().opt.is_some());
        let two = [base(0, 2), opt.to_vec(), opt.to_vec()].concat();
        assert_eq!(layout(&two), Err(WireError::BadOpt));
        let in_answer = [base(1, 0), opt.to_vec()].concat();
        assert_eq!(layout(&in_answer), Err(WireError::BadOpt));
    }

    #[test]
    fn renders_root_and_escapes() {
        assert_eq!(name_to_string(&[0]), ".");
        assert_eq!(name_to_string(&[3, b'a', b'.', b' ', 0]), "a\\.\\032.");
    }
}
