//! Reading zonegate's HTTP endpoints: a minimal HTTP/1.1 GET and a Prometheus text parser.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

/// Status and body of an HTTP response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: String,
}

/// `GET path` over a plain TCP connection (`Connection: close`), blocking, with a timeout.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<HttpResponse> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("read the answer to GET {path} from {addr}"))?;
    parse_http(&raw).with_context(|| format!("GET {path} from {addr}"))
}

fn parse_http(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).context("headers are not UTF-8")?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|line| {
        let (name, value) = line.split_once(':').unwrap_or_default();
        name.eq_ignore_ascii_case("transfer-encoding")
            && value.trim().eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(HttpResponse {
        status,
        body: String::from_utf8(body).context("body is not UTF-8")?,
    })
}

fn dechunk(mut body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("bad chunk"))?;
        let size_text = std::str::from_utf8(&body[..line_end])?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body
            .get(..size)
            .ok_or_else(|| anyhow!("chunk shorter than its size"))?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

/// One sample of the Prometheus text format.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric name (with any `_total`, `_bucket`, … suffix as exposed).
    pub name: String,
    /// Label pairs in exposition order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// The samples of one scrape.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Every sample, in exposition order.
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Parses the Prometheus text exposition format (comments skipped).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| parse_sample(line).with_context(|| format!("metrics line {line:?}")))
            .collect::<anyhow::Result<_>>()?;
        Ok(Metrics { samples })
    }

    /// The value of the first sample of `name` whose labels include all of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, labels).next().map(|s| s.value)
    }

    /// The sum over every sample of `name` whose labels include all of `labels` (0 if none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        // Not `.sum()`: an empty f64 sum is -0.0, which prints as "-0" in reports.
        self.matching(name, labels)
            .fold(0.0, |acc, s| acc + s.value)
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
    }
}

fn parse_sample(line: &str) -> anyhow::Result<Sample> {
    let name_end = line.find(['{', ' ']).ok_or_else(|| anyhow!("no value"))?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value_text = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| anyhow!("no value"))?;
    let value = value_text
        .parse()
        .with_context(|| format!("bad value {value_text:?}"))?;
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `k="v",k2="v2"}` and returns the pairs and what follows the brace.
fn parse_labels(mut text: &str) -> anyhow::Result<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(after) = text.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (key, after_key) = text.split_once("=\"").ok_or_else(|| anyhow!("bad label"))?;
        let mut value = String::new();
        let mut chars = after_key.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => bail!("unterminated label value"),
                },
                Some((_, c)) => value.push(c),
                None => bail!("unterminated label value"),
            }
        };
        labels.push((key.trim().to_owned(), value));
        text = &after_key[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.
# TYPE coredns_dns_requests_total counter
coredns_dns_requests_total{server="dns://:53",zone=".",view="default",proto="udp",family="1",type="A"} 3
coredns_dns_requests_total{server="dns://:53",zone=".",view="default",proto="tcp",family="1",type="A"} 2
coredns_cache_misses_total 7
weird{label="a \"quoted\", \\ value\n"} +Inf
coredns_dns_request_duration_seconds_bucket{zone=".",le="0.001"} 4 1700000000000
"#;

    #[test]
    fn parses_values_labels_and_escapes() {
        let metrics = Metrics::parse(SCRAPE).unwrap();
        assert_eq!(metrics.samples.len(), 5);
        assert_eq!(
            metrics.value("coredns_dns_requests_total", &[("proto", "tcp")]),
            Some(2.0)
        );
        assert_eq!(
            metrics.sum("coredns_dns_requests_total", &[("zone", ".")]),
            5.0
        );
        assert_eq!(metrics.value("coredns_cache_misses_total", &[]), Some(7.0));
        assert_eq!(
            metrics.value("coredns_cache_misses_total", &[("zone", ".")]),
            None
        );
        assert_eq!(
            metrics.value("weird", &[("label", "a \"quoted\", \\ value\n")]),
            Some(f64::INFINITY)
        );
        assert_eq!(
            metrics.value(
                "coredns_dns_request_duration_seconds_bucket",
                &[("le", "0.001")]
            ),
            Some(4.0)
        );
    }

    #[test]
    fn parses_plain_and_chunked_http() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let response = parse_http(plain).unwrap();
        assert_eq!((response.status, response.body.as_str()), (200, "ok"));
        let chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let response = parse_http(chunked).unwrap();
        assert_eq!((response.status, response.body.as_str()), (503, "abcde"));
    }
}
