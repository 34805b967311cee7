use std::net::SocketAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};

use super::*;

fn client() -> SocketAddr {
    "127.0.0.1:5000".parse().unwrap()
}

fn query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

fn with_edns(mut m: Message, size: u16, dnssec_ok: bool) -> Message {
    let mut e = Edns::new();
    e.set_max_payload(size);
    e.set_dnssec_ok(dnssec_ok);
    m.set_edns(e);
    m
}

fn rcode_of(r: Result<Request, Rejected>) -> Result<u16, &'static str> {
    match r {
        Ok(_) => Ok(0),
        Err(Rejected::Answer(e)) => Ok(e.rcode),
        Err(Rejected::Drop(why)) => Err(why),
    }
}

#[test]
fn ingress_maps_each_malformed_stage_to_one_outcome() {
    let good = query("www.Example.com.", RecordType::A).to_vec().unwrap();
    let mut response = good.clone();
    response[2] |= 0x80;
    let mut notify = good.clone();
    notify[2] = (notify[2] & 0x87) | (4 << 3);
    let mut two_questions = good.clone();
    two_questions[5] = 2;
    let mut no_question = good.clone();
    no_question[5] = 0;
    let truncated_question = good[..good.len() - 3].to_vec();
    let mut chaos = query("version.bind.", RecordType::TXT);
    chaos.queries[0].query_class = DNSClass::CH;
    let mut edns1 = with_edns(query("a.example.", RecordType::A), 1232, false);
    edns1.edns.as_mut().unwrap().set_version(1);
    let axfr = query("example.", RecordType::AXFR);
    let cases: Vec<(&str, Vec<u8>, Result<u16, &str>)> = vec![
        ("good", good.clone(), Ok(0)),
        ("short", good[..11].to_vec(), Err("short")),
        ("response", response, Err("response")),
        ("notify opcode", notify, Ok(4)),
        ("two questions", two_questions, Ok(1)),
        ("no question", no_question, Ok(1)),
        ("cut question", truncated_question, Ok(1)),
        ("class CH", chaos.to_vec().unwrap(), Ok(5)),
        ("edns version 1", edns1.to_vec().unwrap(), Ok(16)),
        ("axfr", axfr.to_vec().unwrap(), Ok(5)),
    ];
    for (what, packet, want) in cases {
        assert_eq!(
            rcode_of(parse(&packet, client(), Transport::Udp)),
            want,
            "{what}"
        );
    }
}

#[test]
fn error_replies_echo_id_question_and_edns() {
    let mut chaos = with_edns(query("version.bind.", RecordType::TXT), 4096, true);
    chaos.queries[0].query_class = DNSClass::CH;
    let Err(Rejected::Answer(e)) = parse(&chaos.to_vec().unwrap(), client(), Transport::Udp) else {
        panic!("expected an answer");
    };
    let m = Message::from_vec(&e.reply).unwrap();
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(u16::from(m.metadata.response_code), 5);
    assert_eq!(m.queries.len(), 1);
    assert!(m.edns.as_ref().unwrap().flags().dnssec_ok);
}

#[test]
fn parse_reads_question_edns_and_flags() {
    let mut m = with_edns(query("WWW.Example.COM.", RecordType::AAAA), 4096, true);
    m.metadata.checking_disabled = true;
    let req = parse(&m.to_vec().unwrap(), client(), Transport::Udp).unwrap();
    assert_eq!(wire::name_to_string(&req.question.name), "www.example.com.");
    assert_eq!(&req.question_bytes[1..4], b"WWW");
    assert_eq!(req.question.qtype, 28);
    assert!(req.do_bit() && req.cd && req.rd);
    assert_eq!(req.max_response(1232), 1232);
    let plain = parse(
        &query("a.", RecordType::A).to_vec().unwrap(),
        client(),
        Transport::Udp,
    )
    .unwrap();
    assert_eq!(plain.max_response(1232), 512);
    let tcp = parse(
        &query("a.", RecordType::A).to_vec().unwrap(),
        client(),
        Transport::Tcp,
    )
    .unwrap();
    assert_eq!(tcp.max_response(1232), 65535);
}

/// An upstream-style answer: lowercase question, EDNS with a large size, `n` A records.
fn upstream_answer(n: usize) -> Vec<u8> {
    let mut m = with_edns(query("www.example.com.", RecordType::A), 4096, false);
    m.metadata.message_type = MessageType::Response;
    for i in 0..n {
        let rdata = hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(
            10,
            0,
            (i / 256) as u8,
            i as u8,
        ));
        m.add_answer(hickory_proto::rr::Record::from_rdata(
            Name::from_ascii("www.example.com.").unwrap(),
            300,
            rdata,
        ));
    }
    m.to_vec().unwrap()
}

#[test]
fn finalize_restores_id_case_and_edns_per_client() {
    let client_q = query("WWW.example.com.", RecordType::A);
    let req = parse(&client_q.to_vec().unwrap(), client(), Transport::Udp).unwrap();
    let mut answer = upstream_answer(2);
    answer[0] = 0xde;
    let out = finalize(answer, &req, 1232);
    let m = Message::from_vec(&out).unwrap();
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.queries[0].name().to_ascii(), "WWW.example.com.");
    assert!(m.edns.is_none(), "client without EDNS gets no OPT");
    assert_eq!(m.answers.len(), 2);

    let req = parse(
        &with_edns(client_q, 1400, false).to_vec().unwrap(),
        client(),
        Transport::Udp,
    )
    .unwrap();
    let m = Message::from_vec(&finalize(upstream_answer(2), &req, 1232)).unwrap();
    assert_eq!(
        m.edns.as_ref().unwrap().max_payload(),
        1232,
        "we advertise our own size"
    );
}

#[test]
fn finalize_truncates_over_the_clients_size() {
    let client_q = query("www.example.com.", RecordType::A);
    let req = parse(&client_q.to_vec().unwrap(), client(), Transport::Udp).unwrap();
    let big = upstream_answer(60); // ~1 KB: over 512
    let out = finalize(big.clone(), &req, 1232);
    let m = Message::from_vec(&out).unwrap();
    assert!(m.metadata.truncation);
    assert!(m.answers.is_empty());
    assert_eq!(m.queries.len(), 1);
    let tcp = parse(&client_q.to_vec().unwrap(), client(), Transport::Tcp).unwrap();
    let m = Message::from_vec(&finalize(big, &tcp, 1232)).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 60);
}

#[test]
fn finalize_sets_our_size_in_an_opt_whose_owner_is_not_one_byte() {
    // Found by the upstream_response fuzz target: the size was written one byte past the
    // OPT's start, so an OPT owned by a compression pointer had its TYPE overwritten and
    // the client got no OPT at all.
    let client_q = with_edns(query("www.example.com.", RecordType::A), 4096, false);
    let req = parse(&client_q.to_vec().unwrap(), client(), Transport::Udp).unwrap();
    let mut answer = upstream_answer(1);
    let opt = wire::find_opt(&answer).unwrap().unwrap();
    assert_eq!(opt.range.1, answer.len(), "the OPT comes last");
    answer[opt.range.0] = 0xc0; // owner: a pointer to the question name (offset 12)
    answer.insert(opt.range.0 + 1, 12);
    let out = finalize(answer, &req, 1232);
    let opt = wire::find_opt(&out).unwrap().expect("OPT kept");
    assert_eq!(opt.udp_size, 1232);
    assert_eq!(
        wire::read_record(&out, opt.range.0).unwrap().rtype,
        wire::TYPE_OPT
    );
}
