//! `sesame-oidc-bench`: OpenID Connect token endpoint throughput of the real `sesame` binary,
//! beside a reference nobody here wrote (node `oidc-provider`) and this disk's synchronous
//! commit rate, all in one run.
//!
//! Phases:
//! 1. The disk: single SQLite commits per second (WAL, `synchronous=FULL`, one row each) in a
//!    scratch database on the file system of the data directory.
//! 2. Sesame: a fresh data directory with one user (password + TOTP) and one confidential
//!    client allowed client credentials (`sesame client add`), the server pinned to one core
//!    (`--server-core`). The user signs in once; `--codes` authorization codes are minted
//!    through `/oauth/authorize?prompt=none` (not timed).
//! 3. `wrk` pinned to another core (`--client-core`) drives `POST /oauth/token` with client
//!    credentials for `--duration` s against the server on its core; then, with the server on
//!    every core (the goal is about the disk), code exchanges for `--exchange-secs` s each with
//!    RS256 and with ES256 ID tokens: every code once, the code consumed and a refresh token
//!    stored durably.
//! 4. The reference, `node bench/oidc/reference.mjs` (run `npm ci` in `bench/oidc` first),
//!    pinned to the same server core, with the same client-credentials load.
//!
//! Goals (issue 12): client credentials at least 3x the reference per core; code exchange at
//! least 50% of the disk's synchronous commit rate. Everything targets 127.0.0.1 only.

use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::Parser;
use sesame_bench::http::{self, Browser};
use sesame_bench::process::{self, ServerProcess};
use sesame_bench::setup::Db;
use sesame_bench::{argon, unix_now, write_json};
use sesame_core::totp;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "bench-password-0123";
const REDIRECT: &str = "http://127.0.0.1:9/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

