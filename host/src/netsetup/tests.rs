//! Real tests in network namespaces the tests create: each body runs on a fresh thread that
//! `unshare(CLONE_NEWNET)`s, so links, addresses and rules exist only in that namespace and
//! vanish with the thread, also when the test fails. Needs root, `ip` and `iptables`.

use std::future::Future;
use std::net::IpAddr;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;

use super::*;
use crate::metrics::{KindLabels, Metrics};

const NAME: &str = "nodelocaldns";
const LOCAL: &str = "169.254.20.10";
const WAIT: Duration = Duration::from_secs(10);

/// Starts `body` on a new thread inside a new network namespace of its own.
fn netns_thread<F, Fut>(body: F) -> JoinHandle<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET): these tests need root");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(body());
    })
}

fn join(handle: JoinHandle<()>) {
    if let Err(panic) = handle.join() {
        std::panic::resume_unwind(panic);
    }
}

fn in_netns<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    join(netns_thread(body));
}

/// Runs a shell command in the calling thread's namespace; (success, stdout + stderr).
fn sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn sh_ok(cmd: &str) -> String {
    let (ok, out) = sh(cmd);
    assert!(ok, "{cmd}: {out}");
    out
}

/// The dummy kind where the kernel has the driver, else ifb (this project's VM kernel).
fn kind_here() -> LinkKind {
    if sh("ip link add zgprobe type dummy && ip link del zgprobe").0 {
        LinkKind::Dummy
    } else {
        LinkKind::Ifb
    }
}

fn opts(addrs: &[&str]) -> SetupOptions {
    SetupOptions {
        interface: Some(NAME.to_owned()),
        addresses: addrs.iter().map(|a| a.parse::<IpAddr>().unwrap()).collect(),
        kind: kind_here(),
        iptables: true,
        ..SetupOptions::default()
    }
}

/// Our rules as `table: -A ...` lines, from both programs.
fn our_rules() -> Vec<String> {
    let mut out = Vec::new();
    for prog in ["iptables", "ip6tables"] {
        for table in ["raw", "filter"] {
            let listing = sh_ok(&format!("{prog} -t {table} -S"));
            out.extend(
                listing
                    .lines()
                    .filter(|l| l.contains("--comment zonegate "))
                    .map(|l| format!("{prog} {table}: {l}")),
            );
        }
    }
    out
}

#[derive(Debug, PartialEq)]
struct Iface {
    up: bool,
    kind: String,
    addrs: Vec<String>,
}

