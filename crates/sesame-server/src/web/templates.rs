//! Every page, as an askama template (`templates/`): checked when the server is compiled, and
//! escaped by default, so no handler builds HTML by hand and nothing typed by a user or an
//! attacker reaches a page unescaped. One layout holds the page frame and style; forms include
//! the CSRF field (`parts/csrf.html`), pages their banner (`parts/error.html`,
//! `parts/notice.html`).

use super::fmt_time;
use askama::Template;
use axum::response::Html;
use sesame_core::UnixTime;
use sesame_store::Device;

/// The escaper of every `.html` template (see `askama.toml`): the entities these pages have
/// always used, safe in text and in quoted attribute values.
#[derive(Debug, Clone, Copy)]
pub struct HtmlEscaper;

impl askama::filters::Escaper for HtmlEscaper {
    fn write_escaped_str<W: std::fmt::Write>(&self, mut dest: W, s: &str) -> std::fmt::Result {
        let mut last = 0;
        for (i, c) in s.char_indices() {
            let entity = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                _ => continue,
            };
            dest.write_str(&s[last..i])?;
            dest.write_str(entity)?;
            last = i + 1;
        }
        dest.write_str(&s[last..])
    }
}

/// Renders a page. A template that fails to render (it cannot, short of a bug in a `Display`
/// impl) is an internal error: a 500 page rather than a half page.
pub fn render(t: &impl Template) -> Result<Html<String>, crate::error::Error> {
    t.render()
        .map(Html)
        .map_err(|e| crate::error::Error::internal(format!("a page could not be rendered: {e}")))
}

/// The last resort when even the error page cannot be rendered.
pub const UNRENDERED: &str =
    "<!doctype html><title>Error - Sesame</title><h1>Something went wrong</h1>";

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    /// Say how to set up HTTPS (see `web::https`).
    pub https_needed: bool,
}

// ---- Sign-in ----

#[derive(Template)]
#[template(path = "signin/username.html")]
pub struct UsernamePage<'a> {
    /// Say that signing in needs HTTPS at this address, and how to set it up.
    pub https_needed: bool,
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    pub next: Option<&'a str>,
    pub username: &'a str,
    pub max_username: usize,
    /// The application the person is signing in to, if one asked.
    pub application: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "signin/password.html")]
pub struct PasswordPage<'a> {
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    pub username: &'a str,
}

#[derive(Template)]
#[template(path = "signin/access_pass.html")]
pub struct AccessPassPage<'a> {
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    pub username: &'a str,
}

#[derive(Template)]
#[template(path = "signin/code.html")]
pub struct CodePage<'a> {
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    pub prompt: &'a str,
    /// The code was sent (a text): offer "Send a new code".
    pub resend: bool,
}

#[derive(Template)]
#[template(path = "signin/methods.html")]
pub struct MethodsPage<'a> {
    pub csrf: &'a str,
    /// (form value, what people read)
    pub options: Vec<(&'static str, String)>,
}

#[derive(Template)]
#[template(path = "security/phone.html")]
pub struct PhoneAddPage<'a> {
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    pub number: &'a str,
    pub changing: bool,
}

#[derive(Template)]
#[template(path = "security/office.html")]
pub struct OfficeAddPage<'a> {
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    pub number: &'a str,
    pub extension: &'a str,
    pub changing: bool,
}

#[derive(Template)]
#[template(path = "security/office_call.html")]
pub struct OfficeCallPage<'a> {
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    /// E.164 and extension, carried to the confirmation (the call proved this number).
    pub number: &'a str,
    pub extension: Option<&'a str>,
    pub masked: &'a str,
    /// The set-up's own token: the call's request is found by its hash.
    pub request: &'a str,
}

#[derive(Template)]
#[template(path = "security/phone_verify.html")]
pub struct PhoneVerifyPage<'a> {
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    /// E.164, carried to the confirmation (the code is bound to it).
    pub number: &'a str,
    pub masked: &'a str,
}

