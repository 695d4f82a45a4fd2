//! The admin web console under `/admin` (users, groups, the authentication methods policy,
//! the sign-in log). Administrators only; everyone else gets 403.
//!
//! Every change is a CSRF-checked form post and leaves an audit line naming the administrator.
//! Changes that take access away or hand it out (block, unblock, reset methods, device actions,
//! creating an administrator, the policy) also need a recent sign-in, so a stolen idle
//! administrator session cannot make them.

use crate::audit::{self, Entry};
use crate::error::AppError;
use crate::policy::{Actor, PolicyEdit, PolicyError};
use crate::session::{reauth_redirect, SignedIn};
use crate::web::{esc, fmt_time, layout_with_class, page, see_other, Client, CsrfForm, CsrfToken};
use crate::AppState;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;
use sesame_core::password;
use sesame_core::policy::{AuthenticatorMode, MethodsPolicy, MfaRequirement, Targets};
use sesame_core::push::MAX_LIFETIME_SECS;
use sesame_core::secret::SecretString;
use sesame_core::{GroupId, UnixTime};
use sesame_store::{AuditFilter, AuditResult, Device, Group, NewUser, StoreError, User};
use std::collections::{HashMap, HashSet};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(overview))
        .route("/admin/users", get(users_page).post(create_user))
        .route("/admin/users/{username}", get(user_page))
        .route("/admin/users/{username}/block", post(block_user))
        .route("/admin/users/{username}/unblock", post(unblock_user))
        .route("/admin/users/{username}/reset-methods", post(reset_methods))
        .route(
            "/admin/users/{username}/devices/{id}/remove",
            post(remove_device),
        )
        .route(
            "/admin/users/{username}/devices/{id}/phone-sign-in-off",
            post(phone_sign_in_off),
        )
        .route(
            "/admin/users/{username}/devices/{id}/allow-again",
            post(allow_again),
        )
        .route("/admin/groups", get(groups_page).post(create_group))
        .route("/admin/groups/{name}", get(group_page))
        .route("/admin/groups/{name}/members", post(add_member))
        .route(
            "/admin/groups/{name}/members/{username}/remove",
            post(remove_member),
        )
        .route("/admin/policy", get(policy_page).post(policy_submit))
        .route("/admin/log", get(log_page))
}

/// A signed-in administrator. Signed-in non-administrators get 403; people who are not signed
/// in are sent to sign in (the [`SignedIn`] rejection).
pub struct Admin(pub SignedIn);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let me = SignedIn::from_request_parts(parts, state).await?;
        if !me.user.is_admin {
            return Err(AppError::Forbidden(
                "Only administrators can use the admin console.".into(),
            )
            .into_response());
        }
        Ok(Admin(me))
    }
}

// ---- Small helpers ----

/// A name as one path segment (usernames and group names may hold any character).
fn seg(name: &str) -> String {
    utf8_percent_encode(name, NON_ALPHANUMERIC).to_string()
}

fn user_path(username: &str) -> String {
    format!("/admin/users/{}", seg(username))
}

fn group_path(name: &str) -> String {
    format!("/admin/groups/{}", seg(name))
}

/// How the acting administrator is named in audit lines (the command line uses `cli:NAME`).
fn by(me: &SignedIn) -> String {
    format!("admin:{}", me.user.username)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

fn error_html(message: Option<&str>) -> String {
    message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)))
        .unwrap_or_default()
}

const NAV: &str = "<p class=\"note\"><a href=\"/admin\">Admin</a> · <a href=\"/admin/users\">Users</a> · \
    <a href=\"/admin/groups\">Groups</a> · <a href=\"/admin/policy\">Authentication methods policy</a> · \
    <a href=\"/admin/log\">Sign-in log</a> · <a href=\"/account\">My account</a></p>";

fn admin_page(csrf: &CsrfToken, status: StatusCode, title: &str, body: &str) -> Response {
    page(
        csrf,
        status,
        layout_with_class(title, &format!("{NAV}{body}"), "wide"),
    )
}

/// Messages after a redirect, by code: nothing the query string says is shown as such.
#[derive(Deserialize)]
struct Flash {
    done: Option<String>,
    error: Option<String>,
}

impl Flash {
    fn html(&self) -> String {
        let done = match self.done.as_deref() {
            Some("created") => "User created.",
            Some("blocked") => "User blocked: their sessions have ended and they cannot sign in.",
            Some("unblocked") => "User unblocked. Sign-in requests to their phone are allowed again.",
            Some("reset") => "Methods reset: every verification method and registered device of this user was removed. They sign in with their password and can set up methods again.",
            Some("device_removed") => "Device removed. Its sign-in requests and codes no longer work.",
            Some("phone_sign_in_off") => "Phone sign-in turned off for that device.",
            Some("allowed_again") => "Phone sign-in can be turned on again for that device: the user sets up the PIN key again in the Authenticator app.",
            Some("group_created") => "Group created.",
            Some("member_added") => "Member added.",
            Some("member_already") => "That user already is a member.",
            Some("member_removed") => "Member removed.",
            Some("member_not") => "That user was not a member.",
            Some("saved") => "Policy saved. It applies from the next request.",
            Some("unchanged") => "Nothing changed: the policy already said that.",
            _ => "",
        };
        let error = match self.error.as_deref() {
            Some("self_block") => "You cannot block your own account.",
            _ => "",
        };
        let mut out = String::new();
        if !done.is_empty() {
            out.push_str(&format!("<p role=\"status\">{}</p>", esc(done)));
        }
        out.push_str(&error_html((!error.is_empty()).then_some(error)));
        out
    }
}

async fn find_user(state: &AppState, username: &str) -> Result<User, AppError> {
    state
        .store
        .find_user_by_username(state.tenant, username)
        .await?
        .ok_or(AppError::NotFound)
}

async fn find_group(state: &AppState, name: &str) -> Result<Group, AppError> {
    state
        .store
        .find_group_by_name(state.tenant, name)
        .await?
        .ok_or(AppError::NotFound)
}

