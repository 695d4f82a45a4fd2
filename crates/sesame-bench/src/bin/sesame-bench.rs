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

use anyhow::{bail, Result};
use clap::Parser;
use sesame_bench::argon::{self, HashRates};
use sesame_bench::http::{self, Browser, Failure};
use sesame_bench::process::{self, ServerProcess};
use sesame_bench::procfs::{self, SystemCpu};
use sesame_bench::setup::Db;
use sesame_bench::stats::Latency;
use sesame_bench::{unix_now, write_json};
use sesame_core::secret::SecretBytes;
use sesame_core::{password, totp};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PASSWORD: &str = "bench-password-0123";

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
        Example: cargo run --release -p sesame-bench --bin sesame-bench -- -c 64 -d 10 --json bench.json"
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
    /// Attack mode: instead of the steady and burst phases, measure legitimate sign-ins (from
    /// 127.0.0.3, --concurrency workers) first alone, then while one client (127.0.0.2) floods
    /// wrong passwords; report both latencies, their 503s and the attacker's checked guesses/s.
    #[arg(long)]
    attack: bool,
    /// Attack mode: the attacker's concurrent connections.
    #[arg(long, default_value_t = 1000)]
    attack_connections: usize,
    /// Attack mode: account names the attacker guesses at, in turn (none of them exists; 1 is
    /// one account). Legitimate users are never among them.
    #[arg(long, default_value_t = 1000)]
    attack_accounts: usize,
    /// Attack mode: seconds the flood runs before the measured window.
    #[arg(long, default_value_t = 3.0)]
    attack_warmup: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.users == 0 || args.concurrency == 0 {
        bail!("--users and --concurrency must be at least 1");
    }
    let rt = sesame_bench::client_runtime(args.client_threads)?;
    let ok = rt.block_on(run(args))?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

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
    let db = Db::in_data_dir(dir).await?;
    let users = db
        .add_code_users("bench", n, &argon::phc(PASSWORD)?)
        .await?;
    let (names, secrets) = users.into_iter().map(|u| (u.username, u.secret)).unzip();
    Ok(Users {
        last_step: (0..n).map(|_| AtomicI64::new(-1)).collect(),
        busy: (0..n).map(|_| AtomicBool::new(false)).collect(),
        cursor: AtomicUsize::new(0),
        names,
        secrets,
    })
}

// ---------------------------------------------------------------------------------------------
// CPU

#[derive(Clone)]
struct CpuSample {
    server: f64,
    server_threads: BTreeMap<String, f64>,
    bench: f64,
    sys: SystemCpu,
    at: Instant,
}

fn cpu_sample(pid: u32) -> CpuSample {
    let sys = SystemCpu::now();
    // CPU seconds per thread name (threads of the same name are summed; exited threads are lost).
    let mut server_threads = BTreeMap::new();
    for (_, name, c) in procfs::threads_cpu(pid) {
        *server_threads.entry(name).or_insert(0.0) += c;
    }
    CpuSample {
        server: procfs::process_cpu(pid),
        server_threads,
        bench: procfs::process_cpu(std::process::id()),
        sys,
        at: Instant::now(),
    }
}

// ---------------------------------------------------------------------------------------------
// One sign-in over HTTP