/// What the waiting page shows of the sign-in's latest request.
pub enum Waiting<'a> {
    Pending { number: &'a str, expires_in: i64 },
    Approved,
    NotApproved { message: &'a str, may_resend: bool },
    Refused { reason: &'a str },
    NoRequest,
}

#[derive(Template)]
#[template(path = "signin/waiting.html")]
pub struct WaitingPage<'a> {
    pub csrf: &'a str,
    pub username: &'a str,
    /// A call (to this phone, `••78`), not a notification.
    pub call_to: Option<&'a str>,
    /// Passwordless phone sign-in (else the second step after a password).
    pub phone_sign_in: bool,
    pub view: Waiting<'a>,
}

#[derive(Template)]
#[template(path = "signin/options.html")]
pub struct OptionsPage<'a> {
    pub csrf: &'a str,
    pub username: &'a str,
    pub app: bool,
}

// ---- Account and set-up ----

#[derive(Template)]
#[template(path = "account/account.html")]
pub struct AccountPage<'a> {
    pub csrf: &'a str,
    pub display_name: &'a str,
    pub username: &'a str,
    pub is_admin: bool,
}

#[derive(Template)]
#[template(path = "account/signed_out.html")]
pub struct SignedOutPage;

#[derive(Template)]
#[template(path = "setup.html")]
pub struct SetupPage<'a> {
    /// Say that set-up needs HTTPS at this address, and how.
    pub https_needed: bool,
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    pub token: &'a str,
    /// What was typed, kept after a mistake (the passwords never are).
    pub username: &'a str,
    pub display_name: &'a str,
}

// ---- My security info ----

pub struct MethodRow {
    pub id: i64,
    pub name: String,
    pub added: String,
    pub last_used: String,
    /// Methods of a registered app go with the app: removed with the device.
    pub on_device: bool,
}

pub struct DeviceRow {
    /// Where the row's actions post (`{base}/{id}/{action}`).
    pub base: String,
    pub id: String,
    pub name: String,
    pub added: String,
    pub last_used: String,
    pub phone_sign_in: &'static str,
    pub actions: Vec<DeviceAction>,
}

/// A button in a device row, posting to `{base}/{id}/{path}`.
pub struct DeviceAction {
    pub path: &'static str,
    pub label: &'static str,
    /// Shown beside the button: what to check before pressing it.
    pub note: Option<String>,
}

impl DeviceAction {
    fn new(path: &'static str, label: &'static str) -> Self {
        DeviceAction {
            path,
            label,
            note: None,
        }
    }
}

#[derive(Template)]
#[template(path = "security/overview.html")]
pub struct SecurityInfoPage<'a> {
    pub csrf: &'a str,
    pub notice: Option<&'a str>,
    pub error: Option<&'a str>,
    pub default_method: &'a str,
    pub methods: Vec<MethodRow>,
    pub devices: Vec<DeviceRow>,
}

#[derive(Template)]
#[template(path = "security/add.html")]
pub struct AddMethodPage {
    /// (link, what people read)
    pub choices: Vec<(&'static str, &'static str)>,
}

#[derive(Template)]
#[template(path = "security/totp.html")]
pub struct TotpSetupPage<'a> {
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    pub qr: &'a str,
    pub secret: &'a str,
    pub uri: &'a str,
    pub enrollment: &'a str,
}

pub struct DefaultOption {
    pub id: i64,
    pub name: String,
    pub added: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "security/password.html")]
pub struct ChangePasswordPage<'a> {
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    pub username: &'a str,
    pub min_length: usize,
}

#[derive(Template)]
#[template(path = "security/default.html")]
pub struct DefaultMethodPage<'a> {
    pub csrf: &'a str,
    pub options: Vec<DefaultOption>,
}

#[derive(Template)]
#[template(path = "security/app.html")]
pub struct AddAppPage<'a> {
    pub qr: &'a str,
    pub link: &'a str,
    pub status_id: &'a str,
}

/// A "Last used" cell's value (its column, or its label on narrow screens, names it).
pub fn last_used(t: Option<i64>) -> String {
    t.map(fmt_time).unwrap_or_else(|| "Not used yet".into())
}

/// What a person sees of a device's phone sign-in.
fn phone_sign_in_text(d: &Device, now: UnixTime) -> &'static str {
    if d.pin_key_disabled_at.is_some() {
        "Turned off after 10 wrong PINs"
    } else if d.phone_sign_in_ready() {
        "On"
    } else if crate::service::devices::awaiting_confirmation(d, now) {
        "Asked for by the app: waiting for your confirmation"
    } else {
        "Off"
    }
}

