//! The `baresip` voice gateway: real SIP calls placed by baresip 1.0 user agents, driven over
//! their `ctrl_tcp` interface (netstring-framed JSON, `<len>:<json>,`).
//!
//! # How a call goes
//!
//! 1. [`VoiceGateway::call`] takes a free agent from the pool (none free: [`GatewayError::Busy`]
//!    at once; there is no queue a sign-in could hang in).
//! 2. It connects afresh to the agent's ctrl_tcp port (before anything slow, so a dead agent
//!    fails the call at once).
//! 3. The prompt is spoken by `espeak-ng`, converted by `sox` to 8 kHz mono signed 16-bit (what
//!    the `aufile` source needs for PCMU) and padded with `key_timeout` seconds of silence, then
//!    cached in `prompt_dir` under a hash of (text, timeout). When the file ends, baresip ends the
//!    call with "end of file": the end of the file *is* the key timeout. Then `listcalls` (the
//!    agent must be idle; left-over calls are hung up first), `ausrc aufile,<prompt.wav>`,
//!    `dial <uri>`. `call` returns once the dial was accepted.
//! 4. A background task follows the agent's events and reports exactly one [`CallOutcome`]:
//!    - `CALL_ESTABLISHED`: the extension, if any, is sent as DTMF (`sndcode`);
//!    - `CALL_DTMF_START` `#`: [`CallOutcome::Approved`]; `0` then `#`: [`CallOutcome::Fraud`]
//!      (both hang up); other keys are ignored, so the person can try again until the prompt
//!      file ends;
//!    - `CALL_CLOSED` before the answer: [`CallOutcome::NotAnswered`] for 408/480/486/487/600 or
//!      a reason that reads like a timeout, busy or no answer; a 5xx from the trunk is
//!      [`CallOutcome::Failed`]; anything else [`CallOutcome::Rejected`];
//!    - `CALL_CLOSED` after the answer without a decision: [`CallOutcome::NoKey`] when the reason
//!      is "end of file" (the prompt and its silence ran out), else [`CallOutcome::Rejected`]
//!      (the person hung up);
//!    - no answer within `ring_timeout`: hang up, [`CallOutcome::NotAnswered`]; answered but
//!      still open a few seconds after the prompt file should have ended: hang up,
//!      [`CallOutcome::NoKey`];
//!    - the ctrl_tcp connection lost, or the agent not answering a command in time:
//!      [`CallOutcome::Failed`].
//!
//!    Only events of the agent's outgoing call are looked at; once the call id is known
//!    (from `CALL_RINGING`, `CALL_PROGRESS` or `CALL_ESTABLISHED`) events of other calls are
//!    ignored. Every read and write on the agent has a deadline.
//!
//! # Why a pool of agents
//!
//! baresip 1.0's `dial` response carries no call id and `hangup`/`sndcode` act on the agent's
//! *current* call, so one agent can safely run one call at a time. The gateway therefore holds
//! a pool: one baresip process per concurrent call, configured with `call_max_calls 1` so that
//! an inbound INVITE during a call is refused (`486 Max Calls`) instead of becoming the
//! "current" call our `hangup` would end. ctrl_tcp allows one client per agent (a new
//! connection closes the previous one), so each agent belongs to exactly one Sesame process;
//! Sesame connects afresh for every call, which also means a restarted agent is simply picked
//! up by the next call and a dead one fails that call's connect (`Unreachable`) at once.
//!
//! The cost is one process per line. Measured with `ps` and `/proc/PID/smaps_rollup` on
//! Debian 12 (baresip 1.0.0, x86-64, the test configuration: g711, aufile, aubridge, ctrl_tcp):
//! an idle agent has 7.4 MB resident (3.4 MB proportional, 1.1 MB private; the rest is shared
//! libraries) and uses no CPU (0 ticks in 10 s: it sleeps in epoll); during a call it has
//! 9.5 MB resident (3.1 MB private) and uses about 1 % of one core (0.10 s of CPU in 10 s:
//! PCMU at 50 packets a second each way, paced by the `aubridge` null sink). Ten lines cost
//! roughly 30 MB of private memory and a tenth of a core with every line in a call.
//!
//! # Running agents in production
//!
//! Each agent is a baresip 1.0 process with its own config directory (`baresip -f DIR`);
//! `scripts/telephony/baresip.sh` writes the loopback variant used by the tests. The parts that
//! matter (one agent shown; every agent needs its own SIP port, RTP range and ctrl_tcp port):
//!
//! ```text
//! # DIR/config
//! sip_listen          203.0.113.10:5070      # the address the trunk sends SIP to
//! call_max_calls      1                      # one call per agent (see above)
//! audio_player        aubridge,nullsink      # paced null sink: nobody listens
//! audio_source        aufile,/var/lib/sesame/prompts/placeholder.wav
//! audio_alert         aubridge,nullalert
//! ausrc_format        s16
//! rtp_ports           30000-30019
//! module              g711.so
//! module              aufile.so
//! module              aubridge.so
//! module_tmp          uuid.so
//! module_tmp          account.so
//! module_app          menu.so
//! module_app          ctrl_tcp.so
//! ctrl_tcp_listen     127.0.0.1:4444         # never on a public address: no authentication
//! # no "stdio" module (it fails without a terminal); the remaining lines (auplay/auenc/audec
//! # formats, audio_buffer, jitter_buffer_delay, rtcp_mux) as in the script's config. Without
//! # dns_server baresip uses /etc/resolv.conf to find the trunk.
//!
//! # DIR/accounts: registration with the SIP trunk; the password comes from the trunk provider
//! <sip:sesame-line1@trunk.example.com;transport=tcp>;auth_user=sesame-line1;auth_pass=SECRET;outbound="sip:trunk.example.com;transport=tcp";regint=600;answermode=manual;audio_codecs=PCMU,PCMA
//! ```
//!
//! Then `dial = "sip:{number}@trunk.example.com"` (the number without `+`; some trunks want
//! `sip:+{number}@...`, the template allows it) and `agents = ["127.0.0.1:4444", ...]`. Notes:
//! - `regint=600` registers every 10 minutes; with an IP-authenticated trunk use `regint=0` and
//!   no `auth_*`. The agents' `accounts` files hold the trunk password: mode 0600, owned by
//!   the user running baresip.
//! - Let the trunk route no inbound calls to these accounts (an inbound call ringing on an idle
//!   agent is hung up by the next outgoing call's check, but it should not happen).
//! - The agents must read the prompt files: they run on the same host as Sesame (ctrl_tcp is
//!   loopback) and `prompt_dir` must be readable by their user. The directory only grows with
//!   new (prompt text, key timeout) pairs.
//! - Only RFC 4733 telephone-events carry the keys (not SIP INFO, not in-band tones): the trunk
//!   must offer `telephone-event` in its SDP (most do).
//! - An extension is dialled as soon as the call is answered, while the prompt already plays:
//!   a person reached through an office switchboard may miss its start. Choose a key timeout
//!   that leaves time to listen.
//!
//! Registration and a real trunk were not testable offline; the tests run real calls between
//! agents on loopback (`tests/baresip.rs`).

