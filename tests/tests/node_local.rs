//! Host-network mode for real (node-local-dns parity): a "node" network namespace runs the
//! `zonegate` binary with `--setup-interface --setup-iptables` on 169.254.20.10; a "pod"
//! namespace, joined by a veth pair, queries it with `dig`. Both namespaces are created by the
//! test and deleted at the end; no traffic leaves them.

use std::process::{Command, Output};
use std::time::Duration;

use zonegate_testkit::{Signal, Zonegate};

const LISTEN: &str = "169.254.20.10";

fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two namespaces joined by a veth pair; deleted on drop.
struct Namespaces {
    node: String,
    pod: String,
}

impl Namespaces {
    fn create() -> Namespaces {
        let id = std::process::id();
        let ns = Namespaces {
            node: format!("zg-node-{id}"),
            pod: format!("zg-pod-{id}"),
        };
        let (vn, vp) = (format!("zgn{id}"), format!("zgp{id}"));
        run(&["ip", "netns", "add", &ns.node]);
        run(&["ip", "netns", "add", &ns.pod]);
        run(&[
            "ip", "link", "add", &vn, "netns", &ns.node, "type", "veth", "peer", "name", &vp,
            "netns", &ns.pod,
        ]);
        for (n, dev, addr) in [
            (&ns.node, &vn, "10.200.0.1/30"),
            (&ns.pod, &vp, "10.200.0.2/30"),
        ] {
            run(&["ip", "-n", n, "addr", "add", addr, "dev", dev]);
            run(&["ip", "-n", n, "link", "set", dev, "up"]);
            run(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        run(&[
            "ip",
            "-n",
            &ns.pod,
            "route",
            "add",
            &format!("{LISTEN}/32"),
            "via",
            "10.200.0.1",
        ]);
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in [&self.node, &self.pod] {
            let _ = Command::new("ip").args(["netns", "delete", n]).output();
        }
    }
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    String::from_utf8_lossy(&run(&full).stdout).into_owned()
}

#[test]
fn node_local_mode_sets_up_serves_a_pod_and_tears_down() {
    if Command::new("ip").arg("-V").output().is_err()
        || Command::new("iptables").arg("-V").output().is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "iproute2 and iptables must be installed in CI"
        );
        return;
    }
    let ns = Namespaces::create();
    let bin = zonegate_testkit::zonegate_binary().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("zonegate-in-node");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec ip netns exec {} {} \"$@\"\n",
            ns.node,
            bin.display()
        ),
    )
    .unwrap();
    run(&["chmod", "755", wrapper.to_str().unwrap()]);
    // No upstream is reachable from the node namespace: names outside the zone are REFUSED,
    // which is an answer from zonegate as good as any to prove the path.
    let config = format!(
        r#"[server]
workers = 1
[observability]
metrics = "127.0.0.1:0"
health = "127.0.0.1:0"
ready = "127.0.0.1:0"
[[listen]]
address = "{LISTEN}:53"
view = "default"
[upstreams.up]
servers = ["127.0.0.1:1"]
timeout = "200ms"
[[zone]]
view = "default"
name = "cluster.local."
forward = "up"
"#
    );
    let mut zg = Zonegate::builder()
        .binary(&wrapper)
        .config(&config)
        .arg("--setup-interface")
        .arg("--interface-kind")
        .arg(interface_kind(&ns.node))
        .arg("--setup-iptables")
        .start()
        .unwrap();
    let links = in_ns(
        &ns.node,
        &["ip", "-o", "addr", "show", "dev", "nodelocaldns"],
    );
    assert!(links.contains(LISTEN), "{links}");
    let raw = in_ns(&ns.node, &["iptables", "-w", "5", "-t", "raw", "-S"]);
    assert!(raw.contains("NOTRACK") && raw.contains(LISTEN), "{raw}");

    let answer = in_ns(
        &ns.pod,
        &[
            "dig",
            &format!("@{LISTEN}"),
            "example.org",
            "A",
            "+time=2",
            "+tries=1",
        ],
    );
    assert!(answer.contains("status: REFUSED"), "{answer}");
    let tcp = in_ns(
        &ns.pod,
        &[
            "dig",
            &format!("@{LISTEN}"),
            "example.org",
            "A",
            "+tcp",
            "+time=2",
            "+tries=1",
        ],
    );
    assert!(tcp.contains("status: REFUSED"), "{tcp}");

    zg.send_signal(Signal::Term).unwrap();
    assert!(
        zg.wait(Duration::from_secs(10)).unwrap().success(),
        "{}",
        zg.stderr()
    );
    let links = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.node,
            "ip",
            "link",
            "show",
            "nodelocaldns",
        ])
        .output()
        .unwrap();
    assert!(!links.status.success(), "interface removed on exit");
    for table in ["raw", "filter"] {
        let rules = in_ns(&ns.node, &["iptables", "-w", "5", "-t", table, "-S"]);
        assert!(
            !rules.contains("zonegate"),
            "{table} rules left behind: {rules}"
        );
    }
}

/// `dummy` where the kernel has the driver (node-local-dns's choice), else `ifb`; probed
/// inside the test's own namespace.
fn interface_kind(ns: &str) -> &'static str {
    let ok = Command::new("ip")
        .args(["-n", ns, "link", "add", "zgprobe", "type", "dummy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        let _ = Command::new("ip")
            .args(["-n", ns, "link", "del", "zgprobe"])
            .output();
        "dummy"
    } else {
        "ifb"
    }
}
