//! `sesame-authenticator`: the Sesame Authenticator app on the command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rand::RngCore;
use serde::Serialize;
use sesame_authenticator::approval::{self, UserPresence};
use sesame_authenticator::client::{self, DeviceClient};
use sesame_authenticator::device::DeviceKey;
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
    /// Set or change the app PIN (at least 6 digits). It never leaves this device.
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
            let link = SesameLink {
                server,
                device_id: resp.device_id.clone(),
                username: resp.username.clone(),
                device_key: key.to_secret().to_string(),
            };
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
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({"account": line.account, "device_id": resp.device_id, "code": line.code})).unwrap_or_default());
            } else {
                println!("Added {} ({}) as {name}. Sign-in requests for this account now come to this app.", line.account, resp.display_name);
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
            if vault.data.pin.is_some() {
                bail!(
                    "an app PIN is already set; change it with `sesame-authenticator pin change`"
                );
            }
            let pin = read_pin("New app PIN: ", "SESAME_AUTHENTICATOR_PIN", true)?;
            sesame_authenticator::pin::validate(&pin)?;
            vault.data.pin = Some(sesame_authenticator::pin::hash(&pin));
            vault.data.pin_failures = 0;
            vault.save()?;
            println!("App PIN set. It stays on this device.");
        }
        Command::Pin(PinCommand::Change) => {
            let current = read_pin("Current app PIN: ", "SESAME_AUTHENTICATOR_PIN", false)?;
            vault.check_pin(&current).map_err(anyhow::Error::msg)?;
            let new = read_pin("New app PIN: ", "SESAME_AUTHENTICATOR_NEW_PIN", true)?;
            sesame_authenticator::pin::validate(&new)?;
            vault.data.pin = Some(sesame_authenticator::pin::hash(&new));
            vault.save()?;
            println!("App PIN changed.");
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
            let req = approval::answer(
                &mut vault,
                &l.device_id,
                &key,
                &ch,
                decision,
                &number,
                &mut PromptPresence,
            )
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
