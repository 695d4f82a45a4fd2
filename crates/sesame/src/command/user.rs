//! `sesame user ...`

use super::{open, output, read_secret, Data};
use crate::Cli;
use anyhow::{Context, Result};
use clap::Subcommand;
use serde::Serialize;
use sesame_core::method::MethodKind;
use sesame_server::service::guesses;
use sesame_server::service::users::{self, NewAccount, UserError};
use sesame_server::web::fmt_time;
use sesame_store::{AuditFilter, User};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user. The password comes from a prompt or --password-stdin, never an argument.
    Add {
        username: String,
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long, conflicts_with = "no_password")]
        password_stdin: bool,
        /// Create the user without a password (they cannot sign in with one until it is set).
        #[arg(long)]
        no_password: bool,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    List,
    /// Show one user: methods, groups, lock state and recent sign-ins.
    Show { username: String },
    /// Set or replace a user's password.
    SetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Block a user: sign-ins are refused and their sessions end at once.
    Block { username: String },
    /// Unblock a user; also lifts the block on phone requests set by "Deny and report".
    Unblock { username: String },
    /// Clear a user's failed-attempt counters (lifts soft and hard locks).
    Unlock { username: String },
    /// Remove all of a user's sign-in methods and registered devices (lost phone): pending
    /// requests stop, phone sign-in stops, and they sign in with the password only.
    ResetMethods { username: String },
    /// Delete a user and everything they own.
    Remove { username: String },
    /// Temporary Access Passes: a time-limited pass a user signs in with to set up their
    /// methods (a new user without a password, or one who lost their only phone).
    #[command(subcommand, name = "access-pass")]
    AccessPass(AccessPassCommand),
}

#[derive(Subcommand)]
pub enum AccessPassCommand {
    /// Give USERNAME a new pass (replacing any other). It is shown once; only its hash is
    /// kept. The user chooses "Other ways to sign in" -> "Use a Temporary Access Pass".
    Create {
        username: String,
        /// How long it works: 10m to 30d (e.g. 30m, 8h, 7d).
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        lifetime: String,
        /// Let it be used again until it expires (default: it works once).
        #[arg(long)]
        multi_use: bool,
    },
    /// Whether USERNAME has a pass, and until when (never the pass itself).
    Show { username: String },
    /// End USERNAME's pass at once.
    Revoke { username: String },
}

async fn find(data: &Data, username: &str) -> Result<User> {
    data.store
        .find_user_by_username(data.tenant, username)
        .await?
        .with_context(|| format!("no user named {username:?}"))
}

/// The command line's words for what the service refused.
fn refused(e: UserError) -> anyhow::Error {
    anyhow::anyhow!(e)
}

#[derive(Serialize)]
struct UserRow<'a> {
    #[serde(flatten)]
    user: &'a User,
    methods: Vec<&'static str>,
}

#[derive(Serialize)]
struct UserDetail {
    #[serde(flatten)]
    user: User,
    methods: Vec<sesame_store::Method>,
    devices: Vec<sesame_store::Device>,
    groups: Vec<String>,
    locks: Vec<Lock>,
    passwords: guesses::Standing,
    recent: Vec<sesame_store::AuditEvent>,
}

#[derive(Serialize)]
struct Lock {
    method: &'static str,
    failures: u32,
    last_failure_at: Option<i64>,
}

