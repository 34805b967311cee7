//! `Named`: Debian's bind9 `named` as a real authoritative upstream, in a temp dir on loopback.

use std::fmt::Write as _;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tempfile::TempDir;

use crate::client::probe_udp_blocking;
use crate::zonegate::POLL;

/// How long `named` gets to load its zones and answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The `named` binary, if installed (`named` on PATH, else `/usr/sbin/named`).
pub fn named_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("named"));
    on_path
        .chain([PathBuf::from("/usr/sbin/named")])
        .find(|path| path.is_file())
}

/// A running `named`, authoritative for the zones it was given (no recursion), killed on drop.
#[derive(Debug)]
pub struct Named {
    child: Child,
    dir: TempDir,
    addr: SocketAddr,
}

impl Named {
    /// Starts `named -g` on 127.0.0.1:`port` (0 picks a free one) serving `zones`, each an
    /// (origin, zone file text) pair, and waits until it answers SOA for the first zone.
    ///
    /// Returns `Ok(None)`, after printing why, when `named` is not installed, so a test can
    /// skip: `let Some(named) = Named::start(0, &zones)? else { return Ok(()) };`.
    pub fn start(port: u16, zones: &[(&str, &str)]) -> anyhow::Result<Option<Named>> {
        let Some(binary) = named_binary() else {
            eprintln!("skipping: bind9 `named` is not installed (apt-get install -y bind9)");
            return Ok(None);
        };
        anyhow::ensure!(!zones.is_empty(), "named needs at least one zone");
        let port = if port == 0 {
            crate::net::free_port()?
        } else {
            port
        };
        let dir = tempfile::Builder::new()
            .prefix("zonegate-named")
            .tempdir()?;
        let config = write_files(dir.path(), port, zones)?;
        let child = Command::new(&binary)
            .args(["-g", "-4", "-n", "1", "-c"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.path().join("named.log"))?)
            .spawn()
            .with_context(|| format!("spawn {}", binary.display()))?;
        let mut named = Named {
            child,
            dir,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        };
        named.wait_answering(zones[0].0)?;
        Ok(Some(named))
    }

    /// The address it serves on (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its temp dir (config, zone files, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("named.log")).unwrap_or_default()
    }

    fn wait_answering(&mut self, origin: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("named exited with {status}; log:\n{}", self.log());
            }
            let answer = probe_udp_blocking(
                self.addr,
                origin,
                RecordType::SOA,
                Duration::from_millis(100),
            );
            if answer
                .is_some_and(|m| m.response_code == ResponseCode::NoError && !m.answers.is_empty())
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "named did not answer SOA {origin} within {START_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- named log ({}) ---\n{}",
                self.dir().display(),
                self.log()
            );
        }
    }
}

/// Writes the zone files and `named.conf`; returns the config's path.
fn write_files(dir: &Path, port: u16, zones: &[(&str, &str)]) -> anyhow::Result<PathBuf> {
    let dir_text = dir.display();
    let mut config = format!(
        r#"options {{
    directory "{dir_text}";
    pid-file "{dir_text}/named.pid";
    session-keyfile "{dir_text}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    allow-query {{ 127.0.0.1; }};
}};
controls {{ }};
"#
    );
    for (i, (origin, text)) in zones.iter().enumerate() {
        let file = dir.join(format!("zone{i}.db"));
        std::fs::write(&file, text).with_context(|| format!("write the zone file of {origin}"))?;
        writeln!(
            config,
            r#"zone "{origin}" {{ type primary; file "{}"; }};"#,
            file.display()
        )?;
    }
    let path = dir.join("named.conf");
    std::fs::write(&path, config)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;

    use super::Named;
    use crate::client::Client;

    const ZONE: &str = "$TTL 300
@       IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 30
@       IN NS  ns.example.test.
ns      IN A   192.0.2.53
www     IN A   192.0.2.1
alias   IN CNAME www
txt     IN TXT \"hello\"
";

    #[tokio::test]
    async fn client_against_named() {
        let Some(named) = Named::start(0, &[("example.test.", ZONE)]).unwrap() else {
            return;
        };
        let client = Client::new();
        let www = client
            .query_udp(named.addr(), "www.example.test.", RecordType::A)
            .await
            .unwrap();
        assert_eq!(www.ipv4(), vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert_eq!(www.min_ttl(), Some(300));
        let alias = client
            .query_tcp(named.addr(), "alias.example.test.", RecordType::A)
            .await
            .unwrap();
        assert_eq!(alias.answers().len(), 2);
        let missing = client
            .query_udp(named.addr(), "nope.example.test.", RecordType::A)
            .await
            .unwrap();
        assert_eq!(missing.rcode(), ResponseCode::NXDomain);
        assert_eq!(
            missing.min_ttl(),
            Some(30),
            "negative TTL from the SOA minimum"
        );
        let pipelined = [
            ("www.example.test.", RecordType::A),
            ("txt.example.test.", RecordType::TXT),
        ];
        let answers = client
            .query_tcp_pipelined(named.addr(), &pipelined)
            .await
            .unwrap();
        assert!(answers.iter().all(|a| a.answers().len() == 1));
    }
}
