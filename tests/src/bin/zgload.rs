//! `zgload`: the testkit's bounded DNS load generator as a command, for scripts.
//!
//! ```text
//! zgload --server 127.0.0.1:5353 [--tcp] [--rate QPS] [--concurrency N]
//!        [--count N] [--duration SECS] [--timeout MS] [--json]
//!        NAME[:TYPE]...
//! ```
//! Sends until `--count` queries have been sent or `--duration` has passed (defaults 1000 and
//! 10 s), cycling through the names (type A unless given), and prints the report — one JSON
//! object with `--json`. Exits 1 if any query was lost.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use zonegate_testkit::proto::rr::RecordType;
use zonegate_testkit::{Load, LoadTransport};

const USAGE: &str = "usage: zgload --server ADDR [--tcp] [--rate QPS] [--concurrency N] [--count N] [--duration SECS] [--timeout MS] [--json] NAME[:TYPE]...";

struct Args {
    server: SocketAddr,
    tcp: bool,
    rate: Option<f64>,
    concurrency: usize,
    count: u64,
    duration: Duration,
    timeout: Duration,
    json: bool,
    questions: Vec<(String, RecordType)>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut server = None;
    let mut parsed = Args {
        server: SocketAddr::from(([127, 0, 0, 1], 53)),
        tcp: false,
        rate: None,
        concurrency: 8,
        count: 1000,
        duration: Duration::from_secs(10),
        timeout: Duration::from_secs(2),
        json: false,
        questions: Vec::new(),
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--server" => server = Some(value()?.parse().context("--server")?),
            "--tcp" => parsed.tcp = true,
            "--json" => parsed.json = true,
            "--rate" => parsed.rate = Some(value()?.parse().context("--rate")?),
            "--concurrency" => parsed.concurrency = value()?.parse().context("--concurrency")?,
            "--count" => parsed.count = value()?.parse().context("--count")?,
            "--duration" => {
                parsed.duration = Duration::from_secs_f64(value()?.parse().context("--duration")?)
            }
            "--timeout" => {
                parsed.timeout = Duration::from_millis(value()?.parse().context("--timeout")?)
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            flag if flag.starts_with("--") => bail!("unknown option {flag}\n{USAGE}"),
            question => parsed.questions.push(parse_question(question)?),
        }
    }
    parsed.server = server.with_context(|| format!("--server is required\n{USAGE}"))?;
    if parsed.questions.is_empty() {
        bail!("no names given\n{USAGE}");
    }
    Ok(parsed)
}

fn parse_question(text: &str) -> anyhow::Result<(String, RecordType)> {
    let (name, qtype) = match text.rsplit_once(':') {
        Some((name, qtype)) => (
            name,
            RecordType::from_str(&qtype.to_ascii_uppercase())
                .with_context(|| format!("bad type in {text:?}"))?,
        ),
        None => (text, RecordType::A),
    };
    Ok((name.to_owned(), qtype))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args(std::env::args().skip(1))?;
    let questions: Vec<(&str, RecordType)> = args
        .questions
        .iter()
        .map(|(n, t)| (n.as_str(), *t))
        .collect();
    let transport = if args.tcp {
        LoadTransport::Tcp
    } else {
        LoadTransport::Udp
    };
    let report = Load::new(args.server, &questions)
        .transport(transport)
        .rate(args.rate)
        .concurrency(args.concurrency)
        .count(args.count)
        .duration(args.duration)
        .timeout(args.timeout)
        .run()
        .await?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    if report.lost > 0 {
        std::process::exit(1);
    }
    Ok(())
}
