//! `sesame-phone-bench`: how many complete passwordless phone sign-ins a real Sesame server
//! serves per second over real HTTP on 127.0.0.1.
//!
//! The server runs in this process on its own runtime (named `sesame-server` threads, the real
//! system clock, a SQLite file in a temporary directory, default settings); the load runs on a
//! separate runtime (the main thread), so CPU time can be told apart per side. Users have no
//! password: each has one device registered directly in the store, with a P-256 device key, a
//! P-256 PIN key and phone sign-in on. Every simulated phone keeps its event stream open, as the
//! app does.
//!
//! One phone sign-in, all over HTTP and checked at every step:
//!   browser  GET  /login                     CSRF cookie and token
//!   browser  POST /login (username)          -> 303 /login/app; the server sends the request
//!   browser  GET  /login/app                 the number on the page
//!   phone    the request arrives on its event stream
//!   phone    POST /api/v1/device/respond     signed by the device key and by the PIN key
//!                                            -> outcome "approved"
//!   browser  GET  /login/push/status         long-poll, as the page's script does -> approved
//!   browser  POST /login/push/complete       -> 303 /account with a session cookie
//!
//! The phone holds its PIN-unlocked key in memory: unsealing it (one Argon2id on the phone) is
//! the phone's CPU, not the server's, and is left out; its cost is printed for reference.
//!
//! Everything targets 127.0.0.1 only and the run is bounded in time.

use anyhow::{bail, Result};
use clap::Parser;
use sesame_authenticator::client::DeviceClient;
use sesame_authenticator::device::DeviceKey;
use sesame_bench::argon::{self, HashRates};
use sesame_bench::http::{self, Browser, Failure};
use sesame_bench::phone::{self, Phone, StreamStats};
use sesame_bench::procfs::{self, SystemCpu};
use sesame_bench::setup::{Db, PhoneSetup};
use sesame_bench::stats::Latency;
use sesame_bench::write_json;
use sesame_proto::device::{Challenge, ChallengeKind};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Shortest time between the starts of two sign-ins of one user. The server sends a user at
/// most 5 requests since the later of 15 minutes ago and the user's last successful sign-in,
/// counted in whole seconds, so 5 requests created within one clock second refuse the 6th.
/// A request is created during POST /login, up to its latency after the start: with starts
/// 500 ms apart, 5 requests fall into one second only if POST /login takes over a second.
const MIN_USER_GAP: Duration = Duration::from_millis(500);
/// How long the phone waits for a request to arrive before the sign-in counts as failed.
const EVENT_WAIT: Duration = Duration::from_secs(10);
/// Longest a whole sign-in may take before it counts as failed.
const SIGNIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser, Debug)]
#[command(
    name = "sesame-phone-bench",
    version,
    about = "Complete passwordless phone sign-ins per second against a real Sesame server \
             (in-process, real HTTP on 127.0.0.1), with the raw Argon2id rate for comparison.",
    long_about = "Complete passwordless phone sign-ins per second against a real Sesame server.\n\n\
        Each sign-in: GET /login, POST /login (username) -> /login/app, GET /login/app (number), \
        the request arrives on the phone's event stream, the phone answers it signed with its \
        device key and PIN key (POST /api/v1/device/respond), the page's status long-poll sees \
        the approval, POST /login/push/complete -> /account with a session.\n\n\
        The run fails (exit 1) if any sign-in fails.\n\n\
        Example: cargo run --release -p sesame-bench --bin sesame-phone-bench -- --users 1000 --concurrency 128 --seconds 10"
)]
struct Args {
    /// Users, each with one phone holding an open event stream. A user has at most one
    /// sign-in in flight, and at most 2 per second (the server's request budget).
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Concurrent sign-in workers (at most --users); worker w signs in users w, w+C, ...
    /// A sign-in is eight round trips, so it takes this many in flight to keep two cores busy
    /// (with 32 the run is bound by latency, not by the server's CPU).
    #[arg(short, long, default_value_t = 128)]
    concurrency: usize,
    /// Seconds of measured load (after the warm-up).
    #[arg(short, long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of unmeasured warm-up.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds per raw Argon2id measurement (1 core, then all cores); 0 skips it.
    #[arg(long, default_value_t = 3.0)]
    hash_secs: f64,
    /// Do not long-poll /login/push/status: the browser posts the completion once the phone
    /// has approved (a page without JavaScript, where the person clicks "I approved it").
    #[arg(long)]
    no_poll: bool,
    /// Worker threads of the server's runtime (0: one per core, as `sesame serve`).
    #[arg(long, default_value_t = 0)]
    server_threads: usize,
    /// Threads of the load generator's runtime (it shares the CPU with the server).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// 2: two in-process nodes on one PostgreSQL database (SESAME_BENCH_DATABASE_URL): the
    /// browsers sign in on node A while the phones' event streams and answers go to node B, so
    /// every request and every answer crosses between nodes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    nodes: u8,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.users == 0 || args.concurrency == 0 || args.seconds <= 0.0 {
        bail!("--users, --concurrency and --seconds must be positive");
    }
    let ok = run(args)?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// One phone sign-in

