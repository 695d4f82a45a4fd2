//! `sesame-bench`: how many complete password + code sign-ins the real `sesame` binary
//! serves per second, compared with the raw Argon2id rate of this machine.
//!
//! Phases: (1) raw Argon2id hashes/s in-process on one core and on all cores; (2) a fresh data
//! directory with N users, each with a password (one shared PHC hash) and a TOTP method;
//! (3) the real server as a child process on 127.0.0.1; (4) C workers drive complete sign-ins
//! (GET /login, POST /login, POST /login/password, POST /login/verify) for D seconds;
//! (5) a burst of B sign-ins launched at once; (6) a summary (text, and JSON with `--json`).
//!
//! Everything targets 127.0.0.1 only and the run is bounded in time.

use anyhow::{bail, Context, Result};
use clap::Parser;
use reqwest::header::{HeaderMap, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use sesame_core::secret::{SecretBytes, SecretString};
use sesame_core::{password, totp};
use sesame_store::sqlite::SqliteStore;
use sesame_store::{MasterKey, NewUser, Store};
use sesame_testkit::bench::{hash_rate, stat_cpu};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PASSWORD: &str = "bench-password-0123";
const FORM: &str = "application/x-www-form-urlencoded";
const CSRF_COOKIE: &str = "__Host-sesame-csrf";
const SIGNIN_COOKIE: &str = "__Host-sesame-signin";
const SESSION_COOKIE: &str = "__Host-sesame-session";

#[derive(Parser, Debug)]
#[command(
    name = "sesame-bench",
    version,
    about = "Load generator for Sesame: raw Argon2id rate vs. complete password+code sign-ins/s \
             against the real `sesame` binary on 127.0.0.1.",
    long_about = "Load generator for Sesame.\n\n\
        1. Measures raw Argon2id (server parameters) hashes/s on 1 core and on all cores.\n\
        2. Creates a data directory with --users users (password + TOTP method).\n\
        3. Starts the real server (--sesame-bin) on a free 127.0.0.1 port.\n\
        4. Runs complete sign-ins (GET /login, POST /login, POST /login/password,\n   \
           POST /login/verify) with --concurrency workers for --duration seconds.\n\
        5. Launches --burst sign-ins at once and reports ok / 503 busy / failed and peak RSS.\n\
        6. Prints a summary; --json FILE writes it as JSON.\n\n\
        The run fails (exit 1) if more than --max-error-pct % of sign-ins fail.\n\n\
        Example: cargo run --release -p sesame-testkit --bin sesame-bench -- -c 64 -d 10 --json bench.json"
)]
struct Args {
    /// Users to create; each is used at most once per 30-second TOTP step, so this must exceed
    /// sign-ins/s x 30 (plus --burst) or workers wait for the next step ("user waits").
    #[arg(long, default_value_t = 5000)]
    users: usize,
    /// Concurrent sign-in workers in the steady phase.
    #[arg(short, long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds of measured steady load (after the warm-up).
    #[arg(short, long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of unmeasured warm-up before the measured window.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Stop the steady phase after this many sign-ins (warm-up included).
    #[arg(long)]
    max_signins: Option<u64>,
    /// Sign-ins launched at once in the burst phase (0 skips the phase).
    #[arg(long, default_value_t = 500)]
    burst: usize,
    /// Seconds per raw Argon2id measurement (1 core, then all cores).
    #[arg(long, default_value_t = 3.0)]
    hash_secs: f64,
    /// The server binary (default: `sesame` next to this executable).
    #[arg(long, value_name = "FILE")]
    sesame_bin: Option<PathBuf>,
    /// Data directory to create and keep (must not exist); default: a temporary directory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Write the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Fail when more than this percentage of sign-ins fail.
    #[arg(long, default_value_t = 0.5)]
    max_error_pct: f64,
    /// Also fail when sign-ins/s ÷ all-core hashes/s is below this (e.g. 0.75).
    #[arg(long)]
    require_ratio: Option<f64>,
    /// SESAME_LOG filter for the server (default: the server's own default, "info,sqlx=warn").
    #[arg(long, value_name = "FILTER")]
    server_log: Option<String>,
    /// Extra environment for the server, KEY=VALUE (repeatable), e.g. MALLOC_ARENA_MAX=2.
    #[arg(long, value_name = "KEY=VALUE")]
    server_env: Vec<String>,
    /// Runtime threads for the load generator (it shares the CPU with the server).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 30.0)]
    request_timeout: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.users == 0 || args.concurrency == 0 {
        bail!("--users and --concurrency must be at least 1");
    }
    let mut builder = if args.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.client_threads);
        b
    };
    let rt = builder.enable_all().build()?;
    let ok = rt.block_on(run(args))?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Raw Argon2id rate

