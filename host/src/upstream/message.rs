//! Upstream messages (query path step 6): the query we send and the checks a response
//! must pass before it is accepted (spoofing resistance: ID, QR and question must match).

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{HEADER_LEN, Header, TYPE_OPT};

use super::UpstreamQuery;

const FLAG_RD: u16 = 0x0100;
const FLAG_CD: u16 = 0x0010;
const EDNS_DO: u16 = 0x8000;

/// Builds the query with ID 0 (set per attempt): RD=1, CD and DO from the client, the
/// question, and an EDNS0 OPT record advertising `udp_size`.
pub(crate) fn build_query(q: &UpstreamQuery<'_>, udp_size: u16) -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER_LEN + q.name.len() + 4 + 11);
    let flags = FLAG_RD | if q.cd { FLAG_CD } else { 0 };
    b.put_u16(0);
    b.put_u16(flags);
    b.put_u16(1); // QDCOUNT
    b.put_u16(0);
    b.put_u16(0);
    b.put_u16(1); // ARCOUNT: the OPT record
    b.put_slice(q.name);
    b.put_u16(q.qtype);
    b.put_u16(q.qclass);
    b.put_u8(0); // OPT owner: the root
    b.put_u16(TYPE_OPT);
    b.put_u16(udp_size);
    b.put_u8(0); // extended RCODE
    b.put_u8(0); // version
    b.put_u16(if q.do_bit { EDNS_DO } else { 0 });
    b.put_u16(0); // RDLEN
    b.freeze()
}

/// A copy of `query` carrying `id`.
pub(crate) fn with_id(query: &[u8], id: u16) -> Vec<u8> {
    let mut v = query.to_vec();
    crate::wire::set_id(&mut v, id);
    v
}

/// True when `resp` answers `query`: same ID, QR=1, one question equal to ours (name
/// compared case-insensitively, type and class exactly). Anything else is ignored.
pub(crate) fn matches(query: &[u8], resp: &[u8]) -> bool {
    let (Ok(qh), Ok(rh)) = (Header::new(query), Header::new(resp)) else {
        return false;
    };
    if qh.id() != rh.id() || !rh.qr() || rh.qdcount() != 1 {
        return false;
    }
    // Our question is uncompressed at offset 12: name, type, class.
    let Some(qlen) = question_len(query) else {
        return false;
    };
    let end = HEADER_LEN + qlen;
    match (query.get(HEADER_LEN..end), resp.get(HEADER_LEN..end)) {
        (Some(ours), Some(theirs)) => ours.eq_ignore_ascii_case(theirs),
        _ => false,
    }
}

/// Length of the (uncompressed) question section starting at offset 12.
fn question_len(msg: &[u8]) -> Option<usize> {
    let mut pos = HEADER_LEN;
    loop {
        let len = *msg.get(pos)? as usize;
        if len == 0 {
            return Some(pos + 1 + 4 - HEADER_LEN);
        }
        if len > 63 {
            return None;
        }
        pos += 1 + len;
    }
}

/// The `. IN NS` health probe.
pub(crate) fn probe_query(udp_size: u16) -> Bytes {
    build_query(
        &UpstreamQuery {
            name: &[0],
            qtype: 2,
            qclass: 1,
            do_bit: false,
            cd: false,
        },
        udp_size,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &[u8] = b"\x03www\x07example\x00";

    fn query(do_bit: bool, cd: bool) -> Bytes {
        let q = UpstreamQuery {
            name: NAME,
            qtype: 1,
            qclass: 1,
            do_bit,
            cd,
        };
        build_query(&q, 1232)
    }

    fn response_to(q: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut r = q.to_vec();
        r[2] |= 0x80;
        edit(&mut r);
        r
    }

    #[test]
    fn query_is_parsable_and_carries_the_bits() {
        use hickory_proto::op::Message;
        for (do_bit, cd) in [(false, false), (true, false), (false, true), (true, true)] {
            let m = Message::from_vec(&query(do_bit, cd)).expect("parses");
            assert!(m.metadata.recursion_desired);
            assert_eq!(m.metadata.checking_disabled, cd);
            let edns = m.edns.as_ref().expect("edns");
            assert_eq!(edns.max_payload(), 1232);
            assert_eq!(edns.flags().dnssec_ok, do_bit);
            assert_eq!(m.queries[0].name().to_string(), "www.example.");
        }
    }

    #[test]
    fn matching_rules() {
        let q = with_id(&query(false, false), 0x1234);
        let upper = |r: &mut Vec<u8>| r[13..16].copy_from_slice(b"WwW");
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("exact", response_to(&q, |_| {}), true),
            ("name case differs", response_to(&q, upper), true),
            ("wrong id", response_to(&q, |r| r[1] ^= 1), false),
            ("qr=0", q.clone(), false),
            ("wrong type", response_to(&q, |r| r[26] = 28), false),
            ("wrong class", response_to(&q, |r| r[28] = 3), false),
            ("wrong name", response_to(&q, |r| r[14] = b'x'), false),
            ("no question", response_to(&q, |r| r[5] = 0), false),
            ("short", q[..8].to_vec(), false),
            ("cut question", response_to(&q, |r| r.truncate(20)), false),
            ("empty", Vec::new(), false),
        ];
        for (what, resp, want) in cases {
            assert_eq!(matches(&q, &resp), want, "{what}");
        }
    }
}
