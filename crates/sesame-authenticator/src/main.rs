//! `sesame-authenticator`: the Sesame Authenticator app on the command line.

mod command;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sesame-authenticator",
    version,
    about = "Sesame Authenticator: verification codes for Sesame and any other site."
)]
pub struct Cli {
    /// The vault file (default: $XDG_DATA_HOME/sesame-authenticator/vault).
    #[arg(
        long,
        global = true,
        env = "SESAME_AUTHENTICATOR_VAULT",
        value_name = "FILE"
    )]
    pub vault: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Add an account: a Sesame activation link (sesame://activate?...) from My security info,
    /// or an otpauth:// link (any site's verification codes).
    Add(command::add::Args),
    /// List accounts with their current codes.
    List,
    /// Show the current code of one account, or of all.
    Code(command::code::Args),
    /// Remove an account from this app (a Sesame account stays registered: see `unregister`).
    Remove(command::remove::Args),
    /// Set or change the app PIN (at least 6 digits). It never leaves this device and is
    /// stored nowhere: it unlocks the key that phone sign-in and PIN approvals sign with.
    #[command(subcommand)]
    Pin(command::pin::PinCommand),
    /// Full-screen app: codes with countdown, and sign-in requests as they arrive (q quits).
    Watch,
    /// List sign-in requests waiting for an answer, for every Sesame account.
    Pending,
    /// Answer a sign-in request: type the number shown on the sign-in page and approve, or deny.
    Respond(command::respond::Args),
    /// Unregister this device from a Sesame account (tells the server), then forget the account.
    Unregister(command::unregister::Args),
    /// Sign in with this app instead of a password (needs an app PIN).
    #[command(subcommand)]
    PhoneSignIn(command::phone_sign_in::PhoneCommand),
}

fn main() -> ExitCode {
    match command::run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // An error may quote text from a link or a server: shown escaped, like all output.
            let message = format!("{e:#}");
            command::warn(&format!(
                "error: {}",
                sesame_proto::text::printable_lines(&message)
            ));
            ExitCode::FAILURE
        }
    }
}