// ---------------------------------------------------------------------------------------------
// Users

struct Users {
    names: Vec<String>,
    secrets: Vec<SecretBytes>,
    /// TOTP step of the last code submitted for the user (-1: never).
    last_step: Vec<AtomicI64>,
    busy: Vec<AtomicBool>,
    cursor: AtomicUsize,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Users {
    /// A user that is not in flight and has not submitted a code in the current step.
    fn acquire(&self) -> Option<usize> {
        let n = self.names.len();
        let step = totp::step_at(unix_now());
        for _ in 0..n {
            let i = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
            if self.busy[i].swap(true, Ordering::AcqRel) {
                continue;
            }
            if self.last_step[i].load(Ordering::Acquire) < step {
                return Some(i);
            }
            self.busy[i].store(false, Ordering::Release);
        }
        None
    }

    fn release(&self, i: usize) {
        self.busy[i].store(false, Ordering::Release);
    }
}

/// Sleeps until just after the next TOTP step begins, or until `deadline`.
async fn wait_next_step(deadline: Option<Instant>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let next = ((now / totp::STEP_SECONDS as f64).floor() + 1.0) * totp::STEP_SECONDS as f64;
    let mut until = Instant::now() + Duration::from_secs_f64(next - now + 0.05);
    if let Some(d) = deadline {
        until = until.min(d);
    }
    tokio::time::sleep_until(until.into()).await;
}

async fn prepare(dir: &Path, n: usize) -> Result<Users> {
    let key = MasterKey::load_or_create(&dir.join("master.key"))?;
    let store = Arc::new(SqliteStore::open(&dir.join("sesame.db"), key).await?);
    let phc = password::hash(&SecretString::new(PASSWORD.into()), &mut rand::rngs::OsRng)?;
    let tenant = store.default_tenant().await?;
    let names: Vec<String> = (0..n).map(|i| format!("bench{i:06}")).collect();
    let secrets: Vec<SecretBytes> = (0..n)
        .map(|_| {
            let mut b = vec![0u8; totp::SECRET_LEN];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
            SecretBytes::new(b)
        })
        .collect();
    let next = Arc::new(AtomicUsize::new(0));
    let names_a = Arc::new(names.clone());
    let secrets_a = Arc::new(secrets.clone());
    let now = unix_now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (store, next, names, secrets, phc) = (
            store.clone(),
            next.clone(),
            names_a.clone(),
            secrets_a.clone(),
            phc.clone(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= names.len() {
                    return Ok::<_, anyhow::Error>(());
                }
                let user = store
                    .create_user(
                        NewUser {
                            tenant,
                            username: names[i].clone(),
                            display_name: names[i].clone(),
                            password_hash: Some(phc.clone()),
                            is_admin: false,
                        },
                        now,
                    )
                    .await?;
                let m = store
                    .create_totp_method(user.id, "Authenticator app", &secrets[i], 0, now)
                    .await?;
                store.update_default_method(user.id, Some(m.id)).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    drop(store);
    Ok(Users {
        last_step: (0..n).map(|_| AtomicI64::new(-1)).collect(),
        busy: (0..n).map(|_| AtomicBool::new(false)).collect(),
        cursor: AtomicUsize::new(0),
        names,
        secrets,
    })
}

// ---------------------------------------------------------------------------------------------
// The server process

struct Server {
    child: Child,
    pid: u32,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(bin: &Path, dir: &Path, log_filter: Option<&str>, env: &[String]) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = dir.join("server.log");
        let logfile = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir")
            .arg(dir)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("SESAME_CONFIG")
            .env_remove("SESAME_DATABASE_URL")
            .env_remove("SESAME_MASTER_KEY_FILE")
            .stdin(Stdio::null())
            .stdout(logfile.try_clone()?)
            .stderr(logfile);
        if let Some(l) = log_filter {
            cmd.env("SESAME_LOG", l);
        }
        for kv in env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--server-env wants KEY=VALUE, got {kv:?}"))?;
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let pid = child.id();
        Ok(Server {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}"),
            log,
        })
    }

    async fn wait_healthy(&mut self, client: &reqwest::Client) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/healthz", self.base);
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait()? {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "the server exited during start-up ({st}); its output:\n{}",
                    tail.join("\n")
                );
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status() == StatusCode::OK {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the server did not answer /healthz within 30 s")
    }

    /// SIGTERM (graceful shutdown), then SIGKILL after 10 s.
    fn stop(&mut self) {
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `VmRSS` and `VmHWM` (peak) in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn process_cpu(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| stat_cpu(&t))
        .map(|(_, c)| c)
        .unwrap_or(0.0)
}

/// CPU seconds per thread name (threads of the same name are summed; exited threads are lost).
fn thread_cpu(pid: u32) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in rd.flatten() {
            if let Some((comm, c)) = std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|t| stat_cpu(&t))
            {
                *out.entry(comm).or_insert(0.0) += c;
            }
        }
    }
    out
}