/// The interface as `ip -d -j addr` sees it, or None.
fn iface(name: &str) -> Option<Iface> {
    let (ok, out) = sh(&format!("ip -d -j addr show dev {name}"));
    if !ok {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(&out).expect("ip -j");
    let link = &json[0];
    let flags = link["flags"].as_array().expect("flags");
    let mut addrs: Vec<String> = link["addr_info"]
        .as_array()
        .expect("addr_info")
        .iter()
        .filter(|a| a["scope"] != "link")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    addrs.sort();
    Some(Iface {
        up: flags.iter().any(|f| f == "UP"),
        kind: link["linkinfo"]["info_kind"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        addrs,
    })
}

fn errors(metrics: &Metrics, kind: &'static str) -> u64 {
    metrics
        .setup_errors
        .get_or_create(&KindLabels { kind })
        .get()
}

#[test]
fn interface_created_up_with_addresses_and_adopted_again() {
    in_netns(|| async {
        let metrics = Metrics::new();
        let o = SetupOptions {
            iptables: false,
            ..opts(&[LOCAL, "10.96.0.10", "fd00::10"])
        };
        let setup = NodeSetup::start(o.clone(), metrics.clone()).await.unwrap();
        let want = Iface {
            up: true,
            kind: o.kind.as_str().to_owned(),
            addrs: vec![
                "10.96.0.10/32".into(),
                "169.254.20.10/32".into(),
                "fd00::10/128".into(),
            ],
        };
        assert_eq!(iface(NAME), Some(want));
        // The IPv6 address is usable at once (no DAD).
        std::net::UdpSocket::bind("[fd00::10]:0").expect("bind fd00::10");
        assert_eq!(setup.check_once().await, Repairs::default());
        drop(setup);
        // A restart with skip_teardown semantics: the existing interface is adopted.
        let again = NodeSetup::start(o, metrics.clone()).await.unwrap();
        assert_eq!(again.check_once().await, Repairs::default());
        assert_eq!(errors(&metrics, "interface"), 0);
    });
}

#[test]
fn rules_installed_once_for_each_family() {
    in_netns(|| async {
        let metrics = Metrics::new();
        let setup = NodeSetup::start_strict(opts(&[LOCAL, "fd00::10"]), metrics.clone())
            .await
            .unwrap();
        let rules = our_rules();
        assert_eq!(rules.len(), 20, "{rules:#?}");
        for want in [
            "iptables raw: -A PREROUTING -d 169.254.20.10/32 -p udp -m udp --dport 53 -m comment --comment zonegate -j NOTRACK",
            "iptables raw: -A OUTPUT -s 169.254.20.10/32 -p tcp -m tcp --sport 53 -m comment --comment zonegate -j NOTRACK",
            "iptables raw: -A OUTPUT -d 169.254.20.10/32 -p udp -m udp --dport 53 -m comment --comment zonegate -j NOTRACK",
            "iptables filter: -A INPUT -d 169.254.20.10/32 -p tcp -m tcp --dport 53 -m comment --comment zonegate -j ACCEPT",
            "iptables filter: -A OUTPUT -s 169.254.20.10/32 -p udp -m udp --sport 53 -m comment --comment zonegate -j ACCEPT",
            "ip6tables raw: -A PREROUTING -d fd00::10/128 -p udp -m udp --dport 53 -m comment --comment zonegate -j NOTRACK",
        ] {
            assert!(
                rules.iter().any(|r| r == want),
                "missing {want}: {rules:#?}"
            );
        }
        // Idempotent: a pass finds everything in place and nothing is duplicated.
        assert_eq!(setup.check_once().await, Repairs::default());
        assert_eq!(our_rules().len(), 20);
        assert_eq!(errors(&metrics, "iptables"), 0);
    });
}

#[test]
fn rules_inserted_at_the_top() {
    in_netns(|| async {
        sh_ok("iptables -A INPUT -j DROP");
        let _setup = NodeSetup::start_strict(opts(&[LOCAL]), Metrics::new())
            .await
            .unwrap();
        let listing = sh_ok("iptables -S INPUT");
        let last = listing.lines().last().unwrap();
        assert_eq!(last, "-A INPUT -j DROP", "{listing}");
    });
}

#[test]
fn check_once_restores_deleted_rule_and_interface() {
    in_netns(|| async {
        let setup = NodeSetup::start_strict(opts(&[LOCAL]), Metrics::new())
            .await
            .unwrap();
        let before = our_rules();
        sh_ok(
            "iptables -t raw -D PREROUTING -d 169.254.20.10/32 -p udp -m udp --dport 53 -m comment --comment zonegate -j NOTRACK",
        );
        sh_ok(&format!("ip link del {NAME}"));
        assert_eq!(our_rules().len(), before.len() - 1);
        let repairs = setup.check_once().await;
        assert_eq!(repairs.rules, 1, "{repairs:?}");
        assert!(repairs.interface >= 2, "created + address: {repairs:?}");
        assert_eq!(repairs.errors, 0);
        let mut after = our_rules();
        let mut before = before;
        after.sort();
        before.sort();
        assert_eq!(after, before);
        assert_eq!(
            iface(NAME).unwrap().addrs,
            vec!["169.254.20.10/32".to_owned()]
        );
        // A link brought down is brought up again.
        sh_ok(&format!("ip link set {NAME} down"));
        assert_eq!(setup.check_once().await.interface, 1);
        assert!(iface(NAME).unwrap().up);
    });
}

#[test]
fn background_recheck_restores_and_stops_at_teardown() {
    in_netns(|| async {
        let o = SetupOptions {
            recheck: Duration::from_millis(20),
            ..opts(&[LOCAL])
        };
        let setup = NodeSetup::start_strict(o, Metrics::new()).await.unwrap();
        let mut passes = setup.passes();
        let task = setup.spawn_recheck();
        sh_ok(
            "iptables -D INPUT -d 169.254.20.10/32 -p udp -m udp --dport 53 -m comment --comment zonegate -j ACCEPT",
        );
        sh_ok(&format!("ip link del {NAME}"));
        // Two completed passes after the deletions: at least one started after them.
        for _ in 0..2 {
            tokio::time::timeout(WAIT, passes.changed())
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(our_rules().len(), 10);
        assert!(iface(NAME).is_some_and(|i| i.up));
        setup.teardown().await;
        tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        assert!(our_rules().is_empty());
        assert_eq!(iface(NAME), None);
    });
}

#[test]
fn teardown_removes_exactly_ours() {
    in_netns(|| async {
        sh_ok("iptables -t raw -A OUTPUT -d 10.9.9.9/32 -j NOTRACK");
        sh_ok(
            "iptables -t raw -A OUTPUT -d 10.9.9.8/32 -m comment --comment zonegate-other -j NOTRACK",
        );
        sh_ok("iptables -A INPUT -p udp -m udp --dport 53 -j ACCEPT");
        sh_ok("ip6tables -A INPUT -p tcp -m tcp --dport 53 -j ACCEPT");
        let o = opts(&[LOCAL, "fd00::10"]);
        sh_ok(&format!("ip link add other0 type {}", o.kind.as_str()));
        let foreign = |prog: &str, table: &str| sh_ok(&format!("{prog} -t {table} -S"));
        let before: Vec<String> = [
            ("iptables", "raw"),
            ("iptables", "filter"),
            ("ip6tables", "filter"),
        ]
        .iter()
        .map(|(p, t)| foreign(p, t))
        .collect();
        let metrics = Metrics::new();
        let setup = NodeSetup::start_strict(o, metrics.clone()).await.unwrap();
        assert_eq!(our_rules().len(), 20);
        setup.teardown().await;
        assert!(our_rules().is_empty(), "{:#?}", our_rules());
        assert_eq!(iface(NAME), None);
        assert!(iface("other0").is_some());
        let after: Vec<String> = [
            ("iptables", "raw"),
            ("iptables", "filter"),
            ("ip6tables", "filter"),
        ]
        .iter()
        .map(|(p, t)| foreign(p, t))
        .collect();
        assert_eq!(after, before);
        assert_eq!(
            errors(&metrics, "iptables") + errors(&metrics, "interface"),
            0
        );
    });
}

#[test]
fn skip_teardown_leaves_everything() {
    in_netns(|| async {
        let o = SetupOptions {
            skip_teardown: true,
            ..opts(&[LOCAL])
        };
        let setup = NodeSetup::start_strict(o.clone(), Metrics::new())
            .await
            .unwrap();
        let rules = our_rules();
        setup.teardown().await;
        assert_eq!(our_rules(), rules);
        assert!(iface(NAME).is_some_and(|i| i.up));
        // The next instance adopts both without duplicating anything.
        let next = NodeSetup::start_strict(o, Metrics::new()).await.unwrap();
        assert_eq!(next.check_once().await, Repairs::default());
        assert_eq!(our_rules(), rules);
    });
}

#[test]
fn iptables_failures_are_counted_never_fatal() {
    in_netns(|| async {
        let metrics = Metrics::new();
        let o = SetupOptions {
            programs: Iptables {
                v4: "false".into(),
                ..Iptables::default()
            },
            recheck: Duration::from_millis(10),
            ..opts(&[LOCAL])
        };
        let err = NodeSetup::start_strict(o.clone(), metrics.clone())
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), "iptables", "{err}");
        // Lenient start: the interface is there, the 10 rule failures are counted.
        let before = errors(&metrics, "iptables");
        let setup = NodeSetup::start(o, metrics.clone()).await.unwrap();
        assert_eq!(errors(&metrics, "iptables") - before, 10);
        assert!(iface(NAME).is_some());
        assert_eq!(setup.check_once().await.errors, 10);
        let mut passes = setup.passes();
        let task = setup.spawn_recheck();
        tokio::time::timeout(WAIT, passes.changed())
            .await
            .unwrap()
            .unwrap();
        let counted = errors(&metrics, "iptables");
        setup.teardown().await;
        // The sweep of 4 chains fails too; counted, and the task ends without panicking.
        assert_eq!(errors(&metrics, "iptables"), counted + 4);
        tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        assert_eq!(iface(NAME), None);
    });
}

#[test]
fn link_of_another_kind_is_never_touched() {
    in_netns(|| async {
        sh_ok(&format!("ip link add {NAME} type bridge"));
        let metrics = Metrics::new();
        let o = SetupOptions {
            iptables: false,
            ..opts(&[LOCAL])
        };
        let err = NodeSetup::start(o.clone(), metrics.clone())
            .await
            .err()
            .unwrap();
        assert!(matches!(err, SetupError::NotOurKind { .. }), "{err}");
        assert_eq!(errors(&metrics, "interface"), 1);
        assert!(link::delete(NAME, o.kind).await.is_err());
        let kept = iface(NAME).unwrap();
        assert_eq!(kept.kind, "bridge");
        assert!(kept.addrs.is_empty());
    });
}

#[test]
fn invalid_options_rejected_before_touching_anything() {
    in_netns(|| async {
        let cases = [
            SetupOptions {
                interface: Some("much-too-long-name".into()),
                ..opts(&[LOCAL])
            },
            opts(&[]),
        ];
        for o in cases {
            assert!(NodeSetup::start(o, Metrics::new()).await.is_err());
        }
        assert!(our_rules().is_empty());
    });
}

/// A minimal responder: echoes each query with QR set, over UDP and TCP.
async fn serve_dns(addr: &str) {
    let udp = UdpSocket::bind(format!("{addr}:53"))
        .await
        .expect("bind udp");
    let tcp = TcpListener::bind(format!("{addr}:53"))
        .await
        .expect("bind tcp");
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            buf[2] |= 0x80;
            let _ = udp.send_to(&buf[..n], peer).await;
        }
    });
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = tcp.accept().await {
            let mut len = [0u8; 2];
            if conn.read_exact(&mut len).await.is_err() {
                continue;
            }
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if conn.read_exact(&mut msg).await.is_ok() && msg.len() > 2 {
                msg[2] |= 0x80;
                let _ = conn.write_all(&len).await;
                let _ = conn.write_all(&msg).await;
            }
        }
    });
}

