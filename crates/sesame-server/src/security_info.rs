//! "My security info": the user's methods, default method and devices.
//!
//! Adding a method needs a recent sign-in; removing one needs a recent sign-in that included a
//! second step, so a stolen idle session cannot strip an account's protection.

use crate::audit::{self, Entry};
use crate::error::AppError;
use crate::session::{reauth_redirect, SignedIn};
use crate::web::{esc, fmt_time, layout_with_class, page, see_other, Client, CsrfForm, CsrfToken};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use sesame_core::secret::SecretBytes;
use sesame_core::{totp, MethodId};
use sesame_store::{AuditResult, Device, Method};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/security-info", get(overview))
        .route("/security-info/add", get(add_choose))
        .route(
            "/security-info/add/totp",
            get(add_totp_page).post(add_totp_submit),
        )
        .route("/security-info/methods/{id}/delete", post(delete_method))
        .route(
            "/security-info/default",
            get(default_page).post(default_submit),
        )
        .route("/security-info/add/app", get(add_app_page))
        .route("/security-info/add/app/status", get(add_app_status))
        .route("/security-info/devices/{id}/remove", post(remove_device))
        .route(
            "/security-info/devices/{id}/phone-sign-in-off",
            post(phone_sign_in_off),
        )
        .route("/security-info/devices/{id}/allow-again", post(allow_again))
        .route("/static/activation.js", get(activation_script))
}

/// How long a started authenticator set-up stays valid.
const ENROLLMENT_SECS: i64 = 600;

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
        "default" => Some("Default method changed."),
        "device_removed" => Some("Device removed. Its sign-in requests and codes no longer work."),
        "phone_sign_in_off" => Some("Phone sign-in turned off for that device."),
        "allowed_again" => Some("Phone sign-in can be turned on again for that device: open the Authenticator app and turn on phone sign-in (you will set up the PIN key again)."),
        _ => None,
    }
}

fn method_name(m: &Method) -> String {
    format!("{} — {}", m.kind.display_name(), m.label)
}

async fn overview(
    State(state): State<AppState>,
    me: SignedIn,
    csrf: CsrfToken,
    q: Query<Flash>,
) -> Result<Response, AppError> {
    let methods = state.store.list_methods(me.user.id).await?;
    let mut flash = flash_text(q.done.as_deref())
        .map(|t| format!("<p role=\"status\">{}</p>", esc(t)))
        .unwrap_or_default();
    if q.setup.is_some() && me.must_set_up_second_step(&state).await? {
        flash.push_str("<p class=\"error\" role=\"alert\">Your organisation requires two-step verification. Add a method to continue.</p>");
    }
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
    let rows: String = methods
        .iter()
        .map(|m| {
            // Methods of a registered app go with the app: remove the device below.
            let action = if m.device.is_some() {
                "<span class=\"note\">Remove the device below</span>".to_string()
            } else {
                format!(
                    "<form class=\"inline\" method=\"post\" action=\"/security-info/methods/{}/delete\">{}\
                     <button type=\"submit\" class=\"link\" aria-label=\"Delete {}\">Delete</button></form>",
                    m.id,
                    csrf.hidden_field(),
                    esc(&method_name(m)),
                )
            };
            format!(
                "<tr><td>{}</td><td>Added {}</td><td>{}</td><td>{action}</td></tr>",
                esc(&method_name(m)),
                fmt_time(m.created_at),
                m.last_used_at.map(|t| format!("Last used {}", fmt_time(t))).unwrap_or_else(|| "Not used yet".into()),
            )
        })
        .collect();
    let devices = state.store.list_devices(me.user.id).await?;
    let device_rows: String = devices
        .iter()
        .map(|d| device_row(d, &csrf, "/security-info/devices"))
        .collect();
    let devices_html = if devices.is_empty() {
        "<p>No devices registered.</p>".to_string()
    } else {
        format!("<table id=\"devices\"><thead><tr><th>Device</th><th>Added</th><th>Last used</th><th>Phone sign-in</th><th></th></tr></thead><tbody>{device_rows}</tbody></table>")
    };
    let table = if methods.is_empty() {
        "<p>You have not added any verification method yet. Add one to protect your account with two-step verification.</p>".to_string()
    } else {
        format!("<table><thead><tr><th>Method</th><th>Added</th><th>Last used</th><th></th></tr></thead><tbody>{rows}</tbody></table>")
    };
    let change = if methods.is_empty() {
        String::new()
    } else {
        " <a href=\"/security-info/default\">Change</a>".into()
    };
    let body = format!(
        "<h1>My security info</h1>{flash}<p>These are the methods you use to sign in to your account or reset your password.</p>\
         <p><strong>Default method:</strong> {}{change}</p>\
         <p><a href=\"/security-info/add\">Add method</a></p>{table}\
         <h2>Devices</h2>{devices_html}<p><a href=\"/account\">Back to My account</a></p>",
        esc(&default)
    );
    Ok(page(
        &csrf,
        StatusCode::OK,
        layout_with_class("My security info", &body, "wide"),
    ))
}

