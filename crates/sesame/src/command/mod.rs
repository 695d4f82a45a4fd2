//! One module per command, mirroring `sesame --help`.

/// Prints a line for people. Whatever a command prints for people goes through here: it
/// holds text others wrote (usernames typed at sign-in, browser strings, device names, audit
/// reasons), and a control character in it would drive the terminal, so every hidden
/// character is shown escaped (`\u{1b}`; see `sesame_proto::text`), a line break too: one
/// call is one line, and stored text cannot forge another line of the log. JSON output
/// (`--json`) stays exact: serde escapes control characters already. Defined before the
/// command modules, which use it by textual scope.
macro_rules! say {
    () => {
        $crate::command::emit("")
    };
    ($($arg:tt)*) => {
        $crate::command::emit(&sesame_proto::text::printable(&format!($($arg)*)))
    };
}

pub mod backup;
pub mod client;
pub mod config;
pub mod group;
pub mod keys;
pub mod log;
pub mod master_key;
pub mod outbox;
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
        Command::Init => init(&cli).await,
        Command::User(c) => user::run(&cli, c).await,
        Command::Group(c) => group::run(&cli, c).await,
        Command::Client(c) => client::run(&cli, c).await,
        Command::Keys(c) => keys::run(&cli, c).await,
        Command::Policy(c) => policy::run(&cli, c).await,
        Command::Log(args) => log::run(&cli, args).await,
        Command::Outbox(c) => outbox::run(&cli, c).await,
        Command::Config(c) => config::run(c),
        Command::MasterKey(c) => master_key::run(c),
        Command::Backup(args) => backup::run(&cli, args).await,
        Command::Migrate => migrate(&cli).await,
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

/// Whether a command may start a new installation. Only `serve` and `init` may: any other
/// command run from the wrong folder must not quietly create an empty one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Allowed,
    Refused,
}

