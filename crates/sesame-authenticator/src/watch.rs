//! `watch`: the full-screen app. State plus a key handler that returns an [`Action`] plus draw
//! functions, so key handling is tested without a terminal; [`run`] wires them to the terminal,
//! the event streams, the clock and the vault file.
//!
//! Other commands change the vault while `watch` runs (`add`, `phone-sign-in enable`,
//! `remove`...): `watch` re-reads it when the file changed, every second and before acting on
//! it, so it never answers with a stale copy. And the server may forget this device (removed on
//! My security info or by an administrator) while nothing is waiting for it: each account asks
//! the server now and then, and says so when it happened.

use crate::approval::{self, TypedPin};
use crate::client::DeviceClient;
use crate::device::DeviceKey;
use crate::vault::{Account, Vault};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;
use sesame_proto::device::{Challenge, ChallengeKind, Decision, DeviceEvent};
use sesame_proto::text::printable;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

/// A sign-in request shown on screen.
#[derive(Debug, Clone)]
pub struct Request {
    pub account_id: String,
    pub account: String,
    pub challenge: Challenge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Browse,
    /// Typing the number shown on the sign-in page.
    Number(String),
    /// Number typed: approve, deny or report.
    Decide(String),
    /// Approving a request that needs the app PIN: the number, and the PIN typed so far.
    Pin(String, String),
    /// Turning on phone sign-in: the PIN typed so far.
    EnablePin(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    Respond {
        account_id: String,
        challenge_id: String,
        decision: Decision,
        number: String,
        pin: Option<String>,
    },
    /// Turn on phone sign-in for the first Sesame account that does not have it yet.
    EnablePhoneSignIn {
        pin: String,
    },
}

/// One account's line in the codes box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRow {
    pub label: String,
    pub code: String,
    pub seconds_left: u64,
    /// The server no longer knows this device: its code no longer works, so none is shown.
    pub removed: bool,
}

pub struct WatchState {
    pub codes: Vec<CodeRow>,
    pub requests: Vec<Request>,
    pub selected: usize,
    pub mode: Mode,
    pub message: String,
    pub now: i64,
}

impl Default for WatchState {
    fn default() -> Self {
        WatchState {
            codes: Vec::new(),
            requests: Vec::new(),
            selected: 0,
            mode: Mode::Browse,
            message: "Waiting for sign-in requests…".into(),
            now: 0,
        }
    }
}

fn closed_reason(reason: &str) -> &str {
    match reason {
        "superseded" => "was replaced by a newer request",
        "cancelled" => "was cancelled on the sign-in page",
        "device_removed" => "was cancelled: this device was removed",
        "approved" => "was approved",
        "denied" => "was denied",
        "reported" => "was reported",
        "wrong_number" => "failed: the number didn't match",
        _ => "ended",
    }
}

impl WatchState {
    /// An event from one account's stream.
    pub fn on_event(&mut self, account_id: &str, account: &str, ev: DeviceEvent) {
        match ev {
            DeviceEvent::Challenge(c) => {
                if !self.requests.iter().any(|r| r.challenge.id == c.id) {
                    self.message =
                        format!("New sign-in request for {account}. Press Enter to answer.");
                    self.requests.push(Request {
                        account_id: account_id.into(),
                        account: account.into(),
                        challenge: c,
                    });
                }
            }
            DeviceEvent::Closed { id, reason } => {
                if self.remove(&id) {
                    self.message = format!("The request {}.", closed_reason(&reason));
                }
            }
        }
    }

    /// The server said this account's device is no longer registered: its requests can no
    /// longer be answered.
    pub fn on_removed(&mut self, account_id: &str, account: &str) {
        self.drop_requests(|r| r.account_id == account_id);
        self.message = format!(
            "{account} was removed from the server: its codes and sign-in requests no longer work here."
        );
    }

    /// Drops the requests of accounts not in `account_ids` (gone from the vault).
    pub fn keep_accounts(&mut self, account_ids: &HashSet<String>) {
        self.drop_requests(|r| !account_ids.contains(&r.account_id));
    }

    fn remove(&mut self, id: &str) -> bool {
        self.drop_requests(|r| r.challenge.id == id)
    }