async fn add_choose(State(state): State<AppState>, me: SignedIn, csrf: CsrfToken) -> Response {
    if !me.is_recent(&state) {
        return reauth_redirect("/security-info/add", true);
    }
    let body = "<h1>Add a method</h1><p>Which method would you like to add?</p>\
        <ul class=\"options\"><li><a href=\"/security-info/add/app\">Sesame Authenticator app (sign-in requests and codes)</a></li>\
        <li><a href=\"/security-info/add/totp\">Authenticator app (verification code)</a></li></ul>\
        <p><a href=\"/security-info\">Cancel</a></p>";
    page(
        &csrf,
        StatusCode::OK,
        layout_with_class("Add method", body, "wide"),
    )
}

fn qr_data_uri(text: &str) -> Result<String, AppError> {
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| AppError::internal(format!("QR code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    Ok(format!(
        "data:image/svg+xml;base64,{}",
        STANDARD.encode(svg)
    ))
}

fn grouped(secret_b32: &str) -> String {
    secret_b32
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn totp_setup_html(
    state: &AppState,
    me: &SignedIn,
    csrf: &CsrfToken,
    enrollment: &str,
    secret: &SecretBytes,
    message: Option<&str>,
) -> Result<String, AppError> {
    let uri = totp::otpauth_uri(&state.config.issuer, &me.user.username, secret);
    let msg = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)))
        .unwrap_or_default();
    Ok(format!(
        "<h1>Set up your authenticator app</h1>\
         <p>Scan the QR code with an authenticator app (Sesame Authenticator, or any app that supports verification codes).</p>\
         <p><img id=\"totp-qr\" src=\"{}\" width=\"220\" height=\"220\" alt=\"QR code for your authenticator app\"></p>\
         <p>Can't scan the image? Enter this secret key in your app instead (time-based, 6 digits, every 30 seconds):</p>\
         <p class=\"secret\" id=\"totp-secret\">{}</p>\
         <details><summary>Setup link</summary><p class=\"secret\" id=\"totp-uri\">{}</p></details>\
         {msg}<form method=\"post\" action=\"/security-info/add/totp\">{}\
         <input type=\"hidden\" name=\"enrollment\" value=\"{}\">\
         <label for=\"code\">Code</label>\
         <input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" maxlength=\"12\" required>\
         <p class=\"note\">Enter the 6-digit code the app shows, to check that it is set up right.</p>\
         <button type=\"submit\">Verify</button></form><p><a href=\"/security-info\">Cancel</a></p>",
        qr_data_uri(&uri)?,
        esc(&grouped(&totp::secret_base32(secret))),
        esc(&uri),
        csrf.hidden_field(),
        esc(enrollment),
    ))
}

async fn add_totp_page(
    State(state): State<AppState>,
    me: SignedIn,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    if !me.is_recent(&state) {
        return Ok(reauth_redirect("/security-info/add/totp", true));
    }
    let mut raw = vec![0u8; totp::SECRET_LEN];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let secret = SecretBytes::new(raw);
    let enrollment = state
        .store
        .create_totp_enrollment(me.user.id, &secret, state.now() + ENROLLMENT_SECS)
        .await?;
    let html = totp_setup_html(&state, &me, &csrf, &enrollment, &secret, None)?;
    Ok(page(
        &csrf,
        StatusCode::OK,
        layout_with_class("Set up your authenticator app", &html, "wide"),
    ))
}

