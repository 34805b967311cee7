//! The kit against itself: `Client` ↔ `AuthServer` on real loopback sockets.

use std::net::Ipv4Addr;
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, TXT};
use hickory_proto::rr::{RData, RecordType};

use super::{AuthServer, Behaviour, Transport};
use crate::client::{Client, Response};
use crate::net::name;

const WWW: &str = "www.example.test.";
const IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Long enough for a loopback answer, short enough for tests that expect none.
const SHORT: Duration = Duration::from_millis(300);

fn server() -> AuthServer {
    AuthServer::builder()
        .zone("example.test.")
        .a(WWW, 300, IP)
        .aaaa("www.example.test.", 300, "2001:db8::1".parse().unwrap())
        .cname("alias.example.test.", 60, WWW)
        .txt("txt.example.test.", 60, "hello")
        .mx("example.test.", 60, 10, "mail.example.test.")
        .ns("example.test.", 60, "ns.example.test.")
        .negative_ttl(30)
        .start()
        .unwrap()
}

async fn ask(
    client: &Client,
    server: &AuthServer,
    transport: Transport,
    qname: &str,
) -> anyhow::Result<Response> {
    match transport {
        Transport::Udp => client.query_udp(server.addr(), qname, RecordType::A).await,
        Transport::Tcp => client.query_tcp(server.addr(), qname, RecordType::A).await,
    }
}