/// Records an administrator's action on `user` (or on no one in particular).
async fn record(
    state: &AppState,
    client: &Client,
    user: Option<&User>,
    me: &SignedIn,
    event: &str,
    detail: Option<&str>,
) {
    let reason = match detail {
        Some(d) => format!("{}; {d}", by(me)),
        None => by(me),
    };
    let (id, name) = match user {
        Some(u) => (Some(u.id), u.username.as_str()),
        None => (Some(me.user.id), me.user.username.as_str()),
    };
    audit::record(
        state,
        client,
        Entry {
            user: id,
            username: name,
            event,
            method: None,
            result: AuditResult::Success,
            reason: Some(&reason),
        },
    )
    .await;
}

// ---- Overview ----

async fn overview(
    State(state): State<AppState>,
    Admin(_me): Admin,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let users = state.store.list_users(state.tenant).await?;
    let reported: String = users
        .iter()
        .filter_map(|u| {
            u.push_blocked_at.map(|t| {
                format!(
                    "<li><a href=\"{}\">{}</a> reported a sign-in request as not theirs on {}; requests to their phone are blocked until you unblock them.</li>",
                    esc(&user_path(&u.username)),
                    esc(&u.username),
                    fmt_time(t)
                )
            })
        })
        .collect();
    let reported = if reported.is_empty() {
        String::new()
    } else {
        format!("<h2>Needs attention</h2><ul>{reported}</ul>")
    };
    let body = format!(
        "<h1>Admin</h1><ul class=\"options\">\
         <li><a href=\"/admin/users\">Users</a>: create, block and unblock users; reset their methods and devices.</li>\
         <li><a href=\"/admin/groups\">Groups</a>: create groups and choose their members.</li>\
         <li><a href=\"/admin/policy\">Authentication methods policy</a>: who may use the Authenticator app and how; who needs two-step verification.</li>\
         <li><a href=\"/admin/log\">Sign-in log</a>: who signed in, when, from where, how, and why a sign-in failed.</li>\
         </ul>{reported}"
    );
    Ok(admin_page(&csrf, StatusCode::OK, "Admin", &body))
}

// ---- Users ----

/// What was typed in the "Create user" form, shown again when it is refused.
#[derive(Default)]
struct NewUserForm {
    username: String,
    display_name: String,
    admin: bool,
}

async fn users_html(
    state: &AppState,
    csrf: &CsrfToken,
    flash: &str,
    form: &NewUserForm,
    error: Option<&str>,
) -> Result<String, AppError> {
    let users = state.store.list_users(state.tenant).await?;
    let rows: String = users
        .iter()
        .map(|u| {
            format!(
                "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&user_path(&u.username)),
                esc(&u.username),
                esc(&u.display_name),
                yes_no(u.is_admin),
                yes_no(u.is_blocked),
                u.push_blocked_at
                    .map(|t| format!("Yes, since {}", fmt_time(t)))
                    .unwrap_or_else(|| "No".into()),
                u.last_signin_at
                    .map(fmt_time)
                    .unwrap_or_else(|| "Never".into()),
            )
        })
        .collect();
    let checked = if form.admin { " checked" } else { "" };
    Ok(format!(
        "<h1>Users</h1>{flash}\
         <table id=\"users\"><thead><tr><th>Username</th><th>Display name</th><th>Administrator</th>\
         <th>Blocked</th><th>Phone requests blocked by a fraud report</th><th>Last sign-in</th></tr></thead>\
         <tbody>{rows}</tbody></table>\
         <h2>Create user</h2>{}\
         <form method=\"post\" action=\"/admin/users\">{}\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" maxlength=\"256\" autocomplete=\"off\" required value=\"{}\">\
         <label for=\"display_name\">Display name</label>\
         <input type=\"text\" id=\"display_name\" name=\"display_name\" maxlength=\"256\" autocomplete=\"off\" value=\"{}\">\
         <label for=\"password\">Password (optional)</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"new-password\" maxlength=\"1024\">\
         <p class=\"note\">Leave the password empty to create a user who cannot sign in with a password. \
         The display name defaults to the username.</p>\
         <label for=\"admin\"><input type=\"checkbox\" id=\"admin\" name=\"admin\" value=\"yes\"{checked}> Administrator</label>\
         <button type=\"submit\">Create user</button></form>",
        error_html(error),
        csrf.hidden_field(),
        esc(&form.username),
        esc(&form.display_name),
    ))
}

async fn users_page(
    State(state): State<AppState>,
    Admin(_me): Admin,
    csrf: CsrfToken,
    q: Query<Flash>,
) -> Result<Response, AppError> {
    let html = users_html(&state, &csrf, &q.html(), &NewUserForm::default(), None).await?;
    Ok(admin_page(&csrf, StatusCode::OK, "Users", &html))
}

async fn create_user(
    State(state): State<AppState>,
    Admin(me): Admin,
    client: Client,
    csrf: CsrfToken,
    form: CsrfForm,
) -> Result<Response, AppError> {
    let typed = NewUserForm {
        username: form.text("username").trim().to_string(),
        display_name: form.text("display_name").trim().to_string(),
        admin: form.get("admin").is_some(),
    };
    // Making someone an administrator hands out every power of this console.
    if typed.admin && !me.is_recent(&state) {
        return Ok(reauth_redirect("/admin/users", true));
    }
    let (st, cs, ty) = (&state, &csrf, &typed);
    let refuse = move |message: String| async move {
        let html = users_html(st, cs, "", ty, Some(&message)).await?;
        Ok::<_, AppError>(admin_page(cs, StatusCode::BAD_REQUEST, "Users", &html))
    };
    if typed.username.is_empty() || typed.username.len() > 256 {
        return refuse("Enter a username (at most 256 characters).".into()).await;
    }
    if typed.display_name.len() > 256 {
        return refuse("The display name can have at most 256 characters.".into()).await;
    }
    let hash = match form.text("password") {
        "" => None,
        pw => {
            let pw = SecretString::new(pw.to_string());
            if let Err(e) = password::validate_new(&pw) {
                return refuse(e.to_string()).await;
            }
            let hashed = state
                .hasher
                .run(move || password::hash(&pw, &mut rand::rngs::OsRng))
                .await?;
            Some(hashed.map_err(|e| AppError::internal(e.to_string()))?)
        }
    };
    let new = NewUser {
        tenant: state.tenant,
        username: typed.username.clone(),
        display_name: if typed.display_name.is_empty() {
            typed.username.clone()
        } else {
            typed.display_name.clone()
        },
        password_hash: hash,
        is_admin: typed.admin,
    };
    let user = match state.store.create_user(new, state.now()).await {
        Ok(u) => u,
        Err(StoreError::Conflict(_)) => {
            return refuse(format!("A user named {:?} already exists.", typed.username)).await
        }
        Err(e) => return Err(e.into()),
    };
    let detail = match (user.is_admin, user.has_password) {
        (true, true) => "administrator, with a password",
        (true, false) => "administrator, without a password",
        (false, true) => "with a password",
        (false, false) => "without a password",
    };
    record(
        &state,
        &client,
        Some(&user),
        &me,
        "admin_user_created",
        Some(detail),
    )
    .await;
    Ok(see_other(&format!(
        "{}?done=created",
        user_path(&user.username)
    )))
}

