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
        $crate::command::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::command::write_out(format_args!(
            "{}\n",
            sesame_proto::text::printable(&format!($($arg)*))
        ))
    };
}

/// Prints a line exactly as given, for what must stay exact (JSON) or is already made
/// printable; like `println!`, but through [`write_out`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::command::write_out(format_args!("{}\n", format_args!($($arg)*)))
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
        Command::Pending => pending::run(&mut vault, json),
        Command::Respond(args) => respond::run(&mut vault, args, json),
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

/// Writes to standard output; all output goes through here (`say!`, `out!`). When the reader
/// has gone (`sesame-authenticator pending | head -3`), nobody wants the rest: the program ends
/// at once, quietly and successfully, as a program killed by SIGPIPE would, but with status 0.
/// Rust ignores SIGPIPE, so `println!` would panic (status 101) instead; restoring the signal's
/// default needs `unsafe`, which this workspace forbids, so the error is handled here.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    // Flushed each time: a prompt (no line end) must show before the program waits.
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        // Any other failure (a full disk): the output is incomplete, so say so and fail.
        warn(&format!("error: cannot write the output: {e}"));
        std::process::exit(1);
    }
}

/// Writes one line to standard error, ignoring failure: with standard error gone too (`2>&1 |
/// head`) there is nowhere left to report to, and `eprintln!` would panic.
pub fn warn(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Prints `value` as JSON, or runs `text` to print for people.
pub fn output<T: Serialize + ?Sized>(json: bool, value: &T, text: impl FnOnce()) -> Result<()> {
    if json {
        out!("{}", serde_json::to_string_pretty(value)?);
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

/// Asks the server for one account's waiting requests. A refusal because the server no longer
/// knows the device is recorded in the vault first (see [`record_removed`]).
pub fn pending_of(
    vault: &mut Vault,
    rt: &tokio::runtime::Runtime,
    account_id: &str,
) -> Result<sesame_proto::device::PendingResponse> {
    let (label, result) = {
        let (a, l, key) = sesame_accounts(vault)?
            .into_iter()
            .find(|(a, ..)| a.id == account_id)
            .context("no such Sesame account")?;
        let c = sesame_authenticator::client::DeviceClient::new(&l.server, &l.device_id, &key);
        (a.otp.label(), rt.block_on(c.pending()))
    };
    match result {
        Ok(p) => Ok(p),
        Err(e) => {
            if e.is_unknown_device() {
                record_removed(vault, account_id);
            }
            Err(e).context(label)
        }
    }
}

/// Records that the server no longer knows the device of account `id`, so `list` (which does
/// not ask the server) and `watch` can say so. Best effort: the command that learned it
/// reports the refusal either way.
pub fn record_removed(vault: &mut Vault, id: &str) {
    let Some(link) = vault
        .data
        .accounts
        .iter_mut()
        .find(|a| a.id == id)
        .and_then(|a| a.sesame.as_mut())
        .filter(|l| !l.removed_on_server)
    else {
        return;
    };
    link.removed_on_server = true;
    if let Err(e) = vault.save() {
        warn(&format!(
            "warning: {}",
            sesame_proto::text::printable(&e.to_string())
        ));
    }
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
    /// The server said this device was removed (as the vault recorded it; see
    /// `SesameLink::removed_on_server`): the code no longer works there.
    removed_on_server: bool,
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
        removed_on_server: a.sesame.as_ref().is_some_and(|l| l.removed_on_server),
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

/// `s` as one word of a POSIX shell command: as it is when no shell treats any of its
/// characters specially, else in single quotes (a quote inside written `'\''`).
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// How to name `account` in a command printed for the person to paste: its label, quoted for
/// the shell, when the label selects exactly this account (labels need not be unique: two
/// servers may both call it "Sesame: alice"); else its id, which always does.
pub fn account_arg(vault: &Vault, account: &Account) -> String {
    let label = account.otp.label();
    let selects = vault.find(&label).is_ok_and(|a| a.id == account.id);
    // A hidden character is printed escaped, so could not be pasted back; a leading dash
    // would be read as an option.
    let pastable = !label.starts_with('-') && !label.chars().any(sesame_proto::text::is_hidden);
    if selects && pastable {
        shell_word(&label)
    } else {
        account.id.clone()
    }
}

pub fn spaced(code: &str) -> String {
    let mid = code.len() / 2;
    format!("{} {}", &code[..mid], &code[mid..])
}

/// What `list` and `code` say to an empty vault: both kinds of link `add` takes.
pub const NO_ACCOUNTS: &str =
    "No accounts yet. Add your Sesame account with the activation link from My \
     security info: `sesame-authenticator add 'sesame://activate?...'` (or `--qr IMAGE`); or any \
     site's codes with `sesame-authenticator add 'otpauth://totp/...'`.";

/// "1 account key", "2 account keys", "0 account keys": a count and its noun.
pub fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn print_codes(json: bool, lines: &[CodeLine]) -> Result<()> {
    output(json, lines, || {
        if lines.is_empty() {
            say!("{NO_ACCOUNTS}");
        }
        let width = lines
            .iter()
            .map(|l| l.account.chars().count())
            .max()
            .unwrap_or(0);
        for l in lines {
            if l.removed_on_server {
                say!(
                    "{:<width$}  removed on the server: its codes and sign-in requests no longer work",
                    l.account
                );
                continue;
            }
            say!(
                "{:<width$}  {}  ({:>2} s left)",
                l.account,
                spaced(&l.code),
                l.seconds_left
            );
        }
    })
}
