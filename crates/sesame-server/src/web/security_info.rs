//! "My security info": the user's methods, default method and devices. Setting a method up is
//! the method's own page (`methods/`), reached through "Add method".
//!
//! Adding a method needs a recent sign-in; removing one needs a recent sign-in that included a
//! second step, so a stolen idle session cannot strip an account's protection.

use super::extract::{reauth_redirect, Checked, FreshSecondStep, Recent, SignedIn};
use super::templates::{
    device_rows, last_used, AddMethodPage, ChangePasswordPage, DefaultMethodPage, DefaultOption,
    MethodRow, SecurityInfoPage,
};
use super::{device_done, fmt_time, page, see_other, CsrfForm, CsrfToken};
use crate::error::Error;
use crate::service::devices::{self, DeviceAction};
use crate::service::{security, Origin};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use sesame_core::{DeviceId, MethodId};
use sesame_store::Method;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/security-info", get(overview))
        .route("/security-info/add", get(add_choose))
        .route(
            "/security-info/password",
            get(password_page).post(password_submit),
        )
        .route(
            "/security-info/methods/{id}/delete",
            get(delete_method_confirm).post(delete_method),
        )
        .route(
            "/security-info/default",
            get(default_page).post(default_submit),
        )
        .route(
            "/security-info/devices/{id}/confirm-phone-sign-in",
            post(confirm_phone_sign_in),
        )
        .route(
            "/security-info/devices/{id}/{action}",
            get(device_confirm).post(device_action),
        )
}

#[derive(Deserialize)]
struct Flash {
    done: Option<String>,
    setup: Option<String>,
}

fn flash_text(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "added" => Some(
            "Authenticator app added. From now on you will be asked for a code when you sign in.",
        ),
        "deleted" => Some("Method deleted."),
        "office_added" => Some("Office phone saved. You can now verify by answering a call to it."),
        "phone_added" => Some("Phone number saved. You can now verify with a text message or a call to it."),
        "default" => Some("Default method changed."),
        "device_removed" => Some("Device removed. Its sign-in requests and codes no longer work."),
        "phone_sign_in_off" => Some("Phone sign-in turned off for that device."),
        "password_changed" => Some("Password changed. Your other sessions have ended."),
        "phone_sign_in_on" => Some("Phone sign-in is on for that device: next time, type your username and approve in the app with your PIN."),
        "nothing_to_confirm" => Some("There was no request to confirm (requests wait 10 minutes). In the Authenticator app, turn on phone sign-in again, then confirm it here."),
        "allowed_again" => Some("Phone sign-in can be turned on again for that device: open the Authenticator app and turn on phone sign-in (you will set up the PIN key again)."),
        _ => None,
    }
}

fn method_name(m: &Method) -> String {
    match crate::service::phones::number_of(m) {
        Some(n) => format!("{} — {}", m.kind.display_name(), n.masked()),
        None => format!("{} — {}", m.kind.display_name(), m.label),
    }
}

async fn overview(
    State(state): State<AppState>,
    me: SignedIn,
    csrf: CsrfToken,
    q: Query<Flash>,
) -> Result<Response, Error> {
    let methods = state.store.list_methods(me.user.id).await?;
    let setup_required = q.setup.is_some() && me.must_set_up_second_step(&state).await?;
    let default = me
        .user
        .default_method
        .and_then(|d| methods.iter().find(|m| m.id == d))
        .map(method_name)
        .unwrap_or_else(|| {
            if me.user.has_password {
                "Password only".into()
            } else {
                "None".into()
            }
        });
    let rows = methods
        .iter()
        .map(|m| MethodRow {
            id: m.id.0,
            name: method_name(m),
            added: fmt_time(m.created_at),
            last_used: last_used(m.last_used_at),
            on_device: m.device.is_some(),
        })
        .collect();
    let devices = state.store.list_devices(me.user.id).await?;
    Ok(page(
        &csrf,
        StatusCode::OK,
        &SecurityInfoPage {
            csrf: &csrf.token,
            notice: flash_text(q.done.as_deref()),
            error: setup_required.then_some(
                "Your organisation requires two-step verification. Add a method to continue.",
            ),
            default_method: &default,
            methods: rows,
            devices: device_rows(&devices, "/security-info/devices", state.now(), true),
        },
    ))
}

async fn add_choose(State(state): State<AppState>, _me: Recent, csrf: CsrfToken) -> Response {
    let choices = state
        .methods()
        .iter()
        .filter_map(|m| m.enrolment())
        .collect();
    page(&csrf, StatusCode::OK, &AddMethodPage { choices })
}

/// "Delete": asked first.
async fn delete_method_confirm(
    State(state): State<AppState>,
    me: SignedIn,
    csrf: CsrfToken,
    Path(id): Path<i64>,
) -> Result<Response, Error> {
    let m = state
        .store
        .list_methods(me.user.id)
        .await?
        .into_iter()
        .find(|m| m.id == MethodId(id))
        .ok_or_else(Error::not_found)?;
    let question = format!("Delete {}?", method_name(&m));
    let action = format!("/security-info/methods/{id}/delete");
    Ok(super::confirm::ask(
        &csrf,
        super::confirm::Ask {
            title: "Delete method",
            question: &question,
            detail: "You will no longer be able to verify your identity with it. Deleting needs a recent sign-in with a second step.",
            action: &action,
            button: "Delete",
            cancel: "/security-info",
        },
    ))
}

