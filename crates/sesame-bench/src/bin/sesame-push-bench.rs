//! `sesame-push-bench`: how fast sign-in requests reach connected phones, and what an idle
//! connected phone costs the server.
//!
//! (a) Latency: an in-process server on 127.0.0.1 with N devices holding real SSE streams;
//!     challenges are created exactly as the sign-in page does (store insert, then hub
//!     publish) and the time until the event arrives at the device is measured.
//! (b) Memory: the real `sesame` binary as a child process with M devices registered; M event
//!     streams are opened from this process and the server's RSS growth per device is reported.
//!
//! Only 127.0.0.1 is contacted; every phase is bounded in time. (b) needs `ulimit -n` above
//! M + a margin for both processes (e.g. `ulimit -n 65536` in the shell that runs it).

use anyhow::{bail, Result};
use clap::Parser;
use sesame_bench::http::{self, Browser, Failure};
use sesame_bench::phone::{self, Phone, StreamStats};
use sesame_bench::process::{self, ServerProcess};
use sesame_bench::setup::{Db, PhoneSetup};
use sesame_bench::stats::Latency;
use sesame_bench::{argon, procfs, write_json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const PASSWORD: &str = "push-bench-password-1";

#[derive(Parser, Debug)]
#[command(
    name = "sesame-push-bench",
    about = "Sign-in request delivery latency to connected devices, and server memory per idle connected device."
)]
struct Args {
    /// Devices connected during the latency measurement.
    #[arg(long, default_value_t = 1000)]
    latency_devices: usize,
    /// Challenges sent (one at a time, to random devices) to measure latency.
    #[arg(long, default_value_t = 500)]
    samples: usize,
    /// Idle devices connected to the real server for the memory measurement (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    idle_devices: usize,
    /// The sesame binary (default: next to this one).
    #[arg(long)]
    sesame_bin: Option<PathBuf>,
    /// Users for the complete notification sign-in phase (0 skips it).
    #[arg(long, default_value_t = 2000)]
    signin_users: usize,
    /// Concurrent sign-in workers in that phase.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds of that phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Also write the summary as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Measure latency across two nodes: requests are created on one node while the devices'
    /// event streams are held by the other (needs PostgreSQL: SESAME_BENCH_DATABASE_URL).
    #[arg(long)]
    cross_node: bool,
}

/// Opens the event streams of `phones`, 200 at a time; each forwards (index, arrival time) of
/// every request it receives. Returns how many opened.
async fn connect_all(
    base: &str,
    phones: Arc<Vec<Phone>>,
    tx: mpsc::UnboundedSender<(usize, Instant)>,
) -> usize {
    let stats = Arc::new(StreamStats::default());
    let (connected, _) = phone::open_streams(phones.len(), |i, ready| {
        let (base, phones, tx, stats) =
            (base.to_string(), phones.clone(), tx.clone(), stats.clone());
        tokio::spawn(async move {
            let device = phones[i].client(&base);
            phone::listen(&device, tx, |_| (i, Instant::now()), ready, false, &stats).await
        });
    })
    .await;
    connected
}

async fn latency(args: &Args) -> Result<serde_json::Value> {
    let dir = tempfile::tempdir()?;
    let n = args.latency_devices;
    eprintln!("[a] registering {n} devices and opening their event streams ...");
    let db = Db::in_memory_key(dir.path()).await?;
    let phones = Arc::new(db.add_phones("push", n, &PhoneSetup::default()).await?);
    // Across nodes, the streams are held by a second node on the same database.
    let other = if args.cross_node {
        if sesame_bench::setup::backend_name() != "postgresql" {
            bail!("--cross-node needs a shared database: set SESAME_BENCH_DATABASE_URL=postgres://...");
        }
        Some(db.node().await?)
    } else {
        None
    };
    let srv = db.serve().await?;
    let streams_on = other.as_ref().map_or(&srv.base, |o| &o.base);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let connected = connect_all(streams_on, phones.clone(), tx).await;
    if connected < n {
        bail!("only {connected} of {n} event streams opened (raise `ulimit -n`?)");
    }
    // Give the subscriptions a moment to settle, then send requests one at a time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut lat_ms = Vec::with_capacity(args.samples);
    let mut missed = 0;
    for k in 0..args.samples {
        let i = (k * 7919) % n;
        let t0 = Instant::now();
        srv.send_request(&phones[i], k).await?;
        let deadline = t0 + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some((j, at))) if j == i => {
                    lat_ms.push((at - t0).as_secs_f64() * 1000.0);
                    break;
                }
                Ok(Some(_)) => continue,
                _ => {
                    missed += 1;
                    break;
                }
            }
        }
    }
    let samples = lat_ms.len();
    let Latency { p50, p99, max, .. } = Latency::of(lat_ms);
    let backend = sesame_bench::setup::backend_name();
    let path = if args.cross_node {
        "created on node A, stream on node B"
    } else {
        "one node"
    };
    println!(
        "(a) challenge created -> event at the device ({backend}, {path}), {n} devices connected, {samples} samples: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms, missed {missed}"
    );
    drop(other);
    Ok(
        serde_json::json!({"backend": backend, "cross_node": args.cross_node, "devices": n, "samples": samples, "missed": missed, "p50_ms": p50, "p99_ms": p99, "max_ms": max}),
    )
}

/// The real server on a free loopback port, logging warnings to this terminal, once it answers.
async fn start_server(bin: &Path, data_dir: &Path) -> Result<ServerProcess> {
    let opts = process::Options {
        filter: Some("warn"),
        env: &[],
        log: process::Log::Terminal,
    };
    ServerProcess::start_healthy(bin, data_dir, &opts, &reqwest::Client::new()).await
}

