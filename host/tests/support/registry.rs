//! A real OCI registry for tests: Debian's `docker-registry` (the CNCF distribution
//! registry) on a loopback port with its own temporary storage, stopped on drop.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the registry may take to say it listens.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

impl Registry {
    /// Starts a registry on a free port with fresh storage.
    pub fn start(name: &str) -> Registry {
        Registry::start_on(name, zonegate_testkit::free_port().expect("free port"))
    }

    /// Starts on `port` (e.g. one a zonegate already failed to reach).
    pub fn start_on(name: &str, port: u16) -> Registry {
        let mut r = Registry::start_stopped(name);
        r.port = port;
        r.resume();
        r
    }

    fn start_stopped(name: &str) -> Registry {
        let dir =
            std::env::temp_dir().join(format!("zonegate-registry-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("registry dir");
        Registry {
            child: None,
            port: 0,
            dir,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `oci://127.0.0.1:PORT/REPO`.
    pub fn oci(&self, repo_tag: &str) -> String {
        format!("oci://{}/{repo_tag}", self.host())
    }

    /// Where the registry keeps the blob `sha256:HEX` (tests corrupt it).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.dir
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Stops the registry (its storage stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts on the same port and storage; returns once it listens.
    pub fn resume(&mut self) {
        let config = self.dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n",
                self.dir.join("data").display(),
                self.port
            ),
        )
        .expect("registry config");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        self.child = Some(child);
        rx.recv_timeout(START_TIMEOUT)
            .expect("docker-registry did not start listening");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