use crate::{Call, CallOutcome, GatewayError, Reports, VoiceGateway};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// How long the agent may take to answer the commands that start a call (all of them together).
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the agent may take to answer one command during a call.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a hangup may take to be confirmed by `CALL_CLOSED`.
const HANGUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Time after the prompt file's end before Sesame hangs up itself (baresip ends the call at the
/// end of the file; this is only the bound if it did not).
const PROMPT_END_GRACE: Duration = Duration::from_secs(3);
/// Bound on each of espeak-ng and sox.
const SYNTHESIS_TIMEOUT: Duration = Duration::from_secs(15);
/// ctrl_tcp builds `"<command> <params>"` in a 256-byte buffer and silently truncates.
const MAX_COMMAND_LINE: usize = 250;
/// Longest netstring accepted from an agent (its answers are a few hundred bytes).
const MAX_FRAME: usize = 64 * 1024;
const MAX_PROMPT_CHARS: usize = 2000;
const MAX_EXTENSION_DIGITS: usize = 20;

/// Where and how to reach the baresip agents. Read from Sesame's configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BaresipConfig {
    /// ctrl_tcp addresses (`"127.0.0.1:4444"`), one agent per concurrent call.
    pub agents: Vec<String>,
    /// SIP URI template; `{number}` is replaced by the E.164 number without the `+`
    /// (`"sip:{number}@trunk.example.com"`).
    pub dial: String,
    /// Where spoken prompts are written and cached (the agents read them from here).
    pub prompt_dir: PathBuf,
    /// The espeak-ng program.
    #[serde(default = "default_espeak")]
    pub espeak: String,
    /// The sox program.
    #[serde(default = "default_sox")]
    pub sox: String,
    /// How long connecting to an agent may take.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
}

fn default_espeak() -> String {
    "espeak-ng".to_owned()
}

fn default_sox() -> String {
    "sox".to_owned()
}

fn default_connect_timeout_secs() -> u64 {
    2
}

impl BaresipConfig {
    /// A configuration with the default programs and connect timeout.
    pub fn new(
        agents: Vec<String>,
        dial: impl Into<String>,
        prompt_dir: impl Into<PathBuf>,
    ) -> Self {
        BaresipConfig {
            agents,
            dial: dial.into(),
            prompt_dir: prompt_dir.into(),
            espeak: default_espeak(),
            sox: default_sox(),
            connect_timeout_secs: default_connect_timeout_secs(),
        }
    }
}

/// A [`BaresipConfig`] that cannot work; the message says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid baresip configuration: {0}")]
pub struct InvalidConfig(pub String);

/// Places calls through a pool of baresip agents. See the [module documentation](self).
pub struct BaresipGateway {
    config: BaresipConfig,
    /// `prompt_dir`, absolute (baresip resolves paths against its own working directory).
    prompt_dir: PathBuf,
    agents: Arc<[Agent]>,
}

struct Agent {
    address: String,
    in_use: AtomicBool,
}

