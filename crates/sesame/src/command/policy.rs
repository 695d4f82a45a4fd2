//! `sesame policy show|set`: the tenant's authentication methods policy.

use super::{open, output, Data};
use crate::Cli;
use anyhow::{bail, Result};
use clap::Subcommand;
use serde::Serialize;
use sesame_core::policy::{AuthenticatorMode, MethodsPolicy};
use sesame_core::GroupId;
use sesame_server::service::policy::{self, ChangeError, PolicyEdit};
use std::collections::{BTreeMap, HashMap};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Show the authentication methods policy.
    Show,
    /// Change the authentication methods policy; settings left out keep their value.
    Set(SetArgs),
}

#[derive(clap::Args)]
pub struct SetArgs {
    /// Turn the authenticator app on or off.
    #[arg(long, value_parser = ["enabled", "disabled"])]
    pub authenticator: Option<String>,
    /// Who may use the app: `all`, or a comma-separated list of groups, each with an optional
    /// mode (`GROUP=MODE`; without one a group gets --mode, else any).
    #[arg(long, value_name = "all|GROUP[=MODE],...")]
    pub targets: Option<String>,
    /// The mode for all users (any, push or passwordless), or for listed groups without one.
    #[arg(long, value_name = "any|push|passwordless")]
    pub mode: Option<AuthenticatorMode>,
    /// Digits of the number shown on the sign-in page and typed in the app (2 to 8).
    #[arg(long, value_name = "N")]
    pub digits: Option<u32>,
    /// How long a sign-in request waits for an answer, in seconds.
    #[arg(long, value_name = "SECS")]
    pub lifetime: Option<i64>,
    /// Whether approving a second step needs the app PIN.
    #[arg(long, value_name = "true|false")]
    pub pin_required: Option<bool>,
    /// Whether requests show the application's name.
    #[arg(long, value_name = "true|false")]
    pub show_app_name: Option<bool>,
    /// Whether requests show the IP address and approximate location.
    #[arg(long, value_name = "true|false")]
    pub show_location: Option<bool>,
    /// Who must pass two-step verification after a password: all, nobody, or groups.
    #[arg(long, value_name = "all|nobody|GROUP,...")]
    pub mfa_required: Option<String>,
    /// Codes by text message: off, all users, or a comma-separated list of groups.
    #[arg(long, value_name = "off|all|GROUP,...")]
    pub sms: Option<String>,
    /// Phone calls (mobile and office phones): off, all users, or groups.
    #[arg(long, value_name = "off|all|GROUP,...")]
    pub voice: Option<String>,
}

impl SetArgs {
    fn edit(&self) -> PolicyEdit {
        PolicyEdit {
            enabled: self.authenticator.as_deref().map(|a| a == "enabled"),
            targets: self.targets.clone(),
            mode: self.mode,
            digits: self.digits,
            lifetime_secs: self.lifetime,
            pin_required: self.pin_required,
            show_app_name: self.show_app_name,
            show_location: self.show_location,
            mfa_required: self.mfa_required.clone(),
            sms: self.sms.clone(),
            voice: self.voice.clone(),
        }
    }

    fn is_empty(&self) -> bool {
        self.edit().is_empty()
    }
}

/// The policy as `--json` prints it: the stored policy, its version, and the names of the
/// groups it refers to (ids alone mean little to a script's reader).
#[derive(Serialize)]
struct Shown<'a> {
    version: i64,
    #[serde(flatten)]
    policy: &'a MethodsPolicy,
    group_names: BTreeMap<i64, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changed: Option<String>,
}

fn shown<'a>(
    policy: &'a MethodsPolicy,
    version: i64,
    names: &HashMap<GroupId, String>,
    changed: Option<String>,
) -> Shown<'a> {
    Shown {
        version,
        policy,
        group_names: policy
            .groups()
            .into_iter()
            .filter_map(|g| names.get(&g).map(|n| (g.0, n.clone())))
            .collect(),
        changed,
    }
}

fn print_policy(policy: &MethodsPolicy, names: &HashMap<GroupId, String>) {
    let lines = policy::describe(policy, names);
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, v) in lines {
        say!("{:<width$} {v}", format!("{k}:"), width = width);
    }
}

pub async fn run(cli: &Cli, cmd: &PolicyCommand) -> Result<()> {
    let data = open(cli, None, super::Create::Refused).await?;
    match cmd {
        PolicyCommand::Show => show(cli, &data).await,
        PolicyCommand::Set(args) => set(cli, &data, args).await,
    }
}

async fn show(cli: &Cli, data: &Data) -> Result<()> {
    let (p, version) = data.services.current_policy(data.tenant).await?;
    let (_, names) = data.services.group_names(data.tenant).await?;
    output(cli.json, &shown(&p, version, &names, None), || {
        print_policy(&p, &names);
        if version == 0 {
            say!("(the initial policy: nobody has changed it yet)");
        }
    })
}

async fn set(cli: &Cli, data: &Data, args: &SetArgs) -> Result<()> {
    if args.is_empty() {
        bail!(
            "nothing to change: give at least one setting, e.g. `sesame policy set --mode push` \
             (see `sesame policy set --help`; `sesame policy show` prints the current policy)"
        );
    }
    let svc = &data.services;
    let edit = args.edit();
    let (old, version) = svc.current_policy(data.tenant).await?;
    let (by_name, names) = svc.group_names(data.tenant).await?;
    // Applied here first so that an edit that changes nothing leaves no version or audit line.
    let preview = edit.apply(&old, &by_name)?;
    if preview == old {
        return output(cli.json, &shown(&old, version, &names, None), || {
            say!("Nothing changed: the policy already says that.");
            print_policy(&old, &names);
        });
    }
    let name = |g: GroupId| names.get(&g).cloned().unwrap_or_else(|| format!("#{g}"));
    let changes = old.describe_changes(&preview, &name);
    let admin = data.admin("sesame policy set");
    let new = match svc
        .change_policy(&admin, data.tenant, &edit, Some(version))
        .await
    {
        Ok(p) => p,
        Err(ChangeError::Invalid(m)) => bail!("{m}"),
        Err(e) => return Err(e.into()),
    };
    let (_, new_version) = svc.current_policy(data.tenant).await?;
    output(
        cli.json,
        &shown(&new, new_version, &names, Some(changes.clone())),
        || {
            say!("Policy changed: {changes}.");
            print_policy(&new, &names);
        },
    )
}