/// "Remove" a device: asked first (the other device actions are not asked).
async fn device_confirm(
    State(state): State<AppState>,
    me: SignedIn,
    csrf: CsrfToken,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, Error> {
    if action != "remove" {
        return Err(Error::not_found());
    }
    let device = state
        .store
        .find_device(&DeviceId(id.clone()))
        .await?
        .filter(|d| d.user == me.user.id)
        .ok_or_else(Error::not_found)?;
    let question = format!("Remove {}?", device.name);
    let path = format!("/security-info/devices/{id}/remove");
    Ok(super::confirm::ask(
        &csrf,
        super::confirm::Ask {
            title: "Remove device",
            question: &question,
            detail: "Its sign-in requests, codes and phone sign-in stop working at once. To use it again, add it again from My security info.",
            action: &path,
            button: "Remove",
            cancel: "/security-info",
        },
    ))
}

async fn delete_method(
    State(state): State<AppState>,
    origin: Origin,
    Path(id): Path<i64>,
    Checked { me, .. }: Checked<FreshSecondStep>,
) -> Result<Response, Error> {
    if !security::delete_method(&state, &origin, &me.user, MethodId(id)).await? {
        return Err(Error::not_found());
    }
    Ok(see_other("/security-info?done=deleted"))
}

async fn default_page(
    State(state): State<AppState>,
    me: SignedIn,
    csrf: CsrfToken,
) -> Result<Response, Error> {
    let methods = state.store.list_methods(me.user.id).await?;
    if methods.is_empty() {
        return Ok(see_other("/security-info"));
    }
    let options = methods
        .iter()
        .map(|m| DefaultOption {
            id: m.id.0,
            name: method_name(m),
            added: fmt_time(m.created_at),
            selected: me.user.default_method == Some(m.id),
        })
        .collect();
    Ok(page(
        &csrf,
        StatusCode::OK,
        &DefaultMethodPage {
            csrf: &csrf.token,
            options,
        },
    ))
}

async fn default_submit(
    State(state): State<AppState>,
    me: SignedIn,
    origin: Origin,
    form: CsrfForm,
) -> Result<Response, Error> {
    let choose = || Error::bad_request("Choose one of your methods.");
    let id: i64 = form.text("method").parse().map_err(|_| choose())?;
    security::set_default_method(&state, &origin, &me.user, MethodId(id))
        .await
        .map_err(|_| choose())?;
    Ok(see_other("/security-info?done=default"))
}

/// Remove a device, turn its phone sign-in off, or allow it again after 10 wrong PINs.
/// Removing or allowing again needs a recent second step, like deleting a method.
async fn device_action(
    State(state): State<AppState>,
    me: SignedIn,
    origin: Origin,
    Path((id, action)): Path<(String, String)>,
    _form: CsrfForm,
) -> Result<Response, Error> {
    let action = DeviceAction::parse(&action).ok_or_else(Error::not_found)?;
    if action.needs_fresh_second_step() && !me.has_fresh_second_factor(&state) {
        return Ok(reauth_redirect("/security-info", true));
    }
    let device = state
        .store
        .find_device(&DeviceId(id))
        .await?
        .filter(|d| d.user == me.user.id)
        .ok_or_else(Error::not_found)?;
    if !action
        .apply(&state, &origin, &me.user, &device, &me.user.username)
        .await?
    {
        return Err(Error::not_found());
    }
    Ok(see_other(&format!(
        "/security-info?done={}",
        device_done(action)
    )))
}

/// "Turn on phone sign-in": the person confirms the app's request (after a fresh sign-in with
/// a second step: this is what makes a copied device key alone useless for phone sign-in).
async fn confirm_phone_sign_in(
    State(state): State<AppState>,
    me: SignedIn,
    origin: Origin,
    Path(id): Path<String>,
    _form: CsrfForm,
) -> Result<Response, Error> {
    if !me.has_fresh_second_factor(&state) {
        return Ok(reauth_redirect("/security-info", true));
    }
    let device = state
        .store
        .find_device(&DeviceId(id))
        .await?
        .filter(|d| d.user == me.user.id)
        .ok_or_else(Error::not_found)?;
    let done = if devices::confirm_phone_sign_in(&state, &origin, &me.user, &device).await? {
        "phone_sign_in_on"
    } else {
        "nothing_to_confirm"
    };
    Ok(see_other(&format!("/security-info?done={done}")))
}

fn password_form(
    csrf: &CsrfToken,
    me: &SignedIn,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    page(
        csrf,
        status,
        &ChangePasswordPage {
            csrf: &csrf.token,
            error,
            username: &me.user.username,
            min_length: sesame_core::password::MIN_LENGTH,
        },
    )
}

async fn password_page(me: SignedIn, csrf: CsrfToken) -> Response {
    password_form(&csrf, &me, StatusCode::OK, None)
}

/// "Change password": the current one, then the new one twice.
async fn password_submit(
    State(state): State<AppState>,
    me: SignedIn,
    origin: Origin,
    csrf: CsrfToken,
    form: CsrfForm,
) -> Result<Response, Error> {
    use crate::service::security::PasswordChange;
    use sesame_core::secret::SecretString;
    let new = form.text("new").to_string();
    if new != form.text("confirm") {
        return Ok(password_form(
            &csrf,
            &me,
            StatusCode::BAD_REQUEST,
            Some("The new passwords do not match."),
        ));
    }
    let current = SecretString::new(form.text("current").to_string());
    let changed =
        security::change_password(&state, &origin, &me, current, SecretString::new(new)).await?;
    let refused = |status, text: &str| Ok(password_form(&csrf, &me, status, Some(text)));
    match changed {
        PasswordChange::Changed { .. } => Ok(see_other("/security-info?done=password_changed")),
        PasswordChange::WrongCurrent => refused(
            StatusCode::UNAUTHORIZED,
            "Your current password is incorrect.",
        ),
        PasswordChange::Held(held) => {
            refused(StatusCode::TOO_MANY_REQUESTS, &held.message(state.now()))
        }
        PasswordChange::Refused(e) => refused(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}