/// Step names, in order; [`Steps`] holds one duration per step.
const STEP_NAMES: [&str; 7] = [
    "browser GET /login",
    "browser POST /login (request sent)",
    "browser GET /login/app (number)",
    "phone: request arrives (after the page)",
    "phone: POST respond (device + PIN signatures)",
    "browser: status long-poll sees approval",
    "browser POST /login/push/complete (session)",
];

type Steps = [f64; 7];

struct Ctx {
    http: reqwest::Client,
    base: String,
    phones: &'static [Phone],
    devices: &'static [DeviceClient<'static>],
    poll: bool,
}

impl Ctx {
    /// One complete phone sign-in of user `u`; `events` receives the requests its phone gets.
    async fn sign_in(
        &self,
        u: usize,
        events: &mut mpsc::UnboundedReceiver<Challenge>,
    ) -> Result<Steps, Failure> {
        let p = &self.phones[u];
        let device = &self.devices[u];
        // Requests of an earlier, failed attempt must not be taken for this one.
        while events.try_recv().is_ok() {}
        let mut steps: Steps = [0.0; 7];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;

        let t = Instant::now();
        let mut browser = Browser::open(&self.http, &self.base).await?;
        steps[0] = ms(t.elapsed());

        let t = Instant::now();
        browser.username(&p.username, "/login/app").await?;
        steps[1] = ms(t.elapsed());

        let t = Instant::now();
        let number = browser.number("/login/app").await?;
        let page_read = Instant::now();
        steps[2] = ms(page_read - t);

        // The phone: the request arrives; the person types the number and the PIN.
        let phone = async {
            let c = match tokio::time::timeout(EVENT_WAIT, events.recv()).await {
                Ok(Some(c)) => c,
                Ok(None) => return Err(Failure::new("phone", None, "event stream gone")),
                Err(_) => {
                    return Err(Failure::new(
                        "phone",
                        None,
                        "no request arrived within 10 s",
                    ))
                }
            };
            let arrived = Instant::now();
            if c.kind != ChallengeKind::PhoneSignIn || !c.pin_required || c.username != p.username {
                return Err(Failure::new(
                    "phone",
                    None,
                    format!(
                        "unexpected request {:?} for {} (PIN {})",
                        c.kind, c.username, c.pin_required
                    ),
                ));
            }
            p.approve(device, &c, &number).await?;
            Ok((arrived, Instant::now()))
        };
        // The page: its script long-polls the status, then submits the completion form.
        let browser_poll = async {
            if !self.poll {
                return Ok(None);
            }
            browser.approved(5).await?;
            Ok::<_, Failure>(Some(Instant::now()))
        };
        let (phone, seen) = tokio::join!(phone, browser_poll);
        let (arrived, answered) = phone?;
        let seen = seen?;
        steps[3] = ms(arrived.saturating_duration_since(page_read));
        steps[4] = ms(answered - arrived);
        steps[5] = seen.map_or(0.0, |s| ms(s.saturating_duration_since(answered)));

        let t = Instant::now();
        browser.complete().await?;
        steps[6] = ms(t.elapsed());
        Ok(steps)
    }
}

// ---------------------------------------------------------------------------------------------
// CPU

/// A thread's group: its name without a trailing number.
fn thread_group(name: &str) -> String {
    name.trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end_matches('-')
        .to_string()
}

#[derive(Clone)]
struct CpuSnap {
    at: Instant,
    /// The whole process, exited threads included.
    process: f64,
    /// The load generator's threads (the main thread and `bench-client`).
    bench: f64,
    /// Every other live thread, by group.
    server_threads: BTreeMap<String, f64>,
    sys: SystemCpu,
}