impl BaresipGateway {
    /// Checks the configuration and creates `prompt_dir` if needed. Does not contact the
    /// agents: one that is down fails only the calls given to it.
    pub fn new(config: BaresipConfig) -> Result<Self, InvalidConfig> {
        if config.agents.is_empty() {
            return Err(InvalidConfig("`agents` lists no ctrl_tcp address".into()));
        }
        for address in &config.agents {
            let port = address
                .rsplit_once(':')
                .map(|(_, port)| port.parse::<u16>());
            if !matches!(port, Some(Ok(_))) {
                return Err(InvalidConfig(format!(
                    "agent `{address}` is not a host:port address"
                )));
            }
        }
        if !(config.dial.starts_with("sip:") || config.dial.starts_with("sips:"))
            || config.dial.chars().any(char::is_whitespace)
        {
            return Err(InvalidConfig(
                "`dial` must be a SIP URI template like sip:{number}@trunk.example.com".into(),
            ));
        }
        if !(1..=60).contains(&config.connect_timeout_secs) {
            return Err(InvalidConfig(
                "`connect_timeout_secs` must be between 1 and 60".into(),
            ));
        }
        if config.espeak.is_empty() || config.sox.is_empty() {
            return Err(InvalidConfig(
                "`espeak` and `sox` must name programs".into(),
            ));
        }
        std::fs::create_dir_all(&config.prompt_dir).map_err(|e| {
            InvalidConfig(format!(
                "cannot create prompt_dir {}: {e}",
                config.prompt_dir.display()
            ))
        })?;
        let prompt_dir = std::fs::canonicalize(&config.prompt_dir).map_err(|e| {
            InvalidConfig(format!("prompt_dir {}: {e}", config.prompt_dir.display()))
        })?;
        match prompt_dir.to_str() {
            // `ausrc aufile,<path>` must fit ctrl_tcp's command buffer; the file name adds 38.
            Some(dir) if dir.len() <= 160 && !dir.contains(',') => {}
            _ => {
                return Err(InvalidConfig(format!(
                    "prompt_dir {} must be a UTF-8 path of at most 160 bytes without commas",
                    prompt_dir.display()
                )))
            }
        }
        let agents = config
            .agents
            .iter()
            .map(|address| Agent {
                address: address.clone(),
                in_use: AtomicBool::new(false),
            })
            .collect();
        Ok(BaresipGateway {
            config,
            prompt_dir,
            agents,
        })
    }

    /// How many agents are free for a call right now (for the admin page).
    pub fn idle_agents(&self) -> usize {
        self.agents
            .iter()
            .filter(|agent| !agent.in_use.load(Ordering::Acquire))
            .count()
    }

    /// The spoken prompt for `text` followed by `key_timeout` of silence, as a WAV file the
    /// agents can play (made once, then taken from the cache). Returns the file and its length.
    /// Calling it at start-up avoids the synthesis delay on the first call.
    pub async fn prepare_prompt(
        &self,
        text: &str,
        key_timeout: Duration,
    ) -> Result<(PathBuf, Duration), GatewayError> {
        prepare_prompt(&self.config, &self.prompt_dir, text, key_timeout)
            .await
            .map_err(|e| GatewayError::Refused(format!("could not make the spoken prompt: {e}")))
    }

    fn take_agent(&self) -> Option<Lease> {
        let index = self.agents.iter().position(|agent| {
            agent
                .in_use
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })?;
        Some(Lease {
            agents: Arc::clone(&self.agents),
            index,
        })
    }
}

/// An agent taken from the pool; given back when dropped (also on an error or a panic).
struct Lease {
    agents: Arc<[Agent]>,
    index: usize,
}

impl Lease {
    fn address(&self) -> &str {
        &self.agents[self.index].address
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.agents[self.index]
            .in_use
            .store(false, Ordering::Release);
    }
}

#[async_trait]
impl VoiceGateway for BaresipGateway {
    fn name(&self) -> &'static str {
        "baresip"
    }

    async fn call(&self, call: &Call, reports: Arc<dyn Reports>) -> Result<(), GatewayError> {
        let number = e164_digits(&call.to).ok_or_else(|| {
            GatewayError::Refused("the number is not in E.164 form (+ and digits)".into())
        })?;
        if let Some(extension) = &call.extension {
            if extension.is_empty()
                || extension.len() > MAX_EXTENSION_DIGITS
                || !extension
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
            {
                return Err(GatewayError::Refused(
                    "the extension must be 1 to 20 of 0-9, * and #".into(),
                ));
            }
        }
        let uri = self.config.dial.replace("{number}", number);
        if "dial ".len() + uri.len() > MAX_COMMAND_LINE {
            return Err(GatewayError::Refused(
                "the SIP URI to dial is too long".into(),
            ));
        }
        let masked = mask_number(&call.to);

        let lease = self.take_agent().ok_or(GatewayError::Busy)?;
        tracing::debug!(reference = %call.reference, to = %masked, agent = lease.address(), "placing a call");

        // Connect first: an agent that is down fails the call before any synthesis.
        let connect_timeout = Duration::from_secs(self.config.connect_timeout_secs);
        let mut conn = AgentConn::connect(lease.address(), connect_timeout).await?;
        let (prompt, prompt_length) = self.prepare_prompt(&call.prompt, call.key_timeout).await?;
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let setup_error = |e: ConnError| match e {
            ConnError::Timeout => GatewayError::Timeout,
            other => GatewayError::Unreachable(format!("agent {}: {other}", lease.address())),
        };
        ensure_idle(&mut conn, deadline)
            .await
            .map_err(|e| match e {
                IdleError::Conn(e) => setup_error(e),
                IdleError::StillBusy(n) => GatewayError::Refused(format!(
                    "agent {} still has {n} call(s) after hanging up",
                    lease.address()
                )),
            })?;

        let source = format!("aufile,{}", prompt.display());
        let answer = conn
            .command("ausrc", Some(&source), deadline)
            .await
            .map_err(setup_error)?;
        // ctrl_tcp answers "ok" even when the switch failed; the text says so.
        if !answer.ok || answer.data.contains("no such") || answer.data.contains("failed") {
            return Err(GatewayError::Refused(format!(
                "agent {} did not take the prompt: {}",
                lease.address(),
                answer.data.trim()
            )));
        }
        let answer = conn
            .command("dial", Some(&uri), deadline)
            .await
            .map_err(setup_error)?;
        if !answer.ok {
            // The answer may quote the URI, hence the number: logs get it masked.
            let detail = answer.data.trim().replace(number, &masked);
            return Err(GatewayError::Refused(format!(
                "agent {} refused to dial: {detail}",
                lease.address(),
            )));
        }
        tracing::debug!(reference = %call.reference, to = %masked, agent = lease.address(), "dial accepted");

        let followed = FollowedCall {
            reference: call.reference.clone(),
            extension: call.extension.clone(),
            ring_timeout: call.ring_timeout,
            prompt_length,
        };
        tokio::spawn(async move {
            let outcome = follow_call(&mut conn, &followed, reports.as_ref()).await;
            tracing::debug!(
                reference = %followed.reference,
                outcome = outcome.as_str(),
                agent = lease.address(),
                "call over"
            );
            // The connection closes before the agent goes back to the pool: the next call's
            // connection must not be the one ctrl_tcp drops.
            drop(conn);
            drop(lease);
        });
        Ok(())
    }
}