#[derive(Parser, Debug)]
#[command(
    name = "sesame-oidc-bench",
    version,
    about = "OpenID Connect token endpoint throughput: Sesame vs node oidc-provider per core, and code exchanges vs the disk's synchronous commit rate.",
    long_about = "Needs `wrk` (apt-get install wrk) and, for the reference, `npm ci` in bench/oidc.\n\n\
        Example: cargo build --release -p sesame -p sesame-bench && \\\n  \
        target/release/sesame-oidc-bench --json oidc-bench.json"
)]
struct Args {
    /// The `sesame` binary (default: next to this one).
    #[arg(long)]
    sesame_bin: Option<PathBuf>,
    /// Where the reference provider lives (reference.mjs and its node_modules).
    #[arg(long, default_value = "bench/oidc")]
    reference_dir: PathBuf,
    /// Skip the reference (only Sesame and the disk are measured).
    #[arg(long)]
    no_reference: bool,
    /// The core the servers run on.
    #[arg(long, default_value_t = 1)]
    server_core: usize,
    /// The core wrk runs on.
    #[arg(long, default_value_t = 0)]
    client_core: usize,
    /// wrk connections.
    #[arg(short, long, default_value_t = 64)]
    connections: usize,
    /// Seconds of client-credentials load (each server).
    #[arg(short, long, default_value_t = 10)]
    duration: u64,
    /// Authorization codes to mint for each of the two exchange runs (more than a run uses:
    /// running out shows as failed requests).
    #[arg(long, default_value_t = 60_000)]
    codes: usize,
    /// Seconds of code exchanges (each of the two runs).
    #[arg(long, default_value_t = 5)]
    exchange_secs: u64,
    /// Write the summary here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

/// Single-row commits per second on the file system of `dir`, durably.
fn fsync_rate(dir: &Path, secs: f64) -> Result<f64> {
    let path = dir.join("fsync-probe.db");
    let c = rusqlite::Connection::open(&path)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")?;
    let start = Instant::now();
    let mut n = 0u64;
    let mut st = c.prepare("INSERT INTO t (v) VALUES (?)")?;
    while start.elapsed().as_secs_f64() < secs {
        st.execute([vec![0u8; 64]])?;
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(st);
    drop(c);
    for f in ["fsync-probe.db", "fsync-probe.db-wal", "fsync-probe.db-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    Ok(rate)
}

/// Lets `pid` run on every core again.
fn pin_all(pid: u32) -> Result<()> {
    let all = format!("0-{}", sesame_bench::cores().saturating_sub(1));
    let ok = Command::new("taskset")
        .args(["-a", "-cp", &all, &pid.to_string()])
        .stdout(Stdio::null())
        .status()?
        .success();
    if !ok {
        bail!("taskset could not unpin process {pid}");
    }
    Ok(())
}

/// Registers a confidential client with `sesame client add`: its id and secret.
fn add_client(bin: &Path, data: &Path, name: &str, alg: &str) -> Result<(String, String)> {
    let mut cmd = Command::new(bin);
    // The database the benchmark filled, when it is not the embedded one (see `setup::Db`).
    if let Ok(url) = std::fs::read_to_string(data.join(sesame_bench::setup::URL_FILE)) {
        cmd.env("SESAME_DATABASE_URL", url.trim());
    }
    let out = cmd
        .arg("--data-dir")
        .arg(data)
        .args(["--json", "client", "add", name, "--redirect-uri", REDIRECT])
        .args([
            "--first-party",
            "--client-credentials",
            "--id-token-alg",
            alg,
        ])
        .output()?;
    if !out.status.success() {
        bail!(
            "sesame client add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let added: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok((
        added["client"]["client_id"]
            .as_str()
            .context("client_id")?
            .to_string(),
        added["client_secret"]
            .as_str()
            .context("client_secret")?
            .to_string(),
    ))
}

/// `n` authorization codes for `client_id`, through `/oauth/authorize?prompt=none` with the
/// session `cookie`, 32 at a time.
async fn mint(
    web: &reqwest::Client,
    base: &str,
    cookie: &str,
    client_id: &str,
    n: usize,
) -> Result<Vec<String>> {
    let url = format!(
        "{base}/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope=openid&prompt=none&code_challenge={CHALLENGE}&code_challenge_method=S256",
        form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    );
    let mut tasks = tokio::task::JoinSet::new();
    let per = n.div_ceil(32);
    for _ in 0..32 {
        let (web, url, cookie) = (web.clone(), url.clone(), cookie.to_string());
        tasks.spawn(async move {
            let mut got = Vec::with_capacity(per);
            for _ in 0..per {
                let resp = web
                    .get(&url)
                    .header(reqwest::header::COOKIE, &cookie)
                    .send()
                    .await?;
                let loc = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let code = url::Url::parse(&loc)
                    .ok()
                    .and_then(|u| {
                        u.query_pairs()
                            .find(|(k, _)| k == "code")
                            .map(|(_, v)| v.into_owned())
                    })
                    .with_context(|| format!("no code in {loc:?}"))?;
                got.push(code);
            }
            anyhow::Ok(got)
        });
    }
    let mut codes = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        codes.extend(r??);
    }
    codes.truncate(n);
    Ok(codes)
}

fn pin(pid: u32, core: usize) -> Result<()> {
    let ok = Command::new("taskset")
        .args(["-a", "-cp", &core.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("taskset (util-linux) is needed to pin the server to a core")?
        .success();
    if !ok {
        bail!("taskset could not pin process {pid} to core {core}");
    }
    Ok(())
}

/// What wrk reported.
#[derive(Debug, Clone, serde::Serialize)]
struct Wrk {
    requests: u64,
    per_sec: f64,
    non_2xx: u64,
    errors: u64,
    p50_ms: f64,
    p99_ms: f64,
}

fn ms(s: &str) -> f64 {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let v: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        _ => f64::NAN,
    }
}

fn run_wrk(core: usize, conns: usize, secs: u64, script: &Path, url: &str) -> Result<Wrk> {
    let out = Command::new("taskset")
        .args(["-c", &core.to_string(), "wrk", "-t1"])
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .context("wrk is needed: apt-get install wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let errors = field("Socket errors:")
        .map(|s| {
            s.split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Ok(Wrk {
        requests,
        per_sec: field("Requests/sec:")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0),
        non_2xx: field("Non-2xx or 3xx responses:")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        errors,
        p50_ms: field("50%").map(|s| ms(&s)).unwrap_or(f64::NAN),
        p99_ms: field("99%").map(|s| ms(&s)).unwrap_or(f64::NAN),
    })
}

fn basic(id: &str, secret: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
}

fn cc_script(dir: &Path, auth: &str) -> Result<PathBuf> {
    let path = dir.join("client-credentials.lua");
    std::fs::write(
        &path,
        format!(
            "wrk.method = \"POST\"\n\
             wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n\
             wrk.headers[\"Authorization\"] = \"Basic {auth}\"\n\
             wrk.body = \"grant_type=client_credentials\"\n"
        ),
    )?;
    Ok(path)
}

/// Each request takes the next code from `codes`; past the last one the same code again (which
/// fails: the run then reports it, and more codes must be minted).
fn exchange_script(dir: &Path, name: &str, auth: &str, codes: &Path) -> Result<PathBuf> {
    let path = dir.join(name);
    let redirect: String = form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect();
    std::fs::write(
        &path,
        format!(
            "local codes = {{}}\n\
             for line in io.lines(\"{codes}\") do codes[#codes + 1] = line end\n\
             local i = 0\n\
             local headers = {{[\"Content-Type\"] = \"application/x-www-form-urlencoded\", [\"Authorization\"] = \"Basic {auth}\"}}\n\
             request = function()\n\
               i = i + 1\n\
               local c = codes[i] or codes[#codes]\n\
               return wrk.format(\"POST\", nil, headers, \"grant_type=authorization_code&code=\" .. c .. \"&redirect_uri={redirect}&code_verifier={VERIFIER}\")\n\
             end\n",
            codes = codes.display()
        ),
    )?;
    Ok(path)
}

async fn run(args: Args) -> Result<()> {
    let bin = process::server_bin(args.sesame_bin.as_deref())?;
    let work = tempfile::tempdir()?;
    let data = work.path().join("data");
    std::fs::create_dir_all(&data)?;

    eprintln!("1/4 disk: synchronous commits for 3 s ...");
    let commits = fsync_rate(work.path(), 3.0)?;
    eprintln!("    {commits:.0} commits/s");

    eprintln!("2/4 sesame: a user, a client, {} codes ...", args.codes);
    let db = Db::in_data_dir(&data).await?;
    let user = db
        .add_code_users("oidc", 1, &argon::phc(PASSWORD)?)
        .await?
        .remove(0);
    drop(db);
    let (client_id, secret) = add_client(&bin, &data, "Bench App", "RS256")?;
    let auth = basic(&client_id, &secret);
    let (es_id, es_secret) = add_client(&bin, &data, "Bench App ES256", "ES256")?;

    let mut server = ServerProcess::start(
        &bin,
        &data,
        &process::Options {
            filter: Some("warn"),
            env: &[],
            log: process::Log::File,
        },
    )?;
    let web = http::client("sesame-oidc-bench", Duration::from_secs(30))?;
    server.wait_healthy(&web).await?;
    let base = server.base.clone();
    let mut b = Browser::open(&web, &base)
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    b.username(&user.username, "/login/password")
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    b.password(PASSWORD)
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    b.code(&totp::code_at(&user.secret, unix_now()))
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let cookie = b.jar.header();
    let started = Instant::now();
    let codes = mint(&web, &base, &cookie, &client_id, args.codes).await?;
    let es_codes = mint(&web, &base, &cookie, &es_id, args.codes).await?;
    let minted_per_sec = (codes.len() + es_codes.len()) as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "    {} codes minted ({minted_per_sec:.0}/s)",
        codes.len() + es_codes.len()
    );

    eprintln!(
        "3/4 sesame: client credentials for {} s on core {}, then the code exchanges on every core ...",
        args.duration, args.server_core
    );
    pin(server.pid, args.server_core)?;
    let token_url = format!("{base}/oauth/token");
    let cc = run_wrk(
        args.client_core,
        args.connections,
        args.duration,
        &cc_script(work.path(), &auth)?,
        &token_url,
    )?;
    eprintln!("    client credentials: {:.0}/s", cc.per_sec);
    // The exchange goal is about the disk, not a core: the server gets every core back (wrk
    // keeps its own). Each code is used once; more codes than the run can use are minted.
    pin_all(server.pid)?;
    let exchange = |name: &str, auth: &str, codes: &[String]| -> Result<Wrk> {
        let file = work.path().join(format!("{name}.codes"));
        std::fs::write(&file, codes.join("\n") + "\n")?;
        let script = exchange_script(work.path(), &format!("{name}.lua"), auth, &file)?;
        run_wrk(
            args.client_core,
            args.connections,
            args.exchange_secs,
            &script,
            &token_url,
        )
    };
    let ex = exchange("rs256", &auth, &codes)?;
    eprintln!("    code exchange (RS256 ID tokens): {:.0}/s", ex.per_sec);
    let es = exchange("es256", &basic(&es_id, &es_secret), &es_codes)?;
    eprintln!("    code exchange (ES256 ID tokens): {:.0}/s", es.per_sec);
    drop(server);

    let reference = if args.no_reference {
        None
    } else {
        eprintln!(
            "4/4 reference: node oidc-provider, client credentials for {} s ...",
            args.duration
        );
        let script = args.reference_dir.join("reference.mjs");
        if !args
            .reference_dir
            .join("node_modules/oidc-provider")
            .is_dir()
        {
            bail!(
                "the reference is not installed: run `npm ci` in {} (or pass --no-reference)",
                args.reference_dir.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut node = Command::new("taskset")
            .args(["-c", &args.server_core.to_string(), "node"])
            .arg(&script)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("node is needed for the reference")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let _ = node.kill();
                bail!("the reference did not start");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let r = run_wrk(
            args.client_core,
            args.connections,
            args.duration,
            &cc_script(
                work.path(),
                &basic("bench", "bench-secret-bench-secret-bench-secret"),
            )?,
            &format!("http://127.0.0.1:{port}/token"),
        );
        let _ = node.kill();
        let _ = node.wait();
        Some(r?)
    };

    let cc_ratio = reference.as_ref().map(|r| cc.per_sec / r.per_sec);
    let ex_share = ex.per_sec / commits;
    let es_share = es.per_sec / commits;
    let mut failures = Vec::new();
    if cc.non_2xx + cc.errors + ex.non_2xx + ex.errors + es.non_2xx + es.errors > 0 {
        failures.push(format!(
            "failed requests: client credentials {}+{}, exchanges {}+{} and {}+{} (non-2xx+socket; too few codes minted?)",
            cc.non_2xx, cc.errors, ex.non_2xx, ex.errors, es.non_2xx, es.errors
        ));
    }
    if cc_ratio.is_some_and(|r| r < 3.0) {
        failures.push(format!(
            "client credentials {:.2}x the reference (goal 3x)",
            cc_ratio.unwrap_or(0.0)
        ));
    }
    if ex_share < 0.5 {
        failures.push(format!(
            "code exchange {:.0}% of the commit rate (goal 50%)",
            ex_share * 100.0
        ));
    }
    println!(
        "sesame-oidc-bench (server on core {}, wrk on core {}, {} connections)",
        args.server_core, args.client_core, args.connections
    );
    println!("disk commits/s (WAL, FULL):    {commits:.0}");
    println!(
        "client credentials, sesame:   {:.0}/s  p50 {:.2} ms  p99 {:.2} ms",
        cc.per_sec, cc.p50_ms, cc.p99_ms
    );
    if let Some(r) = &reference {
        println!(
            "client credentials, reference: {:.0}/s  p50 {:.2} ms  p99 {:.2} ms  (sesame {:.2}x)",
            r.per_sec,
            r.p50_ms,
            r.p99_ms,
            cc_ratio.unwrap_or(0.0)
        );
    }
    println!(
        "code exchange, RS256 ID token: {:.0}/s  p50 {:.2} ms  p99 {:.2} ms  ({:.0}% of the commit rate; {} of {} codes)",
        ex.per_sec,
        ex.p50_ms,
        ex.p99_ms,
        ex_share * 100.0,
        ex.requests,
        codes.len()
    );
    println!(
        "code exchange, ES256 ID token: {:.0}/s  p50 {:.2} ms  p99 {:.2} ms  ({:.0}% of the commit rate; {} of {} codes)",
        es.per_sec,
        es.p50_ms,
        es.p99_ms,
        es_share * 100.0,
        es.requests,
        es_codes.len()
    );
    println!("{}", sesame_bench::result_line("pass", &failures));
    if let Some(path) = &args.json {
        write_json(
            path,
            &serde_json::json!({
                "disk_commits_per_sec": commits,
                "client_credentials": cc,
                "reference_client_credentials": reference,
                "client_credentials_ratio": cc_ratio,
                "code_exchange": ex,
                "code_exchange_share_of_commits": ex_share,
                "code_exchange_es256": es,
                "code_exchange_es256_share_of_commits": es_share,
                "codes": codes.len(),
                "failures": failures,
            }),
        )?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        std::process::exit(1)
    }
}
