//! The tenant's authentication methods policy as the server uses it: read at the moment of use
//! (so a change applies to the next request everywhere), and changed in one place by both the
//! `sesame policy set` command and the admin page, always with an audit line.

use crate::AppState;
use sesame_core::policy::{
    Allowed, AuthenticatorMode, GroupTarget, MethodsPolicy, MfaRequirement, Targets,
};
use sesame_core::push::PushPolicy;
use sesame_core::{GroupId, TenantId, UnixTime};
use sesame_store::{AuditEvent, AuditResult, Store, StoreError, User};
use std::collections::HashMap;

/// The tenant's policy and its version (0 while never saved: the initial policy).
pub async fn current(
    store: &dyn Store,
    tenant: TenantId,
    server_push: &PushPolicy,
) -> Result<(MethodsPolicy, i64), StoreError> {
    Ok(store
        .find_policy(tenant)
        .await?
        .unwrap_or_else(|| (MethodsPolicy::initial(server_push), 0)))
}

/// What the policy lets `user` do, judged now.
pub struct UserPolicy {
    pub policy: MethodsPolicy,
    pub allowed: Allowed,
    pub mfa_required: bool,
    /// Number, lifetime and PIN for requests, with the server's rate limits.
    pub push: PushPolicy,
}

pub async fn for_user(state: &AppState, user: &User) -> Result<UserPolicy, StoreError> {
    let (found, groups) = state
        .store
        .find_policy_for_user(user.tenant, user.id)
        .await?;
    let policy = found.map_or_else(|| MethodsPolicy::initial(&state.config.push), |(p, _)| p);
    Ok(UserPolicy {
        allowed: policy.allowed(&groups),
        mfa_required: policy.mfa_required(&groups),
        push: policy.push(&state.config.push),
        policy,
    })
}

/// Why phone sign-in is refused to a user, as the app and the pages show it.
pub const PHONE_SIGN_IN_NOT_ALLOWED: &str = "Your organisation's policy does not allow phone sign-in for your account. Contact your administrator if you need it.";

/// A change to the policy, as typed on the command line or sent by the admin page. Fields left
/// `None` keep their value.
#[derive(Debug, Default, Clone)]
pub struct PolicyEdit {
    pub enabled: Option<bool>,
    /// `all` or `GROUP[=MODE],GROUP[=MODE]...`
    pub targets: Option<String>,
    /// The mode for "all users", and for listed groups without their own.
    pub mode: Option<AuthenticatorMode>,
    pub digits: Option<u32>,
    pub lifetime_secs: Option<i64>,
    pub pin_required: Option<bool>,
    pub show_app_name: Option<bool>,
    pub show_location: Option<bool>,
    /// `all`, `nobody` or `GROUP,GROUP...`
    pub mfa_required: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Invalid(String),
    #[error("the policy was changed by someone else meanwhile; look at it again and retry")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty())
}

impl PolicyEdit {
    /// The edited policy. `group` resolves a group name in the tenant.
    pub fn apply(
        &self,
        old: &MethodsPolicy,
        group: &HashMap<String, GroupId>,
    ) -> Result<MethodsPolicy, String> {
        let find = |name: &str| {
            group
                .get(&sesame_store::name_key(name))
                .copied()
                .ok_or_else(|| format!("no group named {name:?}"))
        };
        let mut p = old.clone();
        let a = &mut p.authenticator;
        if let Some(v) = self.enabled {
            a.enabled = v;
        }
        let current_mode = match &a.targets {
            Targets::All { mode } => *mode,
            Targets::Groups { .. } => AuthenticatorMode::Any,
        };
        match self.targets.as_deref().map(str::trim) {
            Some("all") | Some("all-users") => {
                a.targets = Targets::All {
                    mode: self.mode.unwrap_or(current_mode),
                }
            }
            Some(list) => {
                let mut groups = Vec::new();
                for item in split_list(list) {
                    let (name, mode) = match item.split_once('=') {
                        Some((n, m)) => (n.trim(), m.trim().parse()?),
                        None => (item, self.mode.unwrap_or(AuthenticatorMode::Any)),
                    };
                    groups.push(GroupTarget {
                        group: find(name)?,
                        mode,
                    });
                }
                if groups.is_empty() {
                    return Err("name at least one group, or `all`".into());
                }
                a.targets = Targets::Groups { groups };
            }
            None => {
                if let (Some(m), Targets::All { mode }) = (self.mode, &mut a.targets) {
                    *mode = m;
                } else if self.mode.is_some() {
                    return Err(
                        "with group targets, give each group its mode: --targets GROUP=MODE".into(),
                    );
                }
            }
        }
        if let Some(v) = self.digits {
            a.digits = v;
        }
        if let Some(v) = self.lifetime_secs {
            a.lifetime_secs = v;
        }
        if let Some(v) = self.pin_required {
            a.pin_required = v;
        }
        if let Some(v) = self.show_app_name {
            a.show_app_name = v;
        }
        if let Some(v) = self.show_location {
            a.show_location = v;
        }
        if let Some(m) = self.mfa_required.as_deref().map(str::trim) {
            p.mfa_required = match m {
                "all" | "all-users" => MfaRequirement::All,
                "nobody" | "none" => MfaRequirement::Nobody,
                list => {
                    let groups = split_list(list).map(find).collect::<Result<Vec<_>, _>>()?;
                    if groups.is_empty() {
                        return Err("--mfa-required takes all, nobody or group names".into());
                    }
                    MfaRequirement::Groups { groups }
                }
            };
        }
        p.validate()?;
        Ok(p)
    }
}