fn action_form(path: &str, csrf: &CsrfToken, label: &str, note: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\">{}<button type=\"submit\">{}</button>\
         <p class=\"note\">{}</p></form>",
        esc(path),
        csrf.hidden_field(),
        esc(label),
        esc(note)
    )
}

async fn user_page(
    State(state): State<AppState>,
    Admin(me): Admin,
    csrf: CsrfToken,
    Path(username): Path<String>,
    q: Query<Flash>,
) -> Result<Response, AppError> {
    let user = find_user(&state, &username).await?;
    let base = user_path(&user.username);
    let groups = state.store.list_user_groups(user.id).await?;
    let methods = state.store.list_methods(user.id).await?;
    let devices = state.store.list_devices(user.id).await?;
    let recent = state
        .store
        .list_audit(&AuditFilter {
            tenant: Some(state.tenant),
            user: Some(user.id),
            limit: 10,
            ..Default::default()
        })
        .await?;

    let group_links = if groups.is_empty() {
        "None".to_string()
    } else {
        groups
            .iter()
            .map(|g| {
                format!(
                    "<a href=\"{}\">{}</a>",
                    esc(&group_path(&g.name)),
                    esc(&g.name)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let push_blocked = user
        .push_blocked_at
        .map(|t| {
            format!(
                "Blocked since {}: the user reported a sign-in request as not theirs. Unblock lifts it.",
                fmt_time(t)
            )
        })
        .unwrap_or_else(|| "Allowed".into());
    let details = [
        ("Username", esc(&user.username)),
        ("Display name", esc(&user.display_name)),
        ("Administrator", yes_no(user.is_admin).into()),
        ("Blocked", yes_no(user.is_blocked).into()),
        ("Phone requests", esc(&push_blocked)),
        (
            "Password",
            if user.has_password { "Set" } else { "Not set" }.into(),
        ),
        ("Created", fmt_time(user.created_at)),
        (
            "Last sign-in",
            user.last_signin_at
                .map(fmt_time)
                .unwrap_or_else(|| "Never".into()),
        ),
        ("Groups", group_links),
    ]
    .iter()
    .map(|(k, v)| format!("<tr><th>{k}</th><td>{v}</td></tr>"))
    .collect::<String>();

    let mut actions = String::new();
    if user.is_blocked || user.push_blocked_at.is_some() {
        actions.push_str(&action_form(
            &format!("{base}/unblock"),
            &csrf,
            "Unblock",
            "Lets the user sign in again, and allows sign-in requests to their phone again after a fraud report.",
        ));
    }
    if !user.is_blocked {
        if user.id == me.user.id {
            actions.push_str("<p class=\"note\">You cannot block your own account.</p>");
        } else {
            actions.push_str(&action_form(
                &format!("{base}/block"),
                &csrf,
                "Block",
                "Refuses every sign-in and ends the user's sessions at once.",
            ));
        }
    }
    actions.push_str(&action_form(
        &format!("{base}/reset-methods"),
        &csrf,
        "Reset methods",
        "Removes every verification method and registered device (for a lost phone). The user signs in with their password and sets up methods again.",
    ));

    let method_rows: String = methods
        .iter()
        .map(|m| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>Added {}</td><td>{}</td></tr>",
                esc(m.kind.display_name()),
                esc(&m.label),
                fmt_time(m.created_at),
                m.last_used_at
                    .map(|t| format!("Last used {}", fmt_time(t)))
                    .unwrap_or_else(|| "Not used yet".into()),
            )
        })
        .collect();
    let methods_html = if methods.is_empty() {
        "<p>No verification methods: the user signs in with the password only.</p>".to_string()
    } else {
        format!(
            "<table id=\"methods\"><thead><tr><th>Method</th><th>Label</th><th>Added</th><th>Last used</th></tr></thead><tbody>{method_rows}</tbody></table>"
        )
    };
    let device_base = format!("{base}/devices");
    let device_rows: String = devices
        .iter()
        .map(|d| crate::security_info::device_row(d, &csrf, &device_base))
        .collect();
    let devices_html = if devices.is_empty() {
        "<p>No devices registered.</p>".to_string()
    } else {
        format!(
            "<table id=\"devices\"><thead><tr><th>Device</th><th>Added</th><th>Last used</th><th>Phone sign-in</th><th></th></tr></thead><tbody>{device_rows}</tbody></table>"
        )
    };
    let recent_rows: String = recent.iter().map(log_row).collect();
    let recent_html = if recent.is_empty() {
        "<p>No activity yet.</p>".to_string()
    } else {
        format!("{LOG_HEAD}{recent_rows}</tbody></table>")
    };
    let body = format!(
        "<h1>User {}</h1>{}<table id=\"details\">{details}</table>\
         <h2>Actions</h2>{actions}\
         <h2>Methods</h2>{methods_html}<h2>Devices</h2>{devices_html}\
         <h2>Recent activity</h2>{recent_html}\
         <p><a href=\"/admin/log?user={}\">Sign-in log of this user</a> · <a href=\"/admin/users\">All users</a></p>",
        esc(&user.username),
        q.html(),
        esc(&seg(&user.username)),
    );
    Ok(admin_page(&csrf, StatusCode::OK, "User", &body))
}

async fn block_user(
    State(state): State<AppState>,
    Admin(me): Admin,
    client: Client,
    Path(username): Path<String>,
    _form: CsrfForm,
) -> Result<Response, AppError> {
    if !me.is_recent(&state) {
        return Ok(reauth_redirect(&user_path(&username), true));
    }
    let user = find_user(&state, &username).await?;
    let back = user_path(&user.username);
    // An administrator who blocks themselves ends their own session and may leave nobody to
    // undo it; since the acting administrator stays unblocked, one administrator always remains.
    if user.id == me.user.id {
        return Ok(see_other(&format!("{back}?error=self_block")));
    }
    state.store.update_user_blocked(user.id, true).await?;
    let ended = state
        .store
        .revoke_user_sessions(user.id, state.now())
        .await?;
    crate::push_signin::cancel(&state, &user).await?;
    record(
        &state,
        &client,
        Some(&user),
        &me,
        "admin_user_blocked",
        Some(&format!("ended {ended} session(s)")),
    )
    .await;
    Ok(see_other(&format!("{back}?done=blocked")))
}

async fn unblock_user(
    State(state): State<AppState>,
    Admin(me): Admin,
    client: Client,
    Path(username): Path<String>,
    _form: CsrfForm,
) -> Result<Response, AppError> {
    if !me.is_recent(&state) {
        return Ok(reauth_redirect(&user_path(&username), true));
    }
    let user = find_user(&state, &username).await?;
    // Like `sesame user unblock`: also lifts the block on phone requests set by a fraud report.
    state.store.update_user_blocked(user.id, false).await?;
    state.store.update_user_push_blocked(user.id, None).await?;
    record(
        &state,
        &client,
        Some(&user),
        &me,
        "admin_user_unblocked",
        None,
    )
    .await;
    Ok(see_other(&format!(
        "{}?done=unblocked",
        user_path(&user.username)
    )))
}

/// For a lost phone: every method goes, and so does every registered device, since a device
/// left behind could still sign in with phone sign-in.
async fn reset_methods(
    State(state): State<AppState>,
    Admin(me): Admin,
    client: Client,
    Path(username): Path<String>,
    _form: CsrfForm,
) -> Result<Response, AppError> {
    if !me.is_recent(&state) {
        return Ok(reauth_redirect(&user_path(&username), true));
    }
    let user = find_user(&state, &username).await?;
    // Methods first: removing a device takes its methods with it, and the count should say
    // how many methods the user lost.
    let methods = state.store.delete_all_methods(user.id).await?;
    let mut devices = 0;
    for d in state.store.list_devices(user.id).await? {
        if crate::device_api::remove_device(&state, &client, &user, &d.id).await? {
            devices += 1;
        }
    }
    crate::push_signin::cancel(&state, &user).await?;
    record(
        &state,
        &client,
        Some(&user),
        &me,
        "admin_methods_reset",
        Some(&format!(
            "{methods} method(s) and {devices} device(s) removed"
        )),
    )
    .await;
    Ok(see_other(&format!(
        "{}?done=reset",
        user_path(&user.username)
    )))
}

/// Audits an administrator's action on one device and goes back to the user's page.
async fn device_done(
    state: &AppState,
    client: &Client,
    me: &SignedIn,
    user: &User,
    device: &Device,
    event: &str,
    done: &str,
) -> Response {
    let detail = format!("device {}", device.name);
    record(state, client, Some(user), me, event, Some(&detail)).await;
    see_other(&format!("{}?done={done}", user_path(&user.username)))
}

/// The user and one of their devices, or 404.
async fn user_device(
    state: &AppState,
    username: &str,
    id: &str,
) -> Result<(User, Device), AppError> {
    let user = find_user(state, username).await?;
    let device = state
        .store
        .find_device(id)
        .await?
        .filter(|d| d.user == user.id)
        .ok_or(AppError::NotFound)?;
    Ok((user, device))
}

async fn remove_device(
    State(state): State<AppState>,
    Admin(me): Admin,
    client: Client,
    Path((username, id)): Path<(String, String)>,
    _form: CsrfForm,
) -> Result<Response, AppError> {
    if !me.is_recent(&state) {
        return Ok(reauth_redirect(&user_path(&username), true));
    }
    let (user, device) = user_device(&state, &username, &id).await?;
    if !crate::device_api::remove_device(&state, &client, &user, &device.id).await? {
        return Err(AppError::NotFound);
    }
    Ok(device_done(
        &state,
        &client,
        &me,
        &user,
        &device,
        "admin_device_removed",
        "device_removed",
    )
    .await)
}

async fn phone_sign_in_off(
    State(state): State<AppState>,
    Admin(me): Admin,
    client: Client,
    Path((username, id)): Path<(String, String)>,
    _form: CsrfForm,
) -> Result<Response, AppError> {
    if !me.is_recent(&state) {
        return Ok(reauth_redirect(&user_path(&username), true));
    }
    let (user, device) = user_device(&state, &username, &id).await?;
    crate::device_api::turn_off_phone_sign_in(&state, &client, &user, &device, &by(&me)).await?;
    Ok(device_done(
        &state,
        &client,
        &me,
        &user,
        &device,
        "admin_phone_sign_in_disabled",
        "phone_sign_in_off",
    )
    .await)
}

async fn allow_again(
    State(state): State<AppState>,
    Admin(me): Admin,
    client: Client,
    Path((username, id)): Path<(String, String)>,
    _form: CsrfForm,
) -> Result<Response, AppError> {
    if !me.is_recent(&state) {
        return Ok(reauth_redirect(&user_path(&username), true));
    }
    let (user, device) = user_device(&state, &username, &id).await?;
    crate::device_api::reset_pin_key(&state, &client, &user, &device, &by(&me)).await?;
    Ok(device_done(
        &state,
        &client,
        &me,
        &user,
        &device,
        "admin_pin_key_reset",
        "allowed_again",
    )
    .await)
}

// ---- Groups ----

async fn groups_html(
    state: &AppState,
    csrf: &CsrfToken,
    flash: &str,
    typed: &str,
    error: Option<&str>,
) -> Result<String, AppError> {
    let groups = state.store.list_groups(state.tenant).await?;
    let rows: String = groups
        .iter()
        .map(|g| {
            format!(
                "<tr><td><a href=\"{}\">{}</a></td><td>{}</td></tr>",
                esc(&group_path(&g.name)),
                esc(&g.name),
                g.member_count
            )
        })
        .collect();
    let table = if groups.is_empty() {
        "<p>No groups yet.</p>".to_string()
    } else {
        format!("<table id=\"groups\"><thead><tr><th>Group</th><th>Members</th></tr></thead><tbody>{rows}</tbody></table>")
    };
    Ok(format!(
        "<h1>Groups</h1>{flash}{table}<h2>Create group</h2>{}\
         <form method=\"post\" action=\"/admin/groups\">{}\
         <label for=\"name\">Group name</label>\
         <input type=\"text\" id=\"name\" name=\"name\" maxlength=\"256\" autocomplete=\"off\" required value=\"{}\">\
         <button type=\"submit\">Create group</button></form>",
        error_html(error),
        csrf.hidden_field(),
        esc(typed)
    ))
}

async fn groups_page(
    State(state): State<AppState>,
    Admin(_me): Admin,
    csrf: CsrfToken,
    q: Query<Flash>,
) -> Result<Response, AppError> {
    let html = groups_html(&state, &csrf, &q.html(), "", None).await?;
    Ok(admin_page(&csrf, StatusCode::OK, "Groups", &html))
}

async fn create_group(
    State(state): State<AppState>,
    Admin(me): Admin,
    client: Client,
    csrf: CsrfToken,
    form: CsrfForm,
) -> Result<Response, AppError> {
    let name = form.text("name").trim().to_string();
    let (st, cs, typed) = (&state, &csrf, &name);
    let refuse = move |message: String| async move {
        let html = groups_html(st, cs, "", typed, Some(&message)).await?;
        Ok::<_, AppError>(admin_page(cs, StatusCode::BAD_REQUEST, "Groups", &html))
    };
    if name.is_empty() || name.len() > 256 {
        return refuse("Enter a group name (at most 256 characters).".into()).await;
    }
    let group = match state
        .store
        .create_group(state.tenant, &name, state.now())
        .await
    {
        Ok(g) => g,
        Err(StoreError::Conflict(_)) => {
            return refuse(format!("A group named {name:?} already exists.")).await
        }
        Err(e) => return Err(e.into()),
    };
    record(
        &state,
        &client,
        None,
        &me,
        "admin_group_created",
        Some(&format!("group {}", group.name)),
    )
    .await;
    Ok(see_other(&format!(
        "{}?done=group_created",
        group_path(&group.name)
    )))
}

async fn group_html(
    state: &AppState,
    csrf: &CsrfToken,
    group: &Group,
    flash: &str,
    typed: &str,
    error: Option<&str>,
) -> Result<String, AppError> {
    let members = state.store.list_group_members(group.id).await?;
    let base = group_path(&group.name);
    let rows: String = members
        .iter()
        .map(|u| {
            format!(
                "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>\
                 <form class=\"inline\" method=\"post\" action=\"{}\">{}\
                 <button type=\"submit\" class=\"link\" aria-label=\"Remove {} from the group\">Remove</button></form></td></tr>",
                esc(&user_path(&u.username)),
                esc(&u.username),
                esc(&u.display_name),
                esc(&format!("{base}/members/{}/remove", seg(&u.username))),
                csrf.hidden_field(),
                esc(&u.username),
            )
        })
        .collect();
    let table = if members.is_empty() {
        "<p>No members yet.</p>".to_string()
    } else {
        format!("<table id=\"members\"><thead><tr><th>Username</th><th>Display name</th><th></th></tr></thead><tbody>{rows}</tbody></table>")
    };
    let (policy, _) =
        crate::policy::current(&*state.store, state.tenant, &state.config.push).await?;
    let used = if policy.groups().contains(&group.id) {
        "<p class=\"note\">The <a href=\"/admin/policy\">authentication methods policy</a> names this group: its members' sign-in options follow from it.</p>"
    } else {
        ""
    };
    Ok(format!(
        "<h1>Group {}</h1>{flash}{used}<h2>Members</h2>{table}\
         <h2>Add member</h2>{}<form method=\"post\" action=\"{}\">{}\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" maxlength=\"256\" autocomplete=\"off\" required value=\"{}\">\
         <button type=\"submit\">Add member</button></form>\
         <p><a href=\"/admin/groups\">All groups</a></p>",
        esc(&group.name),
        error_html(error),
        esc(&format!("{base}/members")),
        csrf.hidden_field(),
        esc(typed),
    ))
}

async fn group_page(
    State(state): State<AppState>,
    Admin(_me): Admin,
    csrf: CsrfToken,
    Path(name): Path<String>,
    q: Query<Flash>,
) -> Result<Response, AppError> {
    let group = find_group(&state, &name).await?;
    let html = group_html(&state, &csrf, &group, &q.html(), "", None).await?;
    Ok(admin_page(&csrf, StatusCode::OK, "Group", &html))
}

async fn add_member(
    State(state): State<AppState>,
    Admin(me): Admin,
    client: Client,
    csrf: CsrfToken,
    Path(name): Path<String>,
    form: CsrfForm,
) -> Result<Response, AppError> {
    let group = find_group(&state, &name).await?;
    let username = form.text("username").trim().to_string();
    let user = match state
        .store
        .find_user_by_username(state.tenant, &username)
        .await?
    {
        Some(u) => u,
        None => {
            let message = if username.is_empty() {
                "Enter the username of the user to add.".to_string()
            } else {
                format!("There is no user named {username:?}.")
            };
            let html = group_html(&state, &csrf, &group, "", &username, Some(&message)).await?;
            return Ok(admin_page(&csrf, StatusCode::BAD_REQUEST, "Group", &html));
        }
    };
    let added = state.store.add_group_member(group.id, user.id).await?;
    if added {
        record(
            &state,
            &client,
            Some(&user),
            &me,
            "admin_group_member_added",
            Some(&format!("group {}", group.name)),
        )
        .await;
    }
    let done = if added {
        "member_added"
    } else {
        "member_already"
    };
    Ok(see_other(&format!(
        "{}?done={done}",
        group_path(&group.name)
    )))
}

async fn remove_member(
    State(state): State<AppState>,
    Admin(me): Admin,
    client: Client,
    Path((name, username)): Path<(String, String)>,
    _form: CsrfForm,
) -> Result<Response, AppError> {
    let group = find_group(&state, &name).await?;
    let user = find_user(&state, &username).await?;
    let removed = state.store.remove_group_member(group.id, user.id).await?;
    if removed {
        record(
            &state,
            &client,
            Some(&user),
            &me,
            "admin_group_member_removed",
            Some(&format!("group {}", group.name)),
        )
        .await;
    }
    let done = if removed {
        "member_removed"
    } else {
        "member_not"
    };
    Ok(see_other(&format!(
        "{}?done={done}",
        group_path(&group.name)
    )))
}

// ---- The authentication methods policy ----

/// Who must pass two-step verification, as the form's radio buttons say it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MfaChoice {
    All,
    Groups,
    Nobody,
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
        }
    }

    /// Reads a submission. Only fields a crafted post could get wrong are refused here; the
    /// numbers are checked by [`PolicyForm::edit`] and the policy itself.
    fn from_submission(form: &CsrfForm, groups: &[Group]) -> Result<Self, String> {
        let mode = |field: &str| -> Result<AuthenticatorMode, String> {
            form.get(field).unwrap_or("any").parse()
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
        })
    }
}