async fn add_totp_submit(
    State(state): State<AppState>,
    me: SignedIn,
    client: Client,
    csrf: CsrfToken,
    form: CsrfForm,
) -> Result<Response, AppError> {
    if !me.is_recent(&state) {
        return Ok(reauth_redirect("/security-info/add/totp", true));
    }
    let now = state.now();
    let enrollment = form.text("enrollment");
    let expired = || {
        AppError::BadRequest("This set-up has expired. Start again from My security info.".into())
    };
    let secret = state
        .store
        .find_totp_enrollment(me.user.id, enrollment, now)
        .await?
        .ok_or_else(expired)?;
    let retry = |msg: &str| -> Result<Response, AppError> {
        let html = totp_setup_html(&state, &me, &csrf, enrollment, &secret, Some(msg))?;
        Ok(page(
            &csrf,
            StatusCode::BAD_REQUEST,
            layout_with_class("Set up your authenticator app", &html, "wide"),
        ))
    };
    let code = match totp::parse_code(form.text("code")) {
        Ok(c) => c,
        Err(e) => return retry(&e.to_string()),
    };
    let Some(step) = totp::matching_step(&secret, &code, now) else {
        return retry("That code didn't work. Check that the app shows this account and enter its current code.");
    };
    // Taking the enrolment is the single-use point: a replayed confirmation finds nothing.
    let secret = state
        .store
        .take_totp_enrollment(me.user.id, enrollment, now)
        .await?
        .ok_or_else(expired)?;
    let method = state
        .store
        .create_totp_method(me.user.id, "Authenticator app", &secret, step, now)
        .await?;
    if me.user.default_method.is_none() {
        state
            .store
            .update_default_method(me.user.id, Some(method.id))
            .await?;
    }
    audit::record(
        &state,
        &client,
        Entry {
            user: Some(me.user.id),
            username: &me.user.username,
            event: "method_added",
            method: Some("totp"),
            result: AuditResult::Success,
            reason: None,
        },
    )
    .await;
    Ok(see_other("/security-info?done=added"))
}

async fn delete_method(
    State(state): State<AppState>,
    me: SignedIn,
    client: Client,
    Path(id): Path<i64>,
    _form: CsrfForm,
) -> Result<Response, AppError> {
    if !me.has_fresh_second_factor(&state) {
        return Ok(reauth_redirect("/security-info", true));
    }
    let methods = state.store.list_methods(me.user.id).await?;
    let Some(m) = methods.iter().find(|m| m.id == MethodId(id)) else {
        return Err(AppError::NotFound);
    };
    if !state.store.delete_method(me.user.id, m.id).await? {
        return Err(AppError::NotFound);
    }
    // A new default: the oldest remaining method.
    if me.user.default_method == Some(m.id) {
        let next = methods.iter().find(|x| x.id != m.id).map(|x| x.id);
        state.store.update_default_method(me.user.id, next).await?;
    }
    audit::record(
        &state,
        &client,
        Entry {
            user: Some(me.user.id),
            username: &me.user.username,
            event: "method_removed",
            method: Some(m.kind.as_str()),
            result: AuditResult::Success,
            reason: None,
        },
    )
    .await;
    Ok(see_other("/security-info?done=deleted"))
}

