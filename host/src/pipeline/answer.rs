//! Answers a policy makes without any upstream: denials and synthesized records.

use crate::policy::{DenyKind, RData, Record};
use crate::request::{self, Request, rcode};

/// The reply for a denied query.
pub(super) fn denial(req: &Request, kind: DenyKind, udp_size: u16) -> Vec<u8> {
    let code = match kind {
        DenyKind::NxDomain => rcode::NXDOMAIN,
        DenyKind::Refused => rcode::REFUSED,
        DenyKind::NoData => rcode::NOERROR,
    };
    request::reply_with_rcode(req, code, udp_size)
}

/// A NOERROR reply carrying `records` (SERVFAIL if a record cannot be encoded).
pub(super) fn synthesize(req: &Request, records: &[Record], udp_size: u16) -> Vec<u8> {
    let plain = Request {
        edns: None,
        ..req.clone()
    };
    let mut out = request::reply_with_rcode(&plain, rcode::NOERROR, udp_size);
    out[2] |= 0x04; // AA: we are the authority for what we synthesize
    let mut count: u16 = 0;
    for r in records {
        if encode(&mut out, r).is_none() {
            return request::reply_with_rcode(req, rcode::SERVFAIL, udp_size);
        }
        count += 1;
    }
    out[6..8].copy_from_slice(&count.to_be_bytes());
    request::finalize(out, req, udp_size)
}

fn encode(out: &mut Vec<u8>, r: &Record) -> Option<()> {
    push_name(out, &r.name)?;
    let (rtype, rdata): (u16, Vec<u8>) = match &r.data {
        RData::A(ip) => (1, ip.octets().to_vec()),
        RData::Aaaa(ip) => (28, ip.octets().to_vec()),
        RData::Cname(target) => {
            let mut v = Vec::new();
            push_name(&mut v, target)?;
            (5, v)
        }
        RData::Txt(strings) => {
            let mut v = Vec::new();
            for s in strings {
                for chunk in s.as_bytes().chunks(255) {
                    v.push(chunk.len() as u8);
                    v.extend_from_slice(chunk);
                }
                if s.is_empty() {
                    v.push(0);
                }
            }
            (16, v)
        }
    };
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&request::CLASS_IN.to_be_bytes());
    out.extend_from_slice(&r.ttl.to_be_bytes());
    out.extend_from_slice(&u16::try_from(rdata.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&rdata);
    Some(())
}

pub(super) fn push_name(out: &mut Vec<u8>, name: &str) -> Option<()> {
    let start = out.len();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        if label.len() > 63 {
            return None;
        }
        out.push(label.len() as u8);
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
    (out.len() - start <= crate::wire::MAX_NAME_LEN).then_some(())
}