/// What the background task needs to know of the call.
struct FollowedCall {
    reference: String,
    extension: Option<String>,
    ring_timeout: Duration,
    prompt_length: Duration,
}

/// Follows the call to its end, reports its outcome exactly once, and returns it.
async fn follow_call(
    conn: &mut AgentConn,
    call: &FollowedCall,
    reports: &dyn Reports,
) -> CallOutcome {
    let reference = call.reference.as_str();
    let ring_deadline = Instant::now() + call.ring_timeout;
    let mut answered_deadline: Option<Instant> = None;
    let mut call_id: Option<String> = None;
    let mut zero_pressed = false;

    let (outcome, hang_up) = loop {
        let deadline = answered_deadline.unwrap_or(ring_deadline);
        let event = match conn.next_event(deadline).await {
            Ok(event) => event,
            Err(ConnError::Timeout) => {
                let outcome = if answered_deadline.is_some() {
                    tracing::debug!(reference, "prompt should have ended; hanging up");
                    CallOutcome::NoKey
                } else {
                    tracing::debug!(
                        reference,
                        "not answered within the ring timeout; hanging up"
                    );
                    CallOutcome::NotAnswered
                };
                // The outcome stands only if the agent confirms the hangup.
                let outcome = match hang_up_call(conn, call_id.as_deref()).await {
                    Ok(()) => outcome,
                    Err(e) => CallOutcome::Failed(format!("could not hang up: {e}")),
                };
                break (outcome, false);
            }
            Err(e) => {
                break (
                    CallOutcome::Failed(format!("lost the agent's control connection: {e}")),
                    false,
                )
            }
        };
        if !event.is_outgoing {
            continue;
        }
        match (&call_id, &event.id) {
            (Some(ours), Some(id)) if ours != id => continue,
            (Some(_), None) => continue,
            // The agent was idle when we dialled, so the first outgoing call it reports is ours.
            (None, Some(id)) => call_id = Some(id.clone()),
            _ => {}
        }
        match event.kind.as_str() {
            "CALL_RINGING" | "CALL_PROGRESS" => {
                tracing::debug!(reference, event = %event.kind, "call progress");
            }
            "CALL_ESTABLISHED" if answered_deadline.is_none() => {
                tracing::debug!(reference, "answered");
                answered_deadline = Some(Instant::now() + call.prompt_length + PROMPT_END_GRACE);
                if let Some(extension) = &call.extension {
                    let deadline = Instant::now() + COMMAND_TIMEOUT;
                    match conn.command("sndcode", Some(extension), deadline).await {
                        Ok(answer) if answer.ok => {
                            tracing::debug!(reference, "extension dialled");
                        }
                        Ok(answer) => {
                            tracing::warn!(reference, detail = %answer.data.trim(), "agent refused to dial the extension");
                        }
                        Err(e) => {
                            break (
                                CallOutcome::Failed(format!("could not dial the extension: {e}")),
                                true,
                            )
                        }
                    }
                }
            }
            "CALL_DTMF_START" if answered_deadline.is_some() => {
                tracing::debug!(reference, key = %event.param, "key pressed");
                match event.param.as_str() {
                    "#" if zero_pressed => break (CallOutcome::Fraud, true),
                    "#" => break (CallOutcome::Approved, true),
                    "0" => zero_pressed = true,
                    _ => zero_pressed = false,
                }
            }
            "CALL_CLOSED" => {
                tracing::debug!(reference, reason = %event.param, "call closed");
                let outcome = if answered_deadline.is_some() {
                    closed_after_answer(&event.param)
                } else {
                    closed_before_answer(&event.param)
                };
                break (outcome, false);
            }
            _ => {}
        }
    };

    reports.call_ended(reference, outcome.clone()).await;
    if hang_up {
        if let Err(e) = hang_up_call(conn, call_id.as_deref()).await {
            // Reported already; the next call on this agent checks it is idle.
            tracing::warn!(reference, error = %e, "could not hang up after the decision");
        }
    }
    outcome
}

