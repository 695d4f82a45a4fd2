//! The authentication methods policy: what is in force, and the form that changes it through
//! the same service as `sesame policy set`.

use super::Flash;
use crate::error::Error;
use crate::service::policy::{describe, ChangeError, PolicyEdit};
use crate::service::{Admin, Origin};
use crate::web::extract::{Admin as AdminUser, Checked, RecentAdmin};
use crate::web::templates::{MfaChoice, PolicyFormView, PolicyGroupRow, PolicyPage};
use crate::web::{page, see_other, CsrfForm, CsrfToken};
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use sesame_core::policy::{
    AuthenticatorMode, MethodsPolicy, MfaRequirement, PhoneMethodPolicy, Targets,
};
use sesame_core::push::MAX_LIFETIME_SECS;
use sesame_core::{GroupId, TenantId};
use sesame_store::Group;
use std::collections::{HashMap, HashSet};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/admin/policy", get(policy_page).post(policy_submit))
}

/// The policy form's values: built from the policy in force, or from a submission (so a
/// refused submission is shown again as typed).
struct PolicyForm {
    version: i64,
    enabled: bool,
    targets_all: bool,
    all_mode: AuthenticatorMode,
    /// Per group: whether it is targeted, and the mode on its row.
    group_targets: HashMap<GroupId, (bool, AuthenticatorMode)>,
    digits: String,
    lifetime: String,
    pin_required: bool,
    show_app_name: bool,
    show_location: bool,
    mfa: MfaChoice,
    mfa_groups: HashSet<GroupId>,
    /// `None` when a submission has no such fields (a page opened before the console showed
    /// them): what is stored is kept, and shown.
    sms: Option<PhoneForm>,
    voice: Option<PhoneForm>,
}

/// A phone method as the form names it (its heading is the template's).
struct PhoneMethod {
    /// The prefix of its fields.
    key: &'static str,
    /// As messages name it.
    name: &'static str,
}

const SMS: PhoneMethod = PhoneMethod {
    key: "sms",
    name: "text messages",
};
const VOICE: PhoneMethod = PhoneMethod {
    key: "voice",
    name: "phone calls",
};

/// Text messages or phone calls as the form has them: on or off, and for whom.
#[derive(Clone)]
struct PhoneForm {
    enabled: bool,
    all: bool,
    /// The ticked groups (kept while "All users" is chosen, so the ticks survive a refusal).
    groups: HashSet<GroupId>,
}

impl PhoneForm {
    fn from_policy(p: &PhoneMethodPolicy) -> Self {
        PhoneForm {
            enabled: p.enabled,
            all: p.groups.is_none(),
            groups: p.groups.iter().flatten().copied().collect(),
        }
    }

    /// Reads `KEY`, `KEY_targets` and `KEY_<group id>`; `None` when `KEY` is not there.
    fn from_submission(
        form: &CsrfForm,
        groups: &[Group],
        method: &PhoneMethod,
    ) -> Result<Option<Self>, String> {
        let (key, what) = (method.key, method.name);
        let enabled = match form.get(key) {
            None => return Ok(None),
            Some("enabled") => true,
            Some("disabled") => false,
            Some(_) => return Err(format!("Choose whether {what} are enabled.")),
        };
        let all = match form.text(&format!("{key}_targets")) {
            "all" => true,
            "groups" => false,
            _ => {
                return Err(format!(
                    "Choose the target for {what}: all users or selected groups."
                ))
            }
        };
        Ok(Some(PhoneForm {
            enabled,
            all,
            groups: groups
                .iter()
                .filter(|g| form.get(&format!("{key}_{}", g.id)).is_some())
                .map(|g| g.id)
                .collect(),
        }))
    }

    /// What the page shows: as typed, or as in force for a submission without these fields.
    fn shown(typed: &Option<PhoneForm>, in_force: &PhoneMethodPolicy) -> PhoneForm {
        typed
            .clone()
            .unwrap_or_else(|| PhoneForm::from_policy(in_force))
    }

    /// Per group: (id, name, ticked).
    fn rows(&self, groups: &[Group]) -> Vec<(i64, String, bool)> {
        groups
            .iter()
            .map(|g| (g.id.0, g.name.clone(), self.groups.contains(&g.id)))
            .collect()
    }
}