    /// Drops the requests `gone` picks; whether there were any.
    fn drop_requests(&mut self, gone: impl Fn(&Request) -> bool) -> bool {
        let before = self.requests.len();
        let was_selected = self.requests.get(self.selected).is_some_and(&gone);
        self.requests.retain(|r| !gone(r));
        if was_selected {
            self.mode = Mode::Browse;
        }
        self.selected = self.selected.min(self.requests.len().saturating_sub(1));
        self.requests.len() != before
    }

    /// Clock tick: drops expired requests (and says so).
    pub fn tick(&mut self, now: i64) {
        self.now = now;
        let expired: Vec<String> = self
            .requests
            .iter()
            .filter(|r| r.challenge.expires_at <= now)
            .map(|r| r.challenge.id.clone())
            .collect();
        for id in expired {
            self.remove(&id);
            self.message = "A sign-in request expired before it was answered.".into();
        }
    }

    fn respond(&mut self, decision: Decision, number: String) -> Action {
        self.respond_with_pin(decision, number, None)
    }

    fn respond_with_pin(
        &mut self,
        decision: Decision,
        number: String,
        pin: Option<String>,
    ) -> Action {
        let Some(r) = self.requests.get(self.selected) else {
            return Action::None;
        };
        let action = Action::Respond {
            account_id: r.account_id.clone(),
            challenge_id: r.challenge.id.clone(),
            decision,
            number,
            pin,
        };
        self.mode = Mode::Browse;
        self.message = "Sending your answer…".into();
        action
    }

    pub fn on_key(&mut self, key: KeyCode) -> Action {
        match (&mut self.mode, key) {
            (Mode::Browse, KeyCode::Char('q') | KeyCode::Esc) => Action::Quit,
            (Mode::Browse, KeyCode::Down) if self.selected + 1 < self.requests.len() => {
                self.selected += 1;
                Action::None
            }
            (Mode::Browse, KeyCode::Up) => {
                self.selected = self.selected.saturating_sub(1);
                Action::None
            }
            (Mode::Browse, KeyCode::Enter) if !self.requests.is_empty() => {
                self.mode = Mode::Number(String::new());
                self.message =
                    "Type the number shown on the sign-in page, then Enter. Esc goes back.".into();
                Action::None
            }
            (Mode::Browse, KeyCode::Char('p')) => {
                self.mode = Mode::EnablePin(String::new());
                self.message =
                    "Turn on phone sign-in: type your app PIN, then Enter. Esc goes back.".into();
                Action::None
            }
            (Mode::EnablePin(p), KeyCode::Char(c)) if c.is_ascii_digit() && p.len() < 16 => {
                p.push(c);
                Action::None
            }
            (Mode::EnablePin(p), KeyCode::Backspace) => {
                p.pop();
                Action::None
            }
            (Mode::EnablePin(p), KeyCode::Enter) if !p.is_empty() => {
                let pin = std::mem::take(p);
                self.mode = Mode::Browse;
                self.message = "Turning on phone sign-in…".into();
                Action::EnablePhoneSignIn { pin }
            }
            (Mode::EnablePin(_), KeyCode::Esc) => {
                self.mode = Mode::Browse;
                self.message = String::new();
                Action::None
            }
            (Mode::Browse, KeyCode::Char('d')) => self.respond(Decision::Deny, String::new()),
            (Mode::Browse, KeyCode::Char('r')) => self.respond(Decision::Report, String::new()),
            (Mode::Number(n), KeyCode::Char(c)) if c.is_ascii_digit() && n.len() < 8 => {
                n.push(c);
                Action::None
            }
            (Mode::Number(n), KeyCode::Backspace) => {
                n.pop();
                Action::None
            }
            (Mode::Number(n), KeyCode::Enter) if !n.is_empty() => {
                self.mode = Mode::Decide(n.clone());
                self.message =
                    "a = Approve, d = Deny, r = Deny and report (this wasn't me). Esc goes back."
                        .into();
                Action::None
            }
            (Mode::Number(_) | Mode::Decide(_), KeyCode::Esc) => {
                self.mode = Mode::Browse;
                self.message = String::new();
                Action::None
            }
            (Mode::Decide(n), KeyCode::Char('a')) => {
                let n = n.clone();
                if let Some(r) = self
                    .requests
                    .get(self.selected)
                    .filter(|r| r.challenge.pin_required)
                {
                    self.message = if r.challenge.kind == ChallengeKind::PhoneSignIn {
                        "Unlock phone sign-in with your app PIN: type it, then Enter."
                    } else {
                        "Your organisation requires your app PIN: type it, then Enter."
                    }
                    .into();
                    self.mode = Mode::Pin(n, String::new());
                    return Action::None;
                }
                self.respond(Decision::Approve, n)
            }
            (Mode::Pin(_, p), KeyCode::Char(c)) if c.is_ascii_digit() && p.len() < 16 => {
                p.push(c);
                Action::None
            }
            (Mode::Pin(_, p), KeyCode::Backspace) => {
                p.pop();
                Action::None
            }
            (Mode::Pin(n, p), KeyCode::Enter) if !p.is_empty() => {
                let (n, p) = (n.clone(), p.clone());
                self.respond_with_pin(Decision::Approve, n, Some(p))
            }
            (Mode::Pin(..), KeyCode::Esc) => {
                self.mode = Mode::Browse;
                self.message = String::new();
                Action::None
            }
            (Mode::Decide(_), KeyCode::Char('d')) => self.respond(Decision::Deny, String::new()),
            (Mode::Decide(_), KeyCode::Char('r')) => self.respond(Decision::Report, String::new()),
            _ => Action::None,
        }
    }
}

