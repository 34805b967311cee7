//! Hostile input on the real listeners, in process (issue 6, "Hostile input"): floods of
//! malformed packets over UDP and TCP — truncated headers, compression loops, oversized
//! names, QR=1, wrong class/opcode, 0 or 2+ questions, bad EDNS, truncated TCP frames and
//! bogus lengths. Each is dropped or answered with the right RCODE and counted, memory stays
//! flat, and the server keeps answering good queries. Traffic goes to 127.0.0.1 only; every
//! loop is bounded in count and every wait in time.

mod support;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::{forwarding, metric_sum, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;
use zonegate_testkit::proto::op::ResponseCode;
use zonegate_testkit::proto::rr::RecordType;
use zonegate_testkit::{AuthServer, Client};

const WWW: &str = "www.example.test.";
/// Replies must arrive within this; nothing waits for it on the good path.
const WAIT: Duration = Duration::from_secs(10);
const DROPPED: &str = "zonegate_dropped_packets_total";
const RESPONSES: &str = "coredns_dns_responses_total";

/// One test at a time: each measures this process's RSS.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the server must do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// No answer; counted under this `reason`.
    Drop(&'static str),
    /// Answered with this RCODE label (extended codes included).
    Rcode(&'static str),
}

/// One malformed (or odd) packet kind.
struct Case {
    what: &'static str,
    expect: Expect,
    build: fn(u16) -> Vec<u8>,
}

fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

/// `www.example.test.` as wire bytes.
fn name() -> Vec<u8> {
    b"\x03www\x07example\x04test\x00".to_vec()
}

/// A well-formed query (RD=1) with `class`, `qtype`, plus `extra` bytes after the question.
fn query(id: u16, flags: u16, qd: u16, ar: u16, qtype: u16, class: u16, extra: &[u8]) -> Vec<u8> {
    let mut p = header(id, flags, qd, 0, 0, ar);
    p.extend(name());
    p.extend(qtype.to_be_bytes());
    p.extend(class.to_be_bytes());
    p.extend_from_slice(extra);
    p
}

/// An OPT record: root owner, `size`, extended RCODE 0, `version`, no options.
fn opt(size: u16, version: u8) -> Vec<u8> {
    let mut v = vec![0, 0, 41];
    v.extend(size.to_be_bytes());
    v.extend([0, version, 0, 0, 0, 0]);
    v
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            what: "truncated header",
            expect: Expect::Drop("short"),
            build: |id| header(id, 0x0100, 1, 0, 0, 0)[..7].to_vec(),
        },
        Case {
            what: "empty datagram",
            expect: Expect::Drop("short"),
            build: |_| Vec::new(),
        },
        Case {
            what: "QR=1 (a response)",
            expect: Expect::Drop("response"),
            build: |id| query(id, 0x8180, 1, 0, 1, 1, &[]),
        },
        Case {
            what: "opcode STATUS",
            expect: Expect::Rcode("NOTIMP"),
            build: |id| query(id, 0x1100, 1, 0, 1, 1, &[]),
        },
        Case {
            what: "opcode UPDATE",
            expect: Expect::Rcode("NOTIMP"),
            build: |id| query(id, 0x2800, 1, 0, 6, 1, &[]),
        },
        Case {
            what: "no question",
            expect: Expect::Rcode("FORMERR"),
            build: |id| header(id, 0x0100, 0, 0, 0, 0),
        },
        Case {
            what: "two questions",
            expect: Expect::Rcode("FORMERR"),
            build: |id| {
                let mut p = query(id, 0x0100, 2, 0, 1, 1, &[]);
                p.extend(name());
                p.extend([0, 28, 0, 1]);
                p
            },
        },
        Case {
            what: "compression loop",
            expect: Expect::Rcode("FORMERR"),
            build: |id| {
                let mut p = header(id, 0x0100, 1, 0, 0, 0);
                p.extend([0xc0, 12, 0, 1, 0, 1]);
                p
            },
        },
        Case {
            what: "forward compression pointer",
            expect: Expect::Rcode("FORMERR"),
            build: |id| {
                let mut p = header(id, 0x0100, 1, 0, 0, 0);
                p.extend([1, b'a', 0xc0, 20, 0, 1, 0, 1, 1, b'b', 0]);
                p
            },
        },
        Case {
            what: "name over 255 octets",
            expect: Expect::Rcode("FORMERR"),
            build: |id| {
                let mut p = header(id, 0x0100, 1, 0, 0, 0);
                for _ in 0..5 {
                    p.push(63);
                    p.extend([b'a'; 63]);
                }
                p.extend([0, 0, 1, 0, 1]);
                p
            },
        },
        Case {
            what: "reserved label type",
            expect: Expect::Rcode("FORMERR"),
            build: |id| {
                let mut p = header(id, 0x0100, 1, 0, 0, 0);
                p.extend([0x41, b'a', 0, 0, 1, 0, 1]);
                p
            },
        },
        Case {
            what: "question cut short",
            expect: Expect::Rcode("FORMERR"),
            build: |id| {
                let mut p = query(id, 0x0100, 1, 0, 1, 1, &[]);
                p.truncate(p.len() - 3);
                p
            },
        },
        Case {
            what: "ARCOUNT past the end",
            expect: Expect::Rcode("FORMERR"),
            build: |id| query(id, 0x0100, 1, 3, 1, 1, &[]),
        },
        Case {
            what: "two OPT records",
            expect: Expect::Rcode("FORMERR"),
            build: |id| {
                let mut extra = opt(1232, 0);
                extra.extend(opt(1232, 0));
                query(id, 0x0100, 1, 2, 1, 1, &extra)
            },
        },
        Case {
            what: "EDNS version 1",
            expect: Expect::Rcode("BADVERS"),
            build: |id| query(id, 0x0100, 1, 1, 1, 1, &opt(1232, 1)),
        },
        Case {
            what: "class CHAOS",
            expect: Expect::Rcode("REFUSED"),
            build: |id| query(id, 0x0100, 1, 0, 16, 3, &[]),
        },
        Case {
            what: "AXFR",
            expect: Expect::Rcode("REFUSED"),
            build: |id| query(id, 0x0000, 1, 0, 252, 1, &[]),
        },
    ]
}