impl PolicyForm {
    fn from_policy(p: &MethodsPolicy, version: i64) -> Self {
        let a = &p.authenticator;
        let (targets_all, all_mode, group_targets) = match &a.targets {
            Targets::All { mode } => (true, *mode, HashMap::new()),
            Targets::Groups { groups } => (
                false,
                AuthenticatorMode::Any,
                groups.iter().map(|t| (t.group, (true, t.mode))).collect(),
            ),
        };
        let (mfa, mfa_groups) = match &p.mfa_required {
            MfaRequirement::All => (MfaChoice::All, HashSet::new()),
            MfaRequirement::Nobody => (MfaChoice::Nobody, HashSet::new()),
            MfaRequirement::Groups { groups } => {
                (MfaChoice::Groups, groups.iter().copied().collect())
            }
        };
        PolicyForm {
            version,
            enabled: a.enabled,
            targets_all,
            all_mode,
            group_targets,
            digits: a.digits.to_string(),
            lifetime: a.lifetime_secs.to_string(),
            pin_required: a.pin_required,
            show_app_name: a.show_app_name,
            show_location: a.show_location,
            mfa,
            mfa_groups,
            sms: Some(PhoneForm::from_policy(&p.sms)),
            voice: Some(PhoneForm::from_policy(&p.voice)),
        }
    }

    /// Reads a submission. Only fields a crafted post could get wrong are refused here; the
    /// numbers are checked by [`PolicyForm::edit`] and the policy itself.
    fn from_submission(form: &CsrfForm, groups: &[Group]) -> Result<Self, String> {
        let mode = |field: &str| -> Result<AuthenticatorMode, String> {
            form.get(field)
                .unwrap_or("any")
                .parse()
                .map_err(|e: sesame_core::policy::PolicyError| e.to_string())
        };
        let version = form
            .text("version")
            .parse()
            .map_err(|_| "The form is incomplete. Reload the page and try again.".to_string())?;
        let enabled = match form.text("enabled") {
            "enabled" => true,
            "disabled" => false,
            _ => return Err("Choose whether the Authenticator app is enabled.".into()),
        };
        let targets_all = match form.text("targets") {
            "all" => true,
            "groups" => false,
            _ => return Err("Choose the target: all users or selected groups.".into()),
        };
        let mut group_targets = HashMap::new();
        for g in groups {
            let checked = form.get(&format!("target_{}", g.id)).is_some();
            group_targets.insert(g.id, (checked, mode(&format!("mode_{}", g.id))?));
        }
        let mfa =
            match form.text("mfa") {
                "all" => MfaChoice::All,
                "groups" => MfaChoice::Groups,
                "nobody" => MfaChoice::Nobody,
                _ => return Err(
                    "Choose who needs two-step verification: all users, selected groups or nobody."
                        .into(),
                ),
            };
        Ok(PolicyForm {
            version,
            enabled,
            targets_all,
            all_mode: mode("mode")?,
            group_targets,
            digits: form.text("digits").trim().to_string(),
            lifetime: form.text("lifetime").trim().to_string(),
            pin_required: form.get("pin_required").is_some(),
            show_app_name: form.get("show_app_name").is_some(),
            show_location: form.get("show_location").is_some(),
            mfa,
            mfa_groups: groups
                .iter()
                .filter(|g| form.get(&format!("mfa_{}", g.id)).is_some())
                .map(|g| g.id)
                .collect(),
            sms: PhoneForm::from_submission(form, groups, &SMS)?,
            voice: PhoneForm::from_submission(form, groups, &VOICE)?,
        })
    }

    /// The whole form as a [`PolicyEdit`] (every setting given). Groups go by name, in the
    /// `GROUP=MODE,...` form the command line uses too.
    fn edit(&self, groups: &[Group]) -> Result<PolicyEdit, String> {
        // The list form separates groups with commas and modes with `=`.
        let listable = |g: &Group| {
            if g.name.contains([',', '=']) {
                Err(format!(
                    "The group {:?} cannot be chosen here because its name contains a comma or an equals sign.",
                    g.name
                ))
            } else {
                Ok(g.name.clone())
            }
        };
        let targets = if self.targets_all {
            "all".to_string()
        } else {
            let mut list = Vec::new();
            for g in groups {
                if let Some((true, mode)) = self.group_targets.get(&g.id) {
                    list.push(format!("{}={mode}", listable(g)?));
                }
            }
            if list.is_empty() {
                return Err(
                    "Choose at least one group for the Authenticator app, or target all users."
                        .into(),
                );
            }
            list.join(",")
        };
        let mfa_required = match self.mfa {
            MfaChoice::All => "all".to_string(),
            MfaChoice::Nobody => "nobody".to_string(),
            MfaChoice::Groups => {
                let mut list = Vec::new();
                for g in groups.iter().filter(|g| self.mfa_groups.contains(&g.id)) {
                    list.push(listable(g)?);
                }
                if list.is_empty() {
                    return Err("Choose at least one group that needs two-step verification, or all users, or nobody.".into());
                }
                list.join(",")
            }
        };
        // Off keeps the stored groups (as `sesame policy set --sms off` does), for turning the
        // method on again as it was.
        let phone = |p: &Option<PhoneForm>, what: &str| -> Result<Option<String>, String> {
            let Some(p) = p else { return Ok(None) };
            if !p.enabled {
                return Ok(Some("off".into()));
            }
            if p.all {
                return Ok(Some("all".into()));
            }
            let mut list = Vec::new();
            for g in groups.iter().filter(|g| p.groups.contains(&g.id)) {
                list.push(listable(g)?);
            }
            if list.is_empty() {
                return Err(format!(
                    "Choose at least one group for {what}, or target all users, or disable them."
                ));
            }
            Ok(Some(list.join(",")))
        };
        let sms = phone(&self.sms, SMS.name)?;
        let voice = phone(&self.voice, VOICE.name)?;
        let digits = self
            .digits
            .parse()
            .map_err(|_| "Number-match digits must be a number from 2 to 8.".to_string())?;
        let lifetime = self.lifetime.parse().map_err(|_| {
            format!(
                "The request lifetime must be a number of seconds from 10 to {MAX_LIFETIME_SECS}."
            )
        })?;
        Ok(PolicyEdit {
            enabled: Some(self.enabled),
            targets: Some(targets),
            mode: self.targets_all.then_some(self.all_mode),
            digits: Some(digits),
            lifetime_secs: Some(lifetime),
            pin_required: Some(self.pin_required),
            show_app_name: Some(self.show_app_name),
            show_location: Some(self.show_location),
            mfa_required: Some(mfa_required),
            sms,
            voice,
        })
    }
}