fn cpu_snap() -> CpuSnap {
    let pid = std::process::id();
    let process = procfs::process_cpu(pid);
    let mut bench = 0.0;
    let mut server_threads = BTreeMap::new();
    for (tid, name, c) in procfs::threads_cpu(pid) {
        if tid == pid || name.starts_with("bench-client") {
            bench += c;
        } else if name.starts_with("sesame-db-write") {
            // Names are cut at 15 bytes: "sesame-db-write".
            *server_threads
                .entry("sesame-db-writer (SQLite writes)".to_string())
                .or_insert(0.0) += c;
        } else {
            *server_threads.entry(thread_group(&name)).or_insert(0.0) += c;
        }
    }
    CpuSnap {
        at: Instant::now(),
        process,
        bench,
        server_threads,
        sys: SystemCpu::now(),
    }
}

// ---------------------------------------------------------------------------------------------
// The load

#[derive(Default)]
struct Tally {
    ok_total: u64,
    ok_in_window: u64,
    failed: u64,
    /// Whole sign-in latency (ms) of sign-ins that completed in the window.
    lat: Vec<f64>,
    steps: Steps,
    errors: BTreeMap<String, u64>,
    examples: Vec<String>,
    user_waits: u64,
    user_wait_secs: f64,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.ok_total += o.ok_total;
        self.ok_in_window += o.ok_in_window;
        self.failed += o.failed;
        self.lat.extend(o.lat);
        for (a, b) in self.steps.iter_mut().zip(o.steps) {
            *a += b;
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_insert(0) += v;
        }
        self.examples.extend(o.examples);
        self.user_waits += o.user_waits;
        self.user_wait_secs += o.user_wait_secs;
    }
}

struct Load {
    tally: Tally,
    window: f64,
    cpu: (CpuSnap, CpuSnap),
    stream_events: u64,
    reconnects: u64,
}

async fn load(
    args: &Args,
    base: String,
    phone_base: String,
    phones: &'static [Phone],
    workers: usize,
) -> Result<Load> {
    let http = http::client(
        "Mozilla/5.0 (X11; Linux x86_64) sesame-phone-bench",
        Duration::from_secs(30),
    )?;
    // One device client (its own connection) per phone, kept for the whole run.
    let devices: &'static [DeviceClient<'static>] = Box::leak(
        phones
            .iter()
            .map(|p| p.client(&phone_base))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );

    eprintln!("[3/4] opening {} event streams ...", phones.len());
    let stats = Arc::new(StreamStats::default());
    let mut receivers: Vec<Option<mpsc::UnboundedReceiver<Challenge>>> = Vec::new();
    // Each stream is kept open (reopened when it ends) and forwards its requests to the
    // worker that owns the user.
    let (opened, first_error) = phone::open_streams(devices.len(), |i, ready| {
        let (tx, rx) = mpsc::unbounded_channel();
        receivers.push(Some(rx));
        let stats = stats.clone();
        tokio::spawn(
            async move { phone::listen(&devices[i], tx, |c| c, ready, true, &stats).await },
        );
    })
    .await;
    if opened < phones.len() {
        bail!(
            "only {opened} of {} event streams opened (first error: {}); raise `ulimit -n`?",
            phones.len(),
            first_error.unwrap_or_default()
        );
    }

    eprintln!(
        "[4/4] {workers} workers: {:.0} s warm-up + {:.0} s measured ...",
        args.warmup, args.seconds
    );
    let ctx = Arc::new(Ctx {
        http,
        base,
        phones,
        devices,
        poll: !args.no_poll,
    });
    let start = Instant::now();
    let window_start = start + Duration::from_secs_f64(args.warmup);
    let end = window_start + Duration::from_secs_f64(args.seconds);
    let sampler = procfs::sample_window(window_start, end, cpu_snap);
    let mut tasks = Vec::new();
    for w in 0..workers {
        // Worker w owns users w, w+C, ...: one sign-in per user at a time, so no request
        // supersedes another worker's.
        let mine: Vec<(usize, mpsc::UnboundedReceiver<Challenge>)> = (w..phones.len())
            .step_by(workers)
            .map(|u| (u, receivers[u].take().expect("each user has one worker")))
            .collect();
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = mine;
            let mut last_start: Vec<Option<Instant>> = vec![None; mine.len()];
            let mut t = Tally::default();
            let mut k = 0;
            while Instant::now() < end {
                if let Some(s) = last_start[k] {
                    let ready = s + MIN_USER_GAP;
                    let now = Instant::now();
                    if ready > now {
                        t.user_waits += 1;
                        t.user_wait_secs += (ready - now).as_secs_f64();
                        tokio::time::sleep_until(ready.into()).await;
                    }
                }
                let t0 = Instant::now();
                last_start[k] = Some(t0);
                let (u, rx) = &mut mine[k];
                let r = match tokio::time::timeout(SIGNIN_TIMEOUT, ctx.sign_in(*u, rx)).await {
                    Ok(r) => r,
                    Err(_) => Err(Failure::new("sign-in", None, "took longer than 30 s")),
                };
                let t1 = Instant::now();
                match r {
                    Ok(steps) => {
                        t.ok_total += 1;
                        if t1 >= window_start && t1 <= end {
                            t.ok_in_window += 1;
                            t.lat.push((t1 - t0).as_secs_f64() * 1000.0);
                            for (a, b) in t.steps.iter_mut().zip(steps) {
                                *a += b;
                            }
                        }
                    }
                    Err(e) => {
                        t.failed += 1;
                        let msg = format!("{} ({})", e, ctx.phones[*u].username);
                        let kind = msg.split(": ").next().unwrap_or("?").to_string();
                        *t.errors.entry(kind).or_insert(0) += 1;
                        if t.examples.len() < 3 {
                            t.examples.push(msg);
                        }
                    }
                }
                k = (k + 1) % mine.len();
            }
            t
        }));
    }
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await?);
    }
    let cpu = sampler.await?;
    Ok(Load {
        tally,
        window: args.seconds,
        cpu,
        stream_events: stats.events.load(Ordering::Relaxed),
        reconnects: stats.reconnects.load(Ordering::Relaxed),
    })
}