/// The rows of a devices table, with their actions under `base` (My security info and the
/// admin console show the same rows). Only the `owner` may confirm the app's request to turn
/// phone sign-in on: the confirmation stands for the person.
pub fn device_rows(devices: &[Device], base: &str, now: UnixTime, owner: bool) -> Vec<DeviceRow> {
    devices
        .iter()
        .map(|d| {
            let mut actions = Vec::new();
            if owner && crate::service::devices::awaiting_confirmation(d, now) {
                // The request may come from a copy of the device key: the person confirms
                // only if the request's random code is the one their app shows.
                actions.push(DeviceAction {
                    note: d
                        .phone_sign_in_code
                        .as_ref()
                        .map(|code| format!("Confirm only if your app shows code {code}")),
                    ..DeviceAction::new("confirm-phone-sign-in", "Turn on phone sign-in")
                });
            }
            if d.pin_key_disabled_at.is_some() {
                actions.push(DeviceAction::new(
                    "allow-again",
                    "Allow phone sign-in again",
                ));
            } else if d.phone_sign_in_at.is_some() {
                actions.push(DeviceAction::new(
                    "phone-sign-in-off",
                    "Turn off phone sign-in",
                ));
            }
            actions.push(DeviceAction::new("remove", "Remove"));
            DeviceRow {
                base: base.to_string(),
                id: d.id.0.clone(),
                name: d.name.clone(),
                added: fmt_time(d.created_at),
                last_used: last_used(d.last_used_at),
                phone_sign_in: phone_sign_in_text(d, now),
                actions,
            }
        })
        .collect()
}

// ---- Admin console ----

#[derive(Template)]
#[template(path = "admin/overview.html")]
pub struct AdminPage {
    pub notice: Option<&'static str>,
    /// (user page, username, when) of users whose fraud report blocks their phone requests.
    pub reported: Vec<(String, String, String)>,
    /// Texts and calls go to the development outbox, not to phones.
    pub outbox: bool,
}

pub struct UserRow {
    pub path: String,
    pub username: String,
    pub display_name: String,
    pub admin: &'static str,
    pub blocked: &'static str,
    pub push_blocked: String,
    pub last_signin: String,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
pub struct UsersPage<'a> {
    pub csrf: &'a str,
    pub notice: Option<&'a str>,
    pub flash_error: Option<&'a str>,
    pub error: Option<&'a str>,
    /// Open fraud reports, newest first.
    pub reports: Vec<FraudReport>,
    pub users: Vec<UserRow>,
    pub typed_username: &'a str,
    pub typed_display_name: &'a str,
    pub typed_admin: bool,
}

/// A user who said a sign-in request was not theirs ("Deny and report").
pub struct FraudReport {
    pub path: String,
    pub username: String,
    pub at: String,
}

pub enum UserAction {
    Form {
        path: String,
        label: &'static str,
        note: &'static str,
    },
    /// A page of its own (a form with fields).
    Link {
        path: String,
        label: &'static str,
        note: &'static str,
    },
    Note(&'static str),
}

pub struct AdminMethodRow {
    pub kind: &'static str,
    pub label: String,
    pub added: String,
    pub last_used: String,
}

pub struct LogRow {
    pub time: String,
    pub username: String,
    pub event: String,
    pub method: String,
    pub result: &'static str,
    pub reason: String,
    pub ip: String,
    pub browser: String,
}

#[derive(Template)]
#[template(path = "admin/password.html")]
pub struct AdminPasswordPage<'a> {
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    pub username: &'a str,
    pub action: &'a str,
    pub back: &'a str,
    pub min_length: usize,
}

#[derive(Template)]
#[template(path = "admin/user.html")]
pub struct UserPage<'a> {
    pub csrf: &'a str,
    pub notice: Option<&'a str>,
    pub flash_error: Option<&'a str>,
    pub username: &'a str,
    pub details: Vec<(&'static str, String)>,
    /// (group page, name)
    pub groups: Vec<(String, String)>,
    pub actions: Vec<UserAction>,
    pub methods: Vec<AdminMethodRow>,
    pub devices: Vec<DeviceRow>,
    pub entries: Vec<LogRow>,
    /// The username as a query value.
    pub log_user: String,
    /// The user's Temporary Access Pass, as words ("One-time, valid until …"), if one is set.
    pub access_pass: Option<String>,
    /// Where its forms post.
    pub access_pass_path: String,
}

