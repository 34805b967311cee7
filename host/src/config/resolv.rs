//! Upstream server addresses: `IP`, `IP:PORT`, `[IPv6]:PORT`, IPv6 zones, and the nameservers
//! of a resolv.conf file.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::path::Path;

/// The port used when a server is written without one.
pub const DNS_PORT: u16 = 53;

/// Parses `1.2.3.4`, `1.2.3.4:5353`, `::1`, `[::1]:5353`, `fe80::1%eth0`, `[fe80::1%2]:53`.
pub fn parse_server(text: &str) -> Result<SocketAddr, String> {
    let bad = |why: &str| format!("invalid server address {text:?}: {why}");
    let (host, port) = split_host_port(text.trim()).map_err(|why| bad(&why))?;
    let (ip, scope) = match host.split_once('%') {
        Some((ip, scope)) => (ip, Some(scope)),
        None => (host, None),
    };
    let ip: IpAddr = ip.parse().map_err(|_| bad("expected IP or IP:PORT"))?;
    match (ip, scope) {
        (IpAddr::V6(v6), Some(scope)) => {
            let scope_id = interface_index(scope).map_err(|why| bad(&why))?;
            Ok(SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope_id)))
        }
        (IpAddr::V4(_), Some(_)) => Err(bad("a zone (%…) only applies to IPv6")),
        (ip, None) => Ok(SocketAddr::new(ip, port)),
    }
}

/// Splits host and port; the port defaults to 53.
fn split_host_port(text: &str) -> Result<(&str, u16), String> {
    let port = |p: &str| p.parse::<u16>().map_err(|_| format!("invalid port {p:?}"));
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("missing ']'")?;
        return match after {
            "" => Ok((host, DNS_PORT)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((host, port(p)?)),
                None => Err(format!("unexpected {after:?} after ']'")),
            },
        };
    }
    match text.matches(':').count() {
        1 => {
            let (host, p) = text.split_once(':').ok_or("missing port")?;
            Ok((host, port(p)?))
        }
        _ => Ok((text, DNS_PORT)),
    }
}

/// An IPv6 zone: a number, or an interface name looked up in /sys/class/net.
fn interface_index(zone: &str) -> Result<u32, String> {
    if let Ok(index) = zone.parse::<u32>() {
        return Ok(index);
    }
    let path = Path::new("/sys/class/net").join(zone).join("ifindex");
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("unknown network interface {zone:?}"))
}

/// The `nameserver` entries of a resolv.conf, in order. Comments (`#`, `;`), `options`,
/// `search` and unparsable entries are skipped, as the C library does.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => parse_server(addr).ok(),
                _ => None,
            }
        })
        .collect()
}

/// Reads the nameservers of a resolv.conf file; none is an error.
pub fn read_resolv_conf(path: &Path) -> Result<Vec<SocketAddr>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let servers = parse_resolv_conf(&text);
    if servers.is_empty() {
        return Err(format!("no usable nameserver in {}", path.display()));
    }
    Ok(servers)
}

/// Renders an address so that [`parse_server`] reads it back (IPv6 zones as numbers).
pub fn format_server(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V6(v6) if v6.scope_id() != 0 => {
            format!("[{}%{}]:{}", v6.ip(), v6.scope_id(), v6.port())
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn server_addresses() {
        let v6_scoped =
            |scope| SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, scope));
        let cases: [(&str, Option<SocketAddr>); 12] = [
            ("10.0.0.10", Some(sa("10.0.0.10:53"))),
            ("10.0.0.10:5353", Some(sa("10.0.0.10:5353"))),
            (" 1.1.1.1 ", Some(sa("1.1.1.1:53"))),
            ("::1", Some(sa("[::1]:53"))),
            ("[::1]", Some(sa("[::1]:53"))),
            ("[2001:db8::1]:5300", Some(sa("[2001:db8::1]:5300"))),
            ("fe80::1%3", Some(v6_scoped(3))),
            ("[fe80::1%lo]:53", Some(v6_scoped(1))),
            ("10.0.0.1%eth0", None),
            ("10.0.0.1:99999", None),
            ("corp", None),
            ("fe80::1%no-such-if0", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_server(text).ok(), want, "{text:?}");
        }
    }

    #[test]
    fn resolv_conf() {
        let text = "# generated\nsearch default.svc.cluster.local svc.cluster.local\n\
                    nameserver 10.0.0.10 # kube-dns\n; old\n;nameserver 9.9.9.9\n\
                    options ndots:5 timeout:2\nnameserver   2001:db8::53\nnameserver fe80::1%2\n\
                    nameserver 1.2.3.4:5353\nnameserver bogus\nnameserver\n";
        let want = vec![
            sa("10.0.0.10:53"),
            sa("[2001:db8::53]:53"),
            SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, 2)),
            sa("1.2.3.4:5353"),
        ];
        assert_eq!(parse_resolv_conf(text), want);
        assert!(parse_resolv_conf("options edns0\n").is_empty());
    }

    #[test]
    fn read_resolv_conf_errors_when_empty_or_missing() {
        let dir = std::env::temp_dir().join(format!("zonegate-resolv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.conf");
        std::fs::write(&empty, "search x\n").unwrap();
        assert!(
            read_resolv_conf(&empty)
                .unwrap_err()
                .contains("no usable nameserver")
        );
        assert!(
            read_resolv_conf(&dir.join("missing"))
                .unwrap_err()
                .contains("cannot read")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn format_reads_back() {
        for text in ["10.0.0.10:53", "[::1]:5353", "[fe80::1%7]:53"] {
            let addr = parse_server(text).unwrap();
            assert_eq!(parse_server(&format_server(&addr)), Ok(addr));
        }
    }
}