/// `kubernetes.default.svc.cluster.local. A`, id 0x2a2a, RD.
fn query() -> Vec<u8> {
    let mut q = vec![0x2a, 0x2a, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["kubernetes", "default", "svc", "cluster", "local"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn assert_answer(q: &[u8], a: &[u8]) {
    assert_eq!(a.len(), q.len());
    assert_eq!(&a[..2], &q[..2], "id");
    assert_eq!(a[2] & 0x80, 0x80, "QR");
}

/// Packets counted by our UDP NOTRACK rule in raw PREROUTING (`-v -S` prints `-c pkts bytes`).
fn notrack_packets() -> u64 {
    let listing = sh_ok("iptables -t raw -v -S PREROUTING");
    let line = listing
        .lines()
        .find(|l| l.contains("-p udp") && l.contains("--comment zonegate"))
        .expect("our rule");
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "-c").expect("-c");
    words[at + 1].parse().expect("count")
}

async fn node_side(
    tid_tx: std::sync::mpsc::Sender<String>,
    veth_rx: oneshot::Receiver<()>,
    ready_tx: oneshot::Sender<()>,
    done_rx: oneshot::Receiver<()>,
) {
    let me = std::fs::read_link("/proc/thread-self").expect("thread-self");
    let tid = me.file_name().unwrap().to_string_lossy().into_owned();
    tid_tx.send(tid).unwrap();
    tokio::time::timeout(WAIT, veth_rx).await.unwrap().unwrap();
    sh_ok("ip link set lo up && ip addr add 10.0.0.1/30 dev veth-node && ip link set veth-node up");
    let metrics = Metrics::new();
    let setup = NodeSetup::start_strict(opts(&[LOCAL]), metrics.clone())
        .await
        .unwrap();
    let recheck = setup.spawn_recheck();
    // Only our ACCEPT rules let DNS in and out.
    sh_ok("iptables -P INPUT DROP && iptables -P OUTPUT DROP");
    serve_dns(LOCAL).await;
    ready_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), done_rx)
        .await
        .unwrap()
        .unwrap();
    assert!(notrack_packets() > 0, "queries went through NOTRACK");
    setup.teardown().await;
    recheck.await.unwrap();
    assert!(our_rules().is_empty());
    assert_eq!(iface(NAME), None);
    assert_eq!(
        errors(&metrics, "iptables") + errors(&metrics, "interface"),
        0
    );
}