async fn default_page(
    State(state): State<AppState>,
    me: SignedIn,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let methods = state.store.list_methods(me.user.id).await?;
    if methods.is_empty() {
        return Ok(see_other("/security-info"));
    }
    let options: String = methods
        .iter()
        .map(|m| {
            let sel = if me.user.default_method == Some(m.id) {
                " selected"
            } else {
                ""
            };
            format!(
                "<option value=\"{}\"{sel}>{} (added {})</option>",
                m.id,
                esc(&method_name(m)),
                fmt_time(m.created_at)
            )
        })
        .collect();
    let body = format!(
        "<h1>Change default method</h1><p>Which method do you want to use to sign in?</p>\
         <form method=\"post\" action=\"/security-info/default\">{}<label for=\"method\">Default method</label>\
         <select id=\"method\" name=\"method\">{options}</select><button type=\"submit\">Confirm</button></form>\
         <p><a href=\"/security-info\">Cancel</a></p>",
        csrf.hidden_field()
    );
    Ok(page(
        &csrf,
        StatusCode::OK,
        layout_with_class("Change default method", &body, "wide"),
    ))
}

async fn default_submit(
    State(state): State<AppState>,
    me: SignedIn,
    client: Client,
    form: CsrfForm,
) -> Result<Response, AppError> {
    let id: i64 = form
        .text("method")
        .parse()
        .map_err(|_| AppError::BadRequest("Choose one of your methods.".into()))?;
    state
        .store
        .update_default_method(me.user.id, Some(MethodId(id)))
        .await
        .map_err(|_| AppError::BadRequest("Choose one of your methods.".into()))?;
    audit::record(
        &state,
        &client,
        Entry {
            user: Some(me.user.id),
            username: &me.user.username,
            event: "default_method_changed",
            method: None,
            result: AuditResult::Success,
            reason: None,
        },
    )
    .await;
    Ok(see_other("/security-info?done=default"))
}

/// The address the app should reach: the configured public URL, else this request's host
/// (plain HTTP is meant for loopback only).
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(b) = &state.config.public_base_url {
        return b.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8080");
    format!("http://{host}")
}

async fn add_app_page(
    State(state): State<AppState>,
    me: SignedIn,
    headers: HeaderMap,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    if !me.is_recent(&state) {
        return Ok(reauth_redirect("/security-info/add/app", true));
    }
    // 256 random bits, 10 minutes, single use (DESIGN §4 asks for at least 112).
    let code = crate::web::random_token();
    let hash = crate::web::token_hash(&code);
    let expires = state.now() + crate::device_api::ACTIVATION_SECS;
    state
        .store
        .create_activation(me.user.id, &hash, expires)
        .await?;
    let link = sesame_proto::device::activation_link(&base_url(&state, &headers), &code);
    let status_id = data_encoding::HEXLOWER.encode(&hash);
    let body = format!(
        "<h1>Set up the Sesame Authenticator app</h1>\
         <p>Scan the QR code with Sesame Authenticator, or add the link below in the app:</p>\
         <p><img id=\"activation-qr\" src=\"{}\" width=\"220\" height=\"220\" alt=\"QR code to add your account to Sesame Authenticator\"></p>\
         <p class=\"secret\" id=\"activation-link\">{}</p>\
         <p class=\"note\">On a computer: <code>sesame-authenticator add '&lt;the link&gt;'</code>. The link works once, for 10 minutes.</p>\
         <p id=\"activation-status\" role=\"status\" data-id=\"{status_id}\">Waiting for the app…</p>\
         <p><a href=\"/security-info\">Done</a></p><script src=\"/static/activation.js\"></script>",
        qr_data_uri(&link)?,
        esc(&link),
    );
    Ok(page(
        &csrf,
        StatusCode::OK,
        layout_with_class("Set up the Sesame Authenticator app", &body, "wide"),
    ))
}

#[derive(Deserialize)]
struct StatusQuery {
    id: String,
}

async fn add_app_status(
    State(state): State<AppState>,
    me: SignedIn,
    q: Query<StatusQuery>,
) -> Result<Response, AppError> {
    let hash = data_encoding::HEXLOWER
        .decode(q.id.as_bytes())
        .map_err(|_| AppError::NotFound)?;
    let done = state
        .store
        .find_activation_device(me.user.id, &hash)
        .await?
        .ok_or(AppError::NotFound)?;
    let name = match &done {
        Some(id) => state.store.find_device(id).await?.map(|d| d.name),
        None => None,
    };
    Ok(axum::Json(serde_json::json!({ "done": done.is_some(), "device": name })).into_response())
}