/// Outcome of a call that ended before it was answered, from baresip's reason
/// (`"486 Busy Here"`, `"Connection reset by user"`, ...).
fn closed_before_answer(reason: &str) -> CallOutcome {
    let code = reason
        .split_whitespace()
        .next()
        .filter(|word| word.len() == 3)
        .and_then(|word| word.parse::<u16>().ok());
    match code {
        Some(408 | 480 | 486 | 487 | 600) => CallOutcome::NotAnswered,
        // The trunk failed, not the person.
        Some(500..=599) => CallOutcome::Failed(reason.to_owned()),
        Some(_) => CallOutcome::Rejected,
        None => {
            let reason = reason.to_ascii_lowercase();
            let sounds_unanswered = ["timeout", "timed out", "busy", "no answer", "unavailable"]
                .iter()
                .any(|word| reason.contains(word));
            if sounds_unanswered {
                CallOutcome::NotAnswered
            } else {
                CallOutcome::Rejected
            }
        }
    }
}

/// Outcome of an answered call that ended without a decision.
fn closed_after_answer(reason: &str) -> CallOutcome {
    if reason.to_ascii_lowercase().contains("end of file") {
        CallOutcome::NoKey
    } else {
        CallOutcome::Rejected
    }
}

/// Hangs up the agent's current call and waits for its `CALL_CLOSED`.
async fn hang_up_call(conn: &mut AgentConn, call_id: Option<&str>) -> Result<(), ConnError> {
    let deadline = Instant::now() + HANGUP_TIMEOUT;
    let answer = conn.command("hangup", None, deadline).await?;
    if !answer.ok {
        return Err(ConnError::Protocol(format!(
            "hangup refused: {}",
            answer.data.trim()
        )));
    }
    loop {
        let event = conn.next_event(deadline).await?;
        let ours = match (call_id, &event.id) {
            (Some(ours), Some(id)) => ours == id,
            (None, _) => event.is_outgoing,
            (Some(_), None) => false,
        };
        if ours && event.kind == "CALL_CLOSED" {
            return Ok(());
        }
    }
}

enum IdleError {
    Conn(ConnError),
    StillBusy(usize),
}

/// Makes sure the agent has no call before we dial: `hangup` and `sndcode` act on the agent's
/// newest call, and a left-over one (a hangup that was never confirmed, an inbound call) would
/// take our commands and send us its events.
async fn ensure_idle(conn: &mut AgentConn, deadline: Instant) -> Result<(), IdleError> {
    let mut calls = active_calls(conn, deadline).await?;
    if calls == 0 {
        return Ok(());
    }
    tracing::warn!(calls, "agent has left-over calls; hanging them up");
    for _ in 0..calls {
        let answer = conn
            .command("hangup", None, deadline)
            .await
            .map_err(IdleError::Conn)?;
        if !answer.ok {
            break;
        }
    }
    calls = active_calls(conn, deadline).await?;
    // Events of the calls just ended must not be taken for our call's.
    conn.pending.clear();
    if calls == 0 {
        Ok(())
    } else {
        Err(IdleError::StillBusy(calls))
    }
}

/// The number of calls the agent has, from `listcalls` ("--- Active calls (N) ---").
async fn active_calls(conn: &mut AgentConn, deadline: Instant) -> Result<usize, IdleError> {
    let answer = conn
        .command("listcalls", None, deadline)
        .await
        .map_err(IdleError::Conn)?;
    let count = answer
        .data
        .split_once("Active calls (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(n, _)| n.parse::<usize>().ok());
    count.ok_or_else(|| {
        IdleError::Conn(ConnError::Protocol(format!(
            "unexpected listcalls answer: {}",
            answer.data.trim()
        )))
    })
}

/// Digits of an E.164 number (`+31612345678` → `31612345678`), or `None`.
fn e164_digits(number: &str) -> Option<&str> {
    let digits = number.strip_prefix('+')?;
    let valid = (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    valid.then_some(digits)
}

/// The number as logs may show it: all but the last two digits hidden.
fn mask_number(number: &str) -> String {
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let mut seen = 0;
    number
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if seen + 2 <= digits {
                    return '*';
                }
            }
            c
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// ctrl_tcp: netstring-framed JSON over TCP.

/// Why talking to an agent failed.
#[derive(Debug)]
enum ConnError {
    Timeout,
    Closed,
    Io(std::io::Error),
    Protocol(String),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Timeout => write!(f, "the agent did not answer in time"),
            ConnError::Closed => write!(f, "the agent closed the connection"),
            ConnError::Io(e) => write!(f, "{e}"),
            ConnError::Protocol(detail) => write!(f, "{detail}"),
        }
    }
}

/// An event from the agent (`{"event":true,"type":"CALL_…","direction":…,"id":…,"param":…}`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    kind: String,
    is_outgoing: bool,
    id: Option<String>,
    param: String,
}

/// The answer to a command (`{"response":true,"ok":…,"data":…,"token":…}`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    ok: bool,
    data: String,
}

enum Message {
    Event(Event),
    Answer {
        token: Option<String>,
        answer: Answer,
    },
    Other,
}

struct AgentConn {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// Events that arrived while waiting for a command's answer, oldest first.
    pending: VecDeque<Event>,
    next_token: u64,
}

