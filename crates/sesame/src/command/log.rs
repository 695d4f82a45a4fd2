//! `sesame log`: the audit log, newest first.

use super::{open, output};
use crate::Cli;
use anyhow::{bail, Context, Result};
use sesame_server::web::fmt_time;
use sesame_store::{AuditFilter, AuditResult};

#[derive(clap::Args)]
pub struct Args {
    /// Only this user's entries.
    #[arg(long)]
    pub user: Option<String>,
    /// Only successes or only failures.
    #[arg(long, value_parser = ["success", "failure"])]
    pub result: Option<String>,
    /// How many entries to show.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<()> {
    let data = open(cli, None, super::Create::Refused).await?;
    if args.limit < 1 || args.limit > 100_000 {
        bail!("--limit must be between 1 and 100000");
    }
    let user = match &args.user {
        Some(name) => Some(
            data.store
                .find_user_by_username(data.tenant, name)
                .await?
                .with_context(|| format!("no user named {name:?}"))?
                .id,
        ),
        None => None,
    };
    let result = args.result.as_deref().map(|r| {
        if r == "success" {
            AuditResult::Success
        } else {
            AuditResult::Failure
        }
    });
    let entries = data
        .store
        .list_audit(&AuditFilter {
            tenant: Some(data.tenant),
            user,
            result,
            limit: args.limit,
            ..Default::default()
        })
        .await?;
    output(cli.json, &entries, || {
        say!(
            "{:<22} {:<20} {:<22} {:<9} {:<8} {:<16} {:<15} USER AGENT",
            "TIME",
            "USER",
            "EVENT",
            "METHOD",
            "RESULT",
            "REASON",
            "IP"
        );
        for e in &entries {
            say!(
                "{:<22} {:<20} {:<22} {:<9} {:<8} {:<16} {:<15} {}",
                fmt_time(e.at),
                e.username,
                e.event.as_str(),
                e.method.as_ref().map_or("-", |m| m.as_str()),
                e.result.as_str(),
                e.reason.as_deref().unwrap_or("-"),
                e.ip,
                e.user_agent.chars().take(40).collect::<String>()
            );
        }
        if entries.is_empty() {
            say!("(no entries)");
        }
    })
}
