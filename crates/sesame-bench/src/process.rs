//! The real `sesame` binary as a child process on a free 127.0.0.1 port.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server binary: `given`, or `sesame` next to this executable; it must exist.
pub fn server_bin(given: Option<&Path>) -> Result<PathBuf> {
    let bin = match given {
        Some(b) => b.to_path_buf(),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("sesame")))
            .unwrap_or_else(|| PathBuf::from("target/release/sesame")),
    };
    if !bin.is_file() {
        bail!(
            "server binary {} not found: build it with `cargo build --release -p sesame` or pass --sesame-bin",
            bin.display()
        );
    }
    Ok(bin)
}

/// Where the server's log goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Log {
    /// `server.log` in the data directory; its end is shown if the server fails to start.
    File,
    /// This process's stderr.
    Terminal,
}

pub struct Options<'a> {
    /// `SESAME_LOG` (default: the server's own, "info,sqlx=warn").
    pub filter: Option<&'a str>,
    /// Extra environment, `KEY=VALUE` each.
    pub env: &'a [String],
    pub log: Log,
}

pub struct ServerProcess {
    child: Child,
    pub pid: u32,
    pub base: String,
    log: Option<PathBuf>,
}

impl ServerProcess {
    /// `sesame --data-dir DIR serve --listen 127.0.0.1:PORT`, without any `SESAME_CONFIG`,
    /// `SESAME_DATABASE_URL` or `SESAME_MASTER_KEY_FILE` of this environment.
    pub fn start(bin: &Path, dir: &Path, opts: &Options<'_>) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir")
            .arg(dir)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("SESAME_CONFIG")
            .env_remove("SESAME_DATABASE_URL")
            .env_remove("SESAME_MASTER_KEY_FILE")
            .stdin(Stdio::null());
        let log = match opts.log {
            Log::File => {
                let log = dir.join("server.log");
                let file = std::fs::File::create(&log)?;
                cmd.stdout(file.try_clone()?).stderr(file);
                Some(log)
            }
            Log::Terminal => {
                cmd.stdout(Stdio::null());
                None
            }
        };
        if let Some(l) = opts.filter {
            cmd.env("SESAME_LOG", l);
        }
        // The database the benchmark filled, when it is not the embedded one (see `setup::Db`).
        if let Ok(url) = std::fs::read_to_string(dir.join(crate::setup::URL_FILE)) {
            cmd.env("SESAME_DATABASE_URL", url.trim());
        }
        for kv in opts.env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--server-env wants KEY=VALUE, got {kv:?}"))?;
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let pid = child.id();
        Ok(ServerProcess {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}"),
            log,
        })
    }

    /// Waits up to 30 s for `GET /healthz` to answer 200.
    pub async fn wait_healthy(&mut self, client: &reqwest::Client) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/healthz", self.base);
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait()? {
                let log = match &self.log {
                    Some(path) => {
                        let log = std::fs::read_to_string(path).unwrap_or_default();
                        let tail: Vec<&str> = log.lines().rev().take(15).collect();
                        let tail: Vec<&str> = tail.into_iter().rev().collect();
                        format!("; its output:\n{}", tail.join("\n"))
                    }
                    None => String::new(),
                };
                bail!("the server exited during start-up ({st}){log}");
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status() == reqwest::StatusCode::OK {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the server did not answer /healthz within 30 s")
    }

    /// [`start`](Self::start), then [`wait_healthy`](Self::wait_healthy).
    pub async fn start_healthy(
        bin: &Path,
        dir: &Path,
        opts: &Options<'_>,
        client: &reqwest::Client,
    ) -> Result<Self> {
        let mut server = Self::start(bin, dir, opts)?;
        server.wait_healthy(client).await?;
        Ok(server)
    }

    pub fn is_running(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }

    /// SIGTERM (graceful shutdown), then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// SIGKILL at once (a graceful shutdown would wait for open event streams).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