/// (busy, total) jiffies over all CPUs from /proc/stat.
fn system_cpu() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().next() else {
        return (0.0, 0.0);
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

#[derive(Clone)]
struct CpuSample {
    server: f64,
    server_threads: BTreeMap<String, f64>,
    bench: f64,
    sys_busy: f64,
    sys_total: f64,
    at: Instant,
}

fn cpu_sample(pid: u32) -> CpuSample {
    let (sys_busy, sys_total) = system_cpu();
    CpuSample {
        server: process_cpu(pid),
        server_threads: thread_cpu(pid),
        bench: process_cpu(std::process::id()),
        sys_busy,
        sys_total,
        at: Instant::now(),
    }
}

// ---------------------------------------------------------------------------------------------
// One sign-in over HTTP

#[derive(Debug)]
struct Failure {
    stage: &'static str,
    status: Option<u16>,
    detail: String,
}

impl Failure {
    fn busy(&self) -> bool {
        self.status == Some(503)
    }
}

fn fail(stage: &'static str, status: Option<u16>, detail: impl Into<String>) -> Failure {
    Failure {
        stage,
        status,
        detail: detail.into(),
    }
}

fn set_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(SET_COOKIE).iter().find_map(|v| {
        let s = v.to_str().ok()?;
        let rest = s.strip_prefix(name)?.strip_prefix('=')?;
        Some(rest.split(';').next().unwrap_or(""))
    })
}

fn csrf_field(body: &str) -> Option<&str> {
    const MARK: &str = "name=\"csrf\" value=\"";
    let start = body.find(MARK)? + MARK.len();
    let end = body[start..].find('"')? + start;
    Some(&body[start..end])
}

struct Endpoints {
    login: reqwest::Url,
    password: reqwest::Url,
    verify: reqwest::Url,
}

impl Endpoints {
    fn new(base: &str) -> Result<Self> {
        Ok(Self {
            login: format!("{base}/login").parse()?,
            password: format!("{base}/login/password").parse()?,
            verify: format!("{base}/login/verify").parse()?,
        })
    }
}

/// Reads the rest of a response (so the connection is reused) and returns a failure for it.
async fn unexpected(stage: &'static str, r: reqwest::Response) -> Failure {
    let status = r.status().as_u16();
    let loc = r
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = r.text().await.unwrap_or_default();
    let snippet: String = body
        .split("<h1>")
        .nth(1)
        .unwrap_or(&body)
        .chars()
        .take(200)
        .collect();
    fail(
        stage,
        Some(status),
        format!("location={loc:?} body={snippet:?}"),
    )
}

fn expect_redirect(r: &reqwest::Response, to: &str) -> bool {
    r.status() == StatusCode::SEE_OTHER
        && r.headers().get(LOCATION).and_then(|v| v.to_str().ok()) == Some(to)
}