pub async fn run(cli: &Cli, cmd: &UserCommand) -> Result<()> {
    let data = open(cli, None, super::Create::Refused).await?;
    let store = &data.store;
    match cmd {
        UserCommand::Add {
            username,
            display_name,
            password_stdin,
            no_password,
            admin,
        } => {
            // Checked before asking for a password that would then be refused.
            let username = users::check_username(username).map_err(refused)?;
            let password = if *no_password {
                None
            } else {
                Some(read_secret(
                    *password_stdin,
                    &format!("Password for {username}: "),
                    true,
                )?)
            };
            let new = NewAccount {
                username: username.to_string(),
                display_name: display_name.clone(),
                password,
                admin: *admin,
            };
            let user = users::create(
                &data.services,
                &data.admin("sesame user add"),
                data.tenant,
                new,
            )
            .await
            .map_err(refused)?;
            output(cli.json, &user, || {
                say!(
                    "Created user {}{}.",
                    user.username,
                    if user.is_admin {
                        " (administrator)"
                    } else {
                        ""
                    }
                )
            })?;
        }
        UserCommand::List => {
            let users = store.list_users(data.tenant).await?;
            let mut rows = Vec::new();
            for u in &users {
                let methods = store
                    .list_methods(u.id)
                    .await?
                    .iter()
                    .map(|m| m.kind.as_str())
                    .collect();
                rows.push(UserRow { user: u, methods });
            }
            output(cli.json, &rows, || {
                say!(
                    "{:<24} {:<24} {:<6} {:<8} {:<10} CREATED",
                    "USERNAME",
                    "DISPLAY NAME",
                    "ADMIN",
                    "BLOCKED",
                    "METHODS"
                );
                for r in &rows {
                    say!(
                        "{:<24} {:<24} {:<6} {:<8} {:<10} {}",
                        r.user.username,
                        r.user.display_name,
                        if r.user.is_admin { "yes" } else { "no" },
                        if r.user.is_blocked { "yes" } else { "no" },
                        if r.methods.is_empty() {
                            "-".to_string()
                        } else {
                            r.methods.join(",")
                        },
                        fmt_time(r.user.created_at)
                    );
                }
                if rows.is_empty() {
                    say!("(no users yet: add one with `sesame user add NAME`)");
                }
                // Open fraud reports, as the console's banner says them.
                let reported: Vec<&User> = users
                    .iter()
                    .filter(|u| u.push_blocked_at.is_some())
                    .collect();
                if !reported.is_empty() {
                    say!();
                    for u in reported {
                        say!(
                            "Fraud report: {} said a sign-in request was not theirs ({}); requests to their phone are blocked until `sesame user unblock {}`.",
                            u.username,
                            fmt_time(u.push_blocked_at.unwrap_or_default()),
                            u.username
                        );
                    }
                }
            })?;
        }
        UserCommand::Show { username } => {
            let user = find(&data, username).await?;
            let methods = store.list_methods(user.id).await?;
            let devices = store.list_devices(user.id).await?;
            let groups = store
                .list_user_groups(user.id)
                .await?
                .into_iter()
                .map(|g| g.name)
                .collect();
            let mut locks = Vec::new();
            for k in MethodKind::ALL {
                let (failures, last) = store.find_failures(user.id, k).await?;
                locks.push(Lock {
                    method: k.as_str(),
                    failures,
                    last_failure_at: last,
                });
            }
            let passwords = guesses::standing(&data.services, &user).await?;
            let recent = store
                .list_audit(&AuditFilter {
                    user: Some(user.id),
                    limit: 10,
                    ..Default::default()
                })
                .await?;
            let d = UserDetail {
                user,
                methods,
                devices,
                groups,
                locks,
                passwords,
                recent,
            };
            output(cli.json, &d, || print_detail(&d))?;
        }
        UserCommand::SetPassword {
            username,
            password_stdin,
        } => {
            let user = find(&data, username).await?;
            let pw = read_secret(
                *password_stdin,
                &format!("New password for {}: ", user.username),
                true,
            )?;
            users::set_password(
                &data.services,
                &data.admin("sesame user set-password"),
                &user,
                pw,
            )
            .await
            .map_err(refused)?;
            output(
                cli.json,
                &serde_json::json!({"username": user.username, "password_set": true}),
                || say!("Password set for {}.", user.username),
            )?;
        }
        UserCommand::Block { username } => {
            let user = find(&data, username).await?;
            let blocked = users::block(&data.services, &data.admin("sesame user block"), &user)
                .await
                .map_err(refused)?;
            let ended = blocked.sessions_ended;
            output(
                cli.json,
                &serde_json::json!({
                    "username": user.username,
                    "blocked": true,
                    "sessions_ended": ended,
                    "requests_cancelled": blocked.cancelled.len(),
                }),
                || {
                    say!(
                        "Blocked {}; ended {}.",
                        user.username,
                        super::counted(ended, "session", "sessions")
                    )
                },
            )?;
        }
        UserCommand::Unblock { username } => {
            let user = find(&data, username).await?;
            users::unblock(&data.services, &data.admin("sesame user unblock"), &user)
                .await
                .map_err(refused)?;
            output(
                cli.json,
                &serde_json::json!({"username": user.username, "blocked": false}),
                || say!("Unblocked {}.", user.username),
            )?;
        }
        UserCommand::Unlock { username } => {
            let user = find(&data, username).await?;
            users::unlock(&data.services, &data.admin("sesame user unlock"), &user)
                .await
                .map_err(refused)?;
            output(
                cli.json,
                &serde_json::json!({"username": user.username, "unlocked": true}),
                || say!("Cleared failed attempts for {}.", user.username),
            )?;
        }
        UserCommand::ResetMethods { username } => {
            let user = find(&data, username).await?;
            let reset = users::reset_methods(
                &data.services,
                &data.admin("sesame user reset-methods"),
                &user,
            )
            .await
            .map_err(refused)?;
            let (n, devices) = (reset.methods, reset.devices);
            output(
                cli.json,
                &serde_json::json!({
                    "username": user.username,
                    "methods_removed": n,
                    "devices_removed": devices,
                }),
                || {
                    say!(
                        "Removed {} and {} of {}.",
                        super::counted(n, "method", "methods"),
                        super::counted(devices, "device", "devices"),
                        user.username
                    )
                },
            )?;
        }
        UserCommand::Remove { username } => {
            let user = find(&data, username).await?;
            users::remove(&data.services, &data.admin("sesame user remove"), &user)
                .await
                .map_err(refused)?;
            output(
                cli.json,
                &serde_json::json!({"username": user.username, "removed": true}),
                || say!("Removed user {}.", user.username),
            )?;
        }
        UserCommand::AccessPass(c) => access_pass(cli, &data, c).await?,
    }
    Ok(())
}