#[derive(Template)]
#[template(path = "admin/groups.html")]
pub struct GroupsPage<'a> {
    pub csrf: &'a str,
    pub notice: Option<&'a str>,
    pub flash_error: Option<&'a str>,
    pub error: Option<&'a str>,
    /// (group page, name, members)
    pub groups: Vec<(String, String, i64)>,
    pub typed: &'a str,
}

pub struct MemberRow {
    pub path: String,
    pub username: String,
    pub display_name: String,
    /// Where "Remove" posts.
    pub remove: String,
}

#[derive(Template)]
#[template(path = "admin/group.html")]
pub struct GroupPage<'a> {
    pub csrf: &'a str,
    pub notice: Option<&'a str>,
    pub flash_error: Option<&'a str>,
    pub error: Option<&'a str>,
    pub name: &'a str,
    pub base: &'a str,
    pub in_policy: bool,
    pub members: Vec<MemberRow>,
    pub typed: &'a str,
}

#[derive(Template)]
#[template(path = "admin/group_remove.html")]
pub struct GroupRemovePage<'a> {
    pub csrf: &'a str,
    pub name: &'a str,
    pub base: &'a str,
    pub members: usize,
    pub in_policy: bool,
}

pub struct ApplicationRow {
    pub path: String,
    pub name: String,
    pub client_id: String,
    pub kind: &'static str,
    pub require_mfa: &'static str,
    pub first_party: &'static str,
}

/// The application form's values: what is registered, or what was typed when it was refused
/// (kept as typed, so nothing has to be typed again).
pub struct ApplicationForm {
    pub name: String,
    /// One URI a line, as in the textarea.
    pub redirect_uris: String,
    pub post_logout_redirect_uris: String,
    pub public: bool,
    pub first_party: bool,
    pub require_mfa: bool,
    pub client_credentials: bool,
    pub id_token_alg: String,
}

impl ApplicationForm {
    /// The ID token algorithms to choose from, and whether each is the chosen one.
    pub fn algs(&self) -> Vec<(&'static str, bool)> {
        crate::service::oidc::keys::Alg::ALL
            .into_iter()
            .map(|a| (a.as_str(), a.as_str() == self.id_token_alg))
            .collect()
    }
}

#[derive(Template)]
#[template(path = "admin/applications.html")]
pub struct ApplicationsPage<'a> {
    pub csrf: &'a str,
    pub notice: Option<&'a str>,
    pub flash_error: Option<&'a str>,
    pub error: Option<&'a str>,
    pub applications: Vec<ApplicationRow>,
    pub form: &'a ApplicationForm,
    /// The form registers a new application (public or confidential is chosen only then).
    pub adding: bool,
    pub max_name: usize,
}

#[derive(Template)]
#[template(path = "admin/application.html")]
pub struct ApplicationPage<'a> {
    pub csrf: &'a str,
    pub notice: Option<&'a str>,
    pub flash_error: Option<&'a str>,
    pub error: Option<&'a str>,
    /// The registered name (the form may hold a refused one).
    pub name: &'a str,
    pub base: &'a str,
    pub public: bool,
    /// The client secret, only on the response that made it (adding, rotating): Sesame keeps
    /// a hash alone, so it can never be shown again.
    pub secret: Option<&'a str>,
    /// (what, its values: one a line)
    pub details: Vec<(&'static str, Vec<String>)>,
    pub form: &'a ApplicationForm,
    pub adding: bool,
    pub max_name: usize,
}

/// A step between a link and a change that breaks a running application (a new secret,
/// removing it): the change itself is the form post on this page.
#[derive(Template)]
#[template(path = "admin/application_confirm.html")]
pub struct ApplicationConfirmPage<'a> {
    pub csrf: &'a str,
    pub title: &'static str,
    pub name: &'a str,
    pub client_id: &'a str,
    pub explain: &'static str,
    pub action: &'a str,
    pub button: &'static str,
    pub back: &'a str,
}

/// Who must pass two-step verification, as the policy form's radio buttons say it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum MfaChoice {
    All,
    Groups,
    Nobody,
}

/// The policy form's values (see `web::admin::policy`).
pub struct PolicyFormView {
    pub version: i64,
    pub enabled: bool,
    pub targets_all: bool,
    pub all_mode: sesame_core::policy::AuthenticatorMode,
    pub digits: String,
    pub lifetime: String,
    pub pin_required: bool,
    pub show_app_name: bool,
    pub show_location: bool,
    pub mfa: MfaChoice,
}

