//! One module per command, mirroring `sesame --help`.

pub mod config;
pub mod group;
pub mod log;
pub mod master_key;
pub mod policy;
pub mod serve;
pub mod user;

use crate::{Cli, Command};
use anyhow::{Context, Result};
use sesame_core::secret::SecretString;
use sesame_core::TenantId;
use sesame_server::service::Admin;
use sesame_server::{Services, SystemClock};
use sesame_store::{MasterKey, Store};
use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::sync::Arc;

pub async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Serve(args) => serve::run(&cli, args).await,
        Command::User(c) => user::run(&cli, c).await,
        Command::Group(c) => group::run(&cli, c).await,
        Command::Policy(c) => policy::run(&cli, c).await,
        Command::Log(args) => log::run(&cli, args).await,
        Command::Config(c) => config::run(c),
        Command::MasterKey(c) => master_key::run(c),
    }
}

/// The opened data: what every admin command works on, while the server runs or not.
pub struct Data {
    pub store: Arc<dyn Store>,
    /// The same services the server's pages and admin console use: a change made here is
    /// made (and audited) exactly as its console twin makes it.
    pub services: Services,
    pub key: MasterKey,
    pub tenant: TenantId,
    pub resolved: crate::config::Resolved,
}

impl Data {
    /// The administrator at this command line, for audit lines: `cli:USER` with the
    /// operating-system user, from `local`, with the command as the user agent.
    pub fn admin(&self, command: &str) -> Admin {
        Admin::cli(std::env::var("USER").ok().as_deref(), command)
    }
}

pub async fn open(cli: &Cli, listen: Option<SocketAddr>) -> Result<Data> {
    let resolved = crate::config::resolve(
        cli.config.as_deref(),
        cli.data_dir.as_deref(),
        cli.database_url.as_deref(),
        cli.master_key_file.as_deref(),
        listen,
    )?;
    create_private_dir(&resolved.data_dir)?;
    let key = MasterKey::load_or_create(&resolved.master_key_file)?;
    let store = sesame_store::open(&resolved.database_url, key.clone())
        .await
        .with_context(|| format!("cannot open the database {}", resolved.database_url))?;
    let services = Services::new(
        store.clone(),
        Arc::new(SystemClock),
        resolved.server.clone(),
    )
    .await?;
    let tenant = services.default_tenant;
    Ok(Data {
        store,
        services,
        key,
        tenant,
        resolved,
    })
}

fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    Ok(())
}

/// Reads a secret: one line from standard input with `from_stdin`, else a hidden prompt
/// (asked twice when `confirm`). Never from the command line.
pub fn read_secret(from_stdin: bool, prompt: &str, confirm: bool) -> Result<SecretString> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let trimmed = line.trim_end_matches(['\n', '\r']).to_string();
        return Ok(SecretString::new(trimmed));
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "no terminal to ask for the password: pass it on standard input with --password-stdin"
        );
    }
    let first = rpassword::prompt_password(prompt)?;
    if confirm {
        let second = rpassword::prompt_password("Repeat it: ")?;
        if first != second {
            anyhow::bail!("the two entries differ");
        }
    }
    Ok(SecretString::new(first))
}

/// Prints `value` as JSON, or runs `text` to print for people.
pub fn output<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce()) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        text();
    }
    Ok(())
}
