//! `Zonegate`: the `zonegate` binary as a child process, for end-to-end tests.
//!
//! Contract with the binary: `zonegate run --config FILE --ready-file PATH`; listen addresses with
//! port 0 get a kernel-chosen port (UDP and TCP share it); once every listener is bound the binary
//! writes PATH atomically with
//! `{"listeners":[{"view":"default","address":"127.0.0.1:40123"}],"metrics":"…","health":"…","ready":"…"}`.
//!
//! The binary must be built first: `cargo build -p zonegate` (or set `ZONEGATE_BIN`).

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tempfile::TempDir;

use crate::metrics::{HttpResponse, Metrics, http_get};

/// How often the harness looks at a file or a process it is waiting for.
pub(crate) const POLL: Duration = Duration::from_millis(10);
/// Timeout of the harness's HTTP requests.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// The zonegate binary: `$ZONEGATE_BIN` if set, else `zonegate` in the cargo profile directory
/// of the running test executable (`target/debug/zonegate` for `cargo test`).
pub fn zonegate_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ZONEGATE_BIN") {
        let path = PathBuf::from(path);
        anyhow::ensure!(
            path.is_file(),
            "ZONEGATE_BIN={} is not a file",
            path.display()
        );
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locate the test executable")?;
    // Test executables live in target/<profile>/deps/; binaries in target/<profile>/.
    let mut candidates: Vec<PathBuf> = exe
        .ancestors()
        .filter(|dir| dir.file_name().is_some_and(|name| name == "deps"))
        .filter_map(|deps| deps.parent().map(|profile| profile.join("zonegate")))
        .take(1)
        .collect();
    candidates.extend(
        exe.ancestors()
            .map(|dir| dir.join("debug").join("zonegate")),
    );
    candidates.iter().find(|path| path.is_file()).cloned().ok_or_else(|| {
        anyhow!(
            "zonegate binary not found next to {} (run `cargo build -p zonegate` first, or set ZONEGATE_BIN)",
            exe.display()
        )
    })
}

/// A minimal config: one listener (view `default`) and the observability endpoints on free
/// loopback ports, one worker, and the zone `.` forwarded to `upstream`.
pub fn minimal_config(upstream: SocketAddr) -> String {
    format!(
        r#"[server]
workers = 1

[observability]
metrics = "127.0.0.1:0"
health = "127.0.0.1:0"
ready = "127.0.0.1:0"

[[listen]]
address = "127.0.0.1:0"
view = "default"

[upstreams.upstream]
servers = ["{upstream}"]

[[zone]]
view = "default"
name = "."
forward = "upstream"
"#
    )
}

/// A signal to send to the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP (reload).
    Hup,
    /// SIGTERM (drain and exit).
    Term,
    /// SIGINT.
    Int,
    /// SIGKILL.
    Kill,
}

/// The addresses from the ready file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyInfo {
    /// (view, address) of every DNS listener, in config order.
    pub listeners: Vec<(String, SocketAddr)>,
    /// Prometheus `/metrics`.
    pub metrics: SocketAddr,
    /// `/health`.
    pub health: SocketAddr,
    /// `/ready`.
    pub ready: SocketAddr,
}

/// Options for starting [`Zonegate`].
#[derive(Clone, Debug)]
pub struct ZonegateBuilder {
    config: String,
    files: Vec<(String, Vec<u8>)>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    ready_timeout: Duration,
    binary: Option<PathBuf>,
}

/// A running zonegate child process, killed on drop. Its stdout and stderr go to files in its
/// temp dir; if the test is panicking when it is dropped, stderr is printed to help debugging.
#[derive(Debug)]
pub struct Zonegate {
    child: Child,
    dir: TempDir,
    ready: ReadyInfo,
}

impl ZonegateBuilder {
    /// The config TOML; `{dir}` in it is replaced by the temp dir's path.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = toml.to_owned();
        self
    }

    /// A file written into the temp dir before start (a policy, an AKS json, …).
    pub fn file(mut self, name: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.to_owned(), contents.into()));
        self
    }

    /// An extra argument after `run --config FILE --ready-file PATH`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// An environment variable for the child.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// How long to wait for the ready file (default 10 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Run this binary instead of [`zonegate_binary`].
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Writes the files, starts the child and waits for its ready file. Fails with the child's
    /// stderr if it exits or is not ready in time.
    pub fn start(self) -> anyhow::Result<Zonegate> {
        let binary = match self.binary {
            Some(path) => path,
            None => zonegate_binary()?,
        };
        let dir = tempfile::Builder::new().prefix("zonegate-e2e").tempdir()?;
        let config = self
            .config
            .replace("{dir}", &dir.path().display().to_string());
        std::fs::write(dir.path().join("zonegate.toml"), config)?;
        for (name, contents) in &self.files {
            std::fs::write(dir.path().join(name), contents)
                .with_context(|| format!("write {name}"))?;
        }
        let child = Command::new(&binary)
            .arg("run")
            .arg("--config")
            .arg(dir.path().join("zonegate.toml"))
            .arg("--ready-file")
            .arg(dir.path().join("ready.json"))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(File::create(dir.path().join("stdout.log"))?)
            .stderr(File::create(dir.path().join("stderr.log"))?)
            .spawn()
            .with_context(|| format!("spawn {}", binary.display()))?;
        let placeholder = ReadyInfo::placeholder();
        let mut zonegate = Zonegate {
            child,
            dir,
            ready: placeholder,
        };
        zonegate.ready = zonegate.wait_ready(self.ready_timeout)?;
        Ok(zonegate)
    }
}