async fn access_pass(cli: &Cli, data: &Data, cmd: &AccessPassCommand) -> Result<()> {
    use sesame_server::service::access_pass;
    match cmd {
        AccessPassCommand::Create {
            username,
            lifetime,
            multi_use,
        } => {
            let secs = sesame_core::access_pass::parse_lifetime(lifetime)
                .map_err(|e| anyhow::anyhow!("--lifetime: {e}"))?;
            let user = find(data, username).await?;
            let made = access_pass::create(
                &data.services,
                &data.admin("sesame user access-pass create"),
                &user,
                secs,
                !multi_use,
            )
            .await
            .map_err(|e| anyhow::anyhow!(e.to_string()))?;
            output(
                cli.json,
                &serde_json::json!({
                    "username": user.username,
                    "pass": made.pass,
                    "one_time": made.one_time,
                    "expires_at": made.expires_at,
                }),
                || {
                    say!("Temporary Access Pass for {}: {}", user.username, made.pass);
                    say!(
                        "{} until {}. It is shown only now: give it to {} in person or by a channel you trust.",
                        if made.one_time { "Works once," } else { "Works any number of times" },
                        fmt_time(made.expires_at),
                        user.username
                    );
                    say!("They sign in with their username, then \"Other ways to sign in\" -> \"Use a Temporary Access Pass\".");
                },
            )?;
        }
        AccessPassCommand::Show { username } => {
            let user = find(data, username).await?;
            let pass = data
                .store
                .find_access_pass(user.id, data.services.now())
                .await?;
            output(
                cli.json,
                &serde_json::json!({"username": user.username, "access_pass": pass}),
                || match &pass {
                    None => say!("{} has no Temporary Access Pass.", user.username),
                    Some(p) => say!(
                        "{} has a {} Temporary Access Pass, created {}, valid until {}{}.",
                        user.username,
                        if p.one_time { "one-time" } else { "multi-use" },
                        fmt_time(p.created_at),
                        fmt_time(p.expires_at),
                        p.used_at
                            .map(|t| format!(", last used {}", fmt_time(t)))
                            .unwrap_or_default()
                    ),
                },
            )?;
        }
        AccessPassCommand::Revoke { username } => {
            let user = find(data, username).await?;
            let revoked = access_pass::revoke(
                &data.services,
                &data.admin("sesame user access-pass revoke"),
                &user,
            )
            .await
            .map_err(|e| anyhow::anyhow!(e.to_string()))?;
            output(
                cli.json,
                &serde_json::json!({"username": user.username, "revoked": revoked}),
                || {
                    if revoked {
                        say!("Revoked {}'s Temporary Access Pass.", user.username)
                    } else {
                        say!("{} had no Temporary Access Pass.", user.username)
                    }
                },
            )?;
        }
    }
    Ok(())
}