pub struct PolicyGroupRow {
    pub id: i64,
    pub name: String,
    pub targeted: bool,
    pub mode: sesame_core::policy::AuthenticatorMode,
    pub mfa: bool,
}

#[derive(Template)]
#[template(path = "admin/policy.html")]
pub struct PolicyPage<'a> {
    pub csrf: &'a str,
    pub notice: Option<&'a str>,
    pub flash_error: Option<&'a str>,
    pub error: Option<&'a str>,
    /// The policy as typed would leave the administrator saving it without an allowed
    /// method: the form asks them to confirm.
    pub confirm_lockout: bool,
    pub summary: Vec<(String, String)>,
    pub version: i64,
    pub form: PolicyFormView,
    pub groups: Vec<PolicyGroupRow>,
    /// Text messages: on, for all users (else the ticked groups), and per group
    /// (id, name, ticked).
    pub sms_enabled: bool,
    pub sms_all: bool,
    pub sms_groups: Vec<(i64, String, bool)>,
    /// Phone calls, as for text messages.
    pub voice_enabled: bool,
    pub voice_all: bool,
    pub voice_groups: Vec<(i64, String, bool)>,
    pub modes: Vec<(sesame_core::policy::AuthenticatorMode, &'static str)>,
    pub max_lifetime: i64,
}

#[derive(Template)]
#[template(path = "admin/log.html")]
pub struct LogPage<'a> {
    pub error: Option<&'a str>,
    pub q_user: &'a str,
    pub q_result: &'a str,
    pub q_method: &'a str,
    pub q_from: &'a str,
    pub q_to: &'a str,
    pub q_hours: &'a str,
    pub results: Vec<(&'static str, &'static str)>,
    pub methods: Vec<(&'static str, &'static str)>,
    pub entries: Vec<LogRow>,
    pub limit: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_are_escaped() {
        let page = UsernamePage {
            https_needed: false,
            csrf: "t\"ok",
            error: Some("<script>alert('x')</script>"),
            next: Some("/a?b=1&c=\"2\""),
            username: "\"><img src=x onerror=alert(1)>",
            max_username: 256,
            application: Some("<b>App</b>"),
        }
        .render()
        .unwrap();
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(page.contains("value=\"/a?b=1&amp;c=&quot;2&quot;\""));
        assert!(page.contains("value=\"&quot;&gt;&lt;img src=x onerror=alert(1)&gt;\""));
        assert!(page.contains("name=\"csrf\" value=\"t&quot;ok\""));
        assert!(!page.contains("<script>") && !page.contains("<img"));
        let mut s = String::new();
        askama::filters::Escaper::write_escaped_str(&HtmlEscaper, &mut s, "a&b<c>d\"e'f—g")
            .unwrap();
        assert_eq!(s, "a&amp;b&lt;c&gt;d&quot;e&#39;f—g");
    }

    #[test]
    fn the_layout_frames_every_page() {
        let page = SignedOutPage.render().unwrap();
        assert!(page.starts_with("<!doctype html><html lang=\"en\"><head>"));
        assert!(page.contains("<title>Signed out - Sesame</title>"));
        assert!(page.contains("<main class=\"\"><div class=\"brand\">Sesame</div><h1>"));
        assert!(page.ends_with("</main></body></html>"));
        let wide = AddMethodPage { choices: vec![] }.render().unwrap();
        assert!(wide.contains("<main class=\"wide\">"));
    }
}

// ---- OpenID Connect ----

#[derive(Template)]
#[template(path = "oidc/consent.html")]
pub struct ConsentPage<'a> {
    pub csrf: &'a str,
    pub username: &'a str,
    pub app: &'a str,
    pub asks: Vec<&'static str>,
    pub request: &'a str,
}

#[derive(Template)]
#[template(path = "oidc/notice.html")]
pub struct NoticePage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub link: Option<(&'a str, &'a str)>,
}

#[derive(Template)]
#[template(path = "oidc/logout.html")]
pub struct LogoutPage<'a> {
    pub csrf: &'a str,
    pub app: Option<&'a str>,
    pub carry: Vec<(&'static str, String)>,
}

/// Sends the browser on to an application after a form post: a page that navigates by itself,
/// because a form post's redirects must stay on Sesame (`form-action 'self'`).
#[derive(Template)]
#[template(path = "oidc/returning.html")]
pub struct ReturningPage<'a> {
    pub app: &'a str,
    pub url: &'a str,
}
