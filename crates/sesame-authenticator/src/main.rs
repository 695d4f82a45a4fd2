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
    /// Remove an account from this app only (a Sesame device stays registered: see `unregister`).
    ///
    /// The account's codes and sign-in requests are no longer shown here. For a Sesame account
    /// the server is not told: the device stays registered there and My security info still
    /// lists it. To remove it there too, use `unregister`.
    Remove(command::remove::Args),
    /// Set or change the app PIN (at least 6 digits). It never leaves this device and is
    /// stored nowhere: it unlocks the key that phone sign-in and PIN approvals sign with.
    #[command(subcommand)]
    Pin(command::pin::PinCommand),
    /// Full-screen app: codes with countdown, and sign-in requests as they arrive (q quits).
    Watch,
    /// List sign-in requests waiting for an answer, for every Sesame account.
    Pending,
    /// Answer a sign-in request: approve it with the number shown on the sign-in page, deny it,
    /// or deny and report it (this wasn't me).
    Respond(command::respond::Args),
    /// Unregister this device from a Sesame account, then remove the account from this app.
    ///
    /// The server forgets the device: its sign-in requests, its verification codes and phone
    /// sign-in stop working, and it leaves the Devices list on My security info. If the server
    /// cannot be reached, nothing changes. `remove`, by contrast, only forgets the account in
    /// this app and leaves the device registered on the server.
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