impl Zonegate {
    /// Starts zonegate with this config and default options.
    pub fn start(config: &str) -> anyhow::Result<Self> {
        Self::builder().config(config).start()
    }

    /// A builder, for extra files, arguments, environment or timeouts.
    pub fn builder() -> ZonegateBuilder {
        ZonegateBuilder {
            config: String::new(),
            files: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            ready_timeout: Duration::from_secs(10),
            binary: None,
        }
    }

    /// A `Command` for the binary, for one-shot runs such as `zonegate check FILE`.
    pub fn command() -> anyhow::Result<Command> {
        Ok(Command::new(zonegate_binary()?))
    }

    /// The first DNS listener.
    pub fn addr(&self) -> SocketAddr {
        self.ready.listeners[0].1
    }

    /// The first listener of `view`.
    pub fn listener(&self, view: &str) -> Option<SocketAddr> {
        self.ready
            .listeners
            .iter()
            .find(|(v, _)| v == view)
            .map(|(_, addr)| *addr)
    }

    /// Everything the ready file said.
    pub fn ready_info(&self) -> &ReadyInfo {
        &self.ready
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temp dir holding the config, the ready file and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file the child was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir().join("zonegate.toml")
    }

    /// Replaces the config file atomically (write then rename), for reload tests.
    pub fn write_config(&self, toml: &str) -> anyhow::Result<()> {
        let staged = self.dir().join("zonegate.toml.new");
        std::fs::write(
            &staged,
            toml.replace("{dir}", &self.dir().display().to_string()),
        )?;
        std::fs::rename(&staged, self.config_path()).context("replace the config")
    }

    /// Sends a signal to the child.
    pub fn send_signal(&self, signal: Signal) -> anyhow::Result<()> {
        let number = match signal {
            Signal::Hup => libc::SIGHUP,
            Signal::Term => libc::SIGTERM,
            Signal::Int => libc::SIGINT,
            Signal::Kill => libc::SIGKILL,
        };
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: kill(2) takes plain integers; the pid is our unreaped child, so it cannot have
        // been reused by another process.
        if unsafe { libc::kill(pid, number) } != 0 {
            return Err(std::io::Error::last_os_error()).context("kill(2)");
        }
        Ok(())
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "zonegate still running after {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Everything the child wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir().join("stdout.log")).unwrap_or_default()
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir().join("stderr.log")).unwrap_or_default()
    }

    /// Waits up to `timeout` for `needle` to appear in stdout or stderr (logs); false if not.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) || self.stdout().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }

    /// `GET path` on the metrics, health or ready address.
    pub fn http_get(&self, addr: SocketAddr, path: &str) -> anyhow::Result<HttpResponse> {
        http_get(addr, path, HTTP_TIMEOUT)
    }

    /// The body of `GET /metrics`, which must answer 200.
    pub fn metrics_text(&self) -> anyhow::Result<String> {
        let response = self.http_get(self.ready.metrics, "/metrics")?;
        anyhow::ensure!(
            response.status == 200,
            "GET /metrics answered {}: {}",
            response.status,
            response.body
        );
        Ok(response.body)
    }

    /// One scrape, parsed.
    pub fn metrics(&self) -> anyhow::Result<Metrics> {
        Metrics::parse(&self.metrics_text()?)
    }

    /// The first sample of `name` whose labels include `labels`, from a fresh scrape.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<Option<f64>> {
        Ok(self.metrics()?.value(name, labels))
    }

    /// The status of `GET /health`.
    pub fn health_status(&self) -> anyhow::Result<u16> {
        Ok(self.http_get(self.ready.health, "/health")?.status)
    }

    /// The status of `GET /ready`.
    pub fn ready_status(&self) -> anyhow::Result<u16> {
        Ok(self.http_get(self.ready.ready, "/ready")?.status)
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<ReadyInfo> {
        let path = self.dir().join("ready.json");
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "zonegate exited with {status} before it was ready; stderr:\n{}",
                    self.stderr()
                );
            }
            if let Ok(text) = std::fs::read_to_string(&path) {
                match ReadyInfo::parse(&text) {
                    Ok(info) => return Ok(info),
                    Err(e) => last_error = Some(e),
                }
            }
            if Instant::now() >= deadline {
                let why = last_error
                    .map(|e| format!(" (ready file: {e:#})"))
                    .unwrap_or_default();
                bail!(
                    "zonegate not ready within {timeout:?}{why}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Zonegate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- zonegate stderr ({}) ---\n{}",
                self.dir().display(),
                self.stderr()
            );
        }
    }
}