async fn memory(args: &Args) -> Result<serde_json::Value> {
    let m = args.idle_devices;
    let bin = process::server_bin(args.sesame_bin.as_deref())?;
    let dir = tempfile::tempdir()?;
    eprintln!(
        "[b] registering {m} devices in {} ...",
        dir.path().display()
    );
    let phones = {
        let db = Db::in_data_dir(dir.path()).await?;
        db.add_phones("push", m, &PhoneSetup::default()).await?
    };
    let mut server = start_server(&bin, dir.path()).await?;
    let phones = Arc::new(phones);
    let before = procfs::memory_kib(server.pid).0;
    eprintln!(
        "[b] server RSS before: {:.1} MiB; opening {m} event streams ...",
        before as f64 / 1024.0
    );
    let (tx, _rx) = mpsc::unbounded_channel();
    let connected = connect_all(&server.base, phones.clone(), tx).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = procfs::memory_kib(server.pid).0;
    server.kill();
    if connected < m {
        bail!("only {connected} of {m} event streams opened (raise `ulimit -n` for this shell)");
    }
    let per_device = (after.saturating_sub(before)) as f64 / m as f64;
    println!(
        "(b) {m} idle connected devices: server RSS {:.1} MiB -> {:.1} MiB, {per_device:.1} KiB per device",
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
    Ok(
        serde_json::json!({"devices": m, "rss_before_kib": before, "rss_after_kib": after, "kib_per_device": per_device}),
    )
}

/// One complete notification sign-in: username, password, push answered by the device with
/// the number read from the page, completion. Errors describe the first surprise.
async fn push_sign_in(http: &reqwest::Client, base: &str, p: &Phone) -> Result<(), Failure> {
    let mut browser = Browser::open(http, base).await?;
    browser.username(&p.username, "/login/password").await?;
    browser.password(PASSWORD).await?;
    let number = browser.number("/login/verify").await?;
    let device = p.client(base);
    let pending = |e: &dyn std::fmt::Display| Failure::new("GET pending", None, e);
    let challenge = device
        .pending()
        .await
        .map_err(|e| pending(&e))?
        .challenges
        .into_iter()
        .next()
        .ok_or_else(|| pending(&"no pending request"))?;
    p.approve(&device, &challenge, &number).await?;
    browser.complete().await
}

async fn signins(args: &Args) -> Result<serde_json::Value> {
    let n = args.signin_users;
    let c = args.concurrency.clamp(1, n);
    let dir = tempfile::tempdir()?;
    eprintln!("[c] registering {n} users with a password and a device ...");
    let setup = PhoneSetup {
        password_hash: Some(argon::phc(PASSWORD)?),
        phone_sign_in: false,
    };
    let phones = {
        let db = Db::in_data_dir(dir.path()).await?;
        Arc::new(db.add_phones("push", n, &setup).await?)
    };
    let bin = process::server_bin(args.sesame_bin.as_deref())?;
    let mut server = start_server(&bin, dir.path()).await?;
    let base = server.base.clone();
    eprintln!(
        "[c] {c} workers, {} s of complete notification sign-ins ...",
        args.seconds
    );
    let http = http::client("sesame-push-bench", Duration::from_secs(30))?;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..c {
        let (http, base, phones) = (http.clone(), base.clone(), phones.clone());
        // Worker w owns users w, w+c, ...: one sign-in per user at a time, so no request
        // supersedes another worker's.
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut lat, mut first_error) = (0usize, 0usize, Vec::new(), None);
            let mut u = w;
            while Instant::now() < deadline {
                let t = Instant::now();
                match push_sign_in(&http, &base, &phones[u]).await {
                    Ok(()) => {
                        ok += 1;
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert(e.to_string());
                    }
                }
                u = (u + c) % phones.len();
            }
            (ok, failed, lat, first_error)
        }));
    }
    let (mut ok, mut failed, mut lat, mut errors) = (0, 0, Vec::new(), Vec::new());
    for t in tasks {
        let (o, f, l, e) = t.await?;
        ok += o;
        failed += f;
        lat.extend(l);
        errors.extend(e);
    }
    let secs = started.elapsed().as_secs_f64();
    server.kill();
    let lat = Latency::of(lat);
    let rate = ok as f64 / secs;
    println!(
        "(c) complete notification sign-ins: {rate:.1}/s ({ok} ok, {failed} failed in {secs:.1} s, {c} workers); latency p50 {:.0} ms, p99 {:.0} ms",
        lat.p50, lat.p99
    );
    if let Some(e) = errors.first() {
        println!("    first failure: {e}");
    }
    if failed * 200 > ok + failed {
        bail!("more than 0.5% of sign-ins failed");
    }
    Ok(
        serde_json::json!({"per_second": rate, "ok": ok, "failed": failed, "workers": c, "p50_ms": lat.p50, "p99_ms": lat.p99}),
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let a = latency(&args).await?;
    let b = if args.idle_devices > 0 {
        memory(&args).await?
    } else {
        serde_json::Value::Null
    };
    let c = if args.signin_users > 0 {
        signins(&args).await?
    } else {
        serde_json::Value::Null
    };
    if let Some(path) = &args.json {
        let summary = serde_json::json!({"latency": a, "memory": b, "notification_sign_ins": c});
        write_json(path, &summary)?;
    }
    Ok(())
}