/// One complete sign-in as a fresh browser would do it: 4 requests.
async fn sign_in(
    client: &reqwest::Client,
    ep: &Endpoints,
    users: &Users,
    u: usize,
) -> Result<(), Failure> {
    let net = |stage: &'static str| move |e: reqwest::Error| fail(stage, None, e.to_string());

    // 1. GET /login: CSRF cookie and token.
    let r = client
        .get(ep.login.clone())
        .send()
        .await
        .map_err(net("get_login"))?;
    if r.status() != StatusCode::OK {
        return Err(unexpected("get_login", r).await);
    }
    let csrf_cookie = set_cookie(r.headers(), CSRF_COOKIE)
        .ok_or_else(|| fail("get_login", Some(200), "no CSRF cookie"))?
        .to_string();
    let body = r.text().await.map_err(net("get_login"))?;
    let token = csrf_field(&body)
        .ok_or_else(|| fail("get_login", Some(200), "no csrf field"))?
        .to_string();
    drop(body);

    // 2. POST /login: username.
    let r = client
        .post(ep.login.clone())
        .header(COOKIE, format!("{CSRF_COOKIE}={csrf_cookie}"))
        .header(CONTENT_TYPE, FORM)
        .body(format!("csrf={token}&username={}", users.names[u]))
        .send()
        .await
        .map_err(net("post_login"))?;
    if !expect_redirect(&r, "/login/password") {
        return Err(unexpected("post_login", r).await);
    }
    let signin = set_cookie(r.headers(), SIGNIN_COOKIE)
        .ok_or_else(|| fail("post_login", Some(303), "no sign-in cookie"))?
        .to_string();
    let _ = r.bytes().await;
    let cookies = format!("{CSRF_COOKIE}={csrf_cookie}; {SIGNIN_COOKIE}={signin}");

    // 3. POST /login/password.
    let r = client
        .post(ep.password.clone())
        .header(COOKIE, cookies.as_str())
        .header(CONTENT_TYPE, FORM)
        .body(format!("csrf={token}&password={PASSWORD}"))
        .send()
        .await
        .map_err(net("post_password"))?;
    if !expect_redirect(&r, "/login/verify") {
        return Err(unexpected("post_password", r).await);
    }
    let _ = r.bytes().await;

    // 4. POST /login/verify with the code an authenticator shows now.
    let now = unix_now();
    let code = totp::code_at(&users.secrets[u], now);
    users.last_step[u].store(totp::step_at(now), Ordering::Release);
    let r = client
        .post(ep.verify.clone())
        .header(COOKIE, cookies)
        .header(CONTENT_TYPE, FORM)
        .body(format!("csrf={token}&code={code}"))
        .send()
        .await
        .map_err(net("post_verify"))?;
    if !expect_redirect(&r, "/account") || set_cookie(r.headers(), SESSION_COOKIE).is_none() {
        return Err(unexpected("post_verify", r).await);
    }
    let _ = r.bytes().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Results

#[derive(Default)]
struct Tally {
    /// (finished at, latency in µs, ok)
    samples: Vec<(Instant, u32, bool)>,
    errors: BTreeMap<String, u64>,
    examples: Vec<String>,
    busy: u64,
}

impl Tally {
    fn record(&mut self, finished: Instant, latency: Duration, r: &Result<(), Failure>) {
        let us = latency.as_micros().min(u32::MAX as u128) as u32;
        self.samples.push((finished, us, r.is_ok()));
        if let Err(f) = r {
            if f.busy() {
                self.busy += 1;
            }
            let key = format!(
                "{} {}",
                f.stage,
                f.status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "network".into())
            );
            *self.errors.entry(key).or_insert(0) += 1;
            if self.examples.len() < 5 {
                self.examples
                    .push(format!("{} {:?}: {}", f.stage, f.status, f.detail));
            }
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

fn latency(mut us: Vec<u32>) -> Latency {
    us.sort_unstable();
    Latency {
        p50: percentile(&us, 50.0),
        p90: percentile(&us, 90.0),
        p99: percentile(&us, 99.0),
        max: us.last().copied().unwrap_or(0) as f64 / 1000.0,
    }
}

// ---------------------------------------------------------------------------------------------
// Phases

struct Steady {
    window: f64,
    whole_run: bool,
    ok_in_window: u64,
    total: u64,
    ok_total: u64,
    errors: u64,
    busy: u64,
    error_kinds: BTreeMap<String, u64>,
    examples: Vec<String>,
    rate: f64,
    lat: Latency,
    user_waits: u64,
    cpu: Option<(CpuSample, CpuSample)>,
}

async fn steady(
    args: &Args,
    client: &reqwest::Client,
    ep: Arc<Endpoints>,
    users: Arc<Users>,
    pid: u32,
) -> Steady {
    let start = Instant::now();
    let measure_start = start + Duration::from_secs_f64(args.warmup);
    let end = measure_start + Duration::from_secs_f64(args.duration);
    let started = Arc::new(AtomicU64::new(0));
    let waits = Arc::new(AtomicU64::new(0));
    let max = args.max_signins.unwrap_or(u64::MAX);

    // CPU accounting over the measured window.
    let cpu_task = tokio::spawn(async move {
        tokio::time::sleep_until(measure_start.into()).await;
        let a = cpu_sample(pid);
        tokio::time::sleep_until(end.into()).await;
        (a, cpu_sample(pid))
    });

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, ep, users, started, waits) = (
            client.clone(),
            ep.clone(),
            users.clone(),
            started.clone(),
            waits.clone(),
        );
        tasks.spawn(async move {
            let mut tally = Tally {
                samples: Vec::with_capacity(4096),
                ..Tally::default()
            };
            loop {
                if Instant::now() >= end || started.fetch_add(1, Ordering::Relaxed) >= max {
                    break;
                }
                let Some(u) = users.acquire() else {
                    started.fetch_sub(1, Ordering::Relaxed);
                    waits.fetch_add(1, Ordering::Relaxed);
                    wait_next_step(Some(end)).await;
                    continue;
                };
                let t0 = Instant::now();
                let r = sign_in(&client, &ep, &users, u).await;
                let t1 = Instant::now();
                users.release(u);
                tally.record(t1, t1 - t0, &r);
            }
            tally
        });
    }
    let mut all = Tally::default();
    while let Some(t) = tasks.join_next().await {
        let t = t.expect("worker task");
        all.samples.extend(t.samples);
        for (k, v) in t.errors {
            *all.errors.entry(k).or_insert(0) += v;
        }
        all.examples.extend(t.examples);
        all.busy += t.busy;
    }
    let last_finish = all
        .samples
        .iter()
        .map(|s| s.0)
        .max()
        .unwrap_or(measure_start);
    // The window ends at `end` when the time ran out (even if workers were waiting for users),
    // or at the last completion when --max-signins stopped the phase early.
    let hit_max = started.load(Ordering::Relaxed) >= max;
    let mut window_start = measure_start;
    let mut window_end = if hit_max {
        end.min(last_finish).max(measure_start)
    } else {
        end
    };
    let count_ok = |a: Instant, z: Instant| {
        all.samples
            .iter()
            .filter(|s| s.2 && s.0 >= a && s.0 <= z)
            .count()
    };
    let mut whole_run = false;
    if count_ok(window_start, window_end) == 0 {
        // Everything finished during the warm-up: measure the whole phase instead.
        window_start = start;
        window_end = last_finish.max(start);
        whole_run = true;
    }
    let window = (window_end - window_start).as_secs_f64();
    let in_window: Vec<u32> = all
        .samples
        .iter()
        .filter(|s| s.2 && s.0 >= window_start && s.0 <= window_end)
        .map(|s| s.1)
        .collect();
    let cpu = if !whole_run && last_finish >= end {
        cpu_task.await.ok()
    } else {
        cpu_task.abort();
        None
    };
    let ok_in_window = in_window.len() as u64;
    let total = all.samples.len() as u64;
    let ok_total = all.samples.iter().filter(|s| s.2).count() as u64;
    Steady {
        window,
        whole_run,
        ok_in_window,
        total,
        ok_total,
        errors: total - ok_total,
        busy: all.busy,
        error_kinds: all.errors,
        examples: all.examples,
        rate: if window > 0.0 {
            ok_in_window as f64 / window
        } else {
            0.0
        },
        lat: latency(in_window),
        user_waits: waits.load(Ordering::Relaxed),
        cpu,
    }
}

struct Burst {
    launched: usize,
    ok: u64,
    busy: u64,
    failed: u64,
    error_kinds: BTreeMap<String, u64>,
    examples: Vec<String>,
    seconds: f64,
    lat: Latency,
}

async fn burst(n: usize, client: &reqwest::Client, ep: Arc<Endpoints>, users: Arc<Users>) -> Burst {
    // Reserve n distinct users that may submit a code now.
    let mut picked = Vec::with_capacity(n);
    let mut waited = 0;
    while picked.len() < n {
        match users.acquire() {
            Some(u) => picked.push(u),
            None => {
                waited += 1;
                if waited > 1 {
                    break;
                }
                // Users picked so far stay reserved; the rest frees up at the next step.
                eprintln!(
                    "      waiting for the next 30-s step: not enough unused users (see --users)"
                );
                wait_next_step(None).await;
            }
        }
    }
    let launched = picked.len();
    let go = Arc::new(tokio::sync::Barrier::new(launched + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for u in picked {
        let (client, ep, users, go) = (client.clone(), ep.clone(), users.clone(), go.clone());
        tasks.spawn(async move {
            go.wait().await;
            let t0 = Instant::now();
            let r = sign_in(&client, &ep, &users, u).await;
            let t1 = Instant::now();
            users.release(u);
            (t1, t1 - t0, r)
        });
    }
    go.wait().await;
    let t0 = Instant::now();
    let mut tally = Tally::default();
    while let Some(r) = tasks.join_next().await {
        let (t1, lat, r) = r.expect("burst task");
        tally.record(t1, lat, &r);
    }
    let seconds = t0.elapsed().as_secs_f64();
    let ok = tally.samples.iter().filter(|s| s.2).count() as u64;
    let busy = tally.busy;
    Burst {
        launched,
        ok,
        busy,
        failed: launched as u64 - ok - busy,
        error_kinds: tally.errors,
        examples: tally.examples,
        seconds,
        lat: latency(tally.samples.iter().filter(|s| s.2).map(|s| s.1).collect()),
    }
}

// ---------------------------------------------------------------------------------------------

fn default_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("sesame")))
        .unwrap_or_else(|| PathBuf::from("target/release/sesame"))
}