impl AgentConn {
    async fn connect(address: &str, connect_timeout: Duration) -> Result<Self, GatewayError> {
        let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(address)).await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                return Err(GatewayError::Unreachable(format!("agent {address}: {e}")));
            }
            Err(_) => return Err(GatewayError::Timeout),
        };
        // Commands are tiny; do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        Ok(AgentConn {
            stream,
            buffer: Vec::with_capacity(4096),
            pending: VecDeque::new(),
            next_token: 1,
        })
    }

    /// Sends a command and waits for its answer, keeping the events that arrive meanwhile.
    async fn command(
        &mut self,
        command: &str,
        params: Option<&str>,
        deadline: Instant,
    ) -> Result<Answer, ConnError> {
        let token = format!("sesame-{}", self.next_token);
        self.next_token += 1;
        let mut message = serde_json::json!({ "command": command, "token": token });
        if let Some(params) = params {
            message["params"] = Value::String(params.to_owned());
        }
        let frame = netstring(&message.to_string());
        match timeout_at(deadline, self.stream.write_all(&frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ConnError::Io(e)),
            Err(_) => return Err(ConnError::Timeout),
        }
        loop {
            match self.read_message(deadline).await? {
                Message::Answer {
                    token: Some(t),
                    answer,
                } if t == token => return Ok(answer),
                Message::Event(event) => self.pending.push_back(event),
                _ => {}
            }
        }
    }

    /// The next event (kept or new), or `ConnError::Timeout` at the deadline.
    async fn next_event(&mut self, deadline: Instant) -> Result<Event, ConnError> {
        if let Some(event) = self.pending.pop_front() {
            return Ok(event);
        }
        loop {
            if let Message::Event(event) = self.read_message(deadline).await? {
                return Ok(event);
            }
        }
    }

    async fn read_message(&mut self, deadline: Instant) -> Result<Message, ConnError> {
        loop {
            if let Some(payload) = take_netstring(&mut self.buffer)? {
                return parse_message(&payload);
            }
            match timeout_at(deadline, self.stream.read_buf(&mut self.buffer)).await {
                Ok(Ok(0)) => return Err(ConnError::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(ConnError::Io(e)),
                Err(_) => return Err(ConnError::Timeout),
            }
        }
    }
}

fn netstring(payload: &str) -> Vec<u8> {
    format!("{}:{},", payload.len(), payload).into_bytes()
}

/// Removes one complete netstring from the front of `buffer` and returns its payload; `None`
/// when more bytes are needed.
fn take_netstring(buffer: &mut Vec<u8>) -> Result<Option<Vec<u8>>, ConnError> {
    let Some(colon) = buffer.iter().take(8).position(|&b| b == b':') else {
        if buffer.len() >= 8 || buffer.iter().any(|b| !b.is_ascii_digit()) {
            return Err(ConnError::Protocol("bad netstring length".into()));
        }
        return Ok(None);
    };
    let length: usize = std::str::from_utf8(&buffer[..colon])
        .ok()
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| ConnError::Protocol("bad netstring length".into()))?;
    if length > MAX_FRAME {
        return Err(ConnError::Protocol(format!(
            "netstring of {length} bytes is too long"
        )));
    }
    let end = colon + 1 + length;
    if buffer.len() <= end {
        return Ok(None);
    }
    if buffer[end] != b',' {
        return Err(ConnError::Protocol(
            "netstring without its final comma".into(),
        ));
    }
    let payload = buffer[colon + 1..end].to_vec();
    buffer.drain(..=end);
    Ok(Some(payload))
}

fn parse_message(payload: &[u8]) -> Result<Message, ConnError> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| ConnError::Protocol(format!("agent sent invalid JSON: {e}")))?;
    let flag = |name: &str| match &value[name] {
        Value::Bool(b) => *b,
        Value::String(s) => s == "true",
        _ => false,
    };
    let text = |name: &str| value[name].as_str().unwrap_or_default().to_owned();
    if flag("event") {
        Ok(Message::Event(Event {
            kind: text("type"),
            is_outgoing: value["direction"].as_str() == Some("outgoing"),
            id: value["id"].as_str().map(str::to_owned),
            param: text("param"),
        }))
    } else if flag("response") {
        Ok(Message::Answer {
            token: value["token"].as_str().map(str::to_owned),
            answer: Answer {
                ok: flag("ok"),
                data: text("data"),
            },
        })
    } else {
        Ok(Message::Other)
    }
}

// ---------------------------------------------------------------------------------------------
// Prompts: espeak-ng → sox → 8 kHz mono S16 WAV + silence, cached by hash.

