//! The tenant's authentication methods policy as the server uses it: judged at the moment of
//! use (so a change applies to the next request everywhere), and changed in one place by both
//! `sesame policy set` and the admin console, always with an audit line.

use super::{Admin, Services};
use sesame_core::audit::Event;
use sesame_core::policy::{
    Allowed, AuthenticatorMode, GroupTarget, MethodsPolicy, MfaRequirement, PhoneMethodPolicy,
    PolicyError, Targets,
};
use sesame_core::push::PushPolicy;
use sesame_core::{GroupId, TenantId, UserId};
use sesame_store::{StoreError, User};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Each tenant's policy as last parsed, with its version. The version is read from the
/// database at every use (so a change applies at once, on every node); the policy text is
/// read and parsed again only when the version moved. Versions only grow (every save is a
/// compare-and-set), so a slower reader of an older version never replaces a newer one.
#[derive(Default)]
pub(crate) struct PolicyCache(Mutex<HashMap<TenantId, (i64, Arc<MethodsPolicy>)>>);

impl PolicyCache {
    fn version(&self, tenant: TenantId) -> Option<i64> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tenant)
            .map(|(v, _)| *v)
    }

    fn get(&self, tenant: TenantId, version: i64) -> Option<Arc<MethodsPolicy>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tenant)
            .filter(|(v, _)| *v == version)
            .map(|(_, p)| p.clone())
    }

    fn put(&self, tenant: TenantId, version: i64, policy: Arc<MethodsPolicy>) {
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.get(&tenant).is_none_or(|(v, _)| *v < version) {
            cache.insert(tenant, (version, policy));
        }
    }
}

/// What the policy lets one user do, judged now.
pub struct UserPolicy {
    pub policy: Arc<MethodsPolicy>,
    pub allowed: Allowed,
    pub mfa_required: bool,
    /// Number, lifetime and PIN for requests, with the server's rate limits.
    pub push: PushPolicy,
}

/// Why phone sign-in is refused to a user, as the app and the pages show it.
pub const PHONE_SIGN_IN_NOT_ALLOWED: &str = "Your organisation's policy does not allow phone sign-in for your account. Contact your administrator if you need it.";

impl Services {
    /// The policy for `user`, judged now: one read of the version and the user's groups, the
    /// policy itself only when it changed.
    pub async fn user_policy(&self, user: &User) -> Result<UserPolicy, StoreError> {
        self.policy_of(user.tenant, user.id).await
    }

