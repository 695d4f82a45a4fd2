//! One module per command, mirroring `sesame-authenticator --help`.

/// Prints a line for people. Whatever a command prints for people goes through here: it
/// holds text others wrote (account labels from any site's `otpauth://` link, usernames,
/// application names and messages from a server), and a control character in it would drive
/// the terminal, so every hidden character is shown escaped (`\u{1b}`; see
/// `sesame_proto::text`), a line break too: one call is one line. JSON output (`--json`)
/// stays exact: serde escapes control characters already. Defined before the command
/// modules, which use it by textual scope.
macro_rules! say {
    () => {
        println!()
    };
    ($($arg:tt)*) => {
        println!("{}", sesame_proto::text::printable(&format!($($arg)*)))
    };
}

pub mod add;
pub mod code;
pub mod list;
pub mod pending;
pub mod phone_sign_in;
pub mod pin;
pub mod remove;
pub mod respond;
pub mod unregister;
pub mod watch;

use crate::{Cli, Command};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use sesame_authenticator::device::DeviceKey;
use sesame_authenticator::vault::{Account, SesameLink};
use sesame_authenticator::Vault;
use std::path::PathBuf;

pub fn run(cli: Cli) -> Result<()> {
    let path = match &cli.vault {
        Some(p) => p.clone(),
        None => default_vault()?,
    };
    let mut vault = Vault::open_or_create(&path)?;
    let json = cli.json;
    match &cli.command {
        Command::Add(args) => add::run(&mut vault, args, json),
        Command::List => list::run(&vault, json),
        Command::Code(args) => code::run(&vault, args, json),
        Command::Remove(args) => remove::run(&mut vault, args, json),
        Command::Pin(c) => pin::run(&mut vault, c),
        Command::Watch => watch::run(vault),
        Command::Pending => pending::run(&vault, json),
        Command::Respond(args) => respond::run(&vault, args, json),
        Command::Unregister(args) => unregister::run(&mut vault, args, json),
        Command::PhoneSignIn(c) => phone_sign_in::run(&mut vault, c, json),
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

/// A PIN from the environment (scripts) or a hidden prompt; never a command-line argument.
pub fn read_pin(prompt: &str, env: &str, confirm: bool) -> Result<zeroize::Zeroizing<String>> {
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

/// Prints `value` as JSON, or runs `text` to print for people.
pub fn output<T: Serialize + ?Sized>(json: bool, value: &T, text: impl FnOnce()) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        text();
    }
    Ok(())
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The Sesame accounts of the vault, each with its device key.
pub fn sesame_accounts(vault: &Vault) -> Result<Vec<(&Account, &SesameLink, DeviceKey)>> {
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

/// One account's current code, as `list`, `code` and `add` show it.
#[derive(Serialize)]
pub struct CodeLine {
    id: String,
    pub account: String,
    issuer: String,
    name: String,
    pub code: String,
    pub seconds_left: u64,
    period: u64,
}

pub fn code_line(a: &Account, t: u64) -> CodeLine {
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

pub fn all_codes(vault: &Vault, t: u64) -> Vec<CodeLine> {
    vault
        .data
        .accounts
        .iter()
        .map(|a| code_line(a, t))
        .collect()
}

pub fn spaced(code: &str) -> String {
    let mid = code.len() / 2;
    format!("{} {}", &code[..mid], &code[mid..])
}

pub fn print_codes(json: bool, lines: &[CodeLine]) -> Result<()> {
    output(json, lines, || {
        if lines.is_empty() {
            say!("No accounts yet. Add one with `sesame-authenticator add 'otpauth://totp/...'`.");
        }
        let width = lines
            .iter()
            .map(|l| l.account.chars().count())
            .max()
            .unwrap_or(0);
        for l in lines {
            say!(
                "{:<width$}  {}  ({:>2} s left)",
                l.account,
                spaced(&l.code),
                l.seconds_left
            );
        }
    })
}
