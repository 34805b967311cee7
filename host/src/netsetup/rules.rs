//! The rules node-cache installs, as data: for each address, port and protocol, `raw` NOTRACK
//! to/from the address (PREROUTING for traffic in, OUTPUT for replies and for queries from
//! host-network pods) and `filter` ACCEPT in INPUT/OUTPUT, each tagged with our comment.

use std::net::IpAddr;

/// The `-m comment --comment` tag on every rule we install; teardown removes exactly these.
pub const RULE_COMMENT: &str = "zonegate";

/// Which program manages the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// One rule: `-t table -C|-I|-D chain spec...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub family: Family,
    pub table: &'static str,
    pub chain: &'static str,
    pub spec: Vec<String>,
}

/// The (table, chain) pairs our rules live in; teardown sweeps these.
pub const CHAINS: [(&str, &str); 4] = [
    ("raw", "PREROUTING"),
    ("raw", "OUTPUT"),
    ("filter", "INPUT"),
    ("filter", "OUTPUT"),
];

/// The families present in `addrs`, V4 first, each once.
pub fn families(addrs: &[IpAddr]) -> Vec<Family> {
    [Family::V4, Family::V6]
        .into_iter()
        .filter(|f| addrs.iter().any(|a| Family::of(a) == *f))
        .collect()
}

/// Every rule for these addresses and ports, in node-cache's order.
pub fn rules_for(addrs: &[IpAddr], ports: &[u16]) -> Vec<Rule> {
    // (table, chain, address flag, port flag, target)
    const SHAPES: [(&str, &str, &str, &str, &str); 5] = [
        ("raw", "PREROUTING", "-d", "--dport", "NOTRACK"),
        ("raw", "OUTPUT", "-s", "--sport", "NOTRACK"),
        ("raw", "OUTPUT", "-d", "--dport", "NOTRACK"),
        ("filter", "INPUT", "-d", "--dport", "ACCEPT"),
        ("filter", "OUTPUT", "-s", "--sport", "ACCEPT"),
    ];
    let mut out = Vec::new();
    for addr in addrs {
        for port in ports {
            for (table, chain, addr_flag, port_flag, target) in SHAPES {
                for proto in ["udp", "tcp"] {
                    let spec = [
                        addr_flag,
                        &addr.to_string(),
                        "-p",
                        proto,
                        "-m",
                        proto,
                        port_flag,
                        &port.to_string(),
                        "-m",
                        "comment",
                        "--comment",
                        RULE_COMMENT,
                        "-j",
                        target,
                    ]
                    .map(str::to_owned)
                    .to_vec();
                    out.push(Rule {
                        family: Family::of(addr),
                        table,
                        chain,
                        spec,
                    });
                }
            }
        }
    }
    out
}

/// From `iptables -t T -S CHAIN` output, the argument lists (`-D CHAIN ...`) that delete each
/// rule carrying exactly our comment. Lines with quotes are skipped: ours never have any.
pub fn ours_in_listing(listing: &str, chain: &str) -> Vec<Vec<String>> {
    listing
        .lines()
        .filter(|line| !line.contains('"') && !line.contains('\''))
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let tagged = words
                .windows(2)
                .any(|w| w[0] == "--comment" && w[1] == RULE_COMMENT);
            match words.as_slice() {
                ["-A", c, rest @ ..] if *c == chain && tagged => Some(
                    ["-D", chain]
                        .into_iter()
                        .chain(rest.iter().copied())
                        .map(str::to_owned)
                        .collect(),
                ),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_cover_node_cache_set() {
        let addrs: Vec<IpAddr> = vec!["169.254.20.10".parse().unwrap(), "fd00::a".parse().unwrap()];
        let rules = rules_for(&addrs, &[53]);
        assert_eq!(rules.len(), 2 * 5 * 2);
        let cases: [(&str, &str, &str, &str, &str, &str); 5] = [
            ("raw", "PREROUTING", "-d", "udp", "--dport", "NOTRACK"),
            ("raw", "OUTPUT", "-s", "tcp", "--sport", "NOTRACK"),
            ("raw", "OUTPUT", "-d", "udp", "--dport", "NOTRACK"),
            ("filter", "INPUT", "-d", "tcp", "--dport", "ACCEPT"),
            ("filter", "OUTPUT", "-s", "udp", "--sport", "ACCEPT"),
        ];
        for (table, chain, af, proto, pf, target) in cases {
            let want = format!(
                "{af} 169.254.20.10 -p {proto} -m {proto} {pf} 53 -m comment --comment zonegate -j {target}"
            );
            assert!(
                rules.iter().any(|r| r.family == Family::V4
                    && r.table == table
                    && r.chain == chain
                    && r.spec.join(" ") == want),
                "missing {table} {chain} {want}"
            );
        }
        let v6 = rules.iter().filter(|r| r.family == Family::V6).count();
        assert_eq!(v6, 10);
        assert!(rules.iter().all(|r| CHAINS.contains(&(r.table, r.chain))));
    }

    #[test]
    fn ports_multiply_rules() {
        let addrs: Vec<IpAddr> = vec!["10.0.0.10".parse().unwrap()];
        assert_eq!(rules_for(&addrs, &[53, 5353]).len(), 20);
        assert!(rules_for(&addrs, &[]).is_empty());
        assert!(rules_for(&[], &[53]).is_empty());
    }

    #[test]
    fn families_in_order() {
        let a4: IpAddr = "1.2.3.4".parse().unwrap();
        let a6: IpAddr = "::1".parse().unwrap();
        assert_eq!(families(&[a6, a4, a4]), vec![Family::V4, Family::V6]);
        assert_eq!(families(&[a6]), vec![Family::V6]);
        assert!(families(&[]).is_empty());
    }

    #[test]
    fn listing_yields_only_our_rules() {
        let listing = "-P OUTPUT ACCEPT\n\
            -A OUTPUT -s 169.254.20.10/32 -p udp -m udp --sport 53 -m comment --comment zonegate -j NOTRACK\n\
            -A OUTPUT -s 10.0.0.1/32 -m comment --comment zonegate-other -j NOTRACK\n\
            -A OUTPUT -m comment --comment \"zonegate x\" -j NOTRACK\n\
            -A OUTPUT -j KUBE-OUTPUT\n\
            -A PREROUTING -m comment --comment zonegate -j NOTRACK\n";
        let cases: [(&str, Vec<&str>); 2] = [
            (
                "OUTPUT",
                vec![
                    "-D OUTPUT -s 169.254.20.10/32 -p udp -m udp --sport 53 -m comment --comment zonegate -j NOTRACK",
                ],
            ),
            (
                "PREROUTING",
                vec!["-D PREROUTING -m comment --comment zonegate -j NOTRACK"],
            ),
        ];
        for (chain, want) in cases {
            let got: Vec<String> = ours_in_listing(listing, chain)
                .iter()
                .map(|a| a.join(" "))
                .collect();
            assert_eq!(got, want, "{chain}");
        }
        assert!(ours_in_listing("", "INPUT").is_empty());
    }
}