async fn prepare_prompt(
    config: &BaresipConfig,
    dir: &Path,
    text: &str,
    key_timeout: Duration,
) -> Result<(PathBuf, Duration), String> {
    if text.trim().is_empty() || text.chars().count() > MAX_PROMPT_CHARS {
        return Err(format!(
            "the prompt must have 1 to {MAX_PROMPT_CHARS} characters"
        ));
    }
    let mut hash = Sha256::new();
    // "v1": the audio format; change it when the conversion changes.
    hash.update(b"sesame-prompt-v1\0");
    hash.update(key_timeout.as_millis().to_string().as_bytes());
    hash.update(b"\0");
    hash.update(text.as_bytes());
    let stem: String = hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = dir.join(format!("prompt-{stem}.wav"));
    if let Ok(bytes) = tokio::fs::read(&path).await {
        if let Some(length) = wav_length(&bytes) {
            return Ok((path, length));
        }
        tracing::warn!(path = %path.display(), "cached prompt is not a usable WAV; making it again");
    }

    // Unique names: two calls may make the same prompt at once; the rename is atomic.
    let nonce: u64 = rand::random();
    let text_file = dir.join(format!(".prompt-{stem}-{nonce:016x}.txt"));
    let speech_file = dir.join(format!(".prompt-{stem}-{nonce:016x}.speech.wav"));
    let temp_file = dir.join(format!(".prompt-{stem}-{nonce:016x}.wav"));
    let result: Result<Duration, String> = async {
        tokio::fs::write(&text_file, text)
            .await
            .map_err(|e| format!("cannot write {}: {e}", text_file.display()))?;
        // The text goes through a file, never the command line: it cannot become an option.
        run_tool(
            &config.espeak,
            &[
                "-w".into(),
                speech_file.clone().into(),
                "-f".into(),
                text_file.clone().into(),
            ],
        )
        .await?;
        run_tool(
            &config.sox,
            &[
                speech_file.clone().into(),
                "-r".into(),
                "8000".into(),
                "-c".into(),
                "1".into(),
                "-b".into(),
                "16".into(),
                "-e".into(),
                "signed-integer".into(),
                temp_file.clone().into(),
                "pad".into(),
                "0".into(),
                format!("{:.3}", key_timeout.as_secs_f64()).into(),
            ],
        )
        .await?;
        let bytes = tokio::fs::read(&temp_file)
            .await
            .map_err(|e| format!("cannot read {}: {e}", temp_file.display()))?;
        let length = wav_length(&bytes)
            .ok_or_else(|| format!("{} did not write an 8 kHz mono 16-bit WAV", config.sox))?;
        tokio::fs::rename(&temp_file, &path)
            .await
            .map_err(|e| format!("cannot rename to {}: {e}", path.display()))?;
        Ok(length)
    }
    .await;
    for leftover in [&text_file, &speech_file, &temp_file] {
        let _ = tokio::fs::remove_file(leftover).await;
    }
    let length = result?;
    tracing::debug!(path = %path.display(), seconds = length.as_secs_f64(), "spoken prompt made");
    Ok((path, length))
}

/// Length of a PCM WAV file if it is 8 kHz, mono, signed 16-bit (what aufile plays as PCMU).
fn wav_length(bytes: &[u8]) -> Option<Duration> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let u16_at = |i: usize| Some(u16::from_le_bytes(bytes.get(i..i + 2)?.try_into().ok()?));
    let u32_at = |i: usize| Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?));
    let mut offset = 12;
    let mut format_ok = false;
    while offset + 8 <= bytes.len() {
        let id = &bytes[offset..offset + 4];
        let size = u32_at(offset + 4)? as usize;
        let body = offset + 8;
        if id == b"fmt " {
            format_ok = u16_at(body)? == 1 // PCM
                && u16_at(body + 2)? == 1 // mono
                && u32_at(body + 4)? == 8000
                && u16_at(body + 14)? == 16;
        } else if id == b"data" {
            let available = bytes.len().saturating_sub(body).min(size);
            return (format_ok && available > 0)
                .then(|| Duration::from_secs_f64(available as f64 / 16_000.0));
        }
        offset = body + size + (size & 1);
    }
    None
}