/// What the Codes box says with no accounts: both kinds of link `add` takes, in 80 columns.
const NO_ACCOUNTS: [&str; 2] = [
    "No accounts yet. Add one with: sesame-authenticator add LINK",
    "LINK: sesame://activate?... from My security info, or otpauth://totp/...",
];

pub fn draw(f: &mut Frame, s: &WatchState) {
    let [codes_area, req_area, help_area] = Layout::vertical([
        Constraint::Length(s.codes.len().clamp(NO_ACCOUNTS.len(), 8) as u16 + 2),
        Constraint::Min(6),
        Constraint::Length(4),
    ])
    .areas(f.area());
    let codes: Vec<Line> = if s.codes.is_empty() {
        NO_ACCOUNTS.iter().map(|l| Line::from(*l)).collect()
    } else {
        s.codes
            .iter()
            .map(|row| {
                let label = Span::raw(format!("{:<40} ", printable(&row.label)));
                if row.removed {
                    return Line::from(vec![label, Span::raw("removed from the server")]);
                }
                let (code, left) = (&row.code, row.seconds_left);
                let mid = code.len() / 2;
                Line::from(vec![
                    label,
                    Span::styled(
                        format!("{} {}", &code[..mid], &code[mid..]),
                        Style::default().add_modifier(Modifier::BOLD),
                    ),
                    Span::raw(format!("  {left:>2} s")),
                ])
            })
            .collect()
    };
    f.render_widget(
        Paragraph::new(codes).block(Block::default().borders(Borders::ALL).title(" Codes ")),
        codes_area,
    );
    let mut lines = Vec::new();
    if s.requests.is_empty() {
        lines.push(Line::from("No sign-in requests."));
    }
    for (i, r) in s.requests.iter().enumerate() {
        let c = &r.challenge;
        let marker = if i == s.selected { "> " } else { "  " };
        let style = if i == s.selected {
            Style::default().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        let what = if c.kind == ChallengeKind::PhoneSignIn {
            "Sign in with your phone?"
        } else {
            "Approve sign-in?"
        };
        // Everything but the fixed words came from elsewhere (the vault's label, the
        // server's request): shown escaped, so it cannot move the cursor or reorder the line.
        lines.push(Line::styled(
            printable(&format!("{marker}{what} {}  ({})", r.account, c.app_name)).into_owned(),
            style,
        ));
        lines.push(Line::from(
            printable(&format!(
                "    From {} ({}), {} s ago, expires in {} s",
                c.ip,
                c.location,
                (s.now - c.requested_at).max(0),
                (c.expires_at - s.now).max(0)
            ))
            .into_owned(),
        ));
        lines.push(Line::from(
            printable(&format!("    Browser: {}", c.browser)).into_owned(),
        ));
    }
    match &s.mode {
        Mode::Number(n) => lines.push(Line::styled(
            format!("  Enter number: {n}_"),
            Style::default().add_modifier(Modifier::BOLD),
        )),
        Mode::Decide(n) => lines.push(Line::from(format!(
            "  Number {n}: [a] Approve  [d] Deny  [r] Deny and report"
        ))),
        Mode::Pin(_, p) | Mode::EnablePin(p) => lines.push(Line::styled(
            format!("  App PIN: {}_", "*".repeat(p.len())),
            Style::default().add_modifier(Modifier::BOLD),
        )),
        Mode::Browse => {}
    }
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Sign-in requests "),
        ),
        req_area,
    );
    let help = vec![
        Line::from(printable(&s.message).into_owned()),
        Line::from("Enter answer  d deny  r report  p phone sign-in  ↑↓ select  q quit"),
    ];
    f.render_widget(
        Paragraph::new(help)
            .wrap(Wrap { trim: true })
            .block(Block::default().borders(Borders::TOP)),
        help_area,
    );
}

