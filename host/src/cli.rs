//! Command line: `run`, `check`, `import-aks`, `policy …`.

pub mod oci;
pub mod policy;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app::{self, ConfigSource, RunOptions};
pub use crate::config::LogFormat;
use crate::config::{self, AksOptions};
use crate::netsetup;

/// Exit status for a configuration that does not validate (EX_DATAERR… as CoreDNS-style
/// tools use EX_USAGE, 64).
pub const EXIT_INVALID: u8 = 64;

/// zonegate: node-local DNS cache and forwarder with WebAssembly policies.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (RUST_LOG syntax), e.g. `info` or `zonegate=debug`.
    #[arg(long, global = true, env = "ZONEGATE_LOG", default_value = "info")]
    pub log: String,
    /// Log format [default: the config's `[observability] log_format` for `run --config`,
    /// else text].
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
}

impl Cli {
    /// The log format: `--log-format`, else the `[observability] log_format` of the file
    /// `run --config` names (read once at start: logging is set up before the configuration
    /// is loaded and validated, so an unreadable file means text and its load reports why),
    /// else text.
    pub fn log_format(&self) -> LogFormat {
        if let Some(f) = self.log_format {
            return f;
        }
        let Command::Run(RunArgs {
            config: Some(path), ..
        }) = &self.command
        else {
            return LogFormat::Text;
        };
        let Some(text) = std::fs::read_to_string(path).ok() else {
            return LogFormat::Text;
        };
        configured_log_format(&text).unwrap_or(LogFormat::Text)
    }
}

/// `[observability] log_format` of a native TOML configuration, if it is there and valid.
fn configured_log_format(toml_text: &str) -> Option<LogFormat> {
    let doc: toml::Table = toml::from_str(toml_text).ok()?;
    let format = doc.get("observability")?.get("log_format")?.as_str()?;
    LogFormat::from_str(format, false).ok()
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DNS (the embedded default config when neither --config nor --aks-config is given:
    /// 127.0.0.1:5353, forwarding to the nameservers of /etc/resolv.conf).
    Run(RunArgs),
    /// Validate a configuration: exit 0, or 64 with every error and its path.
    Check {
        file: PathBuf,
        /// The file is an AKS LocalDNS localdnsconfig.json.
        #[arg(long)]
        aks: bool,
        #[command(flatten)]
        aks_opts: AksArgs,
    },
    /// Print the native TOML equivalent of an AKS LocalDNS localdnsconfig.json.
    ImportAks {
        file: PathBuf,
        #[command(flatten)]
        aks_opts: AksArgs,
    },
    /// Work with policy components.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Native TOML configuration.
    #[arg(long, short, conflicts_with = "aks_config")]
    pub config: Option<PathBuf>,
    /// AKS LocalDNS localdnsconfig.json.
    #[arg(long)]
    pub aks_config: Option<PathBuf>,
    #[command(flatten)]
    pub aks_opts: AksArgs,
    /// Once every socket is bound, write their real addresses here (JSON).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Cache directory for compiled policies and pulled OCI content.
    #[arg(long, env = "ZONEGATE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub setup: SetupArgs,
}

/// Host-network mode, as node-local-dns's `-setupinterface` / `-setupiptables`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Create a dummy interface holding the listen addresses (and re-check it periodically).
    #[arg(long)]
    pub setup_interface: bool,
    /// Its name.
    #[arg(long, default_value = netsetup::DEFAULT_INTERFACE)]
    pub interface_name: String,
    /// Its link type: `dummy` (as node-local-dns), or `ifb` on kernels built without the
    /// dummy driver.
    #[arg(long, value_enum, default_value_t = InterfaceKind::Dummy)]
    pub interface_kind: InterfaceKind,
    /// Install raw NOTRACK and filter ACCEPT rules for the listen addresses and ports.
    #[arg(long)]
    pub setup_iptables: bool,
    /// Leave the interface and rules in place on exit (rolling updates: the next pod adopts them).
    #[arg(long)]
    pub skip_teardown: bool,
}

/// The link type of the node interface.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum InterfaceKind {
    Dummy,
    Ifb,
}

