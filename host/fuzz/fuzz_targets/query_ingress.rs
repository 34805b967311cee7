//! Client query bytes through the ingress path: `request::parse` (and the wire walkers it
//! rests on), the zone match, the error/rcode replies and `request::finalize`.
//!
//! Invariants: nothing panics; an accepted question name is valid lowercase wire format of
//! at most 255 octets; every reply we build re-walks with `wire::layout`, carries the
//! client's ID and QR=1, and fits the client's transport.
#![no_main]

use std::net::SocketAddr;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use zonegate::policy::Transport;
use zonegate::request::{self, Rejected, rcode};
use zonegate::wire::{self, HEADER_LEN, Header};
use zonegate::zones::ZoneTable;

const OUR_UDP_SIZE: u16 = 1232;

static ZONES: LazyLock<(ZoneTable, usize)> = LazyLock::new(|| {
    let names: [&[u8]; 4] = [
        b"\x00",
        b"\x07cluster\x05local\x00",
        b"\x03svc\x07cluster\x05local\x00",
        b"\x07example\x03com\x00",
    ];
    (
        ZoneTable::build(names.iter().map(|n| ("kube", *n))),
        names.len(),
    )
});

fuzz_target!(|data: &[u8]| {
    walkers(data);
    let client = SocketAddr::from(([127, 0, 0, 1], 40000));
    for transport in [Transport::Udp, Transport::Tcp] {
        match request::parse(data, client, transport) {
            Ok(req) => accepted(data, &req),
            Err(Rejected::Drop(reason)) => assert!(!reason.is_empty()),
            Err(Rejected::Answer(e)) => {
                check_reply(&e.reply, data, usize::from(u16::MAX));
                assert_eq!(
                    u16::from(Header::new(&e.reply).unwrap().rcode()),
                    e.rcode & 0x0f
                );
            }
        }
    }
});

/// The wire walkers on arbitrary bytes: no panics, sane results.
fn walkers(data: &[u8]) {
    if let Ok(layout) = wire::layout(data) {
        assert!(layout.question_end <= data.len());
        for &at in &layout.ttl_offsets {
            assert!(at + 4 <= data.len());
        }
    }
    if let Ok(Some(opt)) = wire::find_opt(data) {
        assert!(opt.range.0 < opt.range.1 && opt.range.1 <= data.len());
    }
    let mut name = Vec::new();
    // Names may start anywhere a record could point: try the question and one more offset.
    let other = data.first().map_or(0, |&b| usize::from(b));
    for pos in [HEADER_LEN, other] {
        if let Ok(end) = wire::read_name_lower(data, pos, &mut name) {
            assert!(end <= data.len());
            check_name(&name);
            let _ = wire::name_to_string(&name);
        }
    }
}

fn check_name(name: &[u8]) {
    assert!(name.len() <= wire::MAX_NAME_LEN);
    let mut pos = 0;
    loop {
        let len = usize::from(name[pos]);
        assert!(len <= 63, "label length {len}");
        if len == 0 {
            assert_eq!(pos + 1, name.len(), "root label ends the name");
            break;
        }
        let label = &name[pos + 1..pos + 1 + len];
        assert!(!label.iter().any(u8::is_ascii_uppercase));
        pos += 1 + len;
    }
}

fn accepted(data: &[u8], req: &request::Request) {
    check_name(&req.question.name);
    let (zones, count) = &*ZONES;
    let zone = zones.find("kube", &req.question.name);
    assert!(
        zone.is_some_and(|z| z < *count),
        "the root zone matches every name"
    );
    assert_eq!(zones.find("other", &req.question.name), None);
    let max = req.max_response(OUR_UDP_SIZE);
    for code in [rcode::NOERROR, rcode::NXDOMAIN, rcode::REFUSED] {
        let reply = request::reply_with_rcode(req, code, OUR_UDP_SIZE);
        check_reply(&reply, data, max);
        let shaped = request::finalize(reply, req, OUR_UDP_SIZE);
        check_reply(&shaped, data, max);
        check_edns(&shaped, req);
    }
    // The query itself as an "answer" (same question by construction): finalize must cope
    // with whatever records follow.
    let shaped = request::finalize(data.to_vec(), req, OUR_UDP_SIZE);
    assert!(shaped.len() <= max);
    assert_eq!(Header::new(&shaped).unwrap().id(), req.id);
    // And a short answer.
    let shaped = request::finalize(data[..data.len().min(11)].to_vec(), req, OUR_UDP_SIZE);
    check_reply(&shaped, data, max);
}

/// A reply we built: walkable, the client's ID, QR=1, within `max`.
fn check_reply(reply: &[u8], query: &[u8], max: usize) {
    let layout = wire::layout(reply);
    assert!(layout.is_ok(), "{layout:?}: {reply:?}");
    let h = Header::new(reply).unwrap();
    assert_eq!(h.id(), Header::new(query).unwrap().id());
    assert!(h.qr());
    assert!(reply.len() <= max);
}

/// EDNS is answered iff the client sent it, with our payload size.
fn check_edns(reply: &[u8], req: &request::Request) {
    let opt = wire::find_opt(reply).unwrap();
    assert_eq!(opt.is_some(), req.edns.is_some(), "{reply:?}");
    if let Some(o) = opt {
        assert_eq!(o.udp_size, OUR_UDP_SIZE);
    }
}