enum Input {
    Key(KeyCode),
    Event(String, String, Box<DeviceEvent>),
    Note(String),
    /// The server no longer knows this account's (id) device.
    Removed(String),
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// How often each account asks whether the server still knows its device (see
/// [`stream_account`]). `SESAME_AUTHENTICATOR_SERVER_CHECK_SECS` changes it (tests use 1 s).
fn server_check_interval() -> Duration {
    std::env::var("SESAME_AUTHENTICATOR_SERVER_CHECK_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&secs| secs > 0)
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(30))
}

/// Keeps one account's event stream open, reconnecting after failures, until the server says
/// it no longer knows the device (then sends [`Input::Removed`] and ends).
async fn stream_account(account: Account, check_every: Duration, tx: mpsc::Sender<Input>) {
    let Some(link) = account.sesame.clone() else {
        return;
    };
    let Some(key) = DeviceKey::from_secret(&link.device_key) else {
        return;
    };
    let label = account.otp.label();
    let removed = || Input::Removed(account.id.clone());
    loop {
        let client = DeviceClient::new(&link.server, &link.device_id, &key);
        let mut wait = Duration::from_secs(2);
        match client.events().await {
            Ok(mut stream) => {
                // The server ends the stream of a removed device only when an event comes for
                // it; with nothing waiting it stays open, kept alive, for ever. So ask now and
                // then whether the device is still registered.
                let mut check = tokio::time::interval_at(
                    tokio::time::Instant::now() + check_every,
                    check_every,
                );
                check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                // Until the stream ends or fails; then reconnect (the server re-sends pending),
                // after the wait the server asked for, if it did (a restart says when).
                loop {
                    tokio::select! {
                        // Cancel-safe: an event is taken from the buffer only once complete.
                        next = stream.next() => {
                            let Ok(Some(ev)) = next else { break };
                            let event =
                                Input::Event(account.id.clone(), label.clone(), Box::new(ev));
                            if tx.send(event).await.is_err() {
                                return;
                            }
                        }
                        _ = check.tick() => {
                            // Other failures (unreachable) change nothing: the stream says.
                            if client.status().await.is_err_and(|e| e.is_unknown_device()) {
                                let _ = tx.send(removed()).await;
                                return;
                            }
                        }
                    }
                }
                wait = stream.retry_after().unwrap_or(wait);
            }
            // Removed: reconnecting would be refused for ever.
            Err(e) if e.is_unknown_device() => {
                let _ = tx.send(removed()).await;
                return;
            }
            Err(e) => {
                if tx.send(Input::Note(format!("{label}: {e}"))).await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(wait).await;
    }
}

/// Turns on phone sign-in for the first Sesame account without it; what to tell the person.
async fn enable_first(vault: &mut crate::vault::Vault, pin: &str) -> String {
    if !vault.data.pin_set {
        return "Set an app PIN first (sesame-authenticator pin set), then turn on phone sign-in."
            .into();
    }
    let Some(account) = vault.data.accounts.iter_mut().find(|a| {
        a.sesame
            .as_ref()
            .is_some_and(|l| !l.phone_sign_in && !l.removed_on_server)
    }) else {
        return "Phone sign-in is already on for every Sesame account here.".into();
    };
    let label = account.otp.label();
    let link = account.sesame.as_mut().expect("filtered above");
    let page = format!("{}/security-info", link.server.trim_end_matches('/'));
    match crate::phone::enable(link, pin).await {
        Ok(status) => match vault.save() {
            Ok(()) if status.phone_sign_in_awaiting_confirmation => match &status.phone_sign_in_code {
                Some(code) => format!(
                    "Phone sign-in asked for {label}: confirm it on My security info ({page}) within 10 minutes, only if it shows code {code}."
                ),
                None => format!(
                    "Phone sign-in asked for {label}: confirm it on My security info ({page}) within 10 minutes."
                ),
            },
            Ok(()) => format!("Phone sign-in is on for {label}."),
            Err(e) => format!("Phone sign-in is on, but the vault could not be saved: {e}"),
        },
        Err(e) => {
            // A first PIN key may have been registered before the refusal: keep it.
            let _ = vault.save();
            format!("Phone sign-in not turned on for {label}: {e}")
        }
    }
}

/// Runs the full-screen app until the user quits.
pub fn run(vault: Vault) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut terminal = ratatui::init();
    let result = rt.block_on(event_loop(&mut terminal, vault));
    ratatui::restore();
    result
}

/// The vault as it is on disk, and one event stream per Sesame account in it.
struct Live {
    vault: Vault,
    /// Accounts whose device the server no longer knows, learned in this run (recorded in the
    /// vault too, unless it could not be saved).
    removed: HashSet<String>,
    streams: HashMap<String, tokio::task::JoinHandle<()>>,
    check_every: Duration,
    tx: mpsc::Sender<Input>,
    /// The last failure to read the vault again: said once, not every second.
    reload_error: Option<String>,
}

impl Live {
    fn is_removed(&self, a: &Account) -> bool {
        self.removed.contains(&a.id) || a.sesame.as_ref().is_some_and(|l| l.removed_on_server)
    }

    /// Reads the vault again if another command changed it, and follows it: streams for new
    /// accounts, none for accounts gone, and their requests dropped.
    fn refresh(&mut self, state: &mut WatchState) {
        match self.vault.reload_if_changed() {
            Ok(false) => {}
            Ok(true) => {
                self.reload_error = None;
                self.follow_vault(state);
            }
            Err(e) => {
                let m = format!("The vault could not be read again ({e}); showing it as before.");
                if self.reload_error.as_ref() != Some(&m) {
                    state.message = m.clone();
                    self.reload_error = Some(m);
                }
            }
        }
    }

    /// One stream per Sesame account the server still knows; requests only of those.
    fn follow_vault(&mut self, state: &mut WatchState) {
        let wanted: HashSet<String> = self
            .vault
            .data
            .accounts
            .iter()
            .filter(|a| a.sesame.is_some() && !self.is_removed(a))
            .map(|a| a.id.clone())
            .collect();
        self.streams.retain(|id, task| {
            let keep = wanted.contains(id);
            if !keep {
                task.abort();
            }
            keep
        });
        for a in &self.vault.data.accounts {
            if wanted.contains(&a.id) && !self.streams.contains_key(&a.id) {
                let task =
                    tokio::spawn(stream_account(a.clone(), self.check_every, self.tx.clone()));
                self.streams.insert(a.id.clone(), task);
            }
        }
        state.keep_accounts(&wanted);
    }

    /// The server no longer knows account `id`'s device: recorded in the vault (so `list`
    /// shows it too) and on screen.
    fn mark_removed(&mut self, id: &str, state: &mut WatchState) {
        // Read first, so the mark goes onto what other commands last wrote, not over it.
        self.refresh(state);
        self.removed.insert(id.to_string());
        let Some(account) = self.vault.data.accounts.iter_mut().find(|a| a.id == id) else {
            return;
        };
        let label = account.otp.label();
        let mut saved = Ok(());
        if let Some(link) = account.sesame.as_mut().filter(|l| !l.removed_on_server) {
            link.removed_on_server = true;
            saved = self.vault.save();
        }
        self.follow_vault(state);
        state.on_removed(id, &label);
        if let Err(e) = saved {
            state.message =
                format!("{label} was removed from the server; the vault could not be saved: {e}");
        }
    }

    fn codes(&self, now: u64) -> Vec<CodeRow> {
        self.vault
            .data
            .accounts
            .iter()
            .map(|a| {
                let (code, seconds_left) = a.otp.code_at(now);
                CodeRow {
                    label: a.otp.label(),
                    code,
                    seconds_left,
                    removed: self.is_removed(a),
                }
            })
            .collect()
    }
}

async fn event_loop(terminal: &mut ratatui::DefaultTerminal, vault: Vault) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Input>(64);
    let mut state = WatchState::default();
    let mut live = Live {
        vault,
        removed: HashSet::new(),
        streams: HashMap::new(),
        check_every: server_check_interval(),
        tx: tx.clone(),
        reload_error: None,
    };
    live.follow_vault(&mut state);
    let keys = tx.clone();
    std::thread::spawn(move || loop {
        if event::poll(Duration::from_millis(250)).unwrap_or(false) {
            if let Ok(Event::Key(k)) = event::read() {
                if k.kind == KeyEventKind::Press && keys.blocking_send(Input::Key(k.code)).is_err()
                {
                    return;
                }
            }
        } else if keys.is_closed() {
            return;
        }
    });
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let now = unix_now();
        // Every second at least (the tick), and before any input is acted on.
        live.refresh(&mut state);
        state.codes = live.codes(now as u64);
        state.tick(now);
        terminal.draw(|f| draw(f, &state))?;
        let input = tokio::select! {
            i = rx.recv() => i,
            _ = tick.tick() => continue,
        };
        // Input may have waited up to a second: act on the vault as it is now.
        live.refresh(&mut state);
        match input {
            Some(Input::Key(k)) => match state.on_key(k) {
                Action::Quit => return Ok(()),
                Action::Respond {
                    account_id,
                    challenge_id,
                    decision,
                    number,
                    pin,
                } => {
                    let link = live
                        .vault
                        .data
                        .accounts
                        .iter()
                        .find(|a| a.id == account_id)
                        .and_then(|a| a.sesame.clone());
                    let challenge = state
                        .requests
                        .iter()
                        .find(|r| r.challenge.id == challenge_id)
                        .map(|r| r.challenge.clone());
                    let (Some(link), Some(challenge)) = (link, challenge) else {
                        state.message = "That request is no longer here.".into();
                        continue;
                    };
                    let Some(key) = DeviceKey::from_secret(&link.device_key) else {
                        state.message = "This account's device key is damaged.".into();
                        continue;
                    };
                    // Checked (PIN) and signed here, on the device; only the sending waits.
                    let mut typed = TypedPin(pin.map(Zeroizing::new));
                    let req = match approval::answer(
                        &link, &key, &challenge, decision, &number, &mut typed,
                    ) {
                        Ok(r) => r,
                        Err(e) => {
                            state.message = format!("Not approved: {e}.");
                            continue;
                        }
                    };
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let note = match DeviceClient::new(&link.server, &link.device_id, &key)
                            .respond(&req)
                            .await
                        {
                            Ok(r) => r.message,
                            // A wrong PIN leaves the request open: the person may try again.
                            Err(crate::client::ClientError::Refused(e, _))
                                if e.error == "wrong_pin" =>
                            {
                                let _ = tx.send(Input::Note(e.message)).await;
                                return;
                            }
                            // Removed since the request came: that says it all.
                            Err(e) if e.is_unknown_device() => {
                                let _ = tx.send(Input::Removed(account_id)).await;
                                return;
                            }
                            Err(e) => e.to_string(),
                        };
                        let closed = DeviceEvent::Closed {
                            id: challenge_id,
                            reason: String::new(),
                        };
                        let _ = tx
                            .send(Input::Event(String::new(), String::new(), Box::new(closed)))
                            .await;
                        let _ = tx.send(Input::Note(note)).await;
                    });
                }
                Action::EnablePhoneSignIn { pin } => {
                    state.message = enable_first(&mut live.vault, &pin).await;
                }
                Action::None => {}
            },
            // Not from a stream stopped meanwhile (its account left the vault or the server);
            // an empty id is this app's own note that a request it answered is over.
            Some(Input::Event(id, label, ev)) => {
                if id.is_empty() || live.streams.contains_key(&id) {
                    state.on_event(&id, &label, *ev);
                }
            }
            Some(Input::Note(n)) => state.message = n,
            Some(Input::Removed(id)) => live.mark_removed(&id, &mut state),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sesame_proto::device::ChallengeKind;

