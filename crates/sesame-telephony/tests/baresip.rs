//! The `baresip` gateway placing real SIP calls on loopback.
//!
//! Each test starts its own agents with `scripts/telephony/baresip.sh` (server agents driven by
//! the gateway, and one auto-answering "phone"), in its own directory; a guard stops them even
//! when the test panics. The harness presses the phone's keys over the phone's own ctrl_tcp
//! connection. The script installs baresip-core, espeak-ng and sox with apt-get when missing;
//! without them and without apt-get the tests fail saying so.

use async_trait::async_trait;
use serde_json::Value;
use sesame_telephony::baresip::{BaresipConfig, BaresipGateway};
use sesame_telephony::{Call, CallOutcome, DeliveryStatus, GatewayError, Reports, VoiceGateway};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const PROMPT: &str =
    "Sesame test call. Press pound to approve, or zero then pound to report fraud.";
/// How long a test waits for a second report that must not come.
const GRACE: Duration = Duration::from_millis(1000);

// ---------------------------------------------------------------------------------------------
// The agents.

/// Agents started by the script; stopped (by the PIDs it recorded) when dropped.
struct Agents {
    workdir: tempfile::TempDir,
    servers: Vec<String>,
    phone_uri: String,
    phone_ctrl: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/telephony/baresip.sh")
}