fn mode_options(selected: AuthenticatorMode) -> String {
    AuthenticatorMode::ALL
        .iter()
        .map(|m| {
            let label = match m {
                AuthenticatorMode::Any => "Any (notifications, codes and phone sign-in)",
                AuthenticatorMode::Push => "Push (notifications and codes only)",
                AuthenticatorMode::Passwordless => "Passwordless (phone sign-in only)",
            };
            let sel = if *m == selected { " selected" } else { "" };
            format!("<option value=\"{m}\"{sel}>{label}</option>")
        })
        .collect()
}

fn checked(b: bool) -> &'static str {
    if b {
        " checked"
    } else {
        ""
    }
}

async fn policy_html(
    state: &AppState,
    csrf: &CsrfToken,
    flash: &str,
    form: &PolicyForm,
    error: Option<&str>,
) -> Result<String, AppError> {
    let (policy, version) =
        crate::policy::current(&*state.store, state.tenant, &state.config.push).await?;
    let groups = state.store.list_groups(state.tenant).await?;
    let names: HashMap<GroupId, String> = groups.iter().map(|g| (g.id, g.name.clone())).collect();
    let summary: String = crate::policy::describe(&policy, &names)
        .iter()
        .map(|(k, v)| format!("<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v)))
        .collect();
    let saved = if version == 0 {
        "The initial policy: nobody has changed it yet.".to_string()
    } else {
        format!("Version {version}.")
    };
    let target_rows: String = groups
        .iter()
        .map(|g| {
            let (on, mode) = form
                .group_targets
                .get(&g.id)
                .copied()
                .unwrap_or((false, AuthenticatorMode::Any));
            format!(
                "<tr><td>{name}</td><td><label for=\"target_{id}\"><input type=\"checkbox\" id=\"target_{id}\" name=\"target_{id}\" value=\"yes\"{}> Targeted</label></td>\
                 <td><label for=\"mode_{id}\">Mode for {name}</label><select id=\"mode_{id}\" name=\"mode_{id}\">{}</select></td></tr>",
                checked(on),
                mode_options(mode),
                name = esc(&g.name),
                id = g.id,
            )
        })
        .collect();
    let target_table = if groups.is_empty() {
        "<p class=\"note\">No groups yet: create them on the <a href=\"/admin/groups\">Groups</a> page.</p>".to_string()
    } else {
        format!("<table id=\"targets\"><thead><tr><th>Group</th><th>Targeted</th><th>Mode</th></tr></thead><tbody>{target_rows}</tbody></table>")
    };
    let mfa_boxes: String = groups
        .iter()
        .map(|g| {
            format!(
                "<label for=\"mfa_{id}\"><input type=\"checkbox\" id=\"mfa_{id}\" name=\"mfa_{id}\" value=\"yes\"{}> {}</label>",
                checked(form.mfa_groups.contains(&g.id)),
                esc(&g.name),
                id = g.id,
            )
        })
        .collect();
    let enabled_sel = |v: bool| if form.enabled == v { " selected" } else { "" };
    Ok(format!(
        "<h1>Authentication methods policy</h1>{flash}\
         <h2>In force</h2><table id=\"policy\">{summary}</table><p class=\"note\">{saved}</p>\
         <h2>Change the policy</h2>{}\
         <form method=\"post\" action=\"/admin/policy\">{}<input type=\"hidden\" name=\"version\" value=\"{}\">\
         <h3>Sesame Authenticator app</h3>\
         <label for=\"enabled\">Authenticator app</label>\
         <select id=\"enabled\" name=\"enabled\"><option value=\"enabled\"{}>Enabled</option><option value=\"disabled\"{}>Disabled</option></select>\
         <fieldset><legend>Target</legend>\
         <label for=\"targets_all\"><input type=\"radio\" id=\"targets_all\" name=\"targets\" value=\"all\"{}> All users</label>\
         <label for=\"mode\">Mode for all users</label><select id=\"mode\" name=\"mode\">{}</select>\
         <label for=\"targets_groups\"><input type=\"radio\" id=\"targets_groups\" name=\"targets\" value=\"groups\"{}> Selected groups</label>\
         {target_table}</fieldset>\
         <h3>Sign-in requests</h3>\
         <label for=\"digits\">Number-match digits (2 to 8)</label>\
         <input type=\"text\" id=\"digits\" name=\"digits\" inputmode=\"numeric\" maxlength=\"3\" value=\"{}\">\
         <label for=\"lifetime\">Request lifetime in seconds (10 to {MAX_LIFETIME_SECS})</label>\
         <input type=\"text\" id=\"lifetime\" name=\"lifetime\" inputmode=\"numeric\" maxlength=\"6\" value=\"{}\">\
         <label for=\"pin_required\"><input type=\"checkbox\" id=\"pin_required\" name=\"pin_required\" value=\"yes\"{}> PIN required to approve a second step</label>\
         <label for=\"show_app_name\"><input type=\"checkbox\" id=\"show_app_name\" name=\"show_app_name\" value=\"yes\"{}> Show the application name in requests</label>\
         <label for=\"show_location\"><input type=\"checkbox\" id=\"show_location\" name=\"show_location\" value=\"yes\"{}> Show the IP address and approximate location in requests</label>\
         <fieldset><legend>Two-step verification required for</legend>\
         <label for=\"mfa_all\"><input type=\"radio\" id=\"mfa_all\" name=\"mfa\" value=\"all\"{}> All users</label>\
         <label for=\"mfa_groups\"><input type=\"radio\" id=\"mfa_groups\" name=\"mfa\" value=\"groups\"{}> Selected groups</label>\
         <div style=\"margin-left:24px\">{mfa_boxes}</div>\
         <label for=\"mfa_nobody\"><input type=\"radio\" id=\"mfa_nobody\" name=\"mfa\" value=\"nobody\"{}> Nobody (users who set up a method still use it)</label>\
         </fieldset>\
         <button type=\"submit\">Save policy</button></form>",
        error_html(error),
        csrf.hidden_field(),
        form.version,
        enabled_sel(true),
        enabled_sel(false),
        checked(form.targets_all),
        mode_options(form.all_mode),
        checked(!form.targets_all),
        esc(&form.digits),
        esc(&form.lifetime),
        checked(form.pin_required),
        checked(form.show_app_name),
        checked(form.show_location),
        checked(form.mfa == MfaChoice::All),
        checked(form.mfa == MfaChoice::Groups),
        checked(form.mfa == MfaChoice::Nobody),
    ))
}

async fn policy_page(
    State(state): State<AppState>,
    Admin(_me): Admin,
    csrf: CsrfToken,
    q: Query<Flash>,
) -> Result<Response, AppError> {
    let (policy, version) =
        crate::policy::current(&*state.store, state.tenant, &state.config.push).await?;
    let form = PolicyForm::from_policy(&policy, version);
    let html = policy_html(&state, &csrf, &q.html(), &form, None).await?;
    Ok(admin_page(
        &csrf,
        StatusCode::OK,
        "Authentication methods policy",
        &html,
    ))
}

const STALE_POLICY_FORM: &str =
    "Someone changed the policy after you opened this page, so your changes were not saved. \
    The form now shows the policy in force: make your changes again.";

async fn policy_submit(
    State(state): State<AppState>,
    Admin(me): Admin,
    client: Client,
    csrf: CsrfToken,
    form: CsrfForm,
) -> Result<Response, AppError> {
    if !me.is_recent(&state) {
        return Ok(reauth_redirect("/admin/policy", true));
    }
    let push = &state.config.push;
    let (old, version) = crate::policy::current(&*state.store, state.tenant, push).await?;
    let groups = state.store.list_groups(state.tenant).await?;
    let (st, cs) = (&state, &csrf);
    let show = move |status: StatusCode, form: PolicyForm, message: String| async move {
        let html = policy_html(st, cs, "", &form, Some(&message)).await?;
        Ok::<_, AppError>(admin_page(
            cs,
            status,
            "Authentication methods policy",
            &html,
        ))
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
    let (by_name, _) = crate::policy::group_names(&*state.store, state.tenant).await?;
    // Applied here first so that saving an unchanged form leaves no version or audit line.
    match edit.apply(&old, &by_name) {
        Err(m) => return show(StatusCode::BAD_REQUEST, typed, capitalised(&m)).await,
        Ok(p) if p == old => return Ok(see_other("/admin/policy?done=unchanged")),
        Ok(_) => {}
    }
    let who = me.user.username.clone();
    let ip = client.ip.to_string();
    let actor = Actor {
        user: Some(me.user.id),
        name: &who,
        ip: &ip,
        user_agent: &client.user_agent,
    };
    match crate::policy::change(
        &*state.store,
        state.tenant,
        push,
        &edit,
        Some(typed.version),
        &actor,
        state.now(),
    )
    .await
    {
        Ok(_) => Ok(see_other("/admin/policy?done=saved")),
        Err(PolicyError::Conflict) => {
            // Changed between our read and the save.
            let (in_force, v) = crate::policy::current(&*state.store, state.tenant, push).await?;
            conflict(in_force, v).await
        }
        Err(PolicyError::Invalid(m)) => show(StatusCode::BAD_REQUEST, typed, capitalised(&m)).await,
        Err(PolicyError::Store(e)) => Err(e.into()),
    }
}

/// Messages from the policy module start in lower case (they also end up on the command line).
fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect::<String>() + ".",
        None => String::new(),
    }
}

// ---- Sign-in log ----

#[derive(Deserialize, Default)]
struct LogQuery {
    user: Option<String>,
    result: Option<String>,
    method: Option<String>,
    from: Option<String>,
    to: Option<String>,
    hours: Option<String>,
}

/// Methods as the audit log names them, with what people call them.
const LOG_METHODS: [(&str, &str); 5] = [
    ("password", "Password"),
    ("totp", "Verification code"),
    ("push", "Authenticator notification"),
    ("phone_sign_in", "Phone sign-in"),
    ("pin", "App PIN"),
];

/// Most entries one page shows.
const LOG_LIMIT: i64 = 200;

const LOG_HEAD: &str =
    "<table class=\"log\"><thead><tr><th>Time</th><th>User</th><th>Event</th><th>Method</th>\
    <th>Result</th><th>Reason</th><th>IP</th></tr></thead><tbody>";

fn log_row(e: &sesame_store::AuditEvent) -> String {
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        fmt_time(e.at),
        esc(&e.username),
        esc(&e.event),
        esc(e.method.as_deref().unwrap_or("-")),
        e.result.as_str(),
        esc(e.reason.as_deref().unwrap_or("-")),
        esc(&e.ip),
    )
}