    fn row(label: &str, removed: bool) -> CodeRow {
        CodeRow {
            label: label.into(),
            code: "123456".into(),
            seconds_left: 17,
            removed,
        }
    }

    fn challenge(id: &str, expires_at: i64) -> Challenge {
        Challenge {
            id: id.into(),
            kind: ChallengeKind::Mfa,
            nonce: "n".into(),
            username: "alice".into(),
            app_name: "Sesame".into(),
            ip: "127.0.0.1".into(),
            location: "This computer".into(),
            browser: "Firefox on Linux".into(),
            requested_at: 0,
            expires_at,
            pin_required: false,
        }
    }

    #[test]
    fn typing_the_number_then_approving_sends_one_answer() {
        let mut s = WatchState::default();
        s.on_event(
            "acc",
            "Sesame: alice",
            DeviceEvent::Challenge(challenge("c1", 100)),
        );
        assert_eq!(s.on_key(KeyCode::Enter), Action::None);
        for k in [
            KeyCode::Char('4'),
            KeyCode::Char('x'),
            KeyCode::Char('3'),
            KeyCode::Backspace,
            KeyCode::Char('2'),
        ] {
            assert_eq!(s.on_key(k), Action::None);
        }
        assert_eq!(
            s.mode,
            Mode::Number("42".into()),
            "letters are ignored, backspace works"
        );
        assert_eq!(s.on_key(KeyCode::Enter), Action::None);
        let a = s.on_key(KeyCode::Char('a'));
        assert_eq!(
            a,
            Action::Respond {
                account_id: "acc".into(),
                challenge_id: "c1".into(),
                decision: Decision::Approve,
                number: "42".into(),
                pin: None
            }
        );
        assert_eq!(s.mode, Mode::Browse);
    }