const ACTIVATION_JS: &str = r#"(function () {
  var el = document.getElementById('activation-status');
  if (!el) return;
  function poll() {
    fetch('/security-info/add/app/status?id=' + encodeURIComponent(el.dataset.id), { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (s.done) { el.textContent = 'Your app is ready: ' + s.device + ' was added.'; return; }
        setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  poll();
})();
"#;

async fn activation_script() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        )],
        ACTIVATION_JS,
    )
        .into_response()
}

/// What a person sees of a device's phone sign-in.
pub(crate) fn phone_sign_in_text(d: &Device) -> &'static str {
    if d.pin_key_disabled_at.is_some() {
        "Turned off after 10 wrong PINs"
    } else if d.phone_sign_in_ready() {
        "On"
    } else {
        "Off"
    }
}

/// One row of a devices table, with its actions under `base` (My security info or the admin
/// console use the same rows).
pub(crate) fn device_row(d: &Device, csrf: &CsrfToken, base: &str) -> String {
    let button = |action: &str, label: &str| {
        format!(
            "<form class=\"inline\" method=\"post\" action=\"{base}/{}/{action}\">{}\
             <button type=\"submit\" class=\"link\" aria-label=\"{label} ({})\">{label}</button></form>",
            esc(&d.id),
            csrf.hidden_field(),
            esc(&d.name),
        )
    };
    let mut actions = String::new();
    if d.pin_key_disabled_at.is_some() {
        actions.push_str(&button("allow-again", "Allow phone sign-in again"));
    } else if d.phone_sign_in_at.is_some() {
        actions.push_str(&button("phone-sign-in-off", "Turn off phone sign-in"));
    }
    actions.push_str(&button("remove", "Remove"));
    format!(
        "<tr><td>{}</td><td>Added {}</td><td>{}</td><td>{}</td><td>{actions}</td></tr>",
        esc(&d.name),
        fmt_time(d.created_at),
        d.last_used_at
            .map(|t| format!("Last used {}", fmt_time(t)))
            .unwrap_or_else(|| "Not used yet".into()),
        phone_sign_in_text(d),
    )
}

/// The user's own device, or 404.
async fn own_device(
    state: &AppState,
    user: &sesame_store::User,
    id: &str,
) -> Result<Device, AppError> {
    state
        .store
        .find_device(id)
        .await?
        .filter(|d| d.user == user.id)
        .ok_or(AppError::NotFound)
}

async fn phone_sign_in_off(
    State(state): State<AppState>,
    me: SignedIn,
    client: Client,
    Path(id): Path<String>,
    _form: CsrfForm,
) -> Result<Response, AppError> {
    let d = own_device(&state, &me.user, &id).await?;
    crate::device_api::turn_off_phone_sign_in(&state, &client, &me.user, &d, &me.user.username)
        .await?;
    Ok(see_other("/security-info?done=phone_sign_in_off"))
}

/// After 10 wrong PINs: forget the PIN key so the app can register a new one. Needs a recent
/// second step, like any change that lets a new way to sign in.
async fn allow_again(
    State(state): State<AppState>,
    me: SignedIn,
    client: Client,
    Path(id): Path<String>,
    _form: CsrfForm,
) -> Result<Response, AppError> {
    if !me.has_fresh_second_factor(&state) {
        return Ok(reauth_redirect("/security-info", true));
    }
    let d = own_device(&state, &me.user, &id).await?;
    crate::device_api::reset_pin_key(&state, &client, &me.user, &d, &me.user.username).await?;
    Ok(see_other("/security-info?done=allowed_again"))
}

async fn remove_device(
    State(state): State<AppState>,
    me: SignedIn,
    client: Client,
    Path(id): Path<String>,
    _form: CsrfForm,
) -> Result<Response, AppError> {
    // Removing a way to sign in needs a recent second step, like deleting a method.
    if !me.has_fresh_second_factor(&state) {
        return Ok(reauth_redirect("/security-info", true));
    }
    if !crate::device_api::remove_device(&state, &client, &me.user, &id).await? {
        return Err(AppError::NotFound);
    }
    Ok(see_other("/security-info?done=device_removed"))
}
