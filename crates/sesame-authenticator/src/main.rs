//! `sesame-authenticator`: the Sesame Authenticator app on the command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rand::RngCore;
use serde::Serialize;
use sesame_authenticator::approval::{self, UserPresence};
use sesame_authenticator::client::{self, DeviceClient};
use sesame_authenticator::device::DeviceKey;
use sesame_authenticator::phone;
use sesame_authenticator::vault::{Account, SesameLink};
use sesame_authenticator::{OtpAccount, Vault};
use sesame_proto::device::{parse_activation_link, Challenge, Decision};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sesame-authenticator",
    version,
    about = "Sesame Authenticator: verification codes for Sesame and any other site."
)]
struct Cli {
    /// The vault file (default: $XDG_DATA_HOME/sesame-authenticator/vault).
    #[arg(
        long,
        global = true,
        env = "SESAME_AUTHENTICATOR_VAULT",
        value_name = "FILE"
    )]
    vault: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Add an account: a Sesame activation link (sesame://activate?...) from My security info,
    /// or an otpauth:// link (any site's verification codes).
    Add {
        /// The link (omit it with --qr).
        #[arg(required_unless_present = "qr")]
        link: Option<String>,
        /// Read the link from a QR code in this image (PNG), e.g. a screenshot of the set-up page.
        #[arg(long, value_name = "IMAGE", conflicts_with = "link")]
        qr: Option<PathBuf>,
        /// Name of this device as the server will show it.
        #[arg(long)]
        device_name: Option<String>,
    },
    /// List accounts with their current codes.
    List,
    /// Show the current code of one account, or of all.
    Code { account: Option<String> },
    /// Remove an account from this app (a Sesame account stays registered: see `unregister`).
    Remove { account: String },
    /// Set or change the app PIN (at least 6 digits). It never leaves this device and is
    /// stored nowhere: it unlocks the key that phone sign-in and PIN approvals sign with.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Full-screen app: codes with countdown, and sign-in requests as they arrive (q quits).
    Watch,
    /// List sign-in requests waiting for an answer, for every Sesame account.
    Pending,
    /// Answer a sign-in request: type the number shown on the sign-in page and approve, or deny.
    Respond {
        /// The request id (or a unique prefix of it) from `pending`.
        request: String,
        /// The number shown on the sign-in page.
        #[arg(long, required_if_eq("approve", "true"))]
        number: Option<String>,
        #[arg(long, group = "decision")]
        approve: bool,
        #[arg(long, group = "decision")]
        deny: bool,
        /// Deny and report: "this wasn't me". Blocks further requests until an admin looks.
        #[arg(long, group = "decision")]
        report: bool,
    },
    /// Unregister this device from a Sesame account (tells the server), then forget the account.
    Unregister { account: String },
    /// Sign in with this app instead of a password (needs an app PIN).
    #[command(subcommand)]
    PhoneSignIn(PhoneCommand),
}

#[derive(Subcommand)]
enum PhoneCommand {
    /// Turn on phone sign-in for a Sesame account (asks for the app PIN, or asks you to set one).
    Enable { account: String },
    /// Turn it off (sign in with your password again).
    Disable { account: String },
}

#[derive(Subcommand)]
enum PinCommand {
    /// Set the app PIN (from a prompt, or SESAME_AUTHENTICATOR_PIN for scripts).
    Set,
    /// Change it (current PIN: prompt or SESAME_AUTHENTICATOR_PIN; new: prompt or
    /// SESAME_AUTHENTICATOR_NEW_PIN).
    Change,
}

/// A PIN from the environment (scripts) or a hidden prompt; never a command-line argument.
fn read_pin(prompt: &str, env: &str, confirm: bool) -> Result<zeroize::Zeroizing<String>> {
    if let Some(p) = std::env::var(env).ok().filter(|p| !p.is_empty()) {
        return Ok(zeroize::Zeroizing::new(p));
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("no terminal to ask for the PIN: set {env} for scripts");
    }
    let first = zeroize::Zeroizing::new(rpassword::prompt_password(prompt)?);
    if confirm && *first != rpassword::prompt_password("Repeat it: ")? {
        bail!("the two PINs differ");
    }
    Ok(first)
}

/// Asks at the terminal (or reads SESAME_AUTHENTICATOR_PIN, for scripts).
struct PromptPresence;

impl UserPresence for PromptPresence {
    fn pin(&mut self, c: &Challenge) -> Result<zeroize::Zeroizing<String>, String> {
        read_pin(
            &format!("App PIN to approve {} for {}: ", c.app_name, c.username),
            "SESAME_AUTHENTICATOR_PIN",
            false,
        )
        .map_err(|e| e.to_string())
    }
}