    /// The policy for the user with this id (for an id no user has: the policy for someone in
    /// no group, read the same way, so that asking for an unknown user costs what asking for a
    /// known one does).
    pub async fn policy_of(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<UserPolicy, StoreError> {
        let known = self.policies.version(tenant);
        let read = self.store.find_policy_for_user(tenant, user, known).await?;
        let policy = match (read.version, read.policy) {
            (None, _) => Arc::new(MethodsPolicy::initial(&self.config.push)),
            (Some(v), Some(p)) => {
                let p = Arc::new(p);
                self.policies.put(tenant, v, p.clone());
                p
            }
            (Some(v), None) => match self.policies.get(tenant, v) {
                Some(p) => p,
                // A newer version replaced the one we knew meanwhile: read it whole.
                None => Arc::new(self.current_policy(tenant).await?.0),
            },
        };
        Ok(UserPolicy {
            allowed: policy.allowed(&read.groups),
            mfa_required: policy.mfa_required(&read.groups),
            push: policy.push(&self.config.push),
            policy,
        })
    }

    /// The tenant's policy and its version (0 while never saved: the initial policy).
    pub async fn current_policy(
        &self,
        tenant: TenantId,
    ) -> Result<(MethodsPolicy, i64), StoreError> {
        Ok(self
            .store
            .find_policy(tenant)
            .await?
            .unwrap_or_else(|| (MethodsPolicy::initial(&self.config.push), 0)))
    }

    /// Group names by their lookup key, and names by id, for editing and showing the policy.
    pub async fn group_names(
        &self,
        tenant: TenantId,
    ) -> Result<(HashMap<String, GroupId>, HashMap<GroupId, String>), StoreError> {
        let groups = self.store.list_groups(tenant).await?;
        Ok((
            groups
                .iter()
                .map(|g| (sesame_store::name_key(&g.name), g.id))
                .collect(),
            groups.into_iter().map(|g| (g.id, g.name)).collect(),
        ))
    }

    /// Applies `edit` to the policy in force and saves it with its audit line, or explains
    /// why not. With `expected_version`, only if nobody changed the policy since.
    pub async fn change_policy(
        &self,
        admin: &Admin,
        tenant: TenantId,
        edit: &PolicyEdit,
        expected_version: Option<i64>,
    ) -> Result<MethodsPolicy, ChangeError> {
        let (old, version) = self.current_policy(tenant).await?;
        if expected_version.is_some_and(|v| v != version) {
            return Err(ChangeError::Conflict);
        }
        let (by_name, by_id) = self.group_names(tenant).await?;
        let new = edit.apply(&old, &by_name)?;
        let name = |g: GroupId| {
            by_id
                .get(&g)
                .cloned()
                .unwrap_or_else(|| format!("(removed group {g})"))
        };
        let line = super::Line::named(tenant, admin.user, &admin.username, Event::PolicyChanged)
            .reason(old.describe_changes(&new, &name));
        let audit = self.audit_event(&admin.origin, line);
        if !self
            .store
            .save_policy(tenant, &new, version, self.now(), &audit)
            .await?
        {
            return Err(ChangeError::Conflict);
        }
        Ok(new)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Invalid(#[from] PolicyError),
    #[error("the policy was changed by someone else meanwhile; look at it again and retry")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

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
    /// Codes by text message: `off`, `all` or `GROUP,GROUP...`
    pub sms: Option<String>,
    /// Phone calls: `off`, `all` or `GROUP,GROUP...`
    pub voice: Option<String>,
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty())
}

impl PolicyEdit {
    /// Whether the edit changes nothing at all (no setting given).
    pub fn is_empty(&self) -> bool {
        let PolicyEdit {
            enabled,
            targets,
            mode,
            digits,
            lifetime_secs,
            pin_required,
            show_app_name,
            show_location,
            mfa_required,
            sms,
            voice,
        } = self;
        enabled.is_none()
            && targets.is_none()
            && mode.is_none()
            && digits.is_none()
            && lifetime_secs.is_none()
            && pin_required.is_none()
            && show_app_name.is_none()
            && show_location.is_none()
            && mfa_required.is_none()
            && sms.is_none()
            && voice.is_none()
    }

    /// The edited policy. `group` resolves a group name in the tenant.
    pub fn apply(
        &self,
        old: &MethodsPolicy,
        group: &HashMap<String, GroupId>,
    ) -> Result<MethodsPolicy, PolicyError> {
        let find = |name: &str| {
            group
                .get(&sesame_store::name_key(name))
                .copied()
                .ok_or_else(|| PolicyError::NoSuchGroup(name.to_owned()))
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
                    return Err(PolicyError::NoTargetGroups);
                }
                a.targets = Targets::Groups { groups };
            }
            None => {
                if let (Some(m), Targets::All { mode }) = (self.mode, &mut a.targets) {
                    *mode = m;
                } else if self.mode.is_some() {
                    return Err(PolicyError::ModeWithGroupTargets);
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
                        return Err(PolicyError::NoMfaGroups);
                    }
                    MfaRequirement::Groups { groups }
                }
            };
        }
        for (edit, target) in [(&self.sms, &mut p.sms), (&self.voice, &mut p.voice)] {
            let Some(v) = edit.as_deref().map(str::trim) else {
                continue;
            };
            *target = match v {
                "off" | "disabled" => PhoneMethodPolicy {
                    enabled: false,
                    groups: target.groups.clone(),
                },
                "all" | "all-users" | "on" | "enabled" => PhoneMethodPolicy {
                    enabled: true,
                    groups: None,
                },
                list => {
                    let groups = split_list(list).map(find).collect::<Result<Vec<_>, _>>()?;
                    if groups.is_empty() {
                        return Err(PolicyError::NoTargetGroups);
                    }
                    PhoneMethodPolicy {
                        enabled: true,
                        groups: Some(groups),
                    }
                }
            };
        }
        p.validate()?;
        Ok(p)
    }
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
    let phone = |m: &PhoneMethodPolicy| match (&m.enabled, &m.groups) {
        (false, _) => "off".to_string(),
        (true, None) => "all users".to_string(),
        (true, Some(g)) => g.iter().map(name).collect::<Vec<_>>().join(", "),
    };
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
        ("Text message codes".into(), phone(&p.sms)),
        ("Phone calls".into(), phone(&p.voice)),
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
        assert!(PolicyEdit::default().is_empty());
        assert!(!edit.is_empty());
    }

    #[test]
    fn bad_edits_are_explained() {
        let old = MethodsPolicy::initial(&PushPolicy::default());
        let bad = |e: PolicyEdit| e.apply(&old, &groups()).unwrap_err().to_string();
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

    use crate::service::Admin;
    use sesame_core::ManualClock;
    use sesame_store::{MasterKey, NewUser};
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

    async fn services() -> (tempfile::TempDir, Services) {
        let dir = tempfile::tempdir().unwrap();
        let url = sesame_store::Backend::sqlite_url(&dir.path().join("s.db"));
        let key = MasterKey::generate();
        let store = sesame_store::open(&url, key.clone()).await.unwrap();
        let svc = Services::new(
            store,
            Arc::new(ManualClock::new(1_700_000_000)),
            crate::ServerConfig::default(),
            &key,
        )
        .await
        .unwrap();
        (dir, svc)
    }

    async fn user_in(svc: &Services, tenant: TenantId, name: &str) -> User {
        let new = NewUser {
            tenant,
            username: name.into(),
            display_name: name.into(),
            password_hash: None,
            is_admin: false,
        };
        svc.store.create_user(new, 0).await.unwrap()
    }

    fn admin() -> Admin {
        Admin::cli(Some("test"), "test")
    }

    /// Each request reads the policy as saved last, also right after the previous version was
    /// read (and kept parsed), and the user's groups as they are.
    #[tokio::test]
    async fn user_policy_follows_each_save_and_group_change_at_once() {
        let (_d, svc) = services().await;
        let t = svc.default_tenant;
        let a = user_in(&svc, t, "a").await;
        let g = svc.store.create_group(t, "pilot", 0).await.unwrap();
        for (mode, targets) in [
            (AuthenticatorMode::Push, "all"),
            (AuthenticatorMode::Passwordless, "pilot"),
            (AuthenticatorMode::Any, "all"),
        ] {
            let edit = PolicyEdit {
                targets: Some(targets.into()),
                mode: Some(mode),
                ..Default::default()
            };
            svc.change_policy(&admin(), t, &edit, None).await.unwrap();
            for _ in 0..2 {
                let up = svc.user_policy(&a).await.unwrap();
                let in_targets = targets == "all";
                assert_eq!(
                    up.allowed.phone_sign_in,
                    in_targets && mode != AuthenticatorMode::Push
                );
            }
        }
        svc.store.add_group_member(g.id, a.id).await.unwrap();
        svc.change_policy(
            &admin(),
            t,
            &PolicyEdit {
                targets: Some("pilot=passwordless".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
        assert!(svc.user_policy(&a).await.unwrap().allowed.phone_sign_in);
        svc.store.remove_group_member(g.id, a.id).await.unwrap();
        assert!(!svc.user_policy(&a).await.unwrap().allowed.phone_sign_in);
    }

    /// Two tenants at the same version never see each other's policy, in any order of reads.
    #[tokio::test]
    async fn user_policy_is_kept_per_tenant() {
        let (_d, svc) = services().await;
        let t1 = svc.default_tenant;
        let t2 = svc.store.create_tenant("other", 0).await.unwrap();
        let (a1, a2) = (user_in(&svc, t1, "a").await, user_in(&svc, t2, "a").await);
        for (t, digits) in [(t1, 3), (t2, 7)] {
            let edit = PolicyEdit {
                digits: Some(digits),
                ..Default::default()
            };
            svc.change_policy(&admin(), t, &edit, None).await.unwrap();
        }
        for (u, digits) in [(&a1, 3), (&a2, 7), (&a2, 7), (&a1, 3), (&a1, 3), (&a2, 7)] {
            assert_eq!(svc.user_policy(u).await.unwrap().push.digits, digits);
        }
    }

    /// Reads racing saves: every policy read is one that was saved (never a mix), and once a
    /// save has returned no read shows an older one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn user_policy_racing_saves_is_never_stale_nor_mixed() {
        let (_d, svc) = services().await;
        let t = svc.default_tenant;
        let a = user_in(&svc, t, "a").await;
        // The policy saved as version v has lifetime 100 + v and digits 2 + v % 7: a read that
        // mixed two versions would show a pair no save made.
        let saved = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (svc, a, saved, stop) = (svc.clone(), a.clone(), saved.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let floor = saved.load(Ordering::SeqCst);
                        let p = svc.user_policy(&a).await.unwrap().policy;
                        let v = p.authenticator.lifetime_secs - 100;
                        if floor > 0 {
                            assert_eq!(i64::from(p.authenticator.digits), 2 + v % 7, "mixed");
                            assert!(v >= floor, "read version {v} after {floor} was saved");
                        }
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for v in 1..=60i64 {
            let edit = PolicyEdit {
                lifetime_secs: Some(100 + v),
                digits: Some(2 + (v % 7) as u32),
                ..Default::default()
            };
            svc.change_policy(&admin(), t, &edit, Some(v - 1))
                .await
                .unwrap();
            saved.store(v, Ordering::SeqCst);
            let p = svc.user_policy(&a).await.unwrap().policy;
            assert_eq!(p.authenticator.lifetime_secs, 100 + v);
        }
        stop.store(true, Ordering::SeqCst);
        for r in readers {
            r.await.unwrap();
        }
    }

    #[test]
    fn the_cache_keeps_only_newer_versions_per_tenant() {
        let c = PolicyCache::default();
        let p = |d| {
            let mut p = MethodsPolicy::initial(&PushPolicy::default());
            p.authenticator.digits = d;
            Arc::new(p)
        };
        let (t1, t2) = (TenantId(1), TenantId(2));
        c.put(t1, 2, p(2));
        c.put(t1, 1, p(1));
        assert_eq!(
            c.version(t1),
            Some(2),
            "an older version never replaces a newer"
        );
        assert!(c.get(t1, 1).is_none());
        assert_eq!(c.get(t1, 2).unwrap().authenticator.digits, 2);
        c.put(t2, 2, p(5));
        assert_eq!(c.get(t2, 2).unwrap().authenticator.digits, 5);
        assert_eq!(c.get(t1, 2).unwrap().authenticator.digits, 2, "per tenant");
    }
}
