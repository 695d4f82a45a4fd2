//! Users: the list, creating one, one user's page and the actions on it.

use super::{group_path, seg, user_path, yes_no, Flash};
use crate::error::Error;
use crate::service::devices::{self, DeviceAction};
use crate::service::guesses;
use crate::service::users::{self, NewAccount, UserError};
use crate::service::{Admin, Origin};
use crate::web::extract::{Admin as AdminUser, Checked, RecentAdmin, SignedIn};
use crate::web::templates::{
    device_rows, last_used, AdminMethodRow, AdminPasswordPage, FraudReport, LogRow, UserAction,
    UserPage, UserRow, UsersPage,
};
use crate::web::{device_done, fmt_time, page, see_other, CsrfToken};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use sesame_core::method::MethodKind;
use sesame_core::secret::SecretString;
use sesame_core::DeviceId;
use sesame_store::{AuditEvent, AuditFilter, User};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(users_page).post(create_user))
        .route("/admin/users/{username}", get(user_page))
        .route(
            "/admin/users/{username}/block",
            get(block_confirm).post(block_user),
        )
        .route("/admin/users/{username}/unblock", post(unblock_user))
        .route("/admin/users/{username}/unlock", post(unlock_user))
        .route(
            "/admin/users/{username}/password",
            get(password_page).post(password_submit),
        )
        .route(
            "/admin/users/{username}/access-pass",
            axum::routing::post(create_access_pass),
        )
        .route(
            "/admin/users/{username}/access-pass/revoke",
            axum::routing::post(revoke_access_pass),
        )
        .route(
            "/admin/users/{username}/reset-methods",
            get(reset_confirm).post(reset_methods),
        )
        .route(
            "/admin/users/{username}/devices/{id}/{action}",
            get(device_confirm).post(device_action),
        )
}

pub(super) async fn find_user(
    state: &AppState,
    me: &SignedIn,
    username: &str,
) -> Result<User, Error> {
    state
        .store
        .find_user_by_username(me.user.tenant, username)
        .await?
        .ok_or_else(Error::not_found)
}

pub(super) fn log_rows(entries: &[AuditEvent]) -> Vec<LogRow> {
    entries
        .iter()
        .map(|e| LogRow {
            time: fmt_time(e.at),
            username: e.username.clone(),
            event: e.event.describe().to_string(),
            method: e
                .method
                .as_ref()
                .map_or_else(|| "-".to_string(), |m| m.display_name().to_string()),
            result: e.result.as_str(),
            reason: e.reason.clone().unwrap_or_else(|| "-".into()),
            ip: e.ip.clone(),
            // A short label, never the browser's own text; lines written by the command line
            // name the command instead.
            browser: if e.ip == "local" {
                format!("Command line ({})", e.user_agent)
            } else if e.user_agent.is_empty() {
                "-".into()
            } else {
                crate::service::approvals::browser_label(&e.user_agent)
            },
        })
        .collect()
}

/// What was typed in the "Create user" form, shown again when it is refused.
#[derive(Default)]
struct Typed {
    username: String,
    display_name: String,
    admin: bool,
}

async fn users_view(
    state: &AppState,
    me: &SignedIn,
    csrf: &CsrfToken,
    status: StatusCode,
    flash: &Flash,
    typed: &Typed,
    error: Option<&str>,
) -> Result<Response, Error> {
    let all = state.store.list_users(me.user.tenant).await?;
    let users = all
        .iter()
        .map(|u| UserRow {
            path: user_path(&u.username),
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            admin: yes_no(u.is_admin),
            blocked: yes_no(u.is_blocked),
            push_blocked: u
                .push_blocked_at
                .map(|t| format!("Yes, since {}", fmt_time(t)))
                .unwrap_or_else(|| "No".into()),
            last_signin: u
                .last_signin_at
                .map(fmt_time)
                .unwrap_or_else(|| "Never".into()),
        })
        .collect();
    // Open fraud reports come first: "Deny and report" tells the user their administrator was
    // told, and this is where they are told.
    let mut reported: Vec<&sesame_store::User> =
        all.iter().filter(|u| u.push_blocked_at.is_some()).collect();
    reported.sort_by_key(|u| std::cmp::Reverse(u.push_blocked_at));
    let reports = reported
        .into_iter()
        .map(|u| FraudReport {
            path: user_path(&u.username),
            username: u.username.clone(),
            at: u.push_blocked_at.map(fmt_time).unwrap_or_default(),
        })
        .collect();
    Ok(page(
        csrf,
        status,
        &UsersPage {
            csrf: &csrf.token,
            notice: flash.notice(),
            flash_error: flash.error(),
            error,
            reports,
            users,
            typed_username: &typed.username,
            typed_display_name: &typed.display_name,
            typed_admin: typed.admin,
        },
    ))
}