fn default_vault() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set; pass --vault FILE")?)
                .join(".local/share")
        }
    };
    Ok(base.join("sesame-authenticator").join("vault"))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Serialize)]
struct CodeLine {
    id: String,
    account: String,
    issuer: String,
    name: String,
    code: String,
    seconds_left: u64,
    period: u64,
}

fn code_line(a: &Account, t: u64) -> CodeLine {
    let (code, left) = a.otp.code_at(t);
    CodeLine {
        id: a.id.clone(),
        account: a.otp.label(),
        issuer: a.otp.issuer.clone(),
        name: a.otp.name.clone(),
        code,
        seconds_left: left,
        period: a.otp.period,
    }
}

fn spaced(code: &str) -> String {
    let mid = code.len() / 2;
    format!("{} {}", &code[..mid], &code[mid..])
}

fn print_codes(json: bool, lines: &[CodeLine]) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(lines)?);
        return Ok(());
    }
    if lines.is_empty() {
        println!("No accounts yet. Add one with `sesame-authenticator add 'otpauth://totp/...'`.");
    }
    let width = lines
        .iter()
        .map(|l| l.account.chars().count())
        .max()
        .unwrap_or(0);
    for l in lines {
        println!(
            "{:<width$}  {}  ({:>2} s left)",
            l.account,
            spaced(&l.code),
            l.seconds_left
        );
    }
    Ok(())
}

