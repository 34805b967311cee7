//! `zonegate policy push|pull|inspect`: publish policies to an OCI registry and look at what
//! is there (layout: docs/oci.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use crate::config::units::parse_duration;
use crate::oci::layout::{self, ANNOTATION_WORLD, Bundle};
use crate::oci::{ClientOptions, OciReference};
use crate::policy::{EngineOptions, PolicyEngine, check_component};

/// How to reach the registry.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Speak plain HTTP to the registry (local test registries only).
    #[arg(long)]
    pub insecure: bool,
    /// A docker config.json with credentials (`auths.REGISTRY.auth`); default anonymous.
    #[arg(long)]
    pub docker_config: Option<PathBuf>,
    /// Bound on connecting and on each read.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

impl ClientArgs {
    fn options(&self) -> ClientOptions {
        ClientOptions {
            insecure: self.insecure,
            docker_config: self.docker_config.clone(),
            timeout: self.timeout,
        }
    }
}

/// `zonegate policy push [P.wasm] [--policy NAME=P.wasm]… [--settings S.json] oci://…`
#[derive(Debug, Args)]
pub struct PushArgs {
    /// `P.wasm oci://REGISTRY/REPO:TAG`, or only the reference with --policy.
    #[arg(required = true, num_args = 1..=2, value_name = "[P.wasm] oci://…")]
    pub args: Vec<String>,
    /// The policy's name for a single component (default: the file name without .wasm).
    #[arg(long)]
    pub name: Option<String>,
    /// A bundle entry; repeat for several policies in one artifact.
    #[arg(long = "policy", value_name = "NAME=P.wasm")]
    pub policies: Vec<String>,
    /// Default settings (JSON): the policy's settings, or for a bundle an object NAME → settings.
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// `org.opencontainers.image.version` annotation.
    #[arg(long = "policy-version")]
    pub policy_version: Option<String>,
    /// `org.opencontainers.image.source` annotation (where the policy's code lives).
    #[arg(long)]
    pub source: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `zonegate policy pull oci://… -o DIR`
#[derive(Debug, Args)]
pub struct PullArgs {
    pub reference: String,
    /// Directory for NAME.wasm, settings.json and manifest.json (created if missing).
    #[arg(long, short)]
    pub output: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `zonegate policy inspect oci://…`
#[derive(Debug, Args)]
pub struct InspectArgs {
    pub reference: String,
    /// Print the manifest JSON as stored.
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")
        .and_then(|rt| rt.block_on(f));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zonegate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn reference(text: &str) -> anyhow::Result<OciReference> {
    Ok(text.parse::<OciReference>()?)
}

/// Pushes; prints the manifest digest.
pub fn push(args: PushArgs) -> ExitCode {
    block_on(async move {
        let (bundle, target) = bundle(&args)?;
        let r = reference(&target)?;
        let digest = crate::oci::push(&r, &bundle, &args.client.options()).await?;
        println!("{digest}");
        Ok(())
    })
}

fn bundle(args: &PushArgs) -> anyhow::Result<(Bundle, String)> {
    let (files, target) = match (args.args.as_slice(), args.policies.is_empty()) {
        ([wasm, target], true) => {
            let name = match &args.name {
                Some(n) => n.clone(),
                None => file_stem(Path::new(wasm))?,
            };
            (vec![(name, PathBuf::from(wasm))], target.clone())
        }
        ([target], false) => {
            let mut files = Vec::new();
            for entry in &args.policies {
                let (name, path) = entry
                    .split_once('=')
                    .with_context(|| format!("--policy {entry:?}: expected NAME=P.wasm"))?;
                files.push((name.to_string(), PathBuf::from(path)));
            }
            (files, target.clone())
        }
        _ => bail!(
            "give either P.wasm and the reference, or --policy NAME=P.wasm… and the reference"
        ),
    };
    let engine = PolicyEngine::new(EngineOptions::default());
    let mut policies = Vec::new();
    let mut worlds: Vec<&str> = Vec::new();
    for (name, path) in files {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let info =
            check_component(&engine, &bytes).with_context(|| format!("{}", path.display()))?;
        if !worlds.contains(&info.world) {
            worlds.push(info.world);
        }
        policies.push((name, bytes));
    }
    let settings = match &args.settings {
        Some(path) => Some(settings(path, &policies)?),
        None => None,
    };
    let bundle = Bundle {
        policies,
        settings,
        version: args.policy_version.clone(),
        source: args.source.clone(),
        created: layout::now_rfc3339(),
        world: Some(worlds.join(",")),
    };
    Ok((bundle, target))
}

fn file_stem(path: &Path) -> anyhow::Result<String> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_string)
        .with_context(|| format!("{}: cannot name the policy; use --name", path.display()))
}

/// One policy: its settings. A bundle: an object whose keys are its policies' names.
fn settings(
    path: &Path,
    policies: &[(String, Vec<u8>)],
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    if let [(name, _)] = policies {
        return Ok(serde_json::Map::from_iter([(name.clone(), value)]));
    }
    let serde_json::Value::Object(map) = value else {
        bail!(
            "{}: a bundle's settings must be an object NAME → settings",
            path.display()
        );
    };
    for key in map.keys() {
        if !policies.iter().any(|(n, _)| n == key) {
            bail!("{}: {key:?} is not a policy of the bundle", path.display());
        }
    }
    Ok(map)
}

/// Pulls into a directory.
pub fn pull(args: PullArgs) -> ExitCode {
    block_on(async move {
        let r = reference(&args.reference)?;
        let pulled = crate::oci::pull(&r, &args.client.options()).await?;
        let dir = &args.output;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
        };
        for (name, wasm) in &pulled.policies {
            write(&format!("{name}.wasm"), wasm)?;
        }
        if let Some(s) = &pulled.settings {
            write("settings.json", s)?;
        }
        write("manifest.json", &pulled.manifest)?;
        println!("{}", pulled.digest);
        Ok(())
    })
}

/// Prints the manifest, annotations, WIT world and layers.
pub fn inspect(args: InspectArgs) -> ExitCode {
    block_on(async move {
        let r = reference(&args.reference)?;
        let (manifest, digest, art) = crate::oci::inspect(&r, &args.client.options()).await?;
        if args.raw {
            println!("{}", String::from_utf8_lossy(&manifest));
            return Ok(());
        }
        let m = &art.manifest;
        println!("reference:  {r}");
        println!("digest:     {digest}");
        println!("media type: {}", m.media_type.as_deref().unwrap_or("-"));
        println!("config:     {} {}", m.config.media_type, m.config.digest);
        println!(
            "world:      {}",
            art.annotation(ANNOTATION_WORLD)
                .unwrap_or("(not annotated)")
        );
        println!("annotations:");
        for (k, v) in m.annotations.iter().flatten() {
            println!("  {k}: {v}");
        }
        println!("layers:");
        for (name, d) in &art.policies {
            let name = name.as_deref().unwrap_or("<unnamed>");
            println!(
                "  policy {name}: {} {} ({} bytes)",
                d.media_type, d.digest, d.size
            );
        }
        if let Some(d) = &art.settings {
            println!(
                "  settings: {} {} ({} bytes)",
                d.media_type, d.digest, d.size
            );
        }
        Ok(())
    })
}