/// Group names by their lookup key, and names by id, for editing and showing the policy.
pub async fn group_names(
    store: &dyn Store,
    tenant: TenantId,
) -> Result<(HashMap<String, GroupId>, HashMap<GroupId, String>), StoreError> {
    let groups = store.list_groups(tenant).await?;
    Ok((
        groups
            .iter()
            .map(|g| (sesame_store::name_key(&g.name), g.id))
            .collect(),
        groups.into_iter().map(|g| (g.id, g.name)).collect(),
    ))
}

/// Who changed the policy, from where, for the audit line.
pub struct Actor<'a> {
    pub user: Option<sesame_core::UserId>,
    pub name: &'a str,
    pub ip: &'a str,
    pub user_agent: &'a str,
}

/// Applies `edit` to the current policy and saves it with its audit line, or explains why not.
pub async fn change(
    store: &dyn Store,
    tenant: TenantId,
    server_push: &PushPolicy,
    edit: &PolicyEdit,
    expected_version: Option<i64>,
    actor: &Actor<'_>,
    now: UnixTime,
) -> Result<MethodsPolicy, PolicyError> {
    let (old, version) = current(store, tenant, server_push).await?;
    if expected_version.is_some_and(|v| v != version) {
        return Err(PolicyError::Conflict);
    }
    let (by_name, by_id) = group_names(store, tenant).await?;
    let new = edit.apply(&old, &by_name).map_err(PolicyError::Invalid)?;
    let name = |g: GroupId| {
        by_id
            .get(&g)
            .cloned()
            .unwrap_or_else(|| format!("(removed group {g})"))
    };
    let audit = AuditEvent {
        id: 0,
        at: now,
        tenant,
        user: actor.user,
        username: actor.name.to_string(),
        ip: actor.ip.to_string(),
        user_agent: actor.user_agent.to_string(),
        event: "policy_changed".into(),
        method: None,
        result: AuditResult::Success,
        reason: Some(old.describe_changes(&new, &name)),
    };
    if !store
        .save_policy(tenant, &new, version, now, &audit)
        .await?
    {
        return Err(PolicyError::Conflict);
    }
    tracing::info!(
        by = actor.name,
        change = audit.reason.as_deref(),
        "policy changed"
    );
    Ok(new)
}

/// The policy as lines for people (`sesame policy show`, the admin page summary).
pub fn describe(p: &MethodsPolicy, names: &HashMap<GroupId, String>) -> Vec<(String, String)> {
    let name = |g: &GroupId| names.get(g).cloned().unwrap_or_else(|| format!("#{g}"));
    let a = &p.authenticator;
    let targets = match &a.targets {
        Targets::All { mode } => format!("all users, mode {mode}"),
        Targets::Groups { groups } => groups
            .iter()
            .map(|t| format!("{} ({})", name(&t.group), t.mode))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let mfa = match &p.mfa_required {
        MfaRequirement::All => "all users".to_string(),
        MfaRequirement::Nobody => "nobody (users who added methods use them)".to_string(),
        MfaRequirement::Groups { groups } => groups.iter().map(name).collect::<Vec<_>>().join(", "),
    };
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    vec![
        (
            "Authenticator app".into(),
            if a.enabled { "enabled" } else { "disabled" }.into(),
        ),
        ("Targets".into(), targets),
        ("Number-match digits".into(), a.digits.to_string()),
        ("Request lifetime".into(), format!("{} s", a.lifetime_secs)),
        ("PIN required for approvals".into(), yes(a.pin_required)),
        ("Show application name".into(), yes(a.show_app_name)),
        ("Show location".into(), yes(a.show_location)),
        ("Two-step verification required for".into(), mfa),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> HashMap<String, GroupId> {
        HashMap::from([("pilot".into(), GroupId(1)), ("staff".into(), GroupId(2))])
    }

    #[test]
    fn edits_resolve_groups_and_modes() {
        let old = MethodsPolicy::initial(&PushPolicy::default());
        let edit = PolicyEdit {
            targets: Some("Pilot=passwordless, staff".into()),
            mode: Some(AuthenticatorMode::Push),
            mfa_required: Some("staff".into()),
            ..Default::default()
        };
        let p = edit.apply(&old, &groups()).unwrap();
        assert_eq!(
            p.authenticator.targets,
            Targets::Groups {
                groups: vec![
                    GroupTarget {
                        group: GroupId(1),
                        mode: AuthenticatorMode::Passwordless
                    },
                    GroupTarget {
                        group: GroupId(2),
                        mode: AuthenticatorMode::Push
                    },
                ]
            }
        );
        assert_eq!(
            p.mfa_required,
            MfaRequirement::Groups {
                groups: vec![GroupId(2)]
            }
        );
        // Mode alone changes the all-users mode.
        let p = PolicyEdit {
            mode: Some(AuthenticatorMode::Push),
            ..Default::default()
        }
        .apply(&old, &groups())
        .unwrap();
        assert_eq!(
            p.authenticator.targets,
            Targets::All {
                mode: AuthenticatorMode::Push
            }
        );
    }

    #[test]
    fn bad_edits_are_explained() {
        let old = MethodsPolicy::initial(&PushPolicy::default());
        let bad = |e: PolicyEdit| e.apply(&old, &groups()).unwrap_err();
        assert!(bad(PolicyEdit {
            targets: Some("nosuch".into()),
            ..Default::default()
        })
        .contains("no group named"));
        assert!(bad(PolicyEdit {
            targets: Some("pilot=sometimes".into()),
            ..Default::default()
        })
        .contains("unknown mode"));
        assert!(bad(PolicyEdit {
            digits: Some(1),
            ..Default::default()
        })
        .contains("digits"));
        assert!(bad(PolicyEdit {
            targets: Some(" , ".into()),
            ..Default::default()
        })
        .contains("at least one group"));
    }
}
