//! Applications (OpenID Connect clients): the list, registering one, one application's page,
//! and the changes to it. Each change is the service call its `sesame client` twin makes.
//!
//! A client secret is shown once, in the response to the post that made it (adding,
//! rotating): never in a URL or behind a redirect, where a browser's history, a proxy's log or
//! a `Referer` could keep it. Sesame stores only its hash, so no page can show it again.

use super::{seg, yes_no, Flash};
use crate::error::Error;
use crate::service::oidc::clients::{self, ClientError, NewClient};
use crate::service::oidc::keys::Alg;
use crate::service::{Admin, Origin};
use crate::web::extract::{Admin as AdminUser, Checked, RecentAdmin, SignedIn};
use crate::web::templates::{
    ApplicationConfirmPage, ApplicationForm, ApplicationPage, ApplicationRow, ApplicationsPage,
};
use crate::web::{fmt_time, page, see_other, CsrfForm, CsrfToken};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use sesame_store::Client;

const LIST: &str = "/admin/applications";

// Changing or removing an application decides where sign-ins (and their codes) go and who
// may ask for tokens: every change needs a recent sign-in, like creating a user. Rotating and
// removing break a running application until it is reconfigured, so each has a page that
// says so; its GET is also where a stale session comes back after signing in again (see
// `extract::page_of`).
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(LIST, get(applications_page).post(add_application))
        .route(
            "/admin/applications/{client_id}",
            get(application_page).post(save_application),
        )
        .route(
            "/admin/applications/{client_id}/rotate-secret",
            get(rotate_page).post(rotate_secret),
        )
        .route(
            "/admin/applications/{client_id}/remove",
            get(remove_page).post(remove_application),
        )
}

fn application_path(client_id: &str) -> String {
    format!("{LIST}/{}", seg(client_id))
}

async fn find_client(state: &AppState, me: &SignedIn, client_id: &str) -> Result<Client, Error> {
    clients::find(state, me.user.tenant, client_id)
        .await
        .map_err(|e| match e {
            ClientError::Store(e) => e.into(),
            _ => Error::not_found(),
        })
}

/// What a page says when the service refuses a change, or the error page when it is not a
/// refusal.
fn refusal(e: ClientError) -> Result<String, Error> {
    match e {
        // The service speaks to the command line too: its flag means nothing on this page.
        ClientError::Invalid(m) => Ok(crate::web::sentence(&m.replace(" (--redirect-uri)", ""))),
        ClientError::NotFound(_) => Err(Error::not_found()),
        ClientError::Store(e) => Err(e.into()),
    }
}

/// Non-empty lines, trimmed: the textarea's URIs.
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// The form as posted, kept as typed for showing it again.
fn typed(form: &CsrfForm) -> ApplicationForm {
    let checked = |name| form.get(name).is_some();
    ApplicationForm {
        name: form.text("name").trim().to_string(),
        redirect_uris: form.text("redirect_uris").to_string(),
        post_logout_redirect_uris: form.text("post_logout_redirect_uris").to_string(),
        public: checked("public"),
        first_party: checked("first_party"),
        require_mfa: checked("require_mfa"),
        client_credentials: checked("client_credentials"),
        id_token_alg: form.text("id_token_alg").to_string(),
    }
}

/// The form filled in with what is registered.
fn registered(c: &Client) -> ApplicationForm {
    ApplicationForm {
        name: c.name.clone(),
        redirect_uris: c.redirect_uris.join("\n"),
        post_logout_redirect_uris: c.post_logout_redirect_uris.join("\n"),
        public: c.secret_hash.is_none(),
        first_party: c.first_party,
        require_mfa: c.require_mfa,
        client_credentials: c.client_credentials,
        id_token_alg: c.id_token_alg.clone(),
    }
}

/// The blank "Add application" form.
fn blank() -> ApplicationForm {
    ApplicationForm {
        name: String::new(),
        redirect_uris: String::new(),
        post_logout_redirect_uris: String::new(),
        public: false,
        first_party: false,
        require_mfa: false,
        client_credentials: false,
        id_token_alg: Alg::Rs256.as_str().into(),
    }
}

/// What the service is asked for, or why the form cannot say it.
fn new_client(f: &ApplicationForm) -> Result<NewClient, String> {
    let Some(id_token_alg) = Alg::parse(&f.id_token_alg) else {
        return Err("Choose RS256, ES256 or EdDSA to sign ID tokens.".into());
    };
    Ok(NewClient {
        name: f.name.clone(),
        redirect_uris: lines(&f.redirect_uris),
        post_logout_redirect_uris: lines(&f.post_logout_redirect_uris),
        public: f.public,
        first_party: f.first_party,
        require_mfa: f.require_mfa,
        id_token_alg,
        client_credentials: f.client_credentials,
    })
}