impl PolicyForm {
    fn view(&self, groups: &[Group]) -> (PolicyFormView, Vec<PolicyGroupRow>) {
        let rows = groups
            .iter()
            .map(|g| {
                let (targeted, mode) = self
                    .group_targets
                    .get(&g.id)
                    .copied()
                    .unwrap_or((false, AuthenticatorMode::Any));
                PolicyGroupRow {
                    id: g.id.0,
                    name: g.name.clone(),
                    targeted,
                    mode,
                    mfa: self.mfa_groups.contains(&g.id),
                }
            })
            .collect();
        let view = PolicyFormView {
            version: self.version,
            enabled: self.enabled,
            targets_all: self.targets_all,
            all_mode: self.all_mode,
            digits: self.digits.clone(),
            lifetime: self.lifetime.clone(),
            pin_required: self.pin_required,
            show_app_name: self.show_app_name,
            show_location: self.show_location,
            mfa: self.mfa,
        };
        (view, rows)
    }
}

fn mode_label(m: AuthenticatorMode) -> &'static str {
    match m {
        AuthenticatorMode::Any => "Any (notifications, codes and phone sign-in)",
        AuthenticatorMode::Push => "Push (notifications and codes only)",
        AuthenticatorMode::Passwordless => "Passwordless (phone sign-in only)",
    }
}

/// What the page says above the form: an error, and whether to ask "Save anyway".
#[derive(Default)]
struct Said<'a> {
    error: Option<&'a str>,
    confirm_lockout: bool,
}

/// The policy page: what is in force, and the form as `form` has it.
async fn policy_view(
    state: &AppState,
    tenant: TenantId,
    csrf: &CsrfToken,
    status: StatusCode,
    flash: &Flash,
    form: &PolicyForm,
    said: Said<'_>,
) -> Result<Response, Error> {
    let Said {
        error,
        confirm_lockout,
    } = said;
    let (policy, version) = state.current_policy(tenant).await?;
    let groups = state.store.list_groups(tenant).await?;
    let names: HashMap<GroupId, String> = groups.iter().map(|g| (g.id, g.name.clone())).collect();
    let sms = PhoneForm::shown(&form.sms, &policy.sms);
    let voice = PhoneForm::shown(&form.voice, &policy.voice);
    let (form, group_rows) = form.view(&groups);
    Ok(page(
        csrf,
        status,
        &PolicyPage {
            csrf: &csrf.token,
            notice: flash.notice(),
            flash_error: flash.error(),
            error,
            confirm_lockout,
            summary: describe(&policy, &names),
            version,
            form,
            groups: group_rows,
            sms_enabled: sms.enabled,
            sms_all: sms.all,
            sms_groups: sms.rows(&groups),
            voice_enabled: voice.enabled,
            voice_all: voice.all,
            voice_groups: voice.rows(&groups),
            modes: AuthenticatorMode::ALL
                .iter()
                .map(|m| (*m, mode_label(*m)))
                .collect(),
            max_lifetime: MAX_LIFETIME_SECS,
        },
    ))
}

async fn policy_page(
    State(state): State<AppState>,
    AdminUser(me): AdminUser,
    csrf: CsrfToken,
    q: Query<Flash>,
) -> Result<Response, Error> {
    let tenant = me.user.tenant;
    let (policy, version) = state.current_policy(tenant).await?;
    let form = PolicyForm::from_policy(&policy, version);
    policy_view(
        &state,
        tenant,
        &csrf,
        StatusCode::OK,
        &q,
        &form,
        Said::default(),
    )
    .await
}