fn device_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    match host {
        Some(h) => format!("Sesame Authenticator on {h}"),
        None => "Sesame Authenticator".into(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The Sesame accounts of the vault, each with its device key.
fn sesame_accounts(vault: &Vault) -> Result<Vec<(&Account, &SesameLink, DeviceKey)>> {
    vault
        .data
        .accounts
        .iter()
        .filter_map(|a| a.sesame.as_ref().map(|l| (a, l)))
        .map(|(a, l)| {
            let key = DeviceKey::from_secret(&l.device_key)
                .with_context(|| format!("the device key of {} is damaged", a.otp.label()))?;
            Ok((a, l, key))
        })
        .collect()
}

#[derive(Serialize)]
struct PendingLine {
    request: String,
    account: String,
    kind: &'static str,
    app: String,
    ip: String,
    location: String,
    browser: String,
    requested_at: i64,
    expires_in: i64,
}

fn run(cli: Cli) -> Result<()> {
    let path = match &cli.vault {
        Some(p) => p.clone(),
        None => default_vault()?,
    };
    let mut vault = Vault::open_or_create(&path)?;
    // `add --qr IMAGE` is `add LINK` with the link read from the image.
    let command = match cli.command {
        Command::Add {
            qr: Some(image),
            device_name,
            ..
        } => {
            let link = sesame_authenticator::qr::read(&image)?;
            Command::Add {
                link: Some(link),
                qr: None,
                device_name,
            }
        }
        other => other,
    };
    match command {
        Command::Add { link: None, .. } => bail!("give a link, or --qr IMAGE"),
        Command::Add {
            link: Some(link),
            device_name: name,
            ..
        } if link.starts_with("sesame://") => {
            let (server, code) = parse_activation_link(&link)
                .context("this is not a valid Sesame activation link")?;
            let key = DeviceKey::generate();
            let name = name.unwrap_or_else(device_name);
            let resp = runtime()?.block_on(client::activate(&server, &code, &name, &key))?;
            let uri = format!(
                "otpauth://totp/{}:{}?secret={}&algorithm={}&digits={}&period={}",
                enc(&resp.issuer),
                enc(&resp.username),
                resp.totp.secret_base32,
                resp.totp.algorithm,
                resp.totp.digits,
                resp.totp.period
            );
            let mut otp =
                OtpAccount::from_uri(&uri).context("the server sent unusable code parameters")?;
            otp.issuer = resp.issuer.clone();
            let mut id = [0u8; 6];
            rand::rngs::OsRng.fill_bytes(&mut id);
            let mut link = SesameLink {
                server,
                device_id: resp.device_id.clone(),
                username: resp.username.clone(),
                device_key: key.to_secret().to_string(),
                pin_key: None,
                phone_sign_in: false,
            };
            // With an app PIN set, the new account gets its PIN key now, so PIN approvals work.
            let mut pin_note = None;
            if vault.data.pin_set {
                match read_pin("App PIN: ", "SESAME_AUTHENTICATOR_PIN", false) {
                    Ok(pin) => {
                        runtime()?.block_on(phone::register_pin_key(&mut link, &pin))?;
                    }
                    Err(_) => {
                        pin_note = Some("No PIN given: this account's PIN key will be set up when you turn on phone sign-in.")
                    }
                }
            }
            let account = Account {
                id: data_encoding::HEXLOWER.encode(&id),
                added_at: now(),
                otp,
                sesame: Some(link),
            };
            let line = code_line(&account, now());
            vault.data.accounts.push(account);
            vault.save()?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({"account": line.account, "device_id": resp.device_id, "code": line.code, "phone_sign_in_allowed": resp.phone_sign_in_allowed})).unwrap_or_default());
            } else {
                println!("Added {} ({}) as {name}. Sign-in requests for this account now come to this app.", line.account, resp.display_name);
                if let Some(n) = pin_note {
                    println!("{n}");
                }
                if resp.phone_sign_in_allowed {
                    // Offered at once: phone sign-in is what this app is for.
                    println!(
                        "Phone sign-in is available: sign in with just your username and this app."
                    );
                    if std::io::IsTerminal::is_terminal(&std::io::stdin())
                        && confirm("Turn on phone sign-in now? [y/N] ")?
                    {
                        let label = line.account.clone();
                        enable_phone_sign_in(&mut vault, &label, cli.json)?;
                    } else {
                        println!(
                            "Turn it on with: sesame-authenticator phone-sign-in enable {}",
                            line.account
                        );
                    }
                }
            }
        }
        Command::Add {
            link: Some(link), ..
        } => {
            let otp = OtpAccount::from_uri(&link).context("cannot add this link")?;
            if vault
                .data
                .accounts
                .iter()
                .any(|a| a.otp.secret_base32 == otp.secret_base32 && a.otp.label() == otp.label())
            {
                bail!("{} is already in this app", otp.label());
            }
            let mut id = [0u8; 6];
            rand::rngs::OsRng.fill_bytes(&mut id);
            let account = Account {
                id: data_encoding::HEXLOWER.encode(&id),
                added_at: now(),
                otp,
                sesame: None,
            };
            let line = code_line(&account, now());
            vault.data.accounts.push(account);
            vault.save()?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&line)?);
            } else {
                println!(
                    "Added {}. Current code: {} ({} s left)",
                    line.account,
                    spaced(&line.code),
                    line.seconds_left
                );
            }
        }
        Command::List => {
            let t = now();
            let lines: Vec<CodeLine> = vault
                .data
                .accounts
                .iter()
                .map(|a| code_line(a, t))
                .collect();
            print_codes(cli.json, &lines)?;
        }
        Command::Code { account } => {
            let t = now();
            let lines = match account {
                Some(q) => vec![code_line(vault.find(&q).map_err(anyhow::Error::msg)?, t)],
                None => vault
                    .data
                    .accounts
                    .iter()
                    .map(|a| code_line(a, t))
                    .collect(),
            };
            print_codes(cli.json, &lines)?;
        }
        Command::Watch => {
            if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                bail!("watch needs a terminal; for scripts use `pending` and `respond`");
            }
            sesame_authenticator::watch::run(vault)?;
        }
        Command::Pin(PinCommand::Set) => {
            if vault.data.pin_set {
                bail!(
                    "an app PIN is already set; change it with `sesame-authenticator pin change`"
                );
            }
            let pin = read_pin("New app PIN: ", "SESAME_AUTHENTICATOR_PIN", true)?;
            set_pin(&mut vault, &pin)?;
            println!("App PIN set. It stays on this device, stored nowhere: remember it.");
        }
        Command::Pin(PinCommand::Change) => {
            if !vault.data.pin_set {
                bail!("no app PIN is set yet; set one with `sesame-authenticator pin set`");
            }
            let current = read_pin("Current app PIN: ", "SESAME_AUTHENTICATOR_PIN", false)?;
            let new = read_pin("New app PIN: ", "SESAME_AUTHENTICATOR_NEW_PIN", true)?;
            sesame_authenticator::pin::validate(&new)?;
            // Each PIN key is replaced under the new PIN, proven by the key the current PIN
            // unlocks: a wrong current PIN is refused (and counted) by the server.
            let rt = runtime()?;
            let mut changed = 0;
            for i in 0..vault.data.accounts.len() {
                let label = vault.data.accounts[i].otp.label();
                let Some(link) = vault.data.accounts[i].sesame.as_mut() else {
                    continue;
                };
                if link.pin_key.is_none() {
                    continue;
                }
                rt.block_on(phone::rotate_pin_key(link, &current, &new))
                    .with_context(|| format!("the PIN was not changed for {label}"))?;
                vault.save()?;
                changed += 1;
            }
            println!("App PIN changed ({changed} account key(s) updated).");
        }
        Command::PhoneSignIn(PhoneCommand::Enable { account }) => {
            enable_phone_sign_in(&mut vault, &account, cli.json)?;
        }
        Command::PhoneSignIn(PhoneCommand::Disable { account }) => {
            let i = sesame_index(&vault, &account)?;
            let label = vault.data.accounts[i].otp.label();
            let link = vault.data.accounts[i]
                .sesame
                .as_mut()
                .expect("a Sesame account");
            let status = runtime()?.block_on(phone::disable(link))?;
            vault.save()?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!("Phone sign-in is off for {label}. Sign in with your password.");
            }
        }
        Command::Pending => {
            let rt = runtime()?;
            let t = now() as i64;
            let mut lines = Vec::new();
            for (a, l, key) in sesame_accounts(&vault)? {
                let c = DeviceClient::new(&l.server, &l.device_id, &key);
                let pending = rt.block_on(c.pending()).with_context(|| a.otp.label())?;
                for ch in pending.challenges {
                    lines.push(PendingLine {
                        request: ch.id,
                        account: a.otp.label(),
                        kind: if ch.kind == sesame_proto::device::ChallengeKind::PhoneSignIn {
                            "phone sign-in"
                        } else {
                            "two-step verification"
                        },
                        app: ch.app_name,
                        ip: ch.ip,
                        location: ch.location,
                        browser: ch.user_agent,
                        requested_at: ch.requested_at,
                        expires_in: (ch.expires_at - t).max(0),
                    });
                }
            }
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&lines)?);
            } else if lines.is_empty() {
                println!("No sign-in requests are waiting.");
            } else {
                for l in &lines {
                    println!(
                        "Request {}  ({}, expires in {} s)",
                        l.request, l.kind, l.expires_in
                    );
                    println!("  Account:  {}", l.account);
                    println!("  App:      {}", l.app);
                    println!("  From:     {} ({})", l.ip, l.location);
                    println!("  When:     {} s ago", (t - l.requested_at).max(0));
                    println!("  Browser:  {}", l.browser);
                }
                println!("Answer with: sesame-authenticator respond REQUEST --number N --approve   (or --deny, --report)");
            }
        }
        Command::Respond {
            request,
            number,
            approve,
            deny,
            report,
        } => {
            let decision = match (approve, deny, report) {
                (true, _, _) => Decision::Approve,
                (_, true, _) => Decision::Deny,
                (_, _, true) => Decision::Report,
                _ => bail!("choose --approve (with --number), --deny or --report"),
            };
            let number = number.unwrap_or_default();
            if decision == Decision::Approve && number.trim().is_empty() {
                bail!("type the number shown on the sign-in page with --number");
            }
            let rt = runtime()?;
            let mut found = None;
            for (a, l, key) in sesame_accounts(&vault)? {
                let c = DeviceClient::new(&l.server, &l.device_id, &key);
                let pending = rt.block_on(c.pending()).with_context(|| a.otp.label())?;
                for ch in pending
                    .challenges
                    .into_iter()
                    .filter(|ch| ch.id.starts_with(request.trim()))
                {
                    if found.is_some() {
                        bail!("{request:?} matches more than one request; give more of its id");
                    }
                    found = Some((
                        l.clone(),
                        DeviceKey::from_secret(&l.device_key).context("damaged device key")?,
                        ch,
                    ));
                }
            }
            let Some((l, key, ch)) = found else {
                bail!("no waiting sign-in request matches {request:?}: it may have expired, been answered, or been replaced by a newer one");
            };
            let c = DeviceClient::new(&l.server, &l.device_id, &key);
            let req = approval::answer(&l, &key, &ch, decision, &number, &mut PromptPresence)
                .map_err(anyhow::Error::msg)?;
            let resp = rt.block_on(c.respond(&req))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&resp)?);
            } else {
                println!("{}", resp.message);
            }
            if resp.outcome == "wrong_number" {
                return Err(anyhow::anyhow!("the number did not match"));
            }
        }
        Command::Unregister { account } => {
            let a = vault.find(&account).map_err(anyhow::Error::msg)?.clone();
            let l = a.sesame.clone().with_context(|| {
                format!("{} is not a Sesame account; use `remove`", a.otp.label())
            })?;
            let key = DeviceKey::from_secret(&l.device_key).context("damaged device key")?;
            let c = DeviceClient::new(&l.server, &l.device_id, &key);
            match runtime()?.block_on(c.unregister()) {
                Ok(_) => {}
                // Already removed on the server (e.g. from My security info): forget it here too.
                Err(client::ClientError::Refused(e, 401)) if e.error == "unknown_device" => {}
                Err(e) => {
                    return Err(e).context("the server could not be told; the account was kept")
                }
            }
            vault.data.accounts.retain(|x| x.id != a.id);
            vault.save()?;
            if cli.json {
                println!("{}", serde_json::json!({"unregistered": a.otp.label()}));
            } else {
                println!(
                    "Unregistered this device from {} and removed the account from this app.",
                    a.otp.label()
                );
            }
        }
        Command::Remove { account } => {
            let id = vault.find(&account).map_err(anyhow::Error::msg)?.id.clone();
            let label = vault
                .find(&account)
                .map_err(anyhow::Error::msg)?
                .otp
                .label();
            vault.data.accounts.retain(|a| a.id != id);
            vault.save()?;
            if cli.json {
                println!("{}", serde_json::json!({"removed": label}));
            } else {
                println!("Removed {label} from this app. (If it was protecting a sign-in, add another method there first.)");
            }
        }
    }
    Ok(())
}