    #[test]
    fn approving_a_pin_request_asks_for_the_pin() {
        let mut s = WatchState::default();
        let mut c = challenge("c1", 100);
        c.pin_required = true;
        s.on_event("acc", "a", DeviceEvent::Challenge(c));
        for k in [
            KeyCode::Enter,
            KeyCode::Char('4'),
            KeyCode::Char('2'),
            KeyCode::Enter,
        ] {
            s.on_key(k);
        }
        assert_eq!(
            s.on_key(KeyCode::Char('a')),
            Action::None,
            "no answer before the PIN"
        );
        assert_eq!(s.mode, Mode::Pin("42".into(), String::new()));
        assert_eq!(
            s.on_key(KeyCode::Enter),
            Action::None,
            "an empty PIN is not sent"
        );
        for d in "482913".chars() {
            s.on_key(KeyCode::Char(d));
        }
        match s.on_key(KeyCode::Enter) {
            Action::Respond {
                decision: Decision::Approve,
                number,
                pin,
                ..
            } => {
                assert_eq!((number.as_str(), pin.as_deref()), ("42", Some("482913")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn approve_needs_a_number_and_escape_goes_back() {
        let mut s = WatchState::default();
        assert_eq!(s.on_key(KeyCode::Enter), Action::None, "nothing to answer");
        assert_eq!(s.mode, Mode::Browse);
        s.on_event("acc", "a", DeviceEvent::Challenge(challenge("c1", 100)));
        s.on_key(KeyCode::Enter);
        assert_eq!(s.on_key(KeyCode::Enter), Action::None, "empty number");
        assert_eq!(s.mode, Mode::Number(String::new()));
        assert_eq!(
            s.on_key(KeyCode::Char('a')),
            Action::None,
            "no approval without a number"
        );
        s.on_key(KeyCode::Esc);
        assert_eq!(s.mode, Mode::Browse);
        assert!(matches!(
            s.on_key(KeyCode::Char('r')),
            Action::Respond {
                decision: Decision::Report,
                ..
            }
        ));
    }

    #[test]
    fn closed_superseded_and_expired_requests_disappear_with_a_message() {
        let mut s = WatchState::default();
        s.on_event("acc", "a", DeviceEvent::Challenge(challenge("c1", 100)));
        s.on_event("acc", "a", DeviceEvent::Challenge(challenge("c1", 100)));
        assert_eq!(
            s.requests.len(),
            1,
            "a reconnect does not duplicate requests"
        );
        s.on_key(KeyCode::Enter);
        s.on_event(
            "acc",
            "a",
            DeviceEvent::Closed {
                id: "c1".into(),
                reason: "superseded".into(),
            },
        );
        assert!(s.requests.is_empty());
        assert_eq!(
            s.mode,
            Mode::Browse,
            "typing stops when the request goes away"
        );
        assert!(s.message.contains("newer request"));
        s.on_event("acc", "a", DeviceEvent::Challenge(challenge("c2", 50)));
        s.tick(49);
        assert_eq!(s.requests.len(), 1);
        s.tick(50);
        assert!(s.requests.is_empty());
        assert!(s.message.contains("expired"));
        assert_eq!(s.on_key(KeyCode::Char('q')), Action::Quit);
    }

    #[test]
    fn a_device_removed_on_the_server_loses_its_requests_and_code() {
        let mut s = WatchState {
            codes: vec![row("Sesame: alice", true), row("Site: bob", false)],
            ..Default::default()
        };
        s.on_event(
            "acc",
            "Sesame: alice",
            DeviceEvent::Challenge(challenge("c1", 100)),
        );
        s.on_event(
            "other",
            "Sesame: bob",
            DeviceEvent::Challenge(challenge("c2", 100)),
        );
        s.on_key(KeyCode::Enter);
        s.on_removed("acc", "Sesame: alice");
        assert_eq!(s.requests.len(), 1);
        assert_eq!(s.requests[0].challenge.id, "c2");
        assert_eq!(s.mode, Mode::Browse, "typing stops for a request gone");
        assert!(s
            .message
            .contains("Sesame: alice was removed from the server"));
        s.keep_accounts(&HashSet::new());
        assert!(
            s.requests.is_empty(),
            "accounts gone from the vault lose theirs"
        );
        let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 24)).unwrap();
        t.draw(|f| draw(f, &s)).unwrap();
        let screen: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(screen.contains("removed from the server"), "{screen}");
        assert_eq!(
            screen.matches("123 456").count(),
            1,
            "no code for the removed account: {screen}"
        );
    }

    #[test]
    fn draws_on_an_80_by_24_terminal() {
        let backend = ratatui::backend::TestBackend::new(80, 24);
        let mut t = ratatui::Terminal::new(backend).unwrap();
        let mut s = WatchState {
            codes: vec![row("Sesame: alice", false)],
            ..Default::default()
        };
        s.on_event(
            "acc",
            "Sesame: alice",
            DeviceEvent::Challenge(challenge("c1", 100)),
        );
        s.now = 40;
        s.on_key(KeyCode::Enter);
        s.on_key(KeyCode::Char('4'));
        t.draw(|f| draw(f, &s)).unwrap();
        let screen: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        for want in [
            "Sesame: alice",
            "123 456",
            "17 s",
            "Approve sign-in?",
            "127.0.0.1 (This computer), 40 s ago",
            "expires in 60 s",
            "Enter number: 4_",
            "Browser: Firefox on Linux",
        ] {
            assert!(screen.contains(want), "{want:?} not on screen");
        }
    }

    #[test]
    fn an_empty_app_says_which_links_add_takes() {
        let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 24)).unwrap();
        t.draw(|f| draw(f, &WatchState::default())).unwrap();
        let screen: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        for want in NO_ACCOUNTS {
            assert!(screen.contains(want), "{want:?} not on screen: {screen}");
        }
        assert!(screen.contains("sesame://activate?"), "{screen}");
    }

    #[test]
    fn hostile_text_is_shown_escaped_in_the_full_screen_app() {
        let backend = ratatui::backend::TestBackend::new(100, 24);
        let mut t = ratatui::Terminal::new(backend).unwrap();
        let label = "Evil:\u{1b}]0;x\u{7}bob";
        let mut s = WatchState {
            codes: vec![row(label, false)],
            ..Default::default()
        };
        let mut c = challenge("c1", 100);
        c.app_name = "App\u{202e}lppa".into();
        c.location = "\u{1b}[2J".into();
        s.on_event("acc", label, DeviceEvent::Challenge(c));
        t.draw(|f| draw(f, &s)).unwrap();
        let screen: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(
            !screen.chars().any(sesame_proto::text::is_hidden),
            "{screen}"
        );
        for want in [
            "Evil:\\u{1b}]0;x\\u{7}bob",
            "App\\u{202e}lppa",
            "(\\u{1b}[2J)",
        ] {
            assert!(screen.contains(want), "{want:?} not on screen");
        }
    }
}
