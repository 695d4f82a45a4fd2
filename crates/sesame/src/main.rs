//! `sesame`: the server and its administration commands.

mod command;
mod config;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sesame",
    version,
    about = "Sesame: sign in with your phone. Identity server and its administration commands."
)]
pub struct Cli {
    /// Directory for the embedded database and keys.
    #[arg(long, global = true, env = "SESAME_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://FILE (embedded, one node) or postgres://USER:PASSWORD@HOST/DB
    /// (shared by several nodes). Defaults to sesame.db in the data directory.
    #[arg(long, global = true, env = "SESAME_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Master key file (default: master.key in the data directory, created on first use).
    #[arg(
        long,
        global = true,
        env = "SESAME_MASTER_KEY_FILE",
        value_name = "FILE"
    )]
    pub master_key_file: Option<PathBuf>,
    /// Configuration file (TOML). See `sesame config example`.
    #[arg(long, global = true, env = "SESAME_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server (creating the data directory on first start).
    Serve(command::serve::Args),
    /// Create the data directory, database and master key without starting the server.
    Init,
    /// Manage users.
    #[command(subcommand)]
    User(command::user::UserCommand),
    /// Manage groups.
    #[command(subcommand)]
    Group(command::group::GroupCommand),
    /// Manage applications that sign their users in through Sesame (OpenID Connect clients).
    #[command(subcommand)]
    Client(command::client::ClientCommand),
    /// The keys that sign OpenID Connect tokens.
    #[command(subcommand)]
    Keys(command::keys::KeysCommand),
    /// Show or change the authentication methods policy.
    #[command(subcommand)]
    Policy(command::policy::PolicyCommand),
    /// Show the audit log: sign-ins and security-info changes, newest first.
    Log(command::log::Args),
    /// The development outbox: texts and calls kept instead of sent (no gateway configured).
    #[command(subcommand)]
    Outbox(command::outbox::OutboxCommand),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(command::config::ConfigCommand),
    /// Master key helpers (nodes that share a database share one master key).
    #[command(subcommand, name = "master-key")]
    MasterKey(command::master_key::MasterKeyCommand),
    /// Copy the database to FILE while the server runs (online, consistent). The master key
    /// is not in the copy: restoring also needs the same master.key.
    Backup(command::backup::Args),
    /// Bring the database to this version's schema. Nodes do it themselves when they start
    /// (one at a time); run it first to upgrade a PostgreSQL database before the nodes.
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // An error may quote a name someone typed: shown escaped, like all output.
            let message = format!("{e:#}");
            eprintln!("error: {}", sesame_proto::text::printable_lines(&message));
            ExitCode::FAILURE
        }
    }
}