/// Runs a helper program to its end, within [`SYNTHESIS_TIMEOUT`].
///
/// std's process API polled without blocking, because the crate's tokio has no `process`
/// feature; the guard kills the child if the call is abandoned.
async fn run_tool(program: &str, args: &[OsString]) -> Result<(), String> {
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if let Ok(None) = self.0.try_wait() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }

    let child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + SYNTHESIS_TIMEOUT;
    let mut pause = Duration::from_millis(5);
    loop {
        match child.0.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut detail = String::new();
                if let Some(stderr) = child.0.stderr.as_mut() {
                    let _ = stderr.take(2000).read_to_string(&mut detail);
                }
                let detail = detail.trim();
                return Err(format!("{program} failed ({status}): {detail}"));
            }
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{program} did not finish within {} s",
                SYNTHESIS_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_masked_but_the_last_two_digits() {
        assert_eq!(mask_number("+31612345678"), "+*********78");
        assert_eq!(mask_number("+12"), "+12");
        assert_eq!(mask_number(""), "");
    }

    #[test]
    fn only_e164_numbers_are_dialled() {
        assert_eq!(e164_digits("+31612345678"), Some("31612345678"));
        assert_eq!(e164_digits("31612345678"), None);
        assert_eq!(e164_digits("+3161234567x"), None);
        assert_eq!(e164_digits("+1234567890123456"), None);
        assert_eq!(e164_digits("+1@evil"), None);
    }

    #[test]
    fn netstrings_are_split_at_their_boundaries() {
        let mut buffer = b"2:{},3:[1]".to_vec();
        assert_eq!(take_netstring(&mut buffer).unwrap(), Some(b"{}".to_vec()));
        // The second frame lacks its comma: more bytes needed.
        assert_eq!(take_netstring(&mut buffer).unwrap(), None);
        buffer.push(b',');
        assert_eq!(take_netstring(&mut buffer).unwrap(), Some(b"[1]".to_vec()));
        assert!(buffer.is_empty());
        assert_eq!(take_netstring(&mut buffer).unwrap(), None);
        assert_eq!(take_netstring(&mut b"12".to_vec()).unwrap(), None);
    }

    #[test]
    fn broken_netstrings_are_errors() {
        assert!(take_netstring(&mut b"x:{}".to_vec()).is_err());
        assert!(take_netstring(&mut b"2:{}]".to_vec()).is_err());
        assert!(take_netstring(&mut b"123456789".to_vec()).is_err());
        assert!(take_netstring(&mut b"9999999:".to_vec()).is_err());
        assert!(take_netstring(&mut b":{}".to_vec()).is_err());
    }

    #[test]
    fn events_and_answers_are_told_apart() {
        let event = br##"{"event":true,"type":"CALL_DTMF_START","class":"call","direction":"outgoing","id":"f4291508cb99ec2a","param":"#"}"##;
        match parse_message(event).unwrap() {
            Message::Event(e) => {
                assert_eq!(e.kind, "CALL_DTMF_START");
                assert!(e.is_outgoing);
                assert_eq!(e.id.as_deref(), Some("f4291508cb99ec2a"));
                assert_eq!(e.param, "#");
            }
            _ => panic!("not an event"),
        }
        let answer = br#"{"response":true,"ok":false,"data":"x","token":"sesame-1"}"#;
        match parse_message(answer).unwrap() {
            Message::Answer { token, answer } => {
                assert_eq!(token.as_deref(), Some("sesame-1"));
                assert!(!answer.ok);
                assert_eq!(answer.data, "x");
            }
            _ => panic!("not an answer"),
        }
    }

    #[test]
    fn unanswered_calls_are_told_from_rejected_ones() {
        assert_eq!(
            closed_before_answer("486 Busy Here"),
            CallOutcome::NotAnswered
        );
        assert_eq!(
            closed_before_answer("408 Request Timeout"),
            CallOutcome::NotAnswered
        );
        assert_eq!(
            closed_before_answer("Connection timed out"),
            CallOutcome::NotAnswered
        );
        assert_eq!(closed_before_answer("603 Decline"), CallOutcome::Rejected);
        assert_eq!(closed_before_answer("404 Not Found"), CallOutcome::Rejected);
        assert_eq!(
            closed_before_answer("503 Service Unavailable"),
            CallOutcome::Failed("503 Service Unavailable".into())
        );
        assert_eq!(closed_after_answer("end of file"), CallOutcome::NoKey);
        assert_eq!(
            closed_after_answer("Connection reset by peer"),
            CallOutcome::Rejected
        );
    }

    #[test]
    fn wav_length_reads_only_8khz_mono_16bit() {
        fn wav(rate: u32, channels: u16, samples: usize) -> Vec<u8> {
            let data = samples * 2 * channels as usize;
            let mut w = Vec::new();
            w.extend_from_slice(b"RIFF");
            w.extend_from_slice(&((36 + data) as u32).to_le_bytes());
            w.extend_from_slice(b"WAVEfmt ");
            w.extend_from_slice(&16u32.to_le_bytes());
            w.extend_from_slice(&1u16.to_le_bytes());
            w.extend_from_slice(&channels.to_le_bytes());
            w.extend_from_slice(&rate.to_le_bytes());
            w.extend_from_slice(&(rate * 2 * channels as u32).to_le_bytes());
            w.extend_from_slice(&(2 * channels).to_le_bytes());
            w.extend_from_slice(&16u16.to_le_bytes());
            w.extend_from_slice(b"data");
            w.extend_from_slice(&(data as u32).to_le_bytes());
            w.resize(w.len() + data, 0);
            w
        }
        assert_eq!(
            wav_length(&wav(8000, 1, 16000)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(wav_length(&wav(22050, 1, 16000)), None);
        assert_eq!(wav_length(&wav(8000, 2, 16000)), None);
        assert_eq!(wav_length(b"RIFF....WAVE"), None);
        assert_eq!(wav_length(b"not a wav"), None);
    }

    #[test]
    fn config_reads_with_defaults_and_rejects_unknown_keys() {
        let config: BaresipConfig = serde_json::from_str(
            r#"{"agents":["127.0.0.1:4444"],"dial":"sip:{number}@trunk.example.com","prompt_dir":"/var/lib/sesame/prompts"}"#,
        )
        .unwrap();
        assert_eq!(config.espeak, "espeak-ng");
        assert_eq!(config.sox, "sox");
        assert_eq!(config.connect_timeout_secs, 2);
        let unknown = serde_json::from_str::<BaresipConfig>(
            r#"{"agents":[],"dial":"sip:x@y","prompt_dir":"/p","colour":"red"}"#,
        );
        assert!(unknown.is_err());
    }

    #[test]
    fn bad_configs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = BaresipConfig::new(
            vec!["127.0.0.1:4444".into()],
            "sip:{number}@trunk.example.com",
            dir.path(),
        );
        assert!(BaresipGateway::new(good.clone()).is_ok());
        let mut no_agents = good.clone();
        no_agents.agents.clear();
        assert!(BaresipGateway::new(no_agents).is_err());
        let mut bad_agent = good.clone();
        bad_agent.agents = vec!["127.0.0.1".into()];
        assert!(BaresipGateway::new(bad_agent).is_err());
        let mut bad_dial = good.clone();
        bad_dial.dial = "tel:{number}".into();
        assert!(BaresipGateway::new(bad_dial).is_err());
        let mut comma_dir = good;
        comma_dir.prompt_dir = dir.path().join("a,b");
        assert!(BaresipGateway::new(comma_dir).is_err());
    }
}