/// Opens the data of an existing installation (or, with `Create::Allowed`, a new one).
pub async fn open(cli: &Cli, listen: Option<SocketAddr>, create: Create) -> Result<Data> {
    let resolved = crate::config::resolve(
        cli.config.as_deref(),
        cli.data_dir.as_deref(),
        cli.database_url.as_deref(),
        cli.master_key_file.as_deref(),
        listen,
    )?;
    check_data(&resolved, create)?;
    if create == Create::Allowed {
        create_private_dir(&resolved.data_dir)?;
    }
    let key = MasterKey::load_or_create(&resolved.master_key_file)?;
    let store = sesame_store::open_backend(&resolved.database, key.clone())
        .await
        .with_context(|| format!("cannot open the database {}", resolved.database))?;
    let services = Services::new(
        store.clone(),
        Arc::new(SystemClock),
        resolved.server.clone(),
        &key,
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

/// What is on disk of an embedded database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnDisk {
    Missing,
    Empty,
    Present,
}

fn on_disk(path: &std::path::Path) -> Result<OnDisk> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => Ok(OnDisk::Empty),
        Ok(_) => Ok(OnDisk::Present),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(OnDisk::Missing),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Refuses data that is half there: a database without its master key (a new key would make
/// every stored secret unreadable), a key whose database is gone or empty (not a new
/// installation: a lost one), and, unless `create` allows it, no data at all.
fn check_data(r: &crate::config::Resolved, create: Create) -> Result<()> {
    let key = &r.master_key_file;
    let db = match &r.database {
        sesame_store::Backend::Sqlite(db) => db,
        // A shared database: every node brings the same master key file. Only `serve` and
        // `init` may make one (the first node's first start); other commands need it there.
        #[cfg(feature = "postgres")]
        sesame_store::Backend::Postgres(_) => {
            if create == Create::Refused && on_disk(key)? == OnDisk::Missing {
                anyhow::bail!(
                    "the master key {} is missing. Every node of a shared database uses the same                      master key file: copy it from a node (or point --master-key-file at it)",
                    key.display()
                );
            }
            return Ok(());
        }
    };
    let key_exists = on_disk(key)? != OnDisk::Missing;
    match (on_disk(db)?, key_exists) {
        (OnDisk::Present, false) => anyhow::bail!(
            "the database {} exists but its master key {} is missing. Without that key the \
             secrets stored in the database cannot be read, so Sesame will not make a new one: \
             restore {} from your backup (or point --master-key-file at it)",
            db.display(),
            key.display(),
            key.display()
        ),
        (OnDisk::Empty, true) if !r.master_key_named => anyhow::bail!(
            "the database {} is empty, but the master key {} exists: this is not a new \
             installation. Restore {} from your backup",
            db.display(),
            key.display(),
            db.display()
        ),
        (OnDisk::Missing, true) if !r.master_key_named => anyhow::bail!(
            "the master key {} exists but the database {} is missing: this is not a new \
             installation. Restore {} from your backup (or, to start over, move the key away)",
            key.display(),
            db.display(),
            db.display()
        ),
        (OnDisk::Missing | OnDisk::Empty, _) if create == Create::Refused => anyhow::bail!(
            "there is no Sesame data in {}: start the server once (`sesame serve`) or create it \
             with `sesame init`, or point --data-dir (SESAME_DATA_DIR) at your data",
            r.data_dir.display()
        ),
        _ => Ok(()),
    }
}

/// `sesame migrate`: brings a PostgreSQL database to this version's schema (nodes also do it
/// when they start, one at a time); the embedded database migrates when it is opened.
async fn migrate(cli: &Cli) -> Result<()> {
    let resolved = crate::config::resolve(
        cli.config.as_deref(),
        cli.data_dir.as_deref(),
        cli.database_url.as_deref(),
        cli.master_key_file.as_deref(),
        None,
    )?;
    let applied: Vec<i64> = match &resolved.database {
        #[cfg(feature = "postgres")]
        sesame_store::Backend::Postgres(url) => sesame_store::postgres::migrate(url)
            .await
            .with_context(|| format!("cannot migrate the database {}", resolved.database))?,
        sesame_store::Backend::Sqlite(_) => {
            check_data(&resolved, Create::Refused)?;
            let key = MasterKey::load_or_create(&resolved.master_key_file)?;
            sesame_store::open_backend(&resolved.database, key)
                .await
                .with_context(|| format!("cannot open the database {}", resolved.database))?;
            Vec::new()
        }
    };
    output(
        cli.json,
        &serde_json::json!({
            "database": resolved.database.to_string(),
            "applied": applied,
        }),
        || {
            if applied.is_empty() {
                say!("The database {} is up to date.", resolved.database);
            } else {
                let list: Vec<String> = applied.iter().map(ToString::to_string).collect();
                say!(
                    "Migrated the database {}: applied {}.",
                    resolved.database,
                    list.join(", ")
                );
            }
        },
    )
}

/// `sesame init`: a new installation, ready for `sesame user add` before the first start.
async fn init(cli: &Cli) -> Result<()> {
    let data = open(cli, None, Create::Allowed).await?;
    output(
        cli.json,
        &serde_json::json!({
            "data_dir": data.resolved.data_dir,
            "database": data.resolved.database.to_string(),
            "master_key_file": data.resolved.master_key_file,
        }),
        || {
            say!(
                "Sesame data is ready in {} (database {}, master key {}: back it up).",
                data.resolved.data_dir.display(),
                data.resolved.database,
                data.resolved.master_key_file.display()
            )
        },
    )
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
/// Writes one line to standard output. When the reader went away (`sesame log | head -1`)
/// the command has nothing left to do: it ends quietly, as Unix tools do, instead of
/// panicking on the broken pipe.
pub fn emit(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(1);
    }
}

pub fn output<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce()) -> Result<()> {
    if json {
        emit(&serde_json::to_string_pretty(value)?);
    } else {
        text();
    }
    Ok(())
}

/// "1 member", "2 members", "0 members": a count and its noun, as people read them.
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(super::counted(0, "member", "members"), "0 members");
        assert_eq!(super::counted(1, "member", "members"), "1 member");
        assert_eq!(super::counted(2, "member", "members"), "2 members");
    }
}
