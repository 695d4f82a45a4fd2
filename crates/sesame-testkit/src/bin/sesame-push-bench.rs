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

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use clap::Parser;
use sesame_authenticator::client::DeviceClient;
use sesame_authenticator::device::DeviceKey;
use sesame_core::secret::SecretBytes;
use sesame_proto::device::{DeviceEvent, ALG_ES256};
use sesame_store::sqlite::SqliteStore;
use sesame_store::{MasterKey, NewChallenge, NewDevice, NewUser, Store};
use sesame_testkit::bench::percentile;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

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
}

fn real_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

struct Phone {
    user: sesame_core::UserId,
    username: String,
    device_id: String,
    key: DeviceKey,
}

/// Registers `n` users, each with one device, directly in the store.
async fn register(store: &dyn Store, n: usize, now: i64) -> Result<Vec<Phone>> {
    register_with(store, n, now, None).await
}

async fn register_with(
    store: &dyn Store,
    n: usize,
    now: i64,
    password_hash: Option<String>,
) -> Result<Vec<Phone>> {
    let tenant = store.default_tenant().await?;
    let mut phones = Vec::with_capacity(n);
    for i in 0..n {
        let username = format!("push{i:05}");
        let user = store
            .create_user(
                NewUser {
                    tenant,
                    username: username.clone(),
                    display_name: username.clone(),
                    password_hash: password_hash.clone(),
                    is_admin: false,
                },
                now,
            )
            .await?;
        let key = DeviceKey::generate();
        let code_hash = format!("bench-activation-{i}").into_bytes();
        store
            .create_activation(user.id, &code_hash, now + 600)
            .await?;
        let public_key = URL_SAFE_NO_PAD.decode(key.public_key())?;
        let new = NewDevice {
            tenant,
            user: user.id,
            name: format!("bench phone {i}"),
            alg: ALG_ES256.into(),
            public_key,
        };
        let device = store
            .create_device(new, &code_hash, &SecretBytes::new(vec![7; 20]), now)
            .await?;
        phones.push(Phone {
            user: user.id,
            username,
            device_id: device.id,
            key,
        });
    }
    Ok(phones)
}

/// Opens the event streams of `phones`, 200 at a time; each forwards (index, arrival time) of
/// every challenge it receives.
async fn connect_all(
    base: &str,
    phones: Arc<Vec<Phone>>,
    tx: mpsc::UnboundedSender<(usize, Instant)>,
) -> Result<usize> {
    let mut connected = 0;
    for chunk in (0..phones.len()).collect::<Vec<_>>().chunks(200) {
        let (ready_tx, mut ready_rx) = mpsc::channel::<bool>(chunk.len());
        for &i in chunk {
            let phones = phones.clone();
            let base = base.to_string();
            let tx = tx.clone();
            let ready = ready_tx.clone();
            tokio::spawn(async move {
                let p = &phones[i];
                let client = DeviceClient::new(&base, &p.device_id, &p.key);
                let mut stream = match client.events().await {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ready.send(false).await;
                        return;
                    }
                };
                let _ = ready.send(true).await;
                drop(ready);
                while let Ok(Some(ev)) = stream.next().await {
                    if matches!(ev, DeviceEvent::Challenge(_))
                        && tx.send((i, Instant::now())).is_err()
                    {
                        return;
                    }
                }
            });
        }
        drop(ready_tx);
        for _ in 0..chunk.len() {
            match ready_rx.recv().await {
                Some(ok) => connected += ok as usize,
                None => break,
            }
        }
    }
    Ok(connected)
}

