//! Two real `sesame serve` processes on one PostgreSQL database, as an operator runs them:
//! `sesame migrate`, the same database URL and master key file on both, and a node killed
//! with SIGKILL in the middle of an approval while the other goes on serving.
//!
//! Runs against the server `SESAME_TEST_DATABASE_URL` names (`scripts/test.sh` starts one);
//! without it the test says it is skipped (and fails under `SESAME_REQUIRE_POSTGRES`).

#[allow(dead_code)] // `data_dir` is for tests that start from `sesame init`; this one does not.
mod common;

use sesame_authenticator::client::{self, DeviceClient};
use sesame_authenticator::device::DeviceKey;
use sesame_proto::device::{self as api, approval_message, Decision, DeviceEvent, RespondRequest};
use sesame_testkit::Browser;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

/// A running node; SIGKILLed when dropped (a test that fails leaves nothing running).
struct Node {
    child: Child,
    base: String,
}

impl Node {
    fn start(data: &Path, url: &str, key: &Path) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sesame"))
            .arg("--data-dir")
            .arg(data)
            .args(["--database-url", url, "--master-key-file"])
            .arg(key)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_remove("SESAME_DATA_DIR")
            .env_remove("SESAME_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let running = lines.next().expect("the node says where it runs").unwrap();
        let addr = running
            .trim_start_matches("Sesame is running at http://")
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        std::thread::spawn(move || for _ in lines {});
        Node {
            child,
            base: format!("http://{addr}"),
        }
    }