async fn run(args: Args) -> Result<bool> {
    let bin = args.sesame_bin.clone().unwrap_or_else(default_bin);
    if !bin.is_file() {
        bail!(
            "server binary {} not found: build it with `cargo build --release -p sesame` or pass --sesame-bin",
            bin.display()
        );
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let release = !cfg!(debug_assertions);
    if !release {
        eprintln!("warning: sesame-bench is a debug build; Argon2id figures will be far too low (use --release)");
    }

    // 1. Raw Argon2id.
    let phc = password::hash(&SecretString::new(PASSWORD.into()), &mut rand::rngs::OsRng)?;
    eprintln!("[1/5] raw Argon2id (m={} KiB, t={}, p={}): {:.0} s on 1 core, then {:.0} s on {cores} cores ...",
        password::MEMORY_KIB, password::ITERATIONS, password::PARALLELISM, args.hash_secs, args.hash_secs);
    let (one, all) = {
        let phc2 = phc.clone();
        let secs = args.hash_secs;
        tokio::task::spawn_blocking(move || {
            (
                hash_rate(1, secs, &phc2, PASSWORD),
                hash_rate(cores, secs, &phc2, PASSWORD),
            )
        })
        .await?
    };
    eprintln!(
        "      1 core: {:.1} hashes/s ({:.1} ms each); {} cores: {:.1} hashes/s",
        one.per_sec,
        1000.0 / one.per_sec.max(1e-9),
        all.threads,
        all.per_sec
    );

    // 2. Data directory.
    let tmp;
    let dir = match &args.data_dir {
        Some(d) => {
            if d.exists() {
                bail!("--data-dir {} already exists; give a new path", d.display());
            }
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new().prefix("sesame-bench-").tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    eprintln!(
        "[2/5] creating {} users in {} ...",
        args.users,
        dir.display()
    );
    let t = Instant::now();
    let users = Arc::new(prepare(&dir, args.users).await?);
    let prep_secs = t.elapsed().as_secs_f64();
    eprintln!("      done in {prep_secs:.1} s");

    // 3. Server.
    eprintln!("[3/5] starting {} ...", bin.display());
    let mut server = Server::start(&bin, &dir, args.server_log.as_deref(), &args.server_env)?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("sesame-bench")
        .timeout(Duration::from_secs_f64(args.request_timeout))
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .build()?;
    server.wait_healthy(&client).await?;
    let pid = server.pid;
    let (rss_before, hwm_before) = rss_kib(pid);
    eprintln!(
        "      {} (pid {pid}), RSS {:.1} MiB",
        server.base,
        rss_before as f64 / 1024.0
    );
    let ep = Arc::new(Endpoints::new(&server.base)?);

    // 4. Steady load.
    eprintln!(
        "[4/5] steady load: {} workers, {:.0} s warm-up + {:.0} s measured{} ...",
        args.concurrency,
        args.warmup,
        args.duration,
        args.max_signins
            .map(|m| format!(", at most {m} sign-ins"))
            .unwrap_or_default()
    );
    let st = steady(&args, &client, ep.clone(), users.clone(), pid).await;
    let (_, hwm_steady) = rss_kib(pid);
    eprintln!("      {:.1} sign-ins/s, {} errors", st.rate, st.errors);

    // 5. Burst.
    let b = if args.burst > 0 {
        eprintln!("[5/5] burst: {} sign-ins at once ...", args.burst);
        let b = burst(args.burst, &client, ep.clone(), users.clone()).await;
        eprintln!(
            "      {} ok, {} busy (503), {} failed in {:.1} s",
            b.ok, b.busy, b.failed, b.seconds
        );
        Some(b)
    } else {
        None
    };
    let (rss_after, hwm_after) = rss_kib(pid);
    let alive = server.child.try_wait()?.is_none();
    drop(client);
    server.stop();

    // Summary.
    let ratio = st.rate / all.per_sec.max(1e-9);
    let error_pct = if st.total > 0 {
        100.0 * st.errors as f64 / st.total as f64
    } else {
        100.0
    };
    let burst_fail_pct = b
        .as_ref()
        .map(|b| 100.0 * b.failed as f64 / b.launched.max(1) as f64)
        .unwrap_or(0.0);
    let mib = |k: u64| k as f64 / 1024.0;

    let mut out = String::new();
    use std::fmt::Write;
    let _ = writeln!(out, "\n=== sesame-bench summary ===");
    let _ = writeln!(
        out,
        "machine: {cores} cores; Argon2id m={} KiB t={} p={}; bench build: {}",
        password::MEMORY_KIB,
        password::ITERATIONS,
        password::PARALLELISM,
        if release { "release" } else { "DEBUG" }
    );
    let _ = writeln!(
        out,
        "raw Argon2id:        {:.1} hashes/s on 1 core ({:.1} ms/hash), {:.1} hashes/s on {} cores",
        one.per_sec,
        1000.0 / one.per_sec.max(1e-9),
        all.per_sec,
        all.threads
    );
    let _ = writeln!(
        out,
        "users:               {} (prepared in {:.1} s)",
        args.users, prep_secs
    );
    let _ = writeln!(
        out,
        "steady load:         {} workers, {:.1} s measured{}, {} sign-ins ok in window ({} total, {} errors = {:.2}%, {} of them 503)",
        args.concurrency, st.window, if st.whole_run { " (whole phase, warm-up included)" } else { "" }, st.ok_in_window, st.total, st.errors, error_pct, st.busy
    );
    let _ = writeln!(out, "sign-ins/s:          {:.1}", st.rate);
    let _ = writeln!(
        out,
        "ratio:               {:.3} sign-ins/s per all-core hash/s (goal >= 0.75: {})",
        ratio,
        if ratio >= 0.75 { "MET" } else { "NOT MET" }
    );
    let _ = writeln!(
        out,
        "latency (4 requests): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        st.lat.p50, st.lat.p90, st.lat.p99, st.lat.max
    );
    if st.user_waits > 0 {
        let _ = writeln!(
            out,
            "user waits:          {} (every user had already signed in this 30-s step; use more --users)",
            st.user_waits
        );
    }
    for (k, v) in &st.error_kinds {
        let _ = writeln!(out, "  error {k}: {v}");
    }
    for e in st.examples.iter().take(3) {
        let _ = writeln!(out, "  e.g. {e}");
    }
    if let Some((a, z)) = &st.cpu {
        let secs = (z.at - a.at).as_secs_f64().max(1e-9);
        let server_cores = (z.server - a.server) / secs;
        let bench_cores = (z.bench - a.bench) / secs;
        let sys = (z.sys_busy - a.sys_busy) / (z.sys_total - a.sys_total).max(1e-9) * cores as f64;
        let argon_cores = st.rate / one.per_sec.max(1e-9);
        let other = (sys - server_cores - bench_cores).max(0.0);
        let _ = writeln!(
            out,
            "CPU (cores busy):    machine {sys:.2} of {cores}; server {server_cores:.2} (Argon2id alone ≈ {argon_cores:.2}); bench {bench_cores:.2}; other processes {other:.2}{}",
            if other > 0.15 { "  <- NOISY MACHINE: figures unreliable" } else { "" }
        );
        let per_signin_ms = 1000.0 * (z.server - a.server) / (st.rate * secs).max(1e-9);
        let bench_ms = 1000.0 * (z.bench - a.bench) / (st.rate * secs).max(1e-9);
        let argon_ms = 1000.0 / one.per_sec.max(1e-9);
        let _ = writeln!(
            out,
            "                     CPU per sign-in: server {per_signin_ms:.1} ms + bench {bench_ms:.1} ms vs raw Argon2id {argon_ms:.1} ms \
             -> CPU-time ratio {:.3} (what the ratio would be on an otherwise idle machine)",
            argon_ms / (per_signin_ms + bench_ms).max(1e-9)
        );
        let _ = writeln!(out, "                     server CPU by thread:");
        for (name, c) in &z.server_threads {
            let d = c - a.server_threads.get(name).copied().unwrap_or(0.0);
            if d > 0.0 {
                let _ = writeln!(
                    out,
                    "                       {name:<18} {:.2} cores",
                    d / secs
                );
            }
        }
    }
    if let Some(b) = &b {
        let _ = writeln!(
            out,
            "burst:               {} launched at once: {} ok, {} busy (503), {} failed; {:.1} s; ok latency p50 {:.0} ms, max {:.0} ms",
            b.launched, b.ok, b.busy, b.failed, b.seconds, b.lat.p50, b.lat.max
        );
        for (k, v) in &b.error_kinds {
            let _ = writeln!(out, "  burst {k}: {v}");
        }
        for e in b.examples.iter().take(3) {
            let _ = writeln!(out, "  e.g. {e}");
        }
    }
    let _ = writeln!(
        out,
        "server memory:       RSS before load {:.1} MiB (peak so far {:.1}); peak after steady {:.1} MiB; peak after all {:.1} MiB; RSS at end {:.1} MiB",
        mib(rss_before),
        mib(hwm_before),
        mib(hwm_steady),
        mib(hwm_after),
        mib(rss_after)
    );
    let mut ok = true;
    let mut verdict = Vec::new();
    if error_pct > args.max_error_pct {
        ok = false;
        verdict.push(format!(
            "steady errors {error_pct:.2}% > {}%",
            args.max_error_pct
        ));
    }
    if burst_fail_pct > args.max_error_pct {
        ok = false;
        verdict.push(format!(
            "burst failures {burst_fail_pct:.2}% > {}%",
            args.max_error_pct
        ));
    }
    if !alive {
        ok = false;
        verdict.push("the server exited during the run".into());
    }
    if let Some(r) = args.require_ratio {
        if ratio < r {
            ok = false;
            verdict.push(format!("ratio {ratio:.3} < required {r}"));
        }
    }
    let _ = writeln!(
        out,
        "result:              {}",
        if ok {
            "PASS".to_string()
        } else {
            format!("FAIL ({})", verdict.join("; "))
        }
    );
    print!("{out}");

    if let Some(path) = &args.json {
        let lat = |l: &Latency| serde_json::json!({"p50": l.p50, "p90": l.p90, "p99": l.p99, "max": l.max});
        let cpu = st.cpu.as_ref().map(|(a, z)| {
            let secs = (z.at - a.at).as_secs_f64().max(1e-9);
            let threads: serde_json::Map<String, serde_json::Value> = z
                .server_threads
                .iter()
                .map(|(k, c)| {
                    let d = c - a.server_threads.get(k).copied().unwrap_or(0.0);
                    (k.clone(), serde_json::json!(d / secs))
                })
                .collect();
            let machine = (z.sys_busy - a.sys_busy) / (z.sys_total - a.sys_total).max(1e-9) * cores as f64;
            let server = (z.server - a.server) / secs;
            let bench = (z.bench - a.bench) / secs;
            serde_json::json!({
                "machine_cores_busy": machine,
                "other_processes_cores": (machine - server - bench).max(0.0),
                "server_cpu_ms_per_signin": 1000.0 * (z.server - a.server) / (st.rate * secs).max(1e-9),
                "bench_cpu_ms_per_signin": 1000.0 * (z.bench - a.bench) / (st.rate * secs).max(1e-9),
                "cpu_time_ratio": (1000.0 / one.per_sec.max(1e-9))
                    / (1000.0 * ((z.server - a.server) + (z.bench - a.bench)) / (st.rate * secs).max(1e-9)).max(1e-9),
                "server_cores": (z.server - a.server) / secs,
                "bench_cores": (z.bench - a.bench) / secs,
                "server_threads_cores": threads,
            })
        });
        let json = serde_json::json!({
            "cores": cores,
            "release_build": release,
            "argon2id": {
                "memory_kib": password::MEMORY_KIB,
                "iterations": password::ITERATIONS,
                "parallelism": password::PARALLELISM,
                "one_core_hashes_per_sec": one.per_sec,
                "one_core_hashes": one.hashes,
                "all_cores_threads": all.threads,
                "all_cores_hashes_per_sec": all.per_sec,
                "all_cores_hashes": all.hashes,
            },
            "users": args.users,
            "server_env": args.server_env,
            "prepare_secs": prep_secs,
            "steady": {
                "concurrency": args.concurrency,
                "window_secs": st.window,
                "window_includes_warmup": st.whole_run,
                "ok_in_window": st.ok_in_window,
                "total": st.total,
                "ok_total": st.ok_total,
                "errors": st.errors,
                "error_pct": error_pct,
                "busy_503": st.busy,
                "error_kinds": st.error_kinds,
                "error_examples": st.examples,
                "signins_per_sec": st.rate,
                "latency_ms": lat(&st.lat),
                "user_waits": st.user_waits,
                "cpu": cpu,
            },
            "ratio_signins_per_all_core_hash": ratio,
            "ratio_goal": 0.75,
            "ratio_goal_met": ratio >= 0.75,
            "burst": b.as_ref().map(|b| serde_json::json!({
                "launched": b.launched,
                "ok": b.ok,
                "busy_503": b.busy,
                "failed": b.failed,
                "error_kinds": b.error_kinds,
                "error_examples": b.examples,
                "seconds": b.seconds,
                "ok_latency_ms": lat(&b.lat),
            })),
            "server_memory_kib": {
                "rss_before_load": rss_before,
                "peak_before_load": hwm_before,
                "peak_after_steady": hwm_steady,
                "peak_after_all": hwm_after,
                "rss_at_end": rss_after,
            },
            "pass": ok,
            "failures": verdict,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("summary written to {}", path.display());
    }
    if args.data_dir.is_some() {
        eprintln!("data directory kept: {}", dir.display());
    }
    Ok(ok)
}
