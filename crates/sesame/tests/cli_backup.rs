//! `sesame backup`: a copy taken while a real server runs and users are being added is a
//! consistent database that, restored beside the same master key, serves the same users and
//! their passwords; an existing file is never replaced without --force, and a backup that
//! fails leaves no file behind.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PASSWORD: &str = "correct-horse-battery-staple";

fn sesame(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    common::run(dir, args, stdin, &[("USER", "tester")])
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn err(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn usernames(dir: &Path) -> Vec<String> {
    let list: serde_json::Value =
        serde_json::from_str(&ok(&sesame(dir, &["--json", "user", "list"], None))).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .collect()
}

/// Adds `count` users straight through the store (the CLI would hash nothing for them
/// either, but starts a process per user): enough rows that the copy takes several steps.
fn seed_users(dir: &Path, count: usize) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let key = sesame_store::MasterKey::read(&dir.join("master.key")).unwrap();
        let store =
            sesame_store::open_backend(&sesame_store::Backend::Sqlite(dir.join("sesame.db")), key)
                .await
                .unwrap();
        let tenant = store.default_tenant().await.unwrap();
        let mut tasks = Vec::new();
        for chunk in 0..count.div_ceil(100) {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in chunk * 100..((chunk + 1) * 100).min(count) {
                    let new = sesame_store::NewUser {
                        tenant,
                        username: format!("seed{i:05}"),
                        display_name: format!("Seeded user number {i:05} of the backup test"),
                        password_hash: None,
                        is_admin: false,
                    };
                    store.create_user(new, 1_700_000_000).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// A running `sesame serve` on a free port of 127.0.0.1, stopped (SIGTERM) when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sesame"))
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_remove("SESAME_DATA_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let running = lines.next().unwrap().unwrap();
        let addr = running
            .trim_start_matches("Sesame is running at http://")
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        // The rest of its output is read (and dropped) so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }

    fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if self.child.try_wait().unwrap().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if self.child.try_wait().unwrap().is_some() {
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
        self.terminate();
    }
}

/// An HTTP reply as the sign-in pages send it.
struct Reply {
    status: u16,
    set_cookies: Vec<String>,
    body: String,
}

/// One HTTP/1.0 request (a body delimited by the closed connection, never chunked), with
/// `cookies` sent and a form body when given.
fn http(addr: &str, method: &str, path: &str, cookies: &[String], form: Option<&str>) -> Reply {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if !cookies.is_empty() {
        req.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
    }
    let body = form.unwrap_or("");
    if form.is_some() {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let set_cookies = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.trim().split(';').next().unwrap().to_string())
        .collect();
    Reply {
        status,
        set_cookies,
        body: body.to_string(),
    }
}

/// Signs `username` in with `password` on the sign-in pages; returns the password page's
/// answer: its status, and whether it gave the browser a session.
fn sign_in(addr: &str, username: &str, password: &str) -> (u16, bool) {
    let page = http(addr, "GET", "/login", &[], None);
    assert_eq!(page.status, 200);
    let mut cookies = page.set_cookies.clone();
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field on the sign-in page")
        .to_string();
    let named = http(
        addr,
        "POST",
        "/login",
        &cookies,
        Some(&format!("csrf={csrf}&username={username}")),
    );
    assert_eq!(named.status, 303, "{}", named.body);
    cookies.extend(named.set_cookies);
    let answered = http(
        addr,
        "POST",
        "/login/password",
        &cookies,
        Some(&format!("csrf={csrf}&password={password}")),
    );
    let session = answered
        .set_cookies
        .iter()
        .any(|c| c.starts_with("__Host-sesame-session="));
    (answered.status, session)
}

/// A new data directory holding `backup` as its database, beside a copy of `key`, laid out
/// as the restore steps say.
fn restore(backup: &Path, key: &Path) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(backup, dir.path().join("sesame.db")).unwrap();
    std::fs::copy(key, dir.path().join("master.key")).unwrap();
    dir
}

/// How long a writer goes on at most, should nobody stop it.
const WRITE_LIMIT: Duration = Duration::from_secs(30);

/// A thread adding users one after another until stopped (or for `WRITE_LIMIT`).
struct Writer {
    stop: Arc<AtomicBool>,
    added: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    /// Runs `write(stop, added)`: it adds users while `stop()` is false, counting each in
    /// `added` once it is stored.
    fn start(write: impl FnOnce(&dyn Fn() -> bool, &AtomicUsize) + Send + 'static) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let added = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, added) = (stop.clone(), added.clone());
            std::thread::spawn(move || {
                let began = std::time::Instant::now();
                write(
                    &|| stop.load(Ordering::SeqCst) || began.elapsed() > WRITE_LIMIT,
                    &added,
                )
            })
        };
        Writer {
            stop,
            added,
            thread,
        }
    }

    fn count(&self) -> usize {
        self.added.load(Ordering::SeqCst)
    }

    fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }

    fn wait_for(&self, n: usize) {
        while self.count() < n {
            assert!(self.is_running(), "the writer stopped at {}", self.count());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the writer; how many users it added.
    fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let added = self.added.clone();
        self.thread.join().unwrap();
        added.load(Ordering::SeqCst)
    }
}

/// How many of `names` start with `prefix`, checking that they are exactly the first ones
/// written (`{prefix}00000`, `{prefix}00001`, ...).
fn prefix_count(names: &[String], prefix: &str) -> usize {
    let mut found: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| n.starts_with(prefix))
        .collect();
    found.sort();
    let expected: Vec<String> = (0..found.len())
        .map(|i| format!("{prefix}{i:05}"))
        .collect();
    assert_eq!(found, expected, "a prefix of what {prefix} wrote");
    found.len()
}

#[test]
fn a_backup_taken_while_serving_and_writing_restores_the_same_users() {
    let dir = common::data_dir();
    let d = dir.path().to_path_buf();
    ok(&sesame(
        &d,
        &["user", "add", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    ));
    // More than one step of the copy (256 pages): writes land between its steps.
    seed_users(&d, 10_000);
    let server = Server::start(&d);
    assert_eq!(sign_in(&server.addr, "alice", PASSWORD), (303, true));

    // Users added one after another while the copy runs, by the CLI and (much faster)
    // straight through the store from this process: a consistent copy holds the first k of
    // each, for a k between their counts before and after the copy.
    let cli = Writer::start({
        let d = d.clone();
        move |stop, added| {
            while !stop() {
                let name = format!("cli{:05}", added.load(Ordering::SeqCst));
                ok(&sesame(&d, &["user", "add", &name, "--no-password"], None));
                added.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let fast = Writer::start({
        let d = d.clone();
        move |stop, added| {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let key = sesame_store::MasterKey::read(&d.join("master.key")).unwrap();
                let backend = sesame_store::Backend::Sqlite(d.join("sesame.db"));
                let store = sesame_store::open_backend(&backend, key).await.unwrap();
                let tenant = store.default_tenant().await.unwrap();
                while !stop() {
                    let new = sesame_store::NewUser {
                        tenant,
                        username: format!("fast{:05}", added.load(Ordering::SeqCst)),
                        display_name: "Fast writer".into(),
                        password_hash: None,
                        is_admin: false,
                    };
                    store.create_user(new, 1_700_000_000).await.unwrap();
                    added.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    cli.wait_for(2);
    fast.wait_for(20);
    let before = (cli.count(), fast.count());
    let out_dir = tempfile::tempdir().unwrap();
    let backup = out_dir.path().join("sesame-backup.db");
    let out = sesame(&d, &["backup", backup.to_str().unwrap()], None);
    let after = (cli.count(), fast.count());
    // A copy that started again after every write (as one without a snapshot does) would
    // have ended only when the writer gave up.
    assert!(
        fast.is_running(),
        "the copy ended only once the writes stopped"
    );
    let text = ok(&out);
    cli.wait_for(after.0 + 1);
    let (cli_total, fast_total) = (cli.stop(), fast.stop());
    server.stop();

    assert!(text.contains("Integrity check: ok"), "{text}");
    let pages: u32 = text
        .split(" pages of ")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the page count");
    assert!(pages > 256, "copied in more than one step: {text}");
    let key = d.join("master.key");
    assert!(
        text.contains("restoring it also needs the same master key file")
            && text.contains(key.to_str().unwrap()),
        "{text}"
    );
    assert!(!out_dir.path().join("sesame-backup.db.partial").exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600,
        "a backup holds password hashes"
    );

    let restored = restore(&backup, &key);
    let r = restored.path();
    let names = usernames(r);
    assert!(names.iter().any(|n| n == "alice"));
    assert_eq!(
        names.iter().filter(|n| n.starts_with("seed")).count(),
        10_000
    );
    let k = prefix_count(&names, "cli");
    assert!(
        (before.0..=after.0 + 1).contains(&k) && k < cli_total,
        "the users added before the copy, not those added after it: {k} of {before:?}..{after:?}"
    );
    let k = prefix_count(&names, "fast");
    assert!(
        (before.1..=after.1 + 1).contains(&k) && k < fast_total,
        "the users added before the copy, not those added after it: {k} of {before:?}..{after:?}"
    );
    assert!(after.1 > before.1, "writes went on during the copy");
    let original = usernames(&d);
    assert!(names.iter().all(|n| original.contains(n)));

    // The restored data serves: the password (its hash in the copy) and the master key.
    let server = Server::start(r);
    assert_eq!(sign_in(&server.addr, "alice", PASSWORD), (303, true));
    assert_eq!(
        sign_in(&server.addr, "alice", "not-the-password"),
        (401, false)
    );
    server.stop();
}

#[test]
fn a_backup_never_replaces_a_file_without_force() {
    let dir = common::data_dir();
    let d = dir.path();
    ok(&sesame(d, &["user", "add", "bob", "--no-password"], None));
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("backup.db");
    std::fs::write(&target, b"keep me").unwrap();
    let e = err(&sesame(d, &["backup", target.to_str().unwrap()], None));
    assert!(e.contains("exists") && e.contains("--force"), "{e}");
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");

    ok(&sesame(
        d,
        &["backup", "--force", target.to_str().unwrap()],
        None,
    ));
    let head = std::fs::read(&target).unwrap();
    assert!(head.starts_with(b"SQLite format 3\0"));
    assert!(usernames(restore(&target, &d.join("master.key")).path()).contains(&"bob".to_string()));

    // Nor, even with --force, the database or the key it comes from.
    for own in ["sesame.db", "master.key"] {
        let e = err(&sesame(
            d,
            &["backup", "--force", d.join(own).to_str().unwrap()],
            None,
        ));
        assert!(e.contains("is Sesame's own"), "{e}");
    }
    assert!(usernames(d).contains(&"bob".to_string()));
}

#[test]
fn backup_help_says_the_master_key_is_needed_to_restore() {
    let dir = tempfile::tempdir().unwrap();
    let help = ok(&sesame(dir.path(), &["backup", "--help"], None));
    assert!(help.contains("master.key"), "{help}");
    assert!(help.contains("sesame.db-wal"), "{help}");
}

/// A path no backup can be written to, even by root: a directory without write permission
/// when permissions apply, else a directory that cannot hold files (`/proc`).
fn unwritable_dir(parent: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = parent.join("read-only");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
    if std::fs::File::create(dir.join("probe")).is_err() {
        return dir;
    }
    std::fs::remove_file(dir.join("probe")).unwrap();
    PathBuf::from("/proc")
}

#[test]
fn an_unwritable_destination_is_a_clear_error_and_leaves_nothing() {
    let dir = common::data_dir();
    let out_dir = tempfile::tempdir().unwrap();
    let unwritable = unwritable_dir(out_dir.path());
    let target = unwritable.join("sesame-backup.db");
    let e = err(&sesame(
        dir.path(),
        &["backup", target.to_str().unwrap()],
        None,
    ));
    assert!(e.contains("cannot create the backup file"), "{e}");
    assert!(e.contains("sesame-backup.db.partial"), "{e}");
    assert!(!target.exists());
    assert!(!unwritable.join("sesame-backup.db.partial").exists());
}

/// A copy that fails half way (the file size limit stops its writes) removes its partial
/// file: nothing is left that could be taken for a backup.
#[test]
fn a_backup_that_fails_half_way_leaves_no_partial_file() {
    let dir = common::data_dir();
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("sesame-backup.db");
    // 64 KiB (128 blocks of 512 bytes): the database's shared-memory index (32 KiB) fits, the
    // copy does not. SIGXFSZ is ignored, so a write past the limit fails instead of killing.
    let out = Command::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f 128; exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_sesame"),
            "--data-dir",
            dir.path().to_str().unwrap(),
            "backup",
            target.to_str().unwrap(),
        ])
        .env_remove("SESAME_DATA_DIR")
        .output()
        .unwrap();
    let e = err(&out);
    assert!(e.contains("cannot write the backup file"), "{e}");
    let left: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|f| f.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_database_url_of_another_backend_is_sent_to_its_own_tools() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::run(
        dir.path(),
        &["--database-url", "postgres://db/sesame", "backup", "x.db"],
        None,
        &[],
    );
    let e = err(&out);
    assert!(e.contains("pg_dump"), "{e}");
}