impl ReadyInfo {
    fn placeholder() -> Self {
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        ReadyInfo {
            listeners: Vec::new(),
            metrics: unspecified,
            health: unspecified,
            ready: unspecified,
        }
    }

    /// Parses the ready file's JSON.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let json: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
        let addr = |value: &serde_json::Value, what: &str| -> anyhow::Result<SocketAddr> {
            let text = value
                .as_str()
                .ok_or_else(|| anyhow!("{what} is not a string"))?;
            text.parse()
                .with_context(|| format!("{what}: bad address {text:?}"))
        };
        let listeners = json["listeners"]
            .as_array()
            .ok_or_else(|| anyhow!("no listeners array"))?
            .iter()
            .map(|l| {
                let view = l["view"]
                    .as_str()
                    .ok_or_else(|| anyhow!("listener without view"))?;
                Ok((view.to_owned(), addr(&l["address"], "listener address")?))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!listeners.is_empty(), "no listeners");
        Ok(ReadyInfo {
            listeners,
            metrics: addr(&json["metrics"], "metrics")?,
            health: addr(&json["health"], "health")?,
            ready: addr(&json["ready"], "ready")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ready_file() {
        let text = r#"{"listeners":[{"view":"default","address":"127.0.0.1:40123"},{"view":"kube","address":"127.0.0.2:53"}],"metrics":"127.0.0.1:39001","health":"127.0.0.1:39002","ready":"127.0.0.1:39003"}"#;
        let info = ReadyInfo::parse(text).unwrap();
        assert_eq!(
            info.listeners[1],
            ("kube".to_owned(), "127.0.0.2:53".parse().unwrap())
        );
        assert_eq!(info.ready, "127.0.0.1:39003".parse().unwrap());
        for bad in [
            "",
            "{}",
            r#"{"listeners":[]}"#,
            r#"{"listeners":[{"view":"d","address":"x"}]}"#,
        ] {
            assert!(ReadyInfo::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn minimal_config_names_the_upstream() {
        let config = minimal_config("127.0.0.1:5300".parse().unwrap());
        assert!(config.contains(r#"servers = ["127.0.0.1:5300"]"#));
    }

    /// A stand-in binary (a shell script) that honours the ready-file contract, to test the
    /// harness itself before and independently of the real binary.
    fn fake_binary(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-zonegate");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    const FAKE_READY: &str = r#"ready="$5"
trap 'echo got-hup >&2' HUP
trap 'echo bye; exit 3' TERM
echo "config at $3" >&2
printf '{"listeners":[{"view":"default","address":"127.0.0.1:1"}],"metrics":"127.0.0.1:2","health":"127.0.0.1:3","ready":"127.0.0.1:4"}' > "$ready.tmp"
mv "$ready.tmp" "$ready"
while :; do sleep 0.01; done"#;

    #[test]
    fn harness_starts_signals_and_waits() {
        let bin_dir = tempfile::tempdir().unwrap();
        let binary = fake_binary(bin_dir.path(), FAKE_READY);
        let mut zonegate = Zonegate::builder()
            .config("# {dir}")
            .binary(&binary)
            .start()
            .unwrap();
        assert_eq!(zonegate.addr(), "127.0.0.1:1".parse().unwrap());
        assert_eq!(
            std::fs::read_to_string(zonegate.config_path()).unwrap(),
            format!("# {}", zonegate.dir().display())
        );
        assert!(zonegate.stderr().contains("config at"));
        zonegate.send_signal(Signal::Hup).unwrap();
        assert!(zonegate.wait_for_log("got-hup", Duration::from_secs(2)));
        zonegate.send_signal(Signal::Term).unwrap();
        let status = zonegate.wait(Duration::from_secs(2)).unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(zonegate.stdout(), "bye\n");
    }

    #[test]
    fn harness_reports_an_early_exit_with_stderr() {
        let bin_dir = tempfile::tempdir().unwrap();
        let binary = fake_binary(
            bin_dir.path(),
            "echo 'zone[0].forward: unknown upstream' >&2; exit 64",
        );
        let error = Zonegate::builder().binary(&binary).start().unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("unknown upstream") && text.contains("64"),
            "{text}"
        );
    }

    #[test]
    fn harness_times_out_without_a_ready_file() {
        let bin_dir = tempfile::tempdir().unwrap();
        let binary = fake_binary(bin_dir.path(), "echo starting >&2; exec sleep 5");
        let started = Instant::now();
        let error = Zonegate::builder()
            .binary(&binary)
            .ready_timeout(Duration::from_millis(200))
            .start()
            .unwrap_err();
        assert!(format!("{error:#}").contains("not ready"), "{error:#}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