    /// SIGKILL: no shutdown, no flushing, connections cut.
    fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sesame(data: &Path, url: &str, key: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let key = key.to_str().unwrap();
    let mut all = vec!["--database-url", url, "--master-key-file", key];
    all.extend_from_slice(args);
    let out = common::run(data, &all, stdin, &[]);
    assert!(
        out.status.success(),
        "sesame {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn on(b: &Browser, base: &str) -> Browser {
    let mut moved = b.clone();
    moved.base = base.to_string();
    moved
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_approval_leaves_the_other_serving_the_sign_in() {
    let Some(url) = sesame_testkit::postgres_database("kill").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    // The operator's steps: one key for every node, the schema, a user; then two nodes.
    sesame(
        dir.path(),
        &url,
        &key,
        &["master-key", "generate", key.to_str().unwrap()],
        None,
    );
    let migrated = sesame(dir.path(), &url, &key, &["migrate"], None);
    assert!(migrated.contains("Migrated the database"), "{migrated}");
    let again = sesame(dir.path(), &url, &key, &["migrate"], None);
    assert!(again.contains("is up to date"), "{again}");
    sesame(
        dir.path(),
        &url,
        &key,
        &["user", "add", "alice", "--password-stdin"],
        Some(PASSWORD),
    );
    let mut a = Node::start(&data_a, &url, &key);
    let b = Node::start(&data_b, &url, &key);

    // Alice adds the app through node A.
    let mut browser = Browser::new(&a.base);
    assert_eq!(
        browser.password_step("alice", PASSWORD).await.location(),
        Some("/account")
    );
    let page = browser.get("/security-info/add/app").await;
    let link = sesame_testkit::element_text(&page.body, "activation-link");
    let (server, code) = api::parse_activation_link(&link).unwrap();
    let device_key = DeviceKey::generate();
    let device_id = client::activate(&server, &code, "phone", &device_key)
        .await
        .unwrap()
        .device_id;
    let phone_on_b = DeviceClient::new(&b.base, &device_id, &device_key);
    let mut stream = phone_on_b.events().await.unwrap();

    // A new sign-in on node A; the request reaches the phone through node B.
    let mut signing_in = Browser::new(&a.base);
    let p = signing_in.password_step("alice", PASSWORD).await;
    assert_eq!(p.location(), Some("/login/verify"));
    let waiting = signing_in.follow(p).await;
    let number = waiting
        .body
        .split("id=\"push-number\" aria-live=\"polite\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    let c = match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Ok(Some(DeviceEvent::Challenge(c)))) => c,
        other => panic!("the request reaches the phone's stream on B, got {other:?}"),
    };

    // Node A dies before the phone answers.
    a.kill_9();
    assert!(
        reqwest::get(format!("{}/healthz", a.base)).await.is_err(),
        "node A is gone"
    );

    // The phone answers on B; the browser, sent to B by the balancer, finishes there.
    let msg = approval_message(&c.id, &c.nonce, Decision::Approve, &number, &device_id);
    let answer = phone_on_b
        .respond(&RespondRequest {
            challenge_id: c.id.clone(),
            decision: Decision::Approve,
            number: number.clone(),
            signature: device_key.sign(&msg),
            pin_signature: None,
        })
        .await
        .unwrap();
    assert_eq!(answer.outcome, "approved");
    let mut finishing = on(&signing_in, &b.base);
    let done = finishing.post("/login/push/complete", &[]).await;
    assert_eq!(done.location(), Some("/account"), "{}", done.body);
    assert_eq!(finishing.get("/account").await.status, 200);
    // And B goes on serving new sign-ins.
    let mut next = Browser::new(&b.base);
    let p = next.password_step("alice", PASSWORD).await;
    assert_eq!(p.location(), Some("/login/verify"));
}

/// Runs a PostgreSQL client program (`pg_dump`, `pg_restore`, `psql`) and returns its stdout.
fn pg_tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} (Debian: postgresql-client) could not run: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_dump_restored_into_a_new_database_signs_the_same_users_in() {
    let Some(url) = sesame_testkit::postgres_database("dump").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    sesame(
        dir.path(),
        &url,
        &key,
        &["master-key", "generate", key.to_str().unwrap()],
        None,
    );
    sesame(
        dir.path(),
        &url,
        &key,
        &["user", "add", "alice", "--password-stdin"],
        Some(PASSWORD),
    );
    // The source serves alice before the dump.
    let node = Node::start(&dir.path().join("a"), &url, &key);
    let mut b = Browser::new(&node.base);
    assert_eq!(
        b.password_step("alice", PASSWORD).await.location(),
        Some("/account")
    );
    drop(node);

    // The dump, while nothing else is needed of the source: as the README says.
    let (base, schema) = url.split_once("?options=-csearch_path%3D").unwrap();
    let dump = dir.path().join("sesame.dump");
    pg_tool(
        "pg_dump",
        &[
            "--format=custom",
            "--schema",
            schema,
            "--file",
            dump.to_str().unwrap(),
            base,
        ],
    );
    // An empty database to restore into.
    let restored_db = format!("restored_{schema}");
    pg_tool(
        "psql",
        &[base, "-qc", &format!("CREATE DATABASE {restored_db}")],
    );
    let (server, _) = base.rsplit_once('/').unwrap();
    let restored_base = format!("{server}/{restored_db}");
    pg_tool(
        "pg_restore",
        &[
            "--no-owner",
            "--dbname",
            &restored_base,
            dump.to_str().unwrap(),
        ],
    );
    let restored = format!("{restored_base}?options=-csearch_path%3D{schema}");
    {
        let node = Node::start(&dir.path().join("b"), &restored, &key);
        let mut b = Browser::new(&node.base);
        assert_eq!(
            b.password_step("alice", PASSWORD).await.location(),
            Some("/account"),
            "the restored database signs alice in"
        );
        let mut wrong = Browser::new(&node.base);
        assert_ne!(
            wrong
                .password_step("alice", "not the password")
                .await
                .location(),
            Some("/account")
        );
        let listed = sesame(dir.path(), &restored, &key, &["user", "list"], None);
        assert!(listed.contains("alice"), "{listed}");
    }
    pg_tool(
        "psql",
        &[
            base,
            "-qc",
            &format!("DROP DATABASE {restored_db} WITH (FORCE)"),
        ],
    );
}