const STALE_POLICY_FORM: &str =
    "Someone changed the policy after you opened this page, so your changes were not saved. \
    The form now shows the policy in force: make your changes again.";

async fn policy_submit(
    State(state): State<AppState>,
    origin: Origin,
    csrf: CsrfToken,
    Checked { me, form, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let tenant = me.user.tenant;
    let (old, version) = state.current_policy(tenant).await?;
    let groups = state.store.list_groups(tenant).await?;
    let none = Flash::default();
    let show = |status: StatusCode, form: PolicyForm, message: String| {
        let (state, csrf, none) = (&state, &csrf, &none);
        async move {
            policy_view(
                state,
                tenant,
                csrf,
                status,
                none,
                &form,
                Said {
                    error: Some(&message),
                    confirm_lockout: false,
                },
            )
            .await
        }
    };
    // A stale form is shown again with the policy now in force, so nothing is saved unseen.
    let conflict = |policy: MethodsPolicy, version: i64| {
        show(
            StatusCode::CONFLICT,
            PolicyForm::from_policy(&policy, version),
            STALE_POLICY_FORM.into(),
        )
    };
    let typed = match PolicyForm::from_submission(&form, &groups) {
        Ok(t) => t,
        Err(m) => {
            return show(
                StatusCode::BAD_REQUEST,
                PolicyForm::from_policy(&old, version),
                m,
            )
            .await
        }
    };
    if typed.version != version {
        return conflict(old, version).await;
    }
    let edit = match typed.edit(&groups) {
        Ok(e) => e,
        Err(m) => return show(StatusCode::BAD_REQUEST, typed, m).await,
    };
    let (by_name, _) = state.group_names(tenant).await?;
    // Applied here first so that saving an unchanged form leaves no version or audit line.
    let new = match edit.apply(&old, &by_name) {
        Err(m) => return show(StatusCode::BAD_REQUEST, typed, capitalised(&m.to_string())).await,
        Ok(p) if p == old => return Ok(see_other("/admin/policy?done=unchanged")),
        Ok(p) => p,
    };
    // Saving a policy that requires a second step of the administrator saving it, while none
    // of their methods would be allowed, sends them to "set up a method" at their next
    // sign-in: asked first, never done by surprise.
    if form.get("confirm_lockout") != Some("yes") && locks_out(&state, &me.user, &new).await? {
        return policy_view(
            &state,
            tenant,
            &csrf,
            StatusCode::CONFLICT,
            &none,
            &typed,
            Said {
                error: Some(LOCKOUT_WARNING),
                confirm_lockout: true,
            },
        )
        .await;
    }
    let admin = Admin::console(&me.user, origin);
    match state
        .change_policy(&admin, tenant, &edit, Some(typed.version))
        .await
    {
        Ok(_) => Ok(see_other("/admin/policy?done=saved")),
        Err(ChangeError::Conflict) => {
            // Changed between our read and the save.
            let (in_force, v) = state.current_policy(tenant).await?;
            conflict(in_force, v).await
        }
        Err(ChangeError::Invalid(m)) => {
            show(StatusCode::BAD_REQUEST, typed, capitalised(&m.to_string())).await
        }
        Err(ChangeError::Store(e)) => Err(e.into()),
    }
}

const LOCKOUT_WARNING: &str = "With this policy you would need two-step verification, but none of your methods would be allowed: at your next sign-in you would have to set up an allowed method before anything else. Nothing was saved. Tick \"Save anyway\" below to save it all the same.";

/// Whether `policy` requires a second step of `user` while allowing none of their methods
/// (nor phone sign-in on a device they have).
async fn locks_out(
    state: &AppState,
    user: &sesame_store::User,
    policy: &MethodsPolicy,
) -> Result<bool, Error> {
    let groups: Vec<GroupId> = state
        .store
        .list_user_groups(user.id)
        .await?
        .iter()
        .map(|g| g.id)
        .collect();
    if !policy.mfa_required(&groups) {
        return Ok(false);
    }
    let allowed = policy.allowed(&groups);
    let methods = state.store.list_methods(user.id).await?;
    if methods.iter().any(|m| allowed.permits(m.kind)) {
        return Ok(false);
    }
    let phone = allowed.phone_sign_in
        && state
            .store
            .list_devices(user.id)
            .await?
            .iter()
            .any(|d| d.phone_sign_in_ready());
    Ok(!phone)
}

/// Messages from the policy rules start in lower case (they also end up on the command line).
fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect::<String>() + ".",
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_messages_read_as_sentences() {
        assert_eq!(capitalised("no group named \"x\""), "No group named \"x\".");
    }
}