#[tokio::test]
async fn answers_over_udp_and_tcp_echoing_question_and_edns() {
    let server = server();
    for transport in [Transport::Udp, Transport::Tcp] {
        let response = ask(
            &Client::new().dnssec_ok(true),
            &server,
            transport,
            "WWW.example.TEST.",
        )
        .await
        .unwrap();
        assert_eq!(response.rcode(), ResponseCode::NoError);
        assert_eq!(response.ipv4(), vec![IP]);
        assert!(response.message.authoritative);
        assert_eq!(
            response.message.queries[0].name.to_ascii(),
            "WWW.example.TEST."
        );
        assert!(
            response
                .message
                .edns
                .as_ref()
                .is_some_and(|e| e.flags().dnssec_ok)
        );
        let plain = ask(&Client::new().no_edns(), &server, transport, WWW)
            .await
            .unwrap();
        assert!(plain.message.edns.is_none());
    }
    let types = [
        RecordType::AAAA,
        RecordType::MX,
        RecordType::NS,
        RecordType::SOA,
    ];
    for qtype in types {
        let qname = if qtype == RecordType::AAAA {
            WWW
        } else {
            "example.test."
        };
        let response = Client::new()
            .query_udp(server.addr(), qname, qtype)
            .await
            .unwrap();
        assert_eq!(response.answers().len(), 1, "{qtype}");
        assert_eq!(response.answers()[0].record_type(), qtype);
    }
    let alias = Client::new()
        .query_udp(server.addr(), "alias.example.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!((alias.answers().len(), alias.ipv4()), (2, vec![IP]));
}

#[tokio::test]
async fn counts_queries_and_remembers_edns_and_cd() {
    let server = server();
    let client = Client::new()
        .dnssec_ok(true)
        .checking_disabled(true)
        .edns_udp_size(4000);
    client
        .query_udp(server.addr(), WWW, RecordType::A)
        .await
        .unwrap();
    client
        .query_tcp(server.addr(), "Www.Example.Test.", RecordType::A)
        .await
        .unwrap();
    Client::new()
        .no_edns()
        .query_udp(server.addr(), WWW, RecordType::AAAA)
        .await
        .unwrap();
    assert_eq!(server.total_queries(), 3);
    assert_eq!(server.transport_queries(Transport::Udp), 2);
    assert_eq!(server.transport_queries(Transport::Tcp), 1);
    assert_eq!(server.queries(WWW, RecordType::A), 2);
    assert_eq!(server.queries(WWW, RecordType::AAAA), 1);
    assert_eq!(server.queries(WWW, RecordType::MX), 0);
    let last = server.last_query(WWW).unwrap();
    assert_eq!(
        (
            last.qtype,
            last.transport,
            last.edns,
            last.checking_disabled
        ),
        (RecordType::AAAA, Transport::Udp, None, false)
    );

    Client::new()
        .dnssec_ok(true)
        .checking_disabled(true)
        .edns_udp_size(4000)
        .query_udp(server.addr(), WWW, RecordType::A)
        .await
        .unwrap();
    let last = server.last_query(WWW).unwrap();
    let edns = last.edns.unwrap();
    assert!(last.checking_disabled && last.recursion_desired);
    assert_eq!(
        (edns.udp_size, edns.dnssec_ok, edns.version),
        (4000, true, 0)
    );

    server.reset_counters();
    assert_eq!(
        (server.total_queries(), server.queries(WWW, RecordType::A)),
        (0, 0)
    );
    assert!(server.last_query(WWW).is_none());
}

#[tokio::test]
async fn negative_answers_carry_the_soa_unless_told_not_to() {
    let server = server();
    let client = Client::new();
    let nxdomain = client
        .query_udp(server.addr(), "nope.example.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(nxdomain.rcode(), ResponseCode::NXDomain);
    assert_eq!(
        nxdomain.message.authorities[0].record_type(),
        RecordType::SOA
    );
    assert_eq!(nxdomain.min_ttl(), Some(30));
    let nodata = client
        .query_udp(server.addr(), WWW, RecordType::TXT)
        .await
        .unwrap();
    assert_eq!(
        (nodata.rcode(), nodata.answers().len(), nodata.min_ttl()),
        (ResponseCode::NoError, 0, Some(30))
    );

    server.set_negative_ttl(5);
    let nxdomain = client
        .query_udp(server.addr(), "nope.example.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(nxdomain.min_ttl(), Some(5));
    server.set_negative_soa(false);
    let nxdomain = client
        .query_udp(server.addr(), "nope.example.test.", RecordType::A)
        .await
        .unwrap();
    assert!(nxdomain.message.authorities.is_empty());

    let refused = client
        .query_udp(server.addr(), "outside.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(refused.rcode(), ResponseCode::Refused);
}

#[tokio::test]
async fn records_and_ttls_change_at_run_time() {
    let server = server();
    let client = Client::new();
    assert!(server.set_ttl(WWW, RecordType::A, 7));
    assert_eq!(
        client
            .query_udp(server.addr(), WWW, RecordType::A)
            .await
            .unwrap()
            .min_ttl(),
        Some(7)
    );
    let new_ip = Ipv4Addr::new(198, 51, 100, 7);
    server.set_records(WWW, RecordType::A, 9, vec![RData::A(A(new_ip))]);
    let response = client
        .query_udp(server.addr(), WWW, RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        (response.ipv4(), response.min_ttl()),
        (vec![new_ip], Some(9))
    );
    server.add_record("new.example.test.", 1, RData::A(A(IP)));
    assert_eq!(
        client
            .query_tcp(server.addr(), "new.example.test.", RecordType::A)
            .await
            .unwrap()
            .ipv4(),
        vec![IP]
    );
    server.remove_records("new.example.test.", RecordType::A);
    let gone = client
        .query_udp(server.addr(), "new.example.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(gone.rcode(), ResponseCode::NXDomain);
    assert!(!server.set_ttl("new.example.test.", RecordType::A, 1));
}

/// What a client sees of one behaviour on one transport.
#[derive(Debug, PartialEq)]
enum Seen {
    Answer,
    NoAnswer,
    Rcode(ResponseCode),
    TruncatedEmpty,
    OtherId,
    OtherQuestion,
    Unparsable,
    Reset,
}

async fn observe(server: &AuthServer, transport: Transport) -> Seen {
    let client = Client::new().timeout(SHORT).id(4242);
    let query = client.build_query(WWW, RecordType::A).to_vec().unwrap();
    let raw = match transport {
        Transport::Udp => client.send_raw_udp(server.addr(), &query).await,
        Transport::Tcp => {
            let mut conn = client.connect_tcp(server.addr()).await.unwrap();
            conn.send_frame(&query).await.unwrap();
            match conn.recv_frame().await {
                Some(raw) => Some(raw),
                None if conn.closed_by_peer().await => return Seen::Reset,
                None => None,
            }
        }
    };
    let Some(raw) = raw else {
        return Seen::NoAnswer;
    };
    let Ok(message) = Message::from_vec(&raw) else {
        return Seen::Unparsable;
    };
    match () {
        _ if message.id != 4242 => Seen::OtherId,
        _ if message.queries[0].name != name(WWW) => Seen::OtherQuestion,
        _ if message.truncation && message.answers.is_empty() => Seen::TruncatedEmpty,
        _ if message.response_code != ResponseCode::NoError => Seen::Rcode(message.response_code),
        _ if message.answers.len() == 1 => Seen::Answer,
        _ => panic!("unexpected answer {message:?}"),
    }
}

#[tokio::test]
async fn each_behaviour_on_each_transport() {
    // (behaviour, seen over UDP, seen over TCP)
    let cases = [
        (Behaviour::Answer, Seen::Answer, Seen::Answer),
        (
            Behaviour::Delay(Duration::from_millis(50)),
            Seen::Answer,
            Seen::Answer,
        ),
        (Behaviour::Drop, Seen::NoAnswer, Seen::NoAnswer),
        (Behaviour::Truncate, Seen::TruncatedEmpty, Seen::Answer),
        (
            Behaviour::ServFail,
            Seen::Rcode(ResponseCode::ServFail),
            Seen::Rcode(ResponseCode::ServFail),
        ),
        (
            Behaviour::Refused,
            Seen::Rcode(ResponseCode::Refused),
            Seen::Rcode(ResponseCode::Refused),
        ),
        (Behaviour::WrongId, Seen::OtherId, Seen::OtherId),
        (
            Behaviour::WrongQuestion,
            Seen::OtherQuestion,
            Seen::OtherQuestion,
        ),
        (Behaviour::Garbage, Seen::Unparsable, Seen::Unparsable),
        (Behaviour::CloseTcp, Seen::Answer, Seen::Reset),
    ];
    let server = server();
    for (behaviour, udp, tcp) in cases {
        server.set_behaviour(behaviour);
        assert_eq!(
            observe(&server, Transport::Udp).await,
            udp,
            "{behaviour:?} over UDP"
        );
        assert_eq!(
            observe(&server, Transport::Tcp).await,
            tcp,
            "{behaviour:?} over TCP"
        );
    }
}

#[tokio::test]
async fn a_name_behaviour_wins_over_the_global_one() {
    let server = server();
    server.set_behaviour(Behaviour::ServFail);
    server.set_name_behaviour("WWW.example.test.", Behaviour::Answer);
    assert_eq!(observe(&server, Transport::Udp).await, Seen::Answer);
    server.set_behaviour(Behaviour::Answer);
    server.set_name_behaviour(WWW, Behaviour::Refused);
    assert_eq!(
        observe(&server, Transport::Udp).await,
        Seen::Rcode(ResponseCode::Refused)
    );
    let other = Client::new()
        .query_udp(server.addr(), "alias.example.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(other.rcode(), ResponseCode::NoError);
    server.clear_name_behaviours();
    assert_eq!(observe(&server, Transport::Udp).await, Seen::Answer);
}

#[tokio::test]
async fn delay_holds_the_answer_back() {
    let server = server();
    server.set_behaviour(Behaviour::Delay(Duration::from_millis(150)));
    let response = Client::new()
        .query_udp(server.addr(), WWW, RecordType::A)
        .await
        .unwrap();
    assert!(
        response.elapsed >= Duration::from_millis(150),
        "{:?}",
        response.elapsed
    );
}

#[tokio::test]
async fn health_probe_is_answered_unless_dropped() {
    let server = server();
    let client = Client::new().timeout(SHORT);
    let probe = client
        .query_udp(server.addr(), ".", RecordType::NS)
        .await
        .unwrap();
    assert_eq!(
        (probe.rcode(), probe.answers().len()),
        (ResponseCode::NoError, 1)
    );
    assert_eq!(server.queries(".", RecordType::NS), 1);
    server.set_name_behaviour(".", Behaviour::Drop);
    assert!(
        client
            .query_udp(server.addr(), ".", RecordType::NS)
            .await
            .is_err()
    );
    assert_eq!(
        client
            .query_udp(server.addr(), WWW, RecordType::A)
            .await
            .unwrap()
            .ipv4(),
        vec![IP]
    );
}

#[tokio::test]
async fn stop_and_resume() {
    let server = server();
    let client = Client::new().timeout(SHORT);
    let mut open = client.connect_tcp(server.addr()).await.unwrap();
    server.stop();
    assert!(
        client
            .query_udp(server.addr(), WWW, RecordType::A)
            .await
            .is_err()
    );
    assert_eq!(
        server.transport_queries(Transport::Udp),
        1,
        "read and counted while down"
    );
    assert!(
        client.connect_tcp(server.addr()).await.is_err(),
        "TCP refused while down"
    );
    assert!(open.closed_by_peer().await, "open connections closed");

    server.resume().unwrap();
    assert_eq!(
        client
            .query_udp(server.addr(), WWW, RecordType::A)
            .await
            .unwrap()
            .ipv4(),
        vec![IP]
    );
    assert_eq!(
        client
            .query_tcp(server.addr(), WWW, RecordType::A)
            .await
            .unwrap()
            .ipv4(),
        vec![IP]
    );
}

#[tokio::test]
async fn pipelined_tcp_answers_out_of_order() {
    let server = server();
    server.set_name_behaviour(
        "alias.example.test.",
        Behaviour::Delay(Duration::from_millis(200)),
    );
    let client = Client::new().id(100);
    let questions = [
        ("alias.example.test.", RecordType::A),
        (WWW, RecordType::A),
        (WWW, RecordType::AAAA),
    ];
    let responses = client
        .query_tcp_pipelined(server.addr(), &questions)
        .await
        .unwrap();
    let ids: Vec<u16> = responses.iter().map(|r| r.message.id).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[2], 100, "the delayed answer comes last: {ids:?}");
    assert_eq!(server.transport_queries(Transport::Tcp), 3);
    // Every answer is the one for its query.
    for response in &responses {
        let (qname, qtype) = questions[usize::from(response.message.id - 100)];
        assert_eq!(
            (
                response.message.queries[0].name.clone(),
                response.message.queries[0].query_type
            ),
            (name(qname), qtype)
        );
    }
}

#[tokio::test]
async fn malformed_queries() {
    let server = server();
    let client = Client::new().timeout(SHORT);
    assert_eq!(
        client.send_raw_udp(server.addr(), &[1, 2, 3]).await,
        None,
        "too short for a header"
    );
    let mut header_only = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    let formerr = client
        .send_raw_udp(server.addr(), &header_only)
        .await
        .unwrap();
    let formerr = Message::from_vec(&formerr).unwrap();
    assert_eq!(
        (formerr.id, formerr.response_code),
        (0xbeef, ResponseCode::FormErr)
    );
    let over_tcp = Message::from_vec(
        &client
            .send_raw_tcp(server.addr(), &header_only)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(over_tcp.response_code, ResponseCode::FormErr);
    header_only[2] = 0x80;
    assert_eq!(
        client.send_raw_udp(server.addr(), &header_only).await,
        None,
        "responses are dropped"
    );

    let mut two_questions = client.build_query(WWW, RecordType::A);
    two_questions.add_query(Query::query(name(WWW), RecordType::AAAA));
    assert_eq!(
        client
            .exchange_udp(server.addr(), &two_questions)
            .await
            .unwrap()
            .rcode(),
        ResponseCode::FormErr
    );
    let mut notify = client.build_query(WWW, RecordType::SOA);
    notify.metadata.op_code = OpCode::Notify;
    assert_eq!(
        client
            .exchange_udp(server.addr(), &notify)
            .await
            .unwrap()
            .rcode(),
        ResponseCode::NotImp
    );

    let mut conn = client.connect_tcp(server.addr()).await.unwrap();
    conn.send_bytes(&[0, 40, 1, 2]).await.unwrap();
    assert_eq!(
        conn.recv_frame().await,
        None,
        "a partial frame gets no answer"
    );
    assert_eq!(server.total_queries(), 6);
}

#[tokio::test]
async fn large_answers_truncate_over_udp_by_payload_size() {
    let server = server();
    let texts: Vec<RData> = (0..12)
        .map(|i| RData::TXT(TXT::new(vec![format!("{i:0>100}")])))
        .collect();
    server.set_records("big.example.test.", RecordType::TXT, 60, texts);
    let no_edns = Client::new()
        .no_edns()
        .query_udp(server.addr(), "big.example.test.", RecordType::TXT)
        .await
        .unwrap();
    assert!(no_edns.truncated() && no_edns.answers().is_empty());
    let edns = Client::new()
        .edns_udp_size(4096)
        .query_udp(server.addr(), "big.example.test.", RecordType::TXT)
        .await
        .unwrap();
    assert_eq!((edns.truncated(), edns.answers().len()), (false, 12));
    let tcp = Client::new()
        .no_edns()
        .query_tcp(server.addr(), "big.example.test.", RecordType::TXT)
        .await
        .unwrap();
    assert_eq!(tcp.answers().len(), 12);
}

#[tokio::test]
async fn waits_for_background_queries() {
    let server = server();
    let addr = server.addr();
    assert!(
        !server
            .wait_for_queries(WWW, RecordType::A, 1, Duration::from_millis(20))
            .await
    );
    let asker = tokio::spawn(async move {
        for _ in 0..2 {
            Client::new()
                .query_udp(addr, WWW, RecordType::A)
                .await
                .unwrap();
        }
    });
    assert!(
        server
            .wait_for_queries(WWW, RecordType::A, 2, Duration::from_secs(2))
            .await
    );
    assert!(server.wait_for_total(2, Duration::from_secs(2)).await);
    asker.await.unwrap();
}
