//! `sesame-authenticator`: the Sesame Authenticator app on the command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rand::RngCore;
use serde::Serialize;
use sesame_authenticator::vault::Account;
use sesame_authenticator::{OtpAccount, Vault};
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
    /// Add an account from an otpauth:// link (any site's verification codes).
    Add { link: String },
    /// List accounts with their current codes.
    List,
    /// Show the current code of one account, or of all.
    Code { account: Option<String> },
    /// Remove an account from this app.
    Remove { account: String },
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

fn run(cli: Cli) -> Result<()> {
    let path = match &cli.vault {
        Some(p) => p.clone(),
        None => default_vault()?,
    };
    let mut vault = Vault::open_or_create(&path)?;
    match cli.command {
        Command::Add { link } => {
            if link.starts_with("sesame://") {
                bail!("Sesame activation links are not supported by this version of the app yet; add the account's verification codes with its otpauth:// link instead");
            }
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