// ---------------------------------------------------------------------------------------------

fn run(args: Args) -> Result<bool> {
    let cores = sesame_bench::cores();
    let release = !cfg!(debug_assertions);
    if !release {
        eprintln!("warning: this is a debug build; figures will be far too low (use --release)");
    }
    let workers = args.concurrency.min(args.users);
    // Per user: the event stream and the phone's own connection, each with both ends in this
    // process; per worker: the browser's connections; and SQLite, the runtime, the listener.
    let need = args.users as u64 * 4 + workers as u64 * 4 + 128;
    if let Some(limit) = procfs::open_files_limit() {
        if limit < need {
            bail!(
                "{} users need about {need} open files, the limit is {limit}: run `ulimit -n {}` first",
                args.users,
                need.next_power_of_two()
            );
        }
    }

    // 1. Raw Argon2id, before anything else runs.
    // The hash is made even with --hash-secs 0, as it always was: its Argon2id working memory
    // stays in this process's RSS, which the summary reports.
    let pw = "phone-bench-password-0123";
    let phc = argon::phc(pw)?;
    let rates = if args.hash_secs > 0.0 {
        Some(HashRates::measure("[1/4]", args.hash_secs, cores, &phc, pw))
    } else {
        None
    };
    // What the phone spends once per approval to unseal its PIN key (not the server's work).
    let unseal_ms = {
        let sealed = sesame_authenticator::pinkey::SealedKey::seal(&DeviceKey::generate(), "4826");
        let t = Instant::now();
        let _ = sealed.unseal("4826").map_err(anyhow::Error::msg)?;
        t.elapsed().as_secs_f64() * 1000.0
    };

    // 2. The server: its own runtime, like `sesame serve` (one worker per core by default).
    let server_threads = if args.server_threads == 0 {
        cores
    } else {
        args.server_threads
    };
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_threads)
        .thread_name("sesame-server")
        .enable_all()
        .build()?;
    let dir = tempfile::Builder::new()
        .prefix("sesame-phone-bench-")
        .tempdir()?;
    eprintln!(
        "[2/4] registering {} users (no password; device key, PIN key, phone sign-in on) in {} ...",
        args.users,
        dir.path().display()
    );
    let t = Instant::now();
    if args.nodes == 2 && sesame_bench::setup::backend_name() != "postgresql" {
        bail!("--nodes 2 needs a shared database: set SESAME_BENCH_DATABASE_URL=postgres://...");
    }
    let (mut server, node_b, phones) = server_rt.block_on(async {
        let db = Db::in_memory_key(dir.path()).await?;
        let setup = PhoneSetup {
            password_hash: None,
            phone_sign_in: true,
        };
        let phones = db.add_phones("phone", args.users, &setup).await?;
        let node_b = if args.nodes == 2 {
            Some(db.node().await?)
        } else {
            None
        };
        Ok::<_, anyhow::Error>((db.serve().await?, node_b, phones))
    })?;
    let prep_secs = t.elapsed().as_secs_f64();
    let base = server.base.clone();
    let phone_base = node_b.as_ref().map_or(base.clone(), |b| b.base.clone());
    let phones: &'static [Phone] = Box::leak(phones.into_boxed_slice());
    eprintln!("      done in {prep_secs:.1} s; server at {base}");
    let me = std::process::id();
    let (rss_before, _) = procfs::memory_kib(me);

    // 3-4. The load, on its own runtime.
    let client_rt = sesame_bench::client_runtime(args.client_threads)?;
    let result = client_rt.block_on(load(&args, base.clone(), phone_base, phones, workers));
    let (rss_after, rss_peak) = procfs::memory_kib(me);
    let server_alive = server.is_running();
    // Open event streams would hold a graceful shutdown forever: stop both runtimes outright.
    client_rt.shutdown_timeout(Duration::from_secs(1));
    server.stop();
    drop(node_b);
    server_rt.shutdown_timeout(Duration::from_secs(1));
    let l = result?;

    // Summary.
    let t = &l.tally;
    let rate = t.ok_in_window as f64 / l.window;
    let lat = Latency::of(t.lat.clone());
    let (p50, p90, p99, max) = (lat.p50, lat.p90, lat.p99, lat.max);
    let n = t.ok_in_window.max(1) as f64;
    let (a, z) = &l.cpu;
    let secs = (z.at - a.at).as_secs_f64().max(1e-9);
    let bench_cpu = z.bench - a.bench;
    let server_cpu = (z.process - a.process) - bench_cpu;
    let machine = z.sys.cores_busy_since(&a.sys, cores);
    let other = (machine - (z.process - a.process) / secs).max(0.0);
    let mib = |k: u64| k as f64 / 1024.0;

    let mut out = String::new();
    use std::fmt::Write;
    let _ = writeln!(out, "\n=== sesame-phone-bench summary ===");
    let _ = writeln!(
        out,
        "machine:             {cores} cores; bench build: {}; server in-process on {server_threads} runtime threads, load on {} thread(s)",
        if release { "release" } else { "DEBUG" },
        args.client_threads.max(1)
    );
    let _ = writeln!(
        out,
        "database:            {}{}",
        sesame_bench::setup::backend_name(),
        if args.nodes == 2 {
            "; two nodes: browsers on node A, phones on node B"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "users:               {} (each with one phone and an open event stream; prepared in {prep_secs:.1} s); {workers} workers",
        args.users
    );
    let _ = writeln!(
        out,
        "phone sign-ins/s:    {rate:.1}  ({} ok in the {:.1} s window; {} ok in all, {} FAILED)",
        t.ok_in_window, l.window, t.ok_total, t.failed
    );
    let _ = writeln!(
        out,
        "latency (whole sign-in, 7 HTTP requests + the event): p50 {p50:.1} ms, p90 {p90:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
    );
    let _ = writeln!(out, "mean time per step:");
    for (name, total) in STEP_NAMES.iter().zip(t.steps) {
        let _ = writeln!(out, "    {name:<46} {:.2} ms", total / n);
    }
    if args.no_poll {
        let _ = writeln!(
            out,
            "    (--no-poll: no status long-poll; the completion follows the phone's answer)"
        );
    }
    let _ = writeln!(
        out,
        "event streams:       {} requests delivered, {} reconnects",
        l.stream_events, l.reconnects
    );
    if t.user_waits > 0 {
        let _ = writeln!(
            out,
            "user waits:          {} ({:.1} s in all): a user's next sign-in waited out the server's request budget (at most 2 sign-ins per user per second here); use more --users",
            t.user_waits, t.user_wait_secs
        );
    }
    for (k, v) in &t.errors {
        let _ = writeln!(out, "  failures at {k}: {v}");
    }
    for e in &t.examples {
        let _ = writeln!(out, "  e.g. {e}");
    }
    let _ = writeln!(
        out,
        "CPU (cores busy):    machine {machine:.2} of {cores}; server {:.2}; load generator {:.2}; other processes {other:.2}{}",
        server_cpu / secs,
        bench_cpu / secs,
        procfs::noisy(other)
    );
    let _ = writeln!(
        out,
        "CPU per sign-in:     server {:.2} ms, load generator {:.2} ms",
        1000.0 * server_cpu / n,
        1000.0 * bench_cpu / n
    );
    let _ = writeln!(out, "server CPU by thread:");
    for (name, c) in procfs::cores_by_thread(&a.server_threads, &z.server_threads, secs) {
        if c > 0.0 {
            let _ = writeln!(out, "    {name:<24} {c:.2} cores");
        }
    }
    let _ = writeln!(
        out,
        "memory (server and load generator together, one process): RSS {:.1} MiB before load, {:.1} MiB after; peak {:.1} MiB",
        mib(rss_before),
        mib(rss_after),
        mib(rss_peak)
    );
    match &rates {
        Some(rates) => {
            let _ = writeln!(
                out,
                "raw Argon2id:        {} ({})",
                rates.describe(),
                HashRates::parameters()
            );
            let _ = writeln!(
                out,
                "                     phone sign-ins/s per all-core hash/s: {:.2} (a password sign-in costs the server one hash; a phone sign-in none)",
                rate / rates.all.per_sec.max(1e-9)
            );
        }
        None => {
            let _ = writeln!(out, "raw Argon2id:        not measured (--hash-secs 0)");
        }
    }
    let _ = writeln!(
        out,
        "password+code sign-ins/s: NOT measured here; run `cargo run --release -p sesame-bench --bin sesame-bench`"
    );
    let _ = writeln!(
        out,
        "phone side:          each approval unseals the PIN key with Argon2id on the phone ({unseal_ms:.0} ms on this machine); \
         the simulated phones keep it unsealed, so that cost is not in these figures (it is not the server's work)"
    );
    let mut verdict = Vec::new();
    if t.failed > 0 {
        verdict.push(format!("{} sign-ins failed", t.failed));
    }
    if t.ok_in_window == 0 {
        verdict.push("no sign-in completed in the window".to_string());
    }
    if !server_alive {
        verdict.push("the server stopped during the run".to_string());
    }
    let ok = verdict.is_empty();
    let _ = writeln!(
        out,
        "{}",
        sesame_bench::result_line("PASS (0 failures)", &verdict)
    );
    print!("{out}");

    if let Some(path) = &args.json {
        let steps: serde_json::Map<String, serde_json::Value> = STEP_NAMES
            .iter()
            .zip(t.steps)
            .map(|(k, v)| (k.to_string(), serde_json::json!(v / n)))
            .collect();
        let json = serde_json::json!({
            "cores": cores,
            "release_build": release,
            "server_threads": server_threads,
            "client_threads": args.client_threads.max(1),
            "database": sesame_bench::setup::backend_name(),
            "nodes": args.nodes,
            "users": args.users,
            "workers": workers,
            "status_poll": !args.no_poll,
            "window_secs": l.window,
            "phone_signins_per_sec": rate,
            "ok_in_window": t.ok_in_window,
            "ok_total": t.ok_total,
            "failed": t.failed,
            "errors": t.errors,
            "error_examples": t.examples,
            "latency_ms": {"p50": p50, "p90": p90, "p99": p99, "max": max},
            "mean_step_ms": steps,
            "user_waits": t.user_waits,
            "stream_events": l.stream_events,
            "stream_reconnects": l.reconnects,
            "cpu": {
                "machine_cores_busy": machine,
                "server_cores": server_cpu / secs,
                "bench_cores": bench_cpu / secs,
                "other_processes_cores": other,
                "server_cpu_ms_per_signin": 1000.0 * server_cpu / n,
                "bench_cpu_ms_per_signin": 1000.0 * bench_cpu / n,
            },
            "memory_kib": {"rss_before": rss_before, "rss_after": rss_after, "peak": rss_peak},
            "argon2id": rates.as_ref().map(|r| serde_json::json!({
                "one_core_hashes_per_sec": r.one.per_sec,
                "all_cores_threads": r.all.threads,
                "all_cores_hashes_per_sec": r.all.per_sec,
            })),
            "phone_unseal_ms": unseal_ms,
            "pass": ok,
            "failures": verdict,
        });
        write_json(path, &json)?;
    }
    Ok(ok)
}