/// The rcode label of a reply (header RCODE plus the OPT's extended bits).
fn rcode_of(reply: &[u8]) -> &'static str {
    let low = reply.get(3).map_or(0xff, |b| b & 0x0f);
    let ext = zonegate::wire::find_opt(reply)
        .ok()
        .flatten()
        .and_then(|o| reply.get(o.range.0 + 5).copied())
        .unwrap_or(0);
    match (u16::from(ext) << 4) | u16::from(low) {
        0 => "NOERROR",
        1 => "FORMERR",
        4 => "NOTIMP",
        5 => "REFUSED",
        16 => "BADVERS",
        _ => "other",
    }
}

/// Expected (dropped by reason, answered by rcode) totals for `rounds` of every case.
fn totals(rounds: usize) -> (HashMap<&'static str, f64>, HashMap<&'static str, f64>) {
    let (mut drops, mut codes) = (HashMap::new(), HashMap::new());
    for c in cases() {
        match c.expect {
            Expect::Drop(r) => *drops.entry(r).or_default() += rounds as f64,
            Expect::Rcode(r) => *codes.entry(r).or_default() += rounds as f64,
        }
    }
    (drops, codes)
}

/// Prints the RSS growth since `before` (KiB) over `what`, and fails if it reached 16 MiB.
fn rss_stayed_bounded(what: &str, before: u64) {
    let after = rss_kib();
    eprintln!("{what}, RSS {before} → {after} KiB");
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB over the flood"
    );
}

/// Resident set size of this process (client and server both live here), KiB.
fn rss_kib() -> u64 {
    zonegate_testkit::proc_status_kib(std::process::id(), "VmRSS").expect("VmRSS")
}

fn upstream() -> AuthServer {
    AuthServer::builder()
        .zone("example.test.")
        .a(WWW, 300, Ipv4Addr::new(192, 0, 2, 1))
        .start()
        .expect("upstream")
}