async fn users_page(
    State(state): State<AppState>,
    AdminUser(me): AdminUser,
    csrf: CsrfToken,
    q: Query<Flash>,
) -> Result<Response, Error> {
    users_view(
        &state,
        &me,
        &csrf,
        StatusCode::OK,
        &q,
        &Typed::default(),
        None,
    )
    .await
}

async fn create_user(
    State(state): State<AppState>,
    origin: Origin,
    csrf: CsrfToken,
    Checked { me, form, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    // Creating a user hands out a way in (and may hand out every power of this console): it
    // needs a recent sign-in, like the other changes that decide who gets in.
    let typed = Typed {
        username: form.text("username").trim().to_string(),
        display_name: form.text("display_name").trim().to_string(),
        admin: form.get("admin").is_some(),
    };
    let new = NewAccount {
        username: typed.username.clone(),
        display_name: Some(typed.display_name.clone()),
        password: match form.text("password") {
            "" => None,
            pw => Some(SecretString::new(pw.to_string())),
        },
        admin: typed.admin,
    };
    let admin = Admin::console(&me.user, origin);
    let message = match users::create(&state, &admin, me.user.tenant, new).await {
        Ok(user) => {
            return Ok(see_other(&format!(
                "{}?done=created",
                user_path(&user.username)
            )))
        }
        Err(UserError::BadUsername) => "Enter a username (at most 256 characters).".to_string(),
        Err(UserError::DisplayNameTooLong) => {
            "The display name can have at most 256 characters.".to_string()
        }
        Err(
            e @ (UserError::Username(_) | UserError::LooksLike(..) | UserError::DisplayName(_)),
        ) => crate::web::sentence(&e.to_string()),
        Err(UserError::Password(e)) => e.to_string(),
        Err(UserError::Exists(name)) => format!("A user named {name:?} already exists."),
        Err(UserError::Store(e)) => return Err(e.into()),
        Err(UserError::Server(e)) => return Err(e),
        Err(e) => return Err(Error::internal(e.to_string())),
    };
    users_view(
        &state,
        &me,
        &csrf,
        StatusCode::BAD_REQUEST,
        &Flash::default(),
        &typed,
        Some(&message),
    )
    .await
}

fn action(path: String, label: &'static str, note: &'static str) -> UserAction {
    UserAction::Form { path, label, note }
}

async fn user_page(
    State(state): State<AppState>,
    AdminUser(me): AdminUser,
    csrf: CsrfToken,
    Path(username): Path<String>,
    q: Query<Flash>,
) -> Result<Response, Error> {
    let user = find_user(&state, &me, &username).await?;
    let base = user_path(&user.username);
    let groups = state.store.list_user_groups(user.id).await?;
    let methods = state.store.list_methods(user.id).await?;
    let devices = state.store.list_devices(user.id).await?;
    let recent = state
        .store
        .list_audit(&AuditFilter {
            tenant: Some(user.tenant),
            user: Some(user.id),
            limit: 10,
            ..Default::default()
        })
        .await?;
    let passwords = guesses::standing(&state, &user).await?;
    let mut codes = Vec::new();
    for k in MethodKind::ALL {
        let (failures, _) = state.store.find_failures(user.id, k).await?;
        if failures > 0 {
            codes.push((k, failures));
        }
    }
    let locked_out = passwords.failures > 0 || !passwords.browsers.is_empty() || !codes.is_empty();
    let push_blocked = user
        .push_blocked_at
        .map(|t| {
            format!(
                "Blocked since {}: the user reported a sign-in request as not theirs. Unblock lifts it.",
                fmt_time(t)
            )
        })
        .unwrap_or_else(|| "Allowed".into());
    let details = vec![
        ("Username", user.username.clone()),
        ("Display name", user.display_name.clone()),
        ("Administrator", yes_no(user.is_admin).into()),
        ("Blocked", yes_no(user.is_blocked).into()),
        ("Phone requests", push_blocked),
        (
            "Password",
            if user.has_password { "Set" } else { "Not set" }.into(),
        ),
        ("Wrong passwords", wrong_passwords(&passwords)),
        ("Wrong codes and numbers", wrong_codes(&codes)),
        ("Created", fmt_time(user.created_at)),
        (
            "Last sign-in",
            user.last_signin_at
                .map(fmt_time)
                .unwrap_or_else(|| "Never".into()),
        ),
    ];
    let mut actions = Vec::new();
    if user.is_blocked || user.push_blocked_at.is_some() {
        actions.push(action(
            format!("{base}/unblock"),
            "Unblock",
            "Lets the user sign in again, and allows sign-in requests to their phone again after a fraud report.",
        ));
    }
    if !user.is_blocked {
        if user.id == me.user.id {
            actions.push(UserAction::Note("You cannot block your own account."));
        } else {
            actions.push(UserAction::Link {
                path: format!("{base}/block"),
                label: "Block",
                note: "Refuses every sign-in and ends the user's sessions at once.",
            });
        }
    }
    actions.push(UserAction::Link {
        path: format!("{base}/password"),
        label: "Set a new password",
        note: "Ends every session of the user.",
    });
    if locked_out {
        actions.push(action(
            format!("{base}/unlock"),
            "Unlock",
            "Forgets the wrong passwords, codes and numbers counted for this user, in every browser, and lifts their waits and locks.",
        ));
    }
    actions.push(UserAction::Link {
        path: format!("{base}/reset-methods"),
        label: "Reset methods",
        note: "Removes every verification method and registered device (for a lost phone). The user signs in with their password and sets up methods again.",
    });
    let methods = methods
        .iter()
        .map(|m| AdminMethodRow {
            kind: m.kind.display_name(),
            label: m.label.clone(),
            added: fmt_time(m.created_at),
            last_used: last_used(m.last_used_at),
        })
        .collect();
    Ok(page(
        &csrf,
        StatusCode::OK,
        &UserPage {
            csrf: &csrf.token,
            notice: q.notice(),
            flash_error: q.error(),
            username: &user.username,
            details,
            groups: groups
                .iter()
                .map(|g| (group_path(&g.name), g.name.clone()))
                .collect(),
            actions,
            methods,
            devices: device_rows(&devices, &format!("{base}/devices"), state.now(), false),
            entries: log_rows(&recent),
            log_user: seg(&user.username),
            access_pass: state
                .store
                .find_access_pass(user.id, state.now())
                .await?
                .map(|p| {
                    format!(
                        "{}, valid until {}{}.",
                        if p.one_time { "One-time" } else { "Multi-use" },
                        fmt_time(p.expires_at),
                        p.used_at
                            .map(|t| format!(", last used {}", fmt_time(t)))
                            .unwrap_or_default()
                    )
                }),
            access_pass_path: format!("{base}/access-pass"),
        },
    ))
}

async fn block_user(
    State(state): State<AppState>,
    origin: Origin,
    Path(username): Path<String>,
    Checked { me, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let user = find_user(&state, &me, &username).await?;
    let back = user_path(&user.username);
    match users::block(&state, &Admin::console(&me.user, origin), &user).await {
        Ok(_) => Ok(see_other(&format!("{back}?done=blocked"))),
        Err(UserError::OwnAccount) => Ok(see_other(&format!("{back}?error=self_block"))),
        Err(e) => Err(Error::internal(e.to_string())),
    }
}

async fn unblock_user(
    State(state): State<AppState>,
    origin: Origin,
    Path(username): Path<String>,
    Checked { me, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let user = find_user(&state, &me, &username).await?;
    users::unblock(&state, &Admin::console(&me.user, origin), &user)
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(see_other(&format!(
        "{}?done=unblocked",
        user_path(&user.username)
    )))
}

fn password_form(
    csrf: &CsrfToken,
    user: &User,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let back = user_path(&user.username);
    page(
        csrf,
        status,
        &AdminPasswordPage {
            csrf: &csrf.token,
            error,
            username: &user.username,
            action: &format!("{back}/password"),
            back: &back,
            min_length: sesame_core::password::MIN_LENGTH,
        },
    )
}

async fn password_page(
    State(state): State<AppState>,
    AdminUser(me): AdminUser,
    csrf: CsrfToken,
    Path(username): Path<String>,
) -> Result<Response, Error> {
    let user = find_user(&state, &me, &username).await?;
    Ok(password_form(&csrf, &user, StatusCode::OK, None))
}

/// Sets a user's password (a reset for someone who forgot theirs): all their sessions end.
async fn password_submit(
    State(state): State<AppState>,
    origin: Origin,
    csrf: CsrfToken,
    Path(username): Path<String>,
    Checked { me, form, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let user = find_user(&state, &me, &username).await?;
    let new = form.text("new").to_string();
    if new != form.text("confirm") {
        return Ok(password_form(
            &csrf,
            &user,
            StatusCode::BAD_REQUEST,
            Some("The new passwords do not match."),
        ));
    }
    let admin = Admin::console(&me.user, origin);
    match users::set_password(&state, &admin, &user, SecretString::new(new)).await {
        Ok(_) => Ok(see_other(&format!(
            "{}?done=password_set",
            user_path(&user.username)
        ))),
        Err(UserError::Password(e)) => Ok(password_form(
            &csrf,
            &user,
            StatusCode::BAD_REQUEST,
            Some(&e.to_string()),
        )),
        Err(e) => Err(Error::internal(e.to_string())),
    }
}

async fn unlock_user(
    State(state): State<AppState>,
    origin: Origin,
    Path(username): Path<String>,
    Checked { me, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let user = find_user(&state, &me, &username).await?;
    users::unlock(&state, &Admin::console(&me.user, origin), &user)
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(see_other(&format!(
        "{}?done=unlocked",
        user_path(&user.username)
    )))
}

/// The wrong passwords counted for a user, in words.
fn wrong_passwords(p: &guesses::Standing) -> String {
    let by_name = match (p.state, p.until) {
        ("locked", _) => format!(
            "{} in a row from browsers the user never signed in with: locked until unlocked",
            p.failures
        ),
        ("waiting", Some(until)) => format!(
            "{} in a row from browsers the user never signed in with: waiting until {}",
            p.failures,
            fmt_time(until)
        ),
        _ if p.failures > 0 => format!(
            "{} in a row from browsers the user never signed in with",
            p.failures
        ),
        _ => "None".into(),
    };
    match p.browsers.len() {
        0 => by_name,
        n => format!("{by_name}; {n} of the user's own browsers with wrong passwords"),
    }
}

fn wrong_codes(codes: &[(MethodKind, u32)]) -> String {
    if codes.is_empty() {
        return "None".into();
    }
    codes
        .iter()
        .map(|(k, n)| format!("{}: {n} in a row", k.display_name()))
        .collect::<Vec<_>>()
        .join("; ")
}

async fn reset_methods(
    State(state): State<AppState>,
    origin: Origin,
    Path(username): Path<String>,
    Checked { me, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let user = find_user(&state, &me, &username).await?;
    users::reset_methods(&state, &Admin::console(&me.user, origin), &user)
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(see_other(&format!(
        "{}?done=reset",
        user_path(&user.username)
    )))
}

/// An administrator's action on one of the user's devices (remove it, turn its phone sign-in
/// off, allow it again): the user's own audit line, and the administrator's.
async fn device_action(
    State(state): State<AppState>,
    origin: Origin,
    Path((username, id, action)): Path<(String, String, String)>,
    Checked { me, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let action = DeviceAction::parse(&action).ok_or_else(Error::not_found)?;
    let user = find_user(&state, &me, &username).await?;
    let device = state
        .store
        .find_device(&DeviceId(id))
        .await?
        .filter(|d| d.user == user.id)
        .ok_or_else(Error::not_found)?;
    let admin = Admin::console(&me.user, origin);
    if !devices::act_as_admin(&state, &admin, &user, &device, action).await? {
        return Err(Error::not_found());
    }
    Ok(see_other(&format!(
        "{}?done={}",
        user_path(&user.username),
        device_done(action)
    )))
}

/// "Block": asked first.
async fn block_confirm(
    State(state): State<AppState>,
    AdminUser(me): AdminUser,
    csrf: CsrfToken,
    Path(username): Path<String>,
) -> Result<Response, Error> {
    let user = find_user(&state, &me, &username).await?;
    let base = user_path(&user.username);
    let question = format!("Block {}?", user.username);
    Ok(crate::web::confirm::ask(
        &csrf,
        crate::web::confirm::Ask {
            title: "Block user",
            question: &question,
            detail: "Every sign-in is refused and their sessions end at once, also in applications. Unblock lets them in again.",
            action: &format!("{base}/block"),
            button: "Block",
            cancel: &base,
        },
    ))
}

/// "Reset methods": asked first.
async fn reset_confirm(
    State(state): State<AppState>,
    AdminUser(me): AdminUser,
    csrf: CsrfToken,
    Path(username): Path<String>,
) -> Result<Response, Error> {
    let user = find_user(&state, &me, &username).await?;
    let base = user_path(&user.username);
    let question = format!("Reset every method of {}?", user.username);
    Ok(crate::web::confirm::ask(
        &csrf,
        crate::web::confirm::Ask {
            title: "Reset methods",
            question: &question,
            detail: "Every verification method and registered device is removed (for a lost phone); requests to their phone stop. They sign in with their password (or a Temporary Access Pass) and set up methods again.",
            action: &format!("{base}/reset-methods"),
            button: "Reset methods",
            cancel: &base,
        },
    ))
}

/// "Remove" a user's device: asked first.
async fn device_confirm(
    State(state): State<AppState>,
    AdminUser(me): AdminUser,
    csrf: CsrfToken,
    Path((username, id, action)): Path<(String, String, String)>,
) -> Result<Response, Error> {
    if action != "remove" {
        return Err(Error::not_found());
    }
    let user = find_user(&state, &me, &username).await?;
    let device = state
        .store
        .find_device(&DeviceId(id.clone()))
        .await?
        .filter(|d| d.user == user.id)
        .ok_or_else(Error::not_found)?;
    let base = user_path(&user.username);
    let question = format!("Remove {} of {}?", device.name, user.username);
    Ok(crate::web::confirm::ask(
        &csrf,
        crate::web::confirm::Ask {
            title: "Remove device",
            question: &question,
            detail: "Its sign-in requests, codes and phone sign-in stop working at once.",
            action: &format!("{base}/devices/{id}/remove"),
            button: "Remove",
            cancel: &base,
        },
    ))
}

#[derive(askama::Template)]
#[template(path = "admin/access_pass.html")]
struct AccessPassShown<'a> {
    username: &'a str,
    pass: &'a str,
    validity: &'a str,
    back: &'a str,
}

/// Makes a Temporary Access Pass and shows it, once (the page is not cached).
async fn create_access_pass(
    State(state): State<AppState>,
    origin: Origin,
    csrf: CsrfToken,
    Path(username): Path<String>,
    Checked { me, form, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let user = find_user(&state, &me, &username).await?;
    let lifetime = sesame_core::access_pass::parse_lifetime(form.text("lifetime"))
        .map_err(|e| Error::bad_request(crate::web::sentence(&e)))?;
    let made = crate::service::access_pass::create(
        &state,
        &Admin::console(&me.user, origin),
        &user,
        lifetime,
        form.get("multi_use") != Some("yes"),
    )
    .await?;
    let validity = format!(
        "It works {} until {}.",
        if made.one_time {
            "once"
        } else {
            "any number of times"
        },
        fmt_time(made.expires_at)
    );
    let back = user_path(&user.username);
    let mut resp = page(
        &csrf,
        StatusCode::OK,
        &AccessPassShown {
            username: &user.username,
            pass: &made.pass,
            validity: &validity,
            back: &back,
        },
    );
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

async fn revoke_access_pass(
    State(state): State<AppState>,
    origin: Origin,
    Path(username): Path<String>,
    Checked { me, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let user = find_user(&state, &me, &username).await?;
    crate::service::access_pass::revoke(&state, &Admin::console(&me.user, origin), &user).await?;
    Ok(see_other(&format!(
        "{}?done=access_pass_revoked",
        user_path(&user.username)
    )))
}