/// Makes sure espeak-ng and sox are there, for the tests that make prompts without agents.
fn install_tools() {
    let output = Command::new("bash")
        .arg(script())
        .arg("install")
        .output()
        .expect("bash runs scripts/telephony/baresip.sh");
    assert!(
        output.status.success(),
        "scripts/telephony/baresip.sh install failed (it needs apt-get to install baresip-core, \
         espeak-ng and sox):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Agents {
    fn start(servers: usize) -> Agents {
        let workdir = tempfile::Builder::new()
            .prefix("sesame-baresip-test-")
            .tempdir()
            .expect("a temporary directory");
        let output = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(servers.to_string())
            .env("BARESIP_WORKDIR", workdir.path())
            .output()
            .expect("bash runs scripts/telephony/baresip.sh");
        if !output.status.success() {
            // Stop whatever did start before failing.
            let _ = Command::new("bash")
                .arg(script())
                .arg("stop")
                .env("BARESIP_WORKDIR", workdir.path())
                .output();
            panic!(
                "could not start the baresip agents (scripts/telephony/baresip.sh start {servers}; \
                 it needs baresip-core, espeak-ng and sox, or apt-get to install them):\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let env = std::fs::read_to_string(workdir.path().join("ports.env")).expect("ports.env");
        let vars: HashMap<&str, &str> = env.lines().filter_map(|l| l.split_once('=')).collect();
        Agents {
            servers: vars["SERVER_CTRL"].split(',').map(str::to_owned).collect(),
            phone_uri: vars["PHONE_URI"].to_owned(),
            phone_ctrl: vars["PHONE_CTRL"].to_owned(),
            workdir,
        }
    }

    fn gateway(&self) -> BaresipGateway {
        let config = BaresipConfig::new(
            self.servers.clone(),
            self.phone_uri.clone(),
            self.workdir.path().join("prompts"),
        );
        BaresipGateway::new(config).expect("a valid configuration")
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .env("BARESIP_WORKDIR", self.workdir.path())
            .output();
    }
}

// ---------------------------------------------------------------------------------------------
// Outcomes, as the server would receive them.

struct Outcomes(mpsc::UnboundedSender<(String, CallOutcome)>);

#[async_trait]
impl Reports for Outcomes {
    async fn call_ended(&self, reference: &str, outcome: CallOutcome) {
        let _ = self.0.send((reference.to_owned(), outcome));
    }
    async fn message_status(&self, _: &str, _: DeliveryStatus) {}
}

fn outcomes() -> (
    Arc<dyn Reports>,
    mpsc::UnboundedReceiver<(String, CallOutcome)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(Outcomes(tx)), rx)
}

async fn next_outcome(
    rx: &mut mpsc::UnboundedReceiver<(String, CallOutcome)>,
    within: Duration,
) -> (String, CallOutcome) {
    tokio::time::timeout(within, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no call outcome within {within:?}"))
        .expect("the reports channel is open")
}

async fn assert_no_further_outcome(rx: &mut mpsc::UnboundedReceiver<(String, CallOutcome)>) {
    if let Ok(Some(extra)) = tokio::time::timeout(GRACE, rx.recv()).await {
        panic!("a call was reported twice: {extra:?}");
    }
}

fn call(reference: &str, key_timeout_secs: u64) -> Call {
    Call {
        to: "+15550100042".into(),
        extension: None,
        prompt: PROMPT.into(),
        reference: reference.into(),
        key_timeout: Duration::from_secs(key_timeout_secs),
        ring_timeout: Duration::from_secs(10),
    }
}

// ---------------------------------------------------------------------------------------------
// The phone: the person at the other end, through the phone agent's ctrl_tcp.

struct Phone {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// Events read while waiting for a command's answer.
    pending: VecDeque<Value>,
    token: u64,
}

impl Phone {
    async fn connect(address: &str) -> Phone {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(address))
            .await
            .expect("phone ctrl_tcp connects in time")
            .expect("phone ctrl_tcp connects");
        Phone {
            stream,
            buffer: Vec::new(),
            pending: VecDeque::new(),
            token: 0,
        }
    }

    async fn read(&mut self, deadline: tokio::time::Instant) -> Option<Value> {
        loop {
            if let Some(colon) = self.buffer.iter().position(|&b| b == b':') {
                let len: usize = std::str::from_utf8(&self.buffer[..colon])
                    .unwrap()
                    .parse()
                    .unwrap();
                if self.buffer.len() > colon + 1 + len {
                    assert_eq!(self.buffer[colon + 1 + len], b',', "netstring comma");
                    let value = serde_json::from_slice(&self.buffer[colon + 1..colon + 1 + len])
                        .expect("JSON from the phone");
                    self.buffer.drain(..colon + 2 + len);
                    return Some(value);
                }
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buffer)).await {
                Err(_) => return None,
                Ok(Ok(0)) => panic!("the phone closed its control connection"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("reading from the phone: {e}"),
            }
        }
    }

    /// Sends a command and waits for its answer (events read meanwhile are kept).
    async fn command(&mut self, command: &str, params: Option<&str>) {
        self.token += 1;
        let token = format!("phone-{}", self.token);
        let mut message = serde_json::json!({ "command": command, "token": token });
        if let Some(params) = params {
            message["params"] = Value::String(params.into());
        }
        let payload = message.to_string();
        let frame = format!("{}:{},", payload.len(), payload);
        self.stream.write_all(frame.as_bytes()).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let message = self
                .read(deadline)
                .await
                .unwrap_or_else(|| panic!("phone: no answer to {command}"));
            if message["token"] == token.as_str() {
                assert_eq!(message["ok"], true, "phone: {command} failed: {message}");
                return;
            }
            if message["event"] == true {
                self.pending.push_back(message);
            }
        }
    }

    /// Waits for the phone's event of this type and returns it.
    async fn event(&mut self, kind: &str, within: Duration) -> Value {
        if let Some(i) = self.pending.iter().position(|m| m["type"] == kind) {
            let message = self.pending.remove(i).unwrap();
            self.pending.drain(..i);
            return message;
        }
        self.pending.clear();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = self
                .read(deadline)
                .await
                .unwrap_or_else(|| panic!("phone: no {kind} within {within:?}"));
            if message["event"] == true && message["type"] == kind {
                return message;
            }
        }
    }

    async fn answered(&mut self) -> String {
        let event = self
            .event("CALL_ESTABLISHED", Duration::from_secs(10))
            .await;
        event["id"].as_str().expect("a call id").to_owned()
    }

    async fn press(&mut self, keys: &str) {
        self.command("sndcode", Some(keys)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn pound_approves_the_sign_in() {
    let agents = Agents::start(1);
    let gateway = agents.gateway();
    let mut phone = Phone::connect(&agents.phone_ctrl).await;
    let (reports, mut rx) = outcomes();

    let started = Instant::now();
    gateway.call(&call("approve-1", 10), reports).await.unwrap();
    phone.answered().await;
    phone.press("#").await;

    let (reference, outcome) = next_outcome(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(reference, "approve-1");
    assert_eq!(outcome, CallOutcome::Approved);
    // Well before the prompt (several seconds of speech + 10 s) would have ended.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "approval took {took:?}");
    phone.event("CALL_CLOSED", Duration::from_secs(5)).await;
    assert_no_further_outcome(&mut rx).await;
    eprintln!("approve: call() to Approved in {took:?}");
}

#[tokio::test]
async fn zero_then_pound_reports_fraud() {
    let agents = Agents::start(1);
    let gateway = agents.gateway();
    let mut phone = Phone::connect(&agents.phone_ctrl).await;
    let (reports, mut rx) = outcomes();

    gateway.call(&call("fraud-1", 10), reports).await.unwrap();
    phone.answered().await;
    phone.press("0#").await;

    let (reference, outcome) = next_outcome(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(reference, "fraud-1");
    assert_eq!(outcome, CallOutcome::Fraud);
    phone.event("CALL_CLOSED", Duration::from_secs(5)).await;
    assert_no_further_outcome(&mut rx).await;
}

#[tokio::test]
async fn no_key_before_the_prompt_ends_is_no_key() {
    let agents = Agents::start(1);
    let gateway = agents.gateway();
    let mut phone = Phone::connect(&agents.phone_ctrl).await;
    let (reports, mut rx) = outcomes();

    let started = Instant::now();
    let mut short = call("nokey-1", 3);
    short.prompt = "Press pound.".into();
    gateway.call(&short, reports).await.unwrap();
    phone.answered().await;
    // A key other than # or 0# is ignored: the person may still try until the prompt ends.
    phone.press("5").await;

    let (reference, outcome) = next_outcome(&mut rx, Duration::from_secs(30)).await;
    assert_eq!(reference, "nokey-1");
    assert_eq!(outcome, CallOutcome::NoKey);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "ended after {took:?}, before the key timeout"
    );
    assert_no_further_outcome(&mut rx).await;
    eprintln!("no key: call() to NoKey in {took:?}");
}

#[tokio::test]
async fn two_calls_run_at_once_and_a_third_is_busy() {
    let agents = Agents::start(2);
    let gateway = agents.gateway();
    let mut phone = Phone::connect(&agents.phone_ctrl).await;
    let (reports, mut rx) = outcomes();
    // Made now so that both calls start together.
    gateway
        .prepare_prompt(PROMPT, Duration::from_secs(10))
        .await
        .unwrap();

    let (call_1, call_2) = (call("both-1", 10), call("both-2", 10));
    let (first, second) = tokio::join!(
        gateway.call(&call_1, Arc::clone(&reports)),
        gateway.call(&call_2, Arc::clone(&reports)),
    );
    first.unwrap();
    second.unwrap();
    assert_eq!(gateway.idle_agents(), 0);

    let started = Instant::now();
    let third = gateway
        .call(&call("both-3", 10), Arc::clone(&reports))
        .await;
    assert_eq!(third, Err(GatewayError::Busy));
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "Busy took {:?}",
        started.elapsed()
    );

    // Both calls are up on the phone at once; "#" goes to the phone's newest call, then to the
    // other one once the first has closed.
    let a = phone.answered().await;
    let b = phone.answered().await;
    assert_ne!(a, b);
    phone.press("#").await;
    let (one, outcome) = next_outcome(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(outcome, CallOutcome::Approved);
    phone.event("CALL_CLOSED", Duration::from_secs(5)).await;
    phone.press("#").await;
    let (two, outcome) = next_outcome(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(outcome, CallOutcome::Approved);
    let mut references = [one, two];
    references.sort();
    assert_eq!(references, ["both-1", "both-2"]);
    assert_no_further_outcome(&mut rx).await;

    // Both agents are back in the pool and take calls again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while gateway.idle_agents() < 2 {
        assert!(Instant::now() < deadline, "agents not released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    phone.event("CALL_CLOSED", Duration::from_secs(5)).await;
    gateway.call(&call("both-4", 10), reports).await.unwrap();
    phone.answered().await;
    phone.press("#").await;
    let (reference, outcome) = next_outcome(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(
        (reference.as_str(), outcome),
        ("both-4", CallOutcome::Approved)
    );
    assert_no_further_outcome(&mut rx).await;
}

#[tokio::test]
async fn hanging_up_without_a_key_is_rejected() {
    let agents = Agents::start(1);
    let gateway = agents.gateway();
    let mut phone = Phone::connect(&agents.phone_ctrl).await;
    let (reports, mut rx) = outcomes();

    gateway.call(&call("hangup-1", 10), reports).await.unwrap();
    phone.answered().await;
    phone.command("hangup", None).await;

    let (reference, outcome) = next_outcome(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(reference, "hangup-1");
    assert_eq!(outcome, CallOutcome::Rejected);
    assert_no_further_outcome(&mut rx).await;
}

#[tokio::test]
async fn unanswered_call_is_hung_up_at_the_ring_timeout() {
    let agents = Agents::start(1);
    let gateway = agents.gateway();
    let mut phone = Phone::connect(&agents.phone_ctrl).await;
    phone.command("answermode", Some("manual")).await;
    let (reports, mut rx) = outcomes();

    let started = Instant::now();
    let mut ringing = call("ring-1", 10);
    ringing.ring_timeout = Duration::from_secs(1);
    gateway.call(&ringing, reports).await.unwrap();
    phone.event("CALL_INCOMING", Duration::from_secs(5)).await;

    let (reference, outcome) = next_outcome(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(reference, "ring-1");
    assert_eq!(outcome, CallOutcome::NotAnswered);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    // The phone stopped ringing: the gateway really hung up.
    phone.event("CALL_CLOSED", Duration::from_secs(5)).await;
    assert_no_further_outcome(&mut rx).await;
}

#[tokio::test]
async fn extension_is_dialled_after_the_answer() {
    let agents = Agents::start(1);
    let gateway = agents.gateway();
    let mut phone = Phone::connect(&agents.phone_ctrl).await;
    let (reports, mut rx) = outcomes();

    let mut with_extension = call("ext-1", 10);
    with_extension.extension = Some("123".into());
    gateway.call(&with_extension, reports).await.unwrap();
    phone.answered().await;
    let mut keys = Vec::new();
    while keys.len() < 3 {
        let event = phone.event("CALL_DTMF_START", Duration::from_secs(5)).await;
        keys.push(event["param"].as_str().unwrap().to_owned());
    }
    assert_eq!(keys, ["1", "2", "3"]);
    phone.press("#").await;

    let (reference, outcome) = next_outcome(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(reference, "ext-1");
    assert_eq!(outcome, CallOutcome::Approved);
    assert_no_further_outcome(&mut rx).await;
}

#[tokio::test]
async fn losing_the_agent_during_a_call_fails_it() {
    let agents = Agents::start(1);
    let gateway = agents.gateway();
    let mut phone = Phone::connect(&agents.phone_ctrl).await;
    let (reports, mut rx) = outcomes();

    gateway.call(&call("lost-1", 10), reports).await.unwrap();
    phone.answered().await;
    // The agent dies (the PID the script recorded for it).
    let pid = std::fs::read_to_string(agents.workdir.path().join("agent0.pid")).unwrap();
    let killed = Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());

    let (reference, outcome) = next_outcome(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(reference, "lost-1");
    assert!(matches!(outcome, CallOutcome::Failed(_)), "{outcome:?}");
    assert_no_further_outcome(&mut rx).await;
    assert_eq!(gateway.idle_agents(), 1);
}

#[tokio::test]
async fn agent_refusing_connections_is_unreachable_at_once() {
    // A port that was just free: nothing listens there.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let gateway = BaresipGateway::new(BaresipConfig::new(
        vec![address],
        "sip:{number}@127.0.0.1:9",
        dir.path(),
    ))
    .unwrap();
    let (reports, mut rx) = outcomes();

    let started = Instant::now();
    let result = gateway.call(&call("down-1", 3), reports).await;
    assert!(
        matches!(result, Err(GatewayError::Unreachable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(gateway.idle_agents(), 1, "the agent went back to the pool");
    // A call that did not start is not reported.
    assert_no_further_outcome(&mut rx).await;
}

#[tokio::test]
async fn agent_that_never_answers_times_out() {
    // Accepts the connection, never answers a command.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let silent = tokio::spawn(async move {
        let (_connection, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let agents_dir = tempfile::tempdir().unwrap();
    let gateway = BaresipGateway::new(BaresipConfig::new(
        vec![address],
        "sip:{number}@127.0.0.1:9",
        agents_dir.path(),
    ))
    .unwrap();
    let (reports, _rx) = outcomes();
    install_tools();
    // Synthesis first, so that only the agent's silence is timed.
    gateway
        .prepare_prompt(PROMPT, Duration::from_secs(3))
        .await
        .unwrap();

    let started = Instant::now();
    let result = gateway.call(&call("silent-1", 3), reports).await;
    assert_eq!(result, Err(GatewayError::Timeout));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(7), "took {took:?}");
    assert_eq!(gateway.idle_agents(), 1);
    silent.abort();
}

#[tokio::test]
async fn prompt_failure_is_refused_and_frees_the_agent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut config = BaresipConfig::new(vec![address], "sip:{number}@127.0.0.1:9", dir.path());
    config.espeak = "/nonexistent/espeak-ng".into();
    let gateway = BaresipGateway::new(config).unwrap();
    let (reports, _rx) = outcomes();

    let result = gateway.call(&call("noprompt-1", 3), reports).await;
    match result {
        Err(GatewayError::Refused(detail)) => {
            assert!(
                detail.starts_with("could not make the spoken prompt"),
                "{detail}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(gateway.idle_agents(), 1);
}

#[tokio::test]
async fn prompts_are_cached_as_8khz_mono_wav() {
    install_tools();
    let dir = tempfile::tempdir().unwrap();
    let gateway = BaresipGateway::new(BaresipConfig::new(
        vec!["127.0.0.1:9".into()],
        "sip:{number}@127.0.0.1:9",
        dir.path(),
    ))
    .unwrap();
    let (path, length) = gateway
        .prepare_prompt("Press pound.", Duration::from_secs(2))
        .await
        .expect("espeak-ng and sox (scripts/telephony/baresip.sh installs them)");
    assert!(
        length > Duration::from_secs(2) && length < Duration::from_secs(5),
        "{length:?}"
    );
    let bytes = std::fs::read(&path).unwrap();
    // RIFF/WAVE, PCM, mono, 8000 Hz, 16 bits.
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[20..24], &[1, 0, 1, 0]);
    assert_eq!(&bytes[24..28], &8000u32.to_le_bytes());
    assert_eq!(&bytes[34..36], &16u16.to_le_bytes());
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();

    let (again, _) = gateway
        .prepare_prompt("Press pound.", Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(again, path);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified
    );
    let (other, _) = gateway
        .prepare_prompt("Press pound.", Duration::from_secs(3))
        .await
        .unwrap();
    assert_ne!(other, path, "the key timeout is part of the cache key");
    // Only the two prompts: no temporary files left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}