/// Sends `rounds` × every case over one UDP socket in windows, checks each answer's RCODE
/// and that dropped packets get none. A final answered packet (class CHAOS, REFUSED) per
/// window proves every packet before it was processed: one client socket is served by one
/// server socket, in order.
async fn udp_flood(addr: SocketAddr, rounds: usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let cases = cases();
    let mut id: u16 = 0;
    let mut buf = vec![0u8; 65_535];
    for _ in 0..rounds {
        let mut want: HashMap<u16, (&str, &str)> = HashMap::new();
        for c in &cases {
            id = id.wrapping_add(1);
            sock.send_to(&(c.build)(id), addr).await.expect("send");
            if let Expect::Rcode(code) = c.expect {
                want.insert(id, (c.what, code));
            }
        }
        while !want.is_empty() {
            let (n, _) = timeout(WAIT, sock.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no answer for {:?}", want.values()))
                .expect("recv");
            let reply = &buf[..n];
            let rid = u16::from_be_bytes([reply[0], reply[1]]);
            let (what, code) = want
                .remove(&rid)
                .unwrap_or_else(|| panic!("unexpected answer {rid} ({n} bytes)"));
            assert_eq!(reply[2] & 0x80, 0x80, "{what}: QR=1");
            assert_eq!(rcode_of(reply), code, "{what}");
        }
    }
}

/// Writes frames (each a 2-byte length and a message) on one connection, all at once
/// (pipelined), and checks the answers as on UDP.
async fn tcp_flood(addr: SocketAddr, rounds: usize) {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    let cases = cases();
    let mut want: HashMap<u16, (&str, &str)> = HashMap::new();
    // A zero-length frame is an empty message: dropped as short, the connection lives on.
    // (First, so the answers that follow prove it was counted.)
    let mut stream = vec![0, 0];
    let mut id: u16 = 0x8000;
    for _ in 0..rounds {
        for c in &cases {
            id = id.wrapping_add(1);
            let msg = (c.build)(id);
            stream.extend((msg.len() as u16).to_be_bytes());
            stream.extend(msg);
            if let Expect::Rcode(code) = c.expect {
                want.insert(id, (c.what, code));
            }
        }
    }
    let (mut read, mut write) = conn.split();
    let writing = async {
        write.write_all(&stream).await.expect("write");
    };
    let reading = async {
        while !want.is_empty() {
            let len = timeout(WAIT, read.read_u16())
                .await
                .expect("answer in time");
            let mut reply = vec![0u8; usize::from(len.expect("length"))];
            read.read_exact(&mut reply).await.expect("answer");
            let rid = u16::from_be_bytes([reply[0], reply[1]]);
            let (what, code) = want.remove(&rid).expect("expected answer");
            assert_eq!(rcode_of(&reply), code, "{what}");
        }
    };
    tokio::join!(writing, reading);
}

/// A good query still gets its answer over both transports.
async fn still_answers(addr: SocketAddr) {
    let client = Client::new();
    for tcp in [false, true] {
        let r = if tcp {
            client.query_tcp(addr, WWW, RecordType::A).await
        } else {
            client.query_udp(addr, WWW, RecordType::A).await
        };
        let r = r.expect("answer");
        assert_eq!(r.rcode(), ResponseCode::NoError);
        assert_eq!(r.ipv4(), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    }
}

fn assert_counted(zg: &zonegate::app::Running, rounds: usize, extra_short: f64) {
    let (drops, codes) = totals(rounds);
    for (reason, n) in drops {
        let extra = if reason == "short" { extra_short } else { 0.0 };
        assert_eq!(
            metric_sum(zg, DROPPED, &[("reason", reason)]),
            n + extra,
            "dropped {reason}"
        );
    }
    for (code, n) in codes {
        let got = metric_sum(zg, RESPONSES, &[("zone", "dropped"), ("rcode", code)]);
        assert_eq!(got, n, "answered {code}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flood_of_malformed_packets_is_dropped_or_refused_and_counted() {
    let _serial = SERIAL.lock().await;
    let up = upstream();
    let zg = start(&forwarding(up.addr(), "", "")).await;
    let addr = zg.addr();
    still_answers(addr).await;
    udp_flood(addr, 50).await; // warm-up: allocator pools, metric label sets
    let before = rss_kib();
    // 17 kinds × 600 rounds ≈ 10,000 packets.
    udp_flood(addr, 600).await;
    rss_stayed_bounded(
        &format!("udp flood: {} packets", 600 * cases().len()),
        before,
    );
    assert_counted(&zg, 650, 0.0);
    assert_eq!(
        up.queries(WWW, RecordType::A),
        1,
        "nothing malformed reached the upstream"
    );
    still_answers(addr).await;
    zg.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_flood_of_malformed_frames_is_dropped_or_refused_and_counted() {
    let _serial = SERIAL.lock().await;
    let up = upstream();
    let zg = start(&forwarding(up.addr(), "", "")).await;
    let addr = zg.addr();
    tcp_flood(addr, 20).await;
    let before = rss_kib();
    // 10 connections × 60 rounds × 17 kinds ≈ 10,000 frames.
    for _ in 0..10 {
        tcp_flood(addr, 60).await;
    }
    let what = format!(
        "tcp flood: {} frames on 10 connections",
        600 * cases().len()
    );
    rss_stayed_bounded(&what, before);
    // Each connection's zero-length frame is one more short drop.
    assert_counted(&zg, 620, 11.0);
    still_answers(addr).await;
    zg.drain().await;
}

/// Frames that never complete: a stream cut mid-frame, and a length promising more than is
/// ever sent (closed by the idle timeout). Neither is answered, neither holds the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frames_and_bogus_lengths_close_the_connection() {
    let _serial = SERIAL.lock().await;
    let up = upstream();
    let config = forwarding(up.addr(), "", "").replace(
        "[server]\n",
        "[server]\ntcp_idle_timeout = \"300ms\"\ntcp_max_connections = 50\n",
    );
    let zg = start(&config).await;
    let addr = zg.addr();
    let good = query(7, 0x0100, 1, 0, 1, 1, &[]);
    let streams: Vec<(&str, Vec<u8>)> = vec![
        ("one byte of a length", vec![0]),
        ("length, half a message", {
            let mut s = (good.len() as u16).to_be_bytes().to_vec();
            s.extend(&good[..good.len() / 2]);
            s
        }),
        ("65,535 promised, 12 sent", {
            let mut s = vec![0xff, 0xff];
            s.extend(&good[..12]);
            s
        }),
        ("a header-only frame then a cut", {
            let mut s = vec![0, 5, 1, 2, 3, 4, 5, 0, 40];
            s.extend(&good[..10]);
            s
        }),
    ];
    let before = rss_kib();
    // 4 kinds × 2 endings × 10 rounds = 80 connections, more than the cap of 50 would allow
    // if any were leaked.
    for round in 0..10 {
        for (what, bytes) in &streams {
            for close_write in [true, false] {
                let mut conn = TcpStream::connect(addr).await.expect("connect");
                conn.write_all(bytes).await.expect("write");
                if close_write {
                    conn.shutdown().await.expect("half-close");
                }
                // Either way the server closes: at EOF mid-frame, or after the idle timeout.
                let mut rest = Vec::new();
                let read = timeout(WAIT, conn.read_to_end(&mut rest)).await;
                assert!(read.is_ok(), "{what} (round {round}): connection left open");
                assert!(rest.is_empty(), "{what}: no answer to a partial frame");
            }
        }
    }
    rss_stayed_bounded("truncated frames: 80 connections", before);
    // The only complete frame among them: `00 05` + 5 bytes, a short message, dropped.
    assert_eq!(metric_sum(&zg, DROPPED, &[("reason", "short")]), 20.0);
    assert_eq!(
        metric_sum(&zg, DROPPED, &[("reason", "tcp_connection_limit")]),
        0.0
    );
    still_answers(addr).await;
    zg.drain().await;
}