/// `YYYY-MM-DD` (what `<input type="date">` sends) as the Unix time of that day's start, UTC.
fn day_start(s: &str) -> Option<UnixTime> {
    let mut parts = s.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp())
}

fn blank(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The store filter for the query, or what is wrong with it.
async fn log_filter(
    state: &AppState,
    q: &LogQuery,
) -> Result<Result<AuditFilter, String>, AppError> {
    let mut f = AuditFilter {
        tenant: Some(state.tenant),
        limit: LOG_LIMIT,
        ..Default::default()
    };
    if let Some(name) = blank(&q.user) {
        match state
            .store
            .find_user_by_username(state.tenant, name)
            .await?
        {
            Some(u) => f.user = Some(u.id),
            None => return Ok(Err(format!("There is no user named {name:?}."))),
        }
    }
    f.result = match blank(&q.result) {
        None => None,
        Some("success") => Some(AuditResult::Success),
        Some("failure") => Some(AuditResult::Failure),
        Some(_) => return Ok(Err("Result must be success or failure.".into())),
    };
    f.method = match blank(&q.method) {
        None => None,
        Some(m) if LOG_METHODS.iter().any(|(k, _)| *k == m) => Some(m.to_string()),
        Some(_) => return Ok(Err("Choose a method from the list.".into())),
    };
    let (from, to, hours) = (blank(&q.from), blank(&q.to), blank(&q.hours));
    if hours.is_some() && (from.is_some() || to.is_some()) {
        return Ok(Err(
            "Give either a date range or a number of hours, not both.".into(),
        ));
    }
    if let Some(h) = hours {
        match h.parse::<i64>() {
            Ok(h) if (1..=24 * 366 * 10).contains(&h) => f.since = Some(state.now() - h * 3600),
            _ => return Ok(Err("Hours must be a whole number, at least 1.".into())),
        }
    }
    if let Some(d) = from {
        match day_start(d) {
            Some(t) => f.since = Some(t),
            None => return Ok(Err("The From date must look like 2025-06-15.".into())),
        }
    }
    if let Some(d) = to {
        // Up to and including that day.
        match day_start(d) {
            Some(t) => f.until = Some(t + 86_400),
            None => return Ok(Err("The To date must look like 2025-06-15.".into())),
        }
    }
    if let (Some(s), Some(u)) = (f.since, f.until) {
        if s >= u {
            return Ok(Err("The From date must not be after the To date.".into()));
        }
    }
    Ok(Ok(f))
}

async fn log_page(
    State(state): State<AppState>,
    Admin(_me): Admin,
    csrf: CsrfToken,
    q: Query<LogQuery>,
) -> Result<Response, AppError> {
    let (status, entries, error) = match log_filter(&state, &q).await? {
        Ok(f) => (StatusCode::OK, state.store.list_audit(&f).await?, None),
        Err(m) => (StatusCode::BAD_REQUEST, Vec::new(), Some(m)),
    };
    let value = |s: &Option<String>| esc(s.as_deref().unwrap_or(""));
    let select = |current: Option<&str>, options: &[(&str, &str)]| -> String {
        options
            .iter()
            .map(|(v, label)| {
                let sel = if current.unwrap_or("") == *v {
                    " selected"
                } else {
                    ""
                };
                format!("<option value=\"{v}\"{sel}>{label}</option>")
            })
            .collect()
    };
    let mut methods = vec![("", "Any")];
    methods.extend(LOG_METHODS);
    let rows: String = entries.iter().map(log_row).collect();
    let table = if error.is_some() {
        String::new()
    } else if entries.is_empty() {
        "<p id=\"no-entries\">No entries match.</p>".to_string()
    } else {
        format!(
            "{LOG_HEAD}{rows}</tbody></table><p class=\"note\">Newest first; at most {LOG_LIMIT} entries.</p>"
        )
    };
    let body = format!(
        "<h1>Sign-in log</h1>\
         <form method=\"get\" action=\"/admin/log\">\
         <label for=\"user\">Username</label><input type=\"text\" id=\"user\" name=\"user\" value=\"{}\">\
         <label for=\"result\">Result</label><select id=\"result\" name=\"result\">{}</select>\
         <label for=\"method\">Method</label><select id=\"method\" name=\"method\">{}</select>\
         <label for=\"from\">From (date, UTC)</label><input type=\"date\" id=\"from\" name=\"from\" value=\"{}\">\
         <label for=\"to\">To (date, UTC)</label><input type=\"date\" id=\"to\" name=\"to\" value=\"{}\">\
         <label for=\"hours\">Or the last N hours</label><input type=\"text\" id=\"hours\" name=\"hours\" inputmode=\"numeric\" value=\"{}\">\
         <button type=\"submit\">Show entries</button> <a href=\"/admin/log\">Clear filters</a></form>{}{table}",
        value(&q.user),
        select(
            blank(&q.result),
            &[("", "Any"), ("success", "Success"), ("failure", "Failure")]
        ),
        select(blank(&q.method), &methods),
        value(&q.from),
        value(&q.to),
        value(&q.hours),
        error_html(error.as_deref()),
    );
    Ok(admin_page(&csrf, status, "Sign-in log", &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_read_as_utc_days() {
        assert_eq!(day_start("1970-01-02"), Some(86_400));
        assert_eq!(day_start("2025-06-15"), Some(1_749_945_600));
        for bad in [
            "2025-6-15",
            "2025-13-01",
            "2025-02-30",
            "x",
            "",
            "2025-06-15T00",
        ] {
            assert_eq!(day_start(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_become_single_path_segments() {
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
        assert_eq!(user_path("<x>"), "/admin/users/%3Cx%3E");
    }

    #[test]
    fn policy_messages_read_as_sentences() {
        assert_eq!(capitalised("no group named \"x\""), "No group named \"x\".");
    }
}