fn print_detail(d: &UserDetail) {
    let u = &d.user;
    say!("Username:      {}", u.username);
    say!("Display name:  {}", u.display_name);
    say!("Administrator: {}", if u.is_admin { "yes" } else { "no" });
    say!("Blocked:       {}", if u.is_blocked { "yes" } else { "no" });
    if let Some(t) = u.push_blocked_at {
        say!(
            "Phone requests: BLOCKED since {}: the user reported a sign-in request as not theirs (`sesame user unblock {}` lifts it)",
            fmt_time(t),
            u.username
        );
    }
    say!(
        "Password:      {}",
        if u.has_password { "set" } else { "not set" }
    );
    say!("Created:       {}", fmt_time(u.created_at));
    say!(
        "Groups:        {}",
        if d.groups.is_empty() {
            "-".into()
        } else {
            d.groups.join(", ")
        }
    );
    say!("Methods:");
    if d.methods.is_empty() {
        say!("  (none: signs in with the password only)");
    }
    for m in &d.methods {
        let default = if u.default_method == Some(m.id) {
            " (default)"
        } else {
            ""
        };
        say!(
            "  {}: {}{default}, added {}, {}",
            m.kind.display_name(),
            m.label,
            fmt_time(m.created_at),
            m.last_used_at
                .map(|t| format!("last used {}", fmt_time(t)))
                .unwrap_or_else(|| "not used yet".into())
        );
    }
    say!("Devices:");
    if d.devices.is_empty() {
        say!("  (none registered)");
    }
    for dev in &d.devices {
        let phone = if dev.pin_key_disabled_at.is_some() {
            "phone sign-in OFF after 10 wrong PINs (the user sets it up again in the app)"
        } else if dev.phone_sign_in_ready() {
            "phone sign-in on"
        } else {
            "phone sign-in off"
        };
        say!(
            "  {} ({}): added {}, {}, {phone}",
            dev.name,
            dev.id,
            fmt_time(dev.created_at),
            dev.last_used_at
                .map(|t| format!("last used {}", fmt_time(t)))
                .unwrap_or_else(|| "not used yet".into()),
        );
    }
    for l in d.locks.iter().filter(|l| l.failures > 0) {
        say!(
            "Failed attempts ({}): {} (use `sesame user unlock {}` to clear)",
            l.method,
            l.failures,
            u.username
        );
    }
    let p = &d.passwords;
    if p.failures > 0 || !p.browsers.is_empty() {
        let state = match (p.state, p.until) {
            ("locked", _) => "locked until unlocked".to_string(),
            ("waiting", Some(until)) => format!("waiting until {}", fmt_time(until)),
            _ => "not held".to_string(),
        };
        say!(
            "Wrong passwords: {} in a row from browsers the user never signed in with ({state}); \
             {} with wrong passwords (use `sesame user unlock {}` to clear)",
            p.failures,
            super::counted(p.browsers.len() as u64, "known browser", "known browsers"),
            u.username
        );
    }
    if !d.recent.is_empty() {
        say!("Recent activity:");
        for e in &d.recent {
            say!(
                "  {}  {:<22} {:<8} {:<8} {}",
                fmt_time(e.at),
                e.event.as_str(),
                e.method.as_ref().map_or("-", |m| m.as_str()),
                e.result.as_str(),
                e.reason.as_deref().unwrap_or("")
            );
        }
    }
}