/// One complete sign-in as a fresh browser would do it: 4 requests.
async fn sign_in(
    client: &reqwest::Client,
    base: &str,
    users: &Users,
    u: usize,
) -> Result<(), Failure> {
    // 1. GET /login: CSRF cookie and token.
    let mut b = Browser::open(client, base)
        .await
        .map_err(|f| f.at("get_login"))?;
    // 2. POST /login: username.
    b.username(&users.names[u], "/login/password")
        .await
        .map_err(|f| f.at("post_login"))?;
    // 3. POST /login/password.
    b.password(PASSWORD)
        .await
        .map_err(|f| f.at("post_password"))?;
    // 4. POST /login/verify with the code an authenticator shows now.
    let now = unix_now();
    let code = totp::code_at(&users.secrets[u], now);
    users.last_step[u].store(totp::step_at(now), Ordering::Release);
    b.code(&code).await.map_err(|f| f.at("post_verify"))
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

/// Latency percentiles of samples in µs, in ms (0 when there are none).
fn latency(us: Vec<u32>) -> Latency {
    Latency::of(us.into_iter().map(|u| f64::from(u) / 1000.0).collect()).or_zero()
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
    base: Arc<str>,
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
    let cpu_task = procfs::sample_window(measure_start, end, move || cpu_sample(pid));

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, base, users, started, waits) = (
            client.clone(),
            base.clone(),
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
                let r = sign_in(&client, &base, &users, u).await;
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

async fn burst(n: usize, client: &reqwest::Client, base: Arc<str>, users: Arc<Users>) -> Burst {
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
        let (client, base, users, go) = (client.clone(), base.clone(), users.clone(), go.clone());
        tasks.spawn(async move {
            go.wait().await;
            let t0 = Instant::now();
            let r = sign_in(&client, &base, &users, u).await;
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

/// The attack comparison: legitimate sign-ins alone, then under a flood of wrong passwords.
async fn attack(
    args: &Args,
    base: &Arc<str>,
    users: Arc<Users>,
    pid: u32,
    bin: &Path,
) -> Result<bool> {
    let need = args.attack_connections as u64 * 2 + 512;
    if let Some(limit) = procfs::open_files_limit() {
        if limit < need {
            bail!(
                "the open-file limit is {limit}; {} attacking connections need about {need} (run `ulimit -n {need}` first)",
                args.attack_connections
            );
        }
    }
    let timeout = Duration::from_secs_f64(args.request_timeout);
    let legit = http::client_from("sesame-bench", timeout, [127, 0, 0, 3].into())?;
    let attacker = http::client_from("sesame-bench-attacker", timeout, [127, 0, 0, 2].into())?;
    eprintln!(
        "[4/5] legitimate sign-ins alone: {} workers from 127.0.0.3, {:.0} s ...",
        args.concurrency, args.duration
    );
    let alone = steady(args, &legit, base.clone(), users.clone(), pid).await;
    eprintln!(
        "      {:.1} sign-ins/s, p99 {:.1} ms, {} errors",
        alone.rate, alone.lat.p99, alone.errors
    );
    eprintln!(
        "[5/5] the same while 127.0.0.2 floods wrong passwords with {} connections at {} account name(s) ...",
        args.attack_connections, args.attack_accounts
    );
    let targets: Arc<Vec<String>> = Arc::new(
        (0..args.attack_accounts.max(1))
            .map(|i| format!("target-{i}"))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flood = tokio::spawn(sesame_bench::attack::flood(
        attacker,
        base.clone(),
        targets,
        args.attack_connections,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs_f64(args.attack_warmup)).await;
    let hwm_before = procfs::memory_kib(pid).1;
    let under = steady(args, &legit, base.clone(), users, pid).await;
    stop.store(true, Ordering::Relaxed);
    let answers = flood.await?;
    let hwm_after = procfs::memory_kib(pid).1;
    let p99_ratio = under.lat.p99 / alone.lat.p99.max(1e-9);
    let mut out = String::new();
    use std::fmt::Write;
    let _ = writeln!(out, "\n=== sesame-bench attack summary ===");
    let _ = writeln!(out, "server: {}", bin.display());
    for (name, st) in [("alone", &alone), ("under attack", &under)] {
        let _ = writeln!(
            out,
            "legitimate {name:<13} {:.1} sign-ins/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} of {} failed ({} of them 503)",
            st.rate, st.lat.p50, st.lat.p99, st.lat.max, st.errors, st.total, st.busy
        );
        for (k, v) in &st.error_kinds {
            let _ = writeln!(out, "  error {k}: {v}");
        }
    }
    let _ = writeln!(
        out,
        "p99 under attack / alone: {p99_ratio:.2} (goal <= 2: {})",
        if p99_ratio <= 2.0 { "MET" } else { "NOT MET" }
    );
    let _ = writeln!(
        out,
        "attacker ({} connections, {} account name(s), {:.1} s): {} answers = {:.0}/s; checked and wrong (401) {} = {:.2}/s; held (429) {} = {:.0}/s; busy (503) {}; no answer {}; other {}",
        args.attack_connections,
        args.attack_accounts,
        answers.seconds,
        answers.total(),
        answers.total() as f64 / answers.seconds.max(1e-9),
        answers.count(401),
        answers.rate(401),
        answers.count(429),
        answers.rate(429),
        answers.count(503),
        answers.count(0),
        answers.total() - answers.count(401) - answers.count(429) - answers.count(503) - answers.count(0)
    );
    let _ = writeln!(
        out,
        "server peak memory: {:.1} MiB before the measured window, {:.1} MiB after",
        hwm_before as f64 / 1024.0,
        hwm_after as f64 / 1024.0
    );
    let mut failures = Vec::new();
    if under.busy > 0 {
        failures.push(format!(
            "{} legitimate sign-ins got 503 under attack",
            under.busy
        ));
    }
    if p99_ratio > 2.0 {
        failures.push(format!(
            "p99 under attack is {p99_ratio:.2}x the unloaded one"
        ));
    }
    if alone.errors + under.errors > 0 {
        failures.push(format!(
            "{} legitimate sign-ins failed",
            alone.errors + under.errors
        ));
    }
    let _ = writeln!(out, "{}", sesame_bench::result_line("PASS", &failures));
    print!("{out}");
    if let Some(path) = &args.json {
        let side = |st: &Steady| {
            serde_json::json!({
                "signins_per_sec": st.rate,
                "latency_ms": st.lat.json(),
                "total": st.total,
                "errors": st.errors,
                "busy_503": st.busy,
                "error_kinds": st.error_kinds,
            })
        };
        write_json(
            path,
            &serde_json::json!({
                "mode": "attack",
                "concurrency": args.concurrency,
                "alone": side(&alone),
                "under_attack": side(&under),
                "p99_ratio": p99_ratio,
                "attacker": {
                    "connections": args.attack_connections,
                    "accounts": args.attack_accounts,
                    "seconds": answers.seconds,
                    "by_status": answers.by_status,
                    "checked_per_sec": answers.rate(401),
                    "held_per_sec": answers.rate(429),
                },
                "pass": failures.is_empty(),
                "failures": failures,
            }),
        )?;
    }
    Ok(failures.is_empty())
}

async fn run(args: Args) -> Result<bool> {
    let bin = process::server_bin(args.sesame_bin.as_deref())?;
    let cores = sesame_bench::cores();
    let release = !cfg!(debug_assertions);
    if !release {
        eprintln!("warning: sesame-bench is a debug build; Argon2id figures will be far too low (use --release)");
    }

    // 1. Raw Argon2id.
    let phc = argon::phc(PASSWORD)?;
    let secs = args.hash_secs;
    let rates = tokio::task::spawn_blocking(move || {
        HashRates::measure("[1/5]", secs, cores, &phc, PASSWORD)
    })
    .await?;
    let (one, all) = (&rates.one, &rates.all);
    eprintln!(
        "      1 core: {:.1} hashes/s ({:.1} ms each); {} cores: {:.1} hashes/s",
        one.per_sec,
        rates.ms_per_hash(),
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
    let client = http::client(
        "sesame-bench",
        Duration::from_secs_f64(args.request_timeout),
    )?;
    let opts = process::Options {
        filter: args.server_log.as_deref(),
        env: &args.server_env,
        log: process::Log::File,
    };
    let mut server = ServerProcess::start_healthy(&bin, &dir, &opts, &client).await?;
    let pid = server.pid;
    let (rss_before, hwm_before) = procfs::memory_kib(pid);
    eprintln!(
        "      {} (pid {pid}), RSS {:.1} MiB",
        server.base,
        rss_before as f64 / 1024.0
    );
    let base: Arc<str> = server.base.as_str().into();

    if args.attack {
        let ok = attack(&args, &base, users.clone(), pid, &bin).await;
        drop(client);
        let alive = server.is_running()?;
        server.stop();
        let ok = ok? && alive;
        if !alive {
            eprintln!("the server exited during the run");
        }
        return Ok(ok);
    }

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
    let st = steady(&args, &client, base.clone(), users.clone(), pid).await;
    let (_, hwm_steady) = procfs::memory_kib(pid);
    eprintln!("      {:.1} sign-ins/s, {} errors", st.rate, st.errors);

    // 5. Burst.
    let b = if args.burst > 0 {
        eprintln!("[5/5] burst: {} sign-ins at once ...", args.burst);
        let b = burst(args.burst, &client, base.clone(), users.clone()).await;
        eprintln!(
            "      {} ok, {} busy (503), {} failed in {:.1} s",
            b.ok, b.busy, b.failed, b.seconds
        );
        Some(b)
    } else {
        None
    };
    let (rss_after, hwm_after) = procfs::memory_kib(pid);
    let alive = server.is_running()?;
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
    let _ = writeln!(out, "raw Argon2id:        {}", rates.describe());
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
        let sys = z.sys.cores_busy_since(&a.sys, cores);
        let argon_cores = st.rate / one.per_sec.max(1e-9);
        let other = (sys - server_cores - bench_cores).max(0.0);
        let _ = writeln!(
            out,
            "CPU (cores busy):    machine {sys:.2} of {cores}; server {server_cores:.2} (Argon2id alone ≈ {argon_cores:.2}); bench {bench_cores:.2}; other processes {other:.2}{}",
            procfs::noisy(other)
        );
        let per_signin_ms = 1000.0 * (z.server - a.server) / (st.rate * secs).max(1e-9);
        let bench_ms = 1000.0 * (z.bench - a.bench) / (st.rate * secs).max(1e-9);
        let argon_ms = rates.ms_per_hash();
        let _ = writeln!(
            out,
            "                     CPU per sign-in: server {per_signin_ms:.1} ms + bench {bench_ms:.1} ms vs raw Argon2id {argon_ms:.1} ms \
             -> CPU-time ratio {:.3} (what the ratio would be on an otherwise idle machine)",
            argon_ms / (per_signin_ms + bench_ms).max(1e-9)
        );
        let _ = writeln!(out, "                     server CPU by thread:");
        for (name, c) in procfs::cores_by_thread(&a.server_threads, &z.server_threads, secs) {
            if c > 0.0 {
                let _ = writeln!(out, "                       {name:<18} {c:.2} cores");
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
    let mut verdict = Vec::new();
    if error_pct > args.max_error_pct {
        verdict.push(format!(
            "steady errors {error_pct:.2}% > {}%",
            args.max_error_pct
        ));
    }
    if burst_fail_pct > args.max_error_pct {
        verdict.push(format!(
            "burst failures {burst_fail_pct:.2}% > {}%",
            args.max_error_pct
        ));
    }
    if !alive {
        verdict.push("the server exited during the run".into());
    }
    if let Some(r) = args.require_ratio {
        if ratio < r {
            verdict.push(format!("ratio {ratio:.3} < required {r}"));
        }
    }
    let ok = verdict.is_empty();
    let _ = writeln!(out, "{}", sesame_bench::result_line("PASS", &verdict));
    print!("{out}");

    if let Some(path) = &args.json {
        let cpu = st.cpu.as_ref().map(|(a, z)| {
            let secs = (z.at - a.at).as_secs_f64().max(1e-9);
            let threads = procfs::cores_by_thread(&a.server_threads, &z.server_threads, secs);
            let machine = z.sys.cores_busy_since(&a.sys, cores);
            let server = (z.server - a.server) / secs;
            let bench = (z.bench - a.bench) / secs;
            serde_json::json!({
                "machine_cores_busy": machine,
                "other_processes_cores": (machine - server - bench).max(0.0),
                "server_cpu_ms_per_signin": 1000.0 * (z.server - a.server) / (st.rate * secs).max(1e-9),
                "bench_cpu_ms_per_signin": 1000.0 * (z.bench - a.bench) / (st.rate * secs).max(1e-9),
                "cpu_time_ratio": rates.ms_per_hash()
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
                "latency_ms": st.lat.json(),
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
                "ok_latency_ms": b.lat.json(),
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
        write_json(path, &json)?;
    }
    if args.data_dir.is_some() {
        eprintln!("data directory kept: {}", dir.display());
    }
    Ok(ok)
}