async fn pod_side(
    tid_rx: std::sync::mpsc::Receiver<String>,
    veth_tx: oneshot::Sender<()>,
    ready_rx: oneshot::Receiver<()>,
    done_tx: oneshot::Sender<()>,
) {
    let node_tid = tid_rx.recv_timeout(WAIT).unwrap();
    sh_ok(&format!(
        "ip link add veth-pod type veth peer name veth-node netns {node_tid} && \
         ip link set lo up && ip addr add 10.0.0.2/30 dev veth-pod && ip link set veth-pod up && \
         ip route add {LOCAL}/32 via 10.0.0.1"
    ));
    veth_tx.send(()).unwrap();
    tokio::time::timeout(WAIT, ready_rx).await.unwrap().unwrap();
    let q = query();
    let udp = UdpSocket::bind("0.0.0.0:0").await.unwrap();
    udp.send_to(&q, (LOCAL, 53)).await.unwrap();
    let mut buf = [0u8; 512];
    let (n, from) = tokio::time::timeout(WAIT, udp.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from.ip().to_string(), LOCAL);
    assert_answer(&q, &buf[..n]);
    let mut conn = tokio::time::timeout(WAIT, TcpStream::connect((LOCAL, 53)))
        .await
        .unwrap()
        .unwrap();
    conn.write_all(&(q.len() as u16).to_be_bytes())
        .await
        .unwrap();
    conn.write_all(&q).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(WAIT, conn.read_exact(&mut len))
        .await
        .unwrap()
        .unwrap();
    let mut a = vec![0u8; usize::from(u16::from_be_bytes(len))];
    conn.read_exact(&mut a).await.unwrap();
    assert_answer(&q, &a);
    done_tx.send(()).unwrap();
}

/// The test: a "node" namespace with setup enabled and a DNS responder on the
/// link-local address, a "pod" namespace joined by a veth pair querying it over UDP and TCP.
#[test]
fn pod_queries_the_node_local_address_over_veth() {
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (veth_tx, veth_rx) = oneshot::channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let node = netns_thread(move || node_side(tid_tx, veth_rx, ready_tx, done_rx));
    let pod = netns_thread(move || pod_side(tid_rx, veth_tx, ready_rx, done_tx));
    let pod_result = pod.join();
    join(node);
    if let Err(panic) = pod_result {
        std::panic::resume_unwind(panic);
    }
}