async fn latency(args: &Args) -> Result<serde_json::Value> {
    let srv = sesame_testkit::TestServer::spawn().await;
    srv.clock.set(real_now());
    let n = args.latency_devices;
    eprintln!("[a] registering {n} devices and opening their event streams ...");
    let phones = Arc::new(register(&*srv.store, n, real_now()).await?);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let connected = connect_all(&srv.base, phones.clone(), tx).await?;
    if connected < n {
        bail!("only {connected} of {n} event streams opened (raise `ulimit -n`?)");
    }
    // Give the subscriptions a moment to settle, then send challenges one at a time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut lat_ms = Vec::with_capacity(args.samples);
    let mut missed = 0;
    let policy = sesame_core::policy::MethodsPolicy::initial(&srv.state.config.push);
    for k in 0..args.samples {
        let i = (k * 7919) % n;
        let p = &phones[i];
        let t0 = Instant::now();
        let (c, superseded) = srv
            .store
            .create_challenge(
                NewChallenge {
                    tenant: srv.state.tenant,
                    user: p.user,
                    signin_id_hash: vec![k as u8; 32],
                    kind: "mfa".into(),
                    number: "42".into(),
                    app_name: "bench".into(),
                    ip: "127.0.0.1".into(),
                    location: "This computer".into(),
                    user_agent: "bench".into(),
                    expires_at: real_now() + 120,
                },
                real_now(),
                None,
            )
            .await?;
        for id in superseded {
            srv.state.hub.publish(
                p.user,
                DeviceEvent::Closed {
                    id,
                    reason: "superseded".into(),
                },
            );
        }
        srv.state.hub.publish(
            p.user,
            DeviceEvent::Challenge(sesame_server::device_api::challenge_view(
                &c,
                &p.username,
                &policy.authenticator,
            )),
        );
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
    lat_ms.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let (p50, p99, max) = (
        percentile(&lat_ms, 0.5),
        percentile(&lat_ms, 0.99),
        *lat_ms.last().unwrap_or(&f64::NAN),
    );
    println!(
        "(a) challenge created -> event at the device, {n} devices connected, {} samples: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms, missed {missed}",
        lat_ms.len()
    );
    Ok(
        serde_json::json!({"devices": n, "samples": lat_ms.len(), "missed": missed, "p50_ms": p50, "p99_ms": p99, "max_ms": max}),
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn memory(args: &Args) -> Result<serde_json::Value> {
    let m = args.idle_devices;
    let bin = sesame_bin(args)?;
    let dir = tempfile::tempdir()?;
    let key = MasterKey::load_or_create(&dir.path().join("master.key"))?;
    eprintln!(
        "[b] registering {m} devices in {} ...",
        dir.path().display()
    );
    let phones = {
        let store = SqliteStore::open(&dir.path().join("sesame.db"), key).await?;
        register(&store, m, real_now()).await?
    };
    let (mut child, base) = start_server(&bin, dir.path()).await?;
    // Warm the server's allocator and pools with a few streams first, so the baseline is fair.
    let phones = Arc::new(phones);
    let before = rss_kib(child.id());
    eprintln!(
        "[b] server RSS before: {:.1} MiB; opening {m} event streams ...",
        before as f64 / 1024.0
    );
    let (tx, _rx) = mpsc::unbounded_channel();
    let connected = connect_all(&base, phones.clone(), tx).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
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

fn sesame_bin(args: &Args) -> Result<PathBuf> {
    Ok(match &args.sesame_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("sesame"),
    })
}

/// Starts the real server on a free loopback port and waits for /healthz.
async fn start_server(
    bin: &std::path::Path,
    data_dir: &std::path::Path,
) -> Result<(std::process::Child, String)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    let mut child = std::process::Command::new(bin)
        .args([
            "--data-dir",
            data_dir.to_str().context("utf-8 path")?,
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("SESAME_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while reqwest::get(format!("{base}/healthz"))
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            bail!("the server did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((child, base))
}

const PASSWORD: &str = "push-bench-password-1";

/// A browser's cookies, enough for the sign-in pages.
#[derive(Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn absorb(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all("set-cookie") {
            let Ok(v) = v.to_str() else { continue };
            let Some((k, val)) = v.split(';').next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            self.0.retain(|(n, _)| n != k);
            if !v.contains("Max-Age=0") {
                self.0.push((k.to_string(), val.to_string()));
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn between<'a>(body: &'a str, start: &str, end: char) -> Option<&'a str> {
    let i = body.find(start)? + start.len();
    Some(&body[i..i + body[i..].find(end)?])
}

/// One complete notification sign-in: username, password, push answered by the device with
/// the number read from the page, completion. Errors describe the first surprise.
async fn push_sign_in(http: &reqwest::Client, base: &str, p: &Phone) -> Result<()> {
    use sesame_proto::device::{approval_message, Decision, RespondRequest};
    let mut jar = Jar::default();
    let r = http.get(format!("{base}/login")).send().await?;
    jar.absorb(&r);
    let body = r.text().await?;
    let csrf = between(&body, "name=\"csrf\" value=\"", '"')
        .context("no csrf")?
        .to_string();
    let form = |fields: &[(&str, &str)]| {
        let mut f = form_urlencoded::Serializer::new(String::new());
        f.append_pair("csrf", &csrf);
        for (k, v) in fields {
            f.append_pair(k, v);
        }
        f.finish()
    };
    let post = |path: &str, body: String, cookies: String| {
        http.post(format!("{base}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookies)
            .body(body)
            .send()
    };
    let r = post("/login", form(&[("username", &p.username)]), jar.header()).await?;
    jar.absorb(&r);
    let r = post(
        "/login/password",
        form(&[("password", PASSWORD)]),
        jar.header(),
    )
    .await?;
    if r.headers().get("location").and_then(|l| l.to_str().ok()) != Some("/login/verify") {
        bail!("password step answered {}", r.status());
    }
    let page = http
        .get(format!("{base}/login/verify"))
        .header("cookie", jar.header())
        .send()
        .await?
        .text()
        .await?;
    let number = between(&page, "id=\"push-number\" aria-live=\"polite\">", '<')
        .context("no number on the page")?
        .to_string();
    let device = DeviceClient::new(base, &p.device_id, &p.key);
    let challenge = device
        .pending()
        .await?
        .challenges
        .into_iter()
        .next()
        .context("no pending request")?;
    let msg = approval_message(
        &challenge.id,
        &challenge.nonce,
        Decision::Approve,
        &number,
        &p.device_id,
    );
    let answer = RespondRequest {
        challenge_id: challenge.id,
        decision: Decision::Approve,
        number,
        signature: p.key.sign(&msg),
        pin_signature: None,
    };
    let outcome = device.respond(&answer).await?.outcome;
    if outcome != "approved" {
        bail!("answer was {outcome}");
    }
    let r = post("/login/push/complete", form(&[]), jar.header()).await?;
    if r.headers().get("location").and_then(|l| l.to_str().ok()) != Some("/account") {
        bail!("completion answered {}", r.status());
    }
    Ok(())
}

async fn signins(args: &Args) -> Result<serde_json::Value> {
    let n = args.signin_users;
    let c = args.concurrency.clamp(1, n);
    let dir = tempfile::tempdir()?;
    let key = MasterKey::load_or_create(&dir.path().join("master.key"))?;
    eprintln!("[c] registering {n} users with a password and a device ...");
    let hash = sesame_core::password::hash(
        &sesame_core::secret::SecretString::new(PASSWORD.into()),
        &mut rand::rngs::OsRng,
    )?;
    let phones = {
        let store = SqliteStore::open(&dir.path().join("sesame.db"), key).await?;
        Arc::new(register_with(&store, n, real_now(), Some(hash)).await?)
    };
    let (mut child, base) = start_server(&sesame_bin(args)?, dir.path()).await?;
    eprintln!(
        "[c] {c} workers, {} s of complete notification sign-ins ...",
        args.seconds
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
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
    let _ = child.kill();
    let _ = child.wait();
    lat.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let rate = ok as f64 / secs;
    println!(
        "(c) complete notification sign-ins: {rate:.1}/s ({ok} ok, {failed} failed in {secs:.1} s, {c} workers); latency p50 {:.0} ms, p99 {:.0} ms",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    if let Some(e) = errors.first() {
        println!("    first failure: {e}");
    }
    if failed * 200 > ok + failed {
        bail!("more than 0.5% of sign-ins failed");
    }
    Ok(
        serde_json::json!({"per_second": rate, "ok": ok, "failed": failed, "workers": c, "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99)}),
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
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)?;
    }
    Ok(())
}
