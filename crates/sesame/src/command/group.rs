//! `sesame group ...`

use super::{open, output};
use crate::Cli;
use anyhow::{Context, Result};
use clap::Subcommand;
use sesame_server::service::groups;

#[derive(Subcommand)]
pub enum GroupCommand {
    /// Create a group.
    Add { name: String },
    /// List groups with their member counts.
    List,
    /// Show a group's members.
    Show { name: String },
    /// Add a user to a group.
    AddMember { group: String, username: String },
    /// Remove a user from a group.
    RemoveMember { group: String, username: String },
    /// Delete a group (its members stay; a group the methods policy names is refused).
    Remove { name: String },
}

pub async fn run(cli: &Cli, cmd: &GroupCommand) -> Result<()> {
    let data = open(cli, None, super::Create::Refused).await?;
    let store = &data.store;
    let group = |name: String| {
        let store = store.clone();
        let tenant = data.tenant;
        async move {
            store
                .find_group_by_name(tenant, &name)
                .await?
                .with_context(|| format!("no group named {name:?}"))
        }
    };
    let user = |name: String| {
        let store = store.clone();
        let tenant = data.tenant;
        async move {
            store
                .find_user_by_username(tenant, &name)
                .await?
                .with_context(|| format!("no user named {name:?}"))
        }
    };
    match cmd {
        GroupCommand::Add { name } => {
            let g = groups::create(
                &data.services,
                &data.admin("sesame group add"),
                data.tenant,
                name,
            )
            .await?;
            output(cli.json, &g, || say!("Created group {}.", g.name))?;
        }
        GroupCommand::List => {
            let groups = store.list_groups(data.tenant).await?;
            output(cli.json, &groups, || {
                say!("{:<32} MEMBERS", "GROUP");
                for g in &groups {
                    say!("{:<32} {}", g.name, g.member_count);
                }
                if groups.is_empty() {
                    say!("(no groups yet: add one with `sesame group add NAME`)");
                }
            })?;
        }
        GroupCommand::Show { name } => {
            let g = group(name.clone()).await?;
            let members = store.list_group_members(g.id).await?;
            let names: Vec<&str> = members.iter().map(|u| u.username.as_str()).collect();
            output(
                cli.json,
                &serde_json::json!({"group": g, "members": names}),
                || {
                    say!(
                        "Group {} ({})",
                        g.name,
                        super::counted(names.len() as u64, "member", "members")
                    );
                    for n in &names {
                        say!("  {n}");
                    }
                },
            )?;
        }
        GroupCommand::Remove { name } => {
            let g = group(name.clone()).await?;
            groups::remove(&data.services, &data.admin("sesame group remove"), &g).await?;
            output(cli.json, &serde_json::json!({"removed": g.name}), || {
                say!("Deleted group {}.", g.name)
            })?;
        }
        GroupCommand::AddMember {
            group: gname,
            username,
        } => {
            let g = group(gname.clone()).await?;
            let u = user(username.clone()).await?;
            let added = groups::add_member(
                &data.services,
                &data.admin("sesame group add-member"),
                &g,
                &u,
            )
            .await?;
            output(
                cli.json,
                &serde_json::json!({"group": g.name, "username": u.username, "added": added}),
                || {
                    if added {
                        say!("Added {} to {}.", u.username, g.name)
                    } else {
                        say!("{} already is a member of {}.", u.username, g.name)
                    }
                },
            )?;
        }
        GroupCommand::RemoveMember {
            group: gname,
            username,
        } => {
            let g = group(gname.clone()).await?;
            let u = user(username.clone()).await?;
            let removed = groups::remove_member(
                &data.services,
                &data.admin("sesame group remove-member"),
                &g,
                &u,
            )
            .await?;
            output(
                cli.json,
                &serde_json::json!({"group": g.name, "username": u.username, "removed": removed}),
                || {
                    if removed {
                        say!("Removed {} from {}.", u.username, g.name)
                    } else {
                        say!("{} was not a member of {}.", u.username, g.name)
                    }
                },
            )?;
        }
    }
    Ok(())
}