async fn applications_view(
    state: &AppState,
    me: &SignedIn,
    csrf: &CsrfToken,
    status: StatusCode,
    flash: &Flash,
    form: &ApplicationForm,
    error: Option<&str>,
) -> Result<Response, Error> {
    let applications = state
        .store
        .list_clients(me.user.tenant)
        .await?
        .into_iter()
        .map(|c| ApplicationRow {
            path: application_path(&c.client_id),
            kind: if c.secret_hash.is_some() {
                "Confidential"
            } else {
                "Public"
            },
            require_mfa: yes_no(c.require_mfa),
            first_party: yes_no(c.first_party),
            name: c.name,
            client_id: c.client_id,
        })
        .collect();
    Ok(page(
        csrf,
        status,
        &ApplicationsPage {
            csrf: &csrf.token,
            notice: flash.notice(),
            flash_error: flash.error(),
            error,
            applications,
            form,
            adding: true,
            max_name: clients::MAX_NAME,
        },
    ))
}

async fn applications_page(
    State(state): State<AppState>,
    AdminUser(me): AdminUser,
    csrf: CsrfToken,
    q: Query<Flash>,
) -> Result<Response, Error> {
    applications_view(&state, &me, &csrf, StatusCode::OK, &q, &blank(), None).await
}

async fn add_application(
    State(state): State<AppState>,
    origin: Origin,
    csrf: CsrfToken,
    Checked { me, form, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let typed = typed(&form);
    let message = match new_client(&typed) {
        Err(m) => m,
        Ok(new) => {
            let admin = Admin::console(&me.user, origin);
            match clients::add(&state, &admin, me.user.tenant, new).await {
                Ok(created) => {
                    let c = &created.client;
                    let notice = if created.secret.is_some() {
                        "Application added. Copy its client secret now: it is shown only on this page."
                    } else {
                        "Application added. It is a public client: it has no secret and must use PKCE."
                    };
                    let shown = Shown {
                        notice: Some(notice),
                        secret: created.secret.as_deref(),
                        ..Shown::default()
                    };
                    return Ok(application_view(
                        &csrf,
                        StatusCode::OK,
                        c,
                        &registered(c),
                        shown,
                    ));
                }
                Err(e) => refusal(e)?,
            }
        }
    };
    applications_view(
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

/// The banners of an application's page, and the secret when this response made one.
#[derive(Default)]
struct Shown<'a> {
    notice: Option<&'a str>,
    flash_error: Option<&'a str>,
    error: Option<&'a str>,
    secret: Option<&'a str>,
}

fn or_none(values: &[String]) -> Vec<String> {
    if values.is_empty() {
        vec!["None".into()]
    } else {
        values.to_vec()
    }
}

fn application_view(
    csrf: &CsrfToken,
    status: StatusCode,
    c: &Client,
    form: &ApplicationForm,
    shown: Shown,
) -> Response {
    let public = c.secret_hash.is_none();
    let one = |s: &str| vec![s.to_string()];
    let mut details = vec![
        ("Client ID", one(&c.client_id)),
        (
            "Type",
            one(if public {
                "Public: no secret; it must use PKCE"
            } else {
                "Confidential: it has a secret"
            }),
        ),
        ("Redirect URIs", or_none(&c.redirect_uris)),
        (
            "Post-logout redirect URIs",
            or_none(&c.post_logout_redirect_uris),
        ),
        ("ID tokens signed with", one(&c.id_token_alg)),
        (
            "Consent",
            one(if c.first_party {
                "Not asked (first-party)"
            } else {
                "Asked once"
            }),
        ),
        (
            "Two-step verification",
            one(if c.require_mfa {
                "Required for every sign-in"
            } else {
                "As the policy says"
            }),
        ),
        (
            "Client credentials",
            one(if c.client_credentials {
                "Allowed"
            } else {
                "Not allowed"
            }),
        ),
        ("Registered", vec![fmt_time(c.created_at)]),
    ];
    if let Some(t) = c.secret_set_at {
        details.push(("Secret made", vec![fmt_time(t)]));
    }
    page(
        csrf,
        status,
        &ApplicationPage {
            csrf: &csrf.token,
            notice: shown.notice,
            flash_error: shown.flash_error,
            error: shown.error,
            name: &c.name,
            base: &application_path(&c.client_id),
            public,
            secret: shown.secret,
            details,
            form,
            adding: false,
            max_name: clients::MAX_NAME,
        },
    )
}

async fn application_page(
    State(state): State<AppState>,
    AdminUser(me): AdminUser,
    csrf: CsrfToken,
    Path(client_id): Path<String>,
    q: Query<Flash>,
) -> Result<Response, Error> {
    let c = find_client(&state, &me, &client_id).await?;
    let shown = Shown {
        notice: q.notice(),
        flash_error: q.error(),
        ..Shown::default()
    };
    Ok(application_view(
        &csrf,
        StatusCode::OK,
        &c,
        &registered(&c),
        shown,
    ))
}

async fn save_application(
    State(state): State<AppState>,
    origin: Origin,
    csrf: CsrfToken,
    Path(client_id): Path<String>,
    Checked { me, form, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let c = find_client(&state, &me, &client_id).await?;
    let mut typed = typed(&form);
    // Public or confidential is fixed at registration (the form does not offer it): the
    // service refuses a change, so the request keeps what is registered.
    typed.public = c.secret_hash.is_none();
    let message = match new_client(&typed) {
        Err(m) => m,
        Ok(change) => {
            let admin = Admin::console(&me.user, origin);
            match clients::update(&state, &admin, me.user.tenant, &c.client_id, change).await {
                Ok(saved) => {
                    return Ok(see_other(&format!(
                        "{}?done=application_saved",
                        application_path(&saved.client_id)
                    )))
                }
                Err(e) => refusal(e)?,
            }
        }
    };
    let shown = Shown {
        error: Some(&message),
        ..Shown::default()
    };
    Ok(application_view(
        &csrf,
        StatusCode::BAD_REQUEST,
        &c,
        &typed,
        shown,
    ))
}

/// The page before a change that breaks a running application.
fn confirm_view(
    csrf: &CsrfToken,
    c: &Client,
    action: &str,
    title: &'static str,
    explain: &'static str,
) -> Response {
    let back = application_path(&c.client_id);
    page(
        csrf,
        StatusCode::OK,
        &ApplicationConfirmPage {
            csrf: &csrf.token,
            title,
            name: &c.name,
            client_id: &c.client_id,
            explain,
            action: &format!("{back}/{action}"),
            button: title,
            back: &back,
        },
    )
}

async fn rotate_page(
    State(state): State<AppState>,
    AdminUser(me): AdminUser,
    csrf: CsrfToken,
    Path(client_id): Path<String>,
) -> Result<Response, Error> {
    let c = find_client(&state, &me, &client_id).await?;
    if c.secret_hash.is_none() {
        // A public client has no secret to rotate.
        return Err(Error::not_found());
    }
    Ok(confirm_view(
        &csrf,
        &c,
        "rotate-secret",
        "Rotate secret",
        "Sesame makes a new client secret and shows it once. The current secret stops working at once: the application cannot sign anyone in or get tokens until its configuration has the new one.",
    ))
}

async fn rotate_secret(
    State(state): State<AppState>,
    origin: Origin,
    csrf: CsrfToken,
    Path(client_id): Path<String>,
    Checked { me, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let c = find_client(&state, &me, &client_id).await?;
    let admin = Admin::console(&me.user, origin);
    match clients::rotate_secret(&state, &admin, me.user.tenant, &c.client_id).await {
        Ok(secret) => {
            // Read again: the page shows when the secret was made.
            let c = find_client(&state, &me, &c.client_id).await?;
            let shown = Shown {
                notice: Some("New secret made. The old secret no longer works."),
                secret: Some(&secret),
                ..Shown::default()
            };
            Ok(application_view(
                &csrf,
                StatusCode::OK,
                &c,
                &registered(&c),
                shown,
            ))
        }
        Err(e) => {
            let message = refusal(e)?;
            let shown = Shown {
                flash_error: Some(&message),
                ..Shown::default()
            };
            Ok(application_view(
                &csrf,
                StatusCode::BAD_REQUEST,
                &c,
                &registered(&c),
                shown,
            ))
        }
    }
}

async fn remove_page(
    State(state): State<AppState>,
    AdminUser(me): AdminUser,
    csrf: CsrfToken,
    Path(client_id): Path<String>,
) -> Result<Response, Error> {
    let c = find_client(&state, &me, &client_id).await?;
    Ok(confirm_view(
        &csrf,
        &c,
        "remove",
        "Remove application",
        "Removes the application and every code and token issued to it. Its client ID and secret stop working at once, and people can no longer sign in to it through Sesame. This cannot be undone: registering it again gives it a new client ID.",
    ))
}

async fn remove_application(
    State(state): State<AppState>,
    origin: Origin,
    Path(client_id): Path<String>,
    Checked { me, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let c = find_client(&state, &me, &client_id).await?;
    let admin = Admin::console(&me.user, origin);
    clients::remove(&state, &admin, me.user.tenant, &c.client_id)
        .await
        // Removing refuses nothing: what can fail is the store, or the application is gone.
        .map_err(|e| refusal(e).map_or_else(|e| e, Error::internal))?;
    Ok(see_other(&format!("{LIST}?done=application_removed")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_the_textareas_non_empty_lines() {
        assert_eq!(
            lines(" https://a.example/cb \r\n\r\n\thttps://b.example/cb\n"),
            ["https://a.example/cb", "https://b.example/cb"]
        );
        assert!(lines("\n  \n").is_empty());
    }

    #[test]
    fn an_unknown_algorithm_is_refused_before_the_service() {
        let f = ApplicationForm {
            id_token_alg: "none".into(),
            ..blank()
        };
        assert!(new_client(&f).is_err());
        let f = ApplicationForm {
            id_token_alg: "EdDSA".into(),
            ..blank()
        };
        assert_eq!(new_client(&f).unwrap().id_token_alg, Alg::EdDsa);
    }
}