impl SetupArgs {
    /// The setup for `config`'s listeners, if any was asked for.
    fn options(&self, config: &config::Config) -> Option<netsetup::SetupOptions> {
        if !self.setup_interface && !self.setup_iptables {
            return None;
        }
        let mut addresses: Vec<_> = config
            .listeners
            .iter()
            .map(|l| l.address.ip())
            .filter(|ip| !ip.is_unspecified())
            .collect();
        addresses.dedup();
        let mut ports: Vec<_> = config.listeners.iter().map(|l| l.address.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        Some(netsetup::SetupOptions {
            interface: self.setup_interface.then(|| self.interface_name.clone()),
            kind: match self.interface_kind {
                InterfaceKind::Dummy => netsetup::LinkKind::Dummy,
                InterfaceKind::Ifb => netsetup::LinkKind::Ifb,
            },
            addresses,
            iptables: self.setup_iptables,
            ports,
            skip_teardown: self.skip_teardown,
            ..netsetup::SetupOptions::default()
        })
    }
}

/// Addresses for the AKS importer.
#[derive(Debug, Args)]
pub struct AksArgs {
    /// The kube-dns service ClusterIP (ClusterCoreDNS destination): IP or IP:PORT, comma list.
    #[arg(long, value_delimiter = ',', value_parser = server)]
    pub cluster_dns: Vec<SocketAddr>,
    /// The VNet DNS servers (VnetDNS destination); default: /etc/resolv.conf nameservers.
    #[arg(long, value_delimiter = ',', value_parser = server)]
    pub vnet_dns: Vec<SocketAddr>,
    /// Listener of `vnetDNSOverrides`.
    #[arg(long, default_value = "169.254.10.10:53")]
    pub vnet_listen: SocketAddr,
    /// Listener of `kubeDNSOverrides`.
    #[arg(long, default_value = "169.254.10.11:53")]
    pub kube_listen: SocketAddr,
}

fn server(text: &str) -> Result<SocketAddr, String> {
    config::resolv::parse_server(text)
}

impl AksArgs {
    fn options(&self) -> AksOptions {
        AksOptions {
            cluster_dns: self.cluster_dns.clone(),
            vnet_dns: self.vnet_dns.clone(),
            vnet_listen: self.vnet_listen,
            kube_listen: self.kube_listen,
        }
    }
}

/// Runs a parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Check {
            file,
            aks,
            aks_opts,
        } => {
            let source = if aks {
                ConfigSource::Aks {
                    path: file,
                    options: aks_opts.options(),
                }
            } else {
                ConfigSource::File(file)
            };
            match source.load() {
                Ok(_) => {
                    println!("ok");
                    ExitCode::SUCCESS
                }
                Err(e) => invalid(&e),
            }
        }
        Command::Policy(cmd) => policy::main(cmd),
        Command::ImportAks { file, aks_opts } => {
            let source = ConfigSource::Aks {
                path: file,
                options: aks_opts.options(),
            };
            match source.load() {
                Ok(c) => {
                    print!("{}", config::to_toml(&c));
                    ExitCode::SUCCESS
                }
                Err(e) => invalid(&e),
            }
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let source = match (args.config, args.aks_config) {
        (Some(p), _) => ConfigSource::File(p),
        (None, Some(p)) => ConfigSource::Aks {
            path: p,
            options: args.aks_opts.options(),
        },
        (None, None) => ConfigSource::Default,
    };
    let config = match source.load() {
        Ok(c) => c,
        Err(e) => return invalid(&e),
    };
    let setup = args.setup.options(&config);
    let opts = RunOptions {
        source,
        ready_file: args.ready_file,
        cache_dir: args.cache_dir,
        setup,
    };
    match app::run(opts, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("zonegate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn invalid(e: &config::ConfigErrors) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(EXIT_INVALID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_comes_from_the_flag_then_the_config_file() {
        let cases = [
            (
                "[observability]\nlog_format = \"json\"\n",
                Some(LogFormat::Json),
            ),
            (
                "[observability]\nlog_format = \"text\"\n",
                Some(LogFormat::Text),
            ),
            ("[observability]\nmetrics = \"127.0.0.1:0\"\n", None),
            ("[observability]\nlog_format = \"xml\"\n", None),
            ("not toml [", None),
        ];
        for (text, want) in cases {
            assert_eq!(configured_log_format(text), want, "{text}");
        }
        let dir = std::env::temp_dir().join(format!("zonegate-logfmt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("z.toml");
        std::fs::write(&file, cases[0].0).expect("write");
        let path = file.to_str().expect("utf-8 path");
        let parse = |args: &[&str]| Cli::try_parse_from(args).expect("args").log_format();
        assert_eq!(
            parse(&["zonegate", "run", "--config", path]),
            LogFormat::Json
        );
        assert_eq!(
            parse(&["zonegate", "--log-format", "text", "run", "--config", path]),
            LogFormat::Text,
            "the flag wins"
        );
        assert_eq!(parse(&["zonegate", "run"]), LogFormat::Text);
        assert_eq!(parse(&["zonegate", "check", path]), LogFormat::Text);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