fn confirm(question: &str) -> Result<bool> {
    use std::io::Write;
    print!("{question}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// Index of the Sesame account matching `query`.
fn sesame_index(vault: &Vault, query: &str) -> Result<usize> {
    let id = vault.find(query).map_err(anyhow::Error::msg)?.id.clone();
    let i = vault
        .data
        .accounts
        .iter()
        .position(|a| a.id == id)
        .expect("found above");
    if vault.data.accounts[i].sesame.is_none() {
        bail!(
            "{} is not a Sesame account: phone sign-in works only with accounts added from My security info",
            vault.data.accounts[i].otp.label()
        );
    }
    Ok(i)
}

/// Sets the app PIN and sets up the PIN key of every Sesame account that has none.
fn set_pin(vault: &mut Vault, pin: &str) -> Result<()> {
    sesame_authenticator::pin::validate(pin)?;
    let rt = runtime()?;
    for i in 0..vault.data.accounts.len() {
        let label = vault.data.accounts[i].otp.label();
        let Some(link) = vault.data.accounts[i]
            .sesame
            .as_mut()
            .filter(|l| l.pin_key.is_none())
        else {
            continue;
        };
        if let Err(e) = rt.block_on(phone::register_pin_key(link, pin)) {
            eprintln!("warning: {label}: {e}");
        }
    }
    vault.data.pin_set = true;
    vault.save()?;
    Ok(())
}

/// `phone-sign-in enable`: asks to set a PIN first when there is none, then proves it.
fn enable_phone_sign_in(vault: &mut Vault, account: &str, json: bool) -> Result<()> {
    let i = sesame_index(vault, account)?;
    let label = vault.data.accounts[i].otp.label();
    let server = vault.data.accounts[i]
        .sesame
        .as_ref()
        .map(|l| l.server.clone())
        .unwrap_or_default();
    // One Sesame account per organisation per device for phone sign-in.
    if let Some(other) = vault.data.accounts.iter().find(|a| {
        a.id != vault.data.accounts[i].id
            && a.sesame
                .as_ref()
                .is_some_and(|l| l.server == server && l.phone_sign_in)
    }) {
        bail!(
            "phone sign-in is already on for {} with this server; one account per organisation can use phone sign-in on a device (turn it off there first)",
            other.otp.label()
        );
    }
    let pin = if vault.data.pin_set {
        read_pin("App PIN: ", "SESAME_AUTHENTICATOR_PIN", false)?
    } else {
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            bail!(
                "phone sign-in needs an app PIN: set one first with `sesame-authenticator pin set`"
            );
        }
        println!("Phone sign-in needs an app PIN (at least 6 digits). Set one now.");
        let pin = read_pin("New app PIN: ", "SESAME_AUTHENTICATOR_NEW_PIN", true)?;
        set_pin(vault, &pin)?;
        pin
    };
    let link = vault.data.accounts[i]
        .sesame
        .as_mut()
        .expect("a Sesame account");
    let result = runtime()?.block_on(phone::enable(link, &pin));
    // A PIN key registered before a refusal is kept either way.
    vault.save()?;
    let status = result?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!("Phone sign-in is on for {label}. Next time, type your username and approve here with your PIN.");
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
