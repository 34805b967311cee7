//! `zonegate policy test` and `zonegate policy check`: a policy author's loop on a laptop or
//! in CI, without a configuration or a running server.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use hickory_proto::rr::RecordType;
use serde::Deserialize;

use crate::policy::{
    DenyKind, EngineOptions, PolicyEngine, PolicyQuery, PolicyTester, RData, Transport, Verdict,
    check_component,
};

/// Policy commands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Decide queries with a policy component, outside any configuration.
    Test(TestArgs),
    /// Report the WIT world a component implements, or why it cannot be loaded.
    Check {
        /// The component (.wasm).
        file: PathBuf,
    },
    /// Push policies to a registry as a CNCF Wasm OCI artifact; prints the manifest digest.
    Push(super::oci::PushArgs),
    /// Pull an artifact's policies (NAME.wasm), settings and manifest into a directory.
    Pull(super::oci::PullArgs),
    /// Show an artifact's manifest digest, annotations, WIT world and layers.
    Inspect(super::oci::InspectArgs),
}

/// `zonegate policy test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The component (.wasm).
    #[arg(long)]
    pub policy: PathBuf,
    /// The policy's settings (a JSON file); default `{}`.
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// A query: NAME or NAME/TYPE (`www.example.com/AAAA`); repeatable.
    #[arg(long)]
    pub query: Vec<String>,
    /// The client address the policy sees.
    #[arg(long, default_value = "127.0.0.1")]
    pub client: IpAddr,
    /// The listener view.
    #[arg(long, default_value = "default")]
    pub view: String,
    /// The matched zone.
    #[arg(long, default_value = ".")]
    pub zone: String,
    #[arg(long, value_enum, default_value_t = TransportArg::Udp)]
    pub transport: TransportArg,
    /// A JSON file of cases: `[{"query": "NAME/TYPE", "client": "IP", "view": "V",
    /// "expect": "allow" | "deny:refused" | "deny:nxdomain" | "deny:nodata" | "route:GROUP" |
    /// "answer"}]`; exit 1 if any case fails.
    #[arg(long)]
    pub cases: Option<PathBuf>,
}

/// The transport a test query arrives on.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TransportArg {
    Udp,
    Tcp,
}

/// One case of a `--cases` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    query: String,
    client: Option<IpAddr>,
    view: Option<String>,
    zone: Option<String>,
    expect: String,
}

/// Runs a policy command.
pub fn main(cmd: PolicyCommand) -> ExitCode {
    let result = match cmd {
        PolicyCommand::Check { file } => check(&file),
        PolicyCommand::Test(args) => test(&args),
        PolicyCommand::Push(args) => Ok(super::oci::push(args)),
        PolicyCommand::Pull(args) => Ok(super::oci::pull(args)),
        PolicyCommand::Inspect(args) => Ok(super::oci::inspect(args)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zonegate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let info = check_component(&PolicyEngine::new(EngineOptions::default()), &read(file)?)
        .with_context(|| file.display().to_string())?;
    println!("{}: implements {}", file.display(), info.world);
    println!("digest: {}", info.digest);
    for import in &info.imports {
        // The standard library links WASI for panic messages; the host never grants it.
        let note = if import.starts_with("wasi:") {
            " (not granted: traps if called)"
        } else {
            ""
        };
        println!("import: {import}{note}");
    }
    Ok(ExitCode::SUCCESS)
}

fn test(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let settings = match &args.settings {
        Some(p) => {
            String::from_utf8(read(p)?).with_context(|| format!("{} is not UTF-8", p.display()))?
        }
        None => "{}".to_string(),
    };
    let tester = PolicyTester::new(
        &PolicyEngine::new(EngineOptions::default()),
        &read(&args.policy)?,
        &settings,
    )?;
    let transport = match args.transport {
        TransportArg::Udp => Transport::Udp,
        TransportArg::Tcp => Transport::Tcp,
    };
    for q in &args.query {
        let (name, qtype) = parse_query(q)?;
        let query = PolicyQuery {
            name: &name,
            qtype,
            qclass: 1,
            client: args.client,
            view: &args.view,
            zone: &normalize(&args.zone),
            transport,
        };
        println!("{q}: {}", describe(&tester.decide(&query)?));
    }
    let Some(path) = &args.cases else {
        if args.query.is_empty() {
            bail!("nothing to test: give --query NAME[/TYPE] or --cases FILE");
        }
        return Ok(ExitCode::SUCCESS);
    };
    let cases: Vec<Case> = serde_json::from_slice(&read(path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let mut failed = 0;
    for (i, case) in cases.iter().enumerate() {
        let (name, qtype) = parse_query(&case.query).with_context(|| format!("case {i}"))?;
        let view = case.view.as_deref().unwrap_or(&args.view);
        let zone = normalize(case.zone.as_deref().unwrap_or(&args.zone));
        let query = PolicyQuery {
            name: &name,
            qtype,
            qclass: 1,
            client: case.client.unwrap_or(args.client),
            view,
            zone: &zone,
            transport,
        };
        let got = describe(&tester.decide(&query)?);
        let ok = got == case.expect || (case.expect == "answer" && got.starts_with("answer"));
        if !ok {
            failed += 1;
        }
        println!(
            "{} case {i} {}: expected {}, got {got}",
            if ok { "ok  " } else { "FAIL" },
            case.query,
            case.expect
        );
    }
    println!("{} passed, {failed} failed", cases.len() - failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `www.example.com/AAAA` → (`www.example.com.`, 28).
fn parse_query(q: &str) -> anyhow::Result<(String, u16)> {
    let (name, qtype) = q.split_once('/').unwrap_or((q, "A"));
    let rtype = RecordType::from_str(&qtype.to_ascii_uppercase())
        .with_context(|| format!("unknown query type {qtype:?}"))?;
    if name.is_empty() {
        bail!("empty query name in {q:?}");
    }
    Ok((normalize(name), u16::from(rtype)))
}

fn normalize(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with('.') {
        lower
    } else {
        format!("{lower}.")
    }
}

/// The verdict as `allow`, `deny:KIND`, `route:GROUP` or `answer: RECORDS`.
fn describe(v: &Verdict) -> String {
    match v {
        Verdict::Allow => "allow".into(),
        Verdict::Deny(kind) => format!(
            "deny:{}",
            match kind {
                DenyKind::NxDomain => "nxdomain",
                DenyKind::Refused => "refused",
                DenyKind::NoData => "nodata",
            }
        ),
        Verdict::Route(group) => format!("route:{group}"),
        Verdict::Answer(records) => {
            let rs: Vec<String> = records
                .iter()
                .map(|r| {
                    let data = match &r.data {
                        RData::A(ip) => format!("A {ip}"),
                        RData::Aaaa(ip) => format!("AAAA {ip}"),
                        RData::Cname(t) => format!("CNAME {t}"),
                        RData::Txt(t) => format!("TXT {t:?}"),
                    };
                    format!("{} {} {data}", r.name, r.ttl)
                })
                .collect();
            format!("answer: {}", rs.join("; "))
        }
    }
}
