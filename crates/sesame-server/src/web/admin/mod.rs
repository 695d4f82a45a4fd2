//! The admin web console under `/admin` (users, groups, applications, the authentication
//! methods policy, the sign-in log). Administrators only; everyone else gets 403.
//!
//! Every change is a CSRF-checked form post made through the same service as its `sesame`
//! command twin, and leaves an audit line naming the administrator. Changes that take access
//! away or hand it out (block, unblock, reset methods, device actions, creating an
//! administrator, the policy, every change to an application) also need a recent sign-in.

mod applications;
mod groups;
mod log;
mod outbox;
mod policy;
mod users;

use super::extract::Admin as AdminUser;
use super::templates::AdminPage;
use super::{fmt_time, page, CsrfToken};
use crate::error::Error;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(overview))
        .merge(users::routes())
        .merge(groups::routes())
        .merge(applications::routes())
        .merge(policy::routes())
        .merge(log::routes())
        .merge(outbox::routes())
}

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

fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

/// Messages after a redirect, by code: nothing the query string says is shown as such.
#[derive(Deserialize, Default)]
struct Flash {
    done: Option<String>,
    error: Option<String>,
}

impl Flash {
    fn notice(&self) -> Option<&'static str> {
        Some(match self.done.as_deref()? {
            "created" => "User created.",
            "blocked" => "User blocked: their sessions have ended and they cannot sign in.",
            "unblocked" => "User unblocked. Sign-in requests to their phone are allowed again.",
            "password_set" => "Password set. Every session of the user has ended.",
            "unlocked" => "Unlocked: the user's wrong passwords, codes and numbers are forgotten.",
            "reset" => "Methods reset: every verification method and registered device of this user was removed. They sign in with their password and can set up methods again.",
            "device_removed" => "Device removed. Its sign-in requests and codes no longer work.",
            "phone_sign_in_off" => "Phone sign-in turned off for that device.",
            "allowed_again" => "Phone sign-in can be turned on again for that device: the user sets up the PIN key again in the Authenticator app.",
            "group_created" => "Group created.",
            "group_removed" => "Group deleted. Its members are still users.",
            "member_added" => "Member added.",
            "member_already" => "That user already is a member.",
            "member_removed" => "Member removed.",
            "member_not" => "That user was not a member.",
            "application_saved" => "Changes saved. They apply from the application's next request.",
            "application_removed" => "Application removed: its codes and tokens no longer work.",
            "saved" => "Policy saved. It applies from the next request.",
            "unchanged" => "Nothing changed: the policy already said that.",
            "access_pass_revoked" => "Temporary Access Pass revoked: it no longer signs anyone in.",
            "welcome" => "You are the first administrator, and signed in. Next: add users and groups, choose the authentication methods policy, and set up two-step verification for yourself on My security info.",
            _ => return None,
        })
    }

    fn error(&self) -> Option<&'static str> {
        match self.error.as_deref()? {
            "self_block" => Some("You cannot block your own account."),
            _ => None,
        }
    }
}

async fn overview(
    State(state): State<AppState>,
    AdminUser(me): AdminUser,
    csrf: CsrfToken,
    q: axum::extract::Query<Flash>,
) -> Result<Response, Error> {
    let users = state.store.list_users(me.user.tenant).await?;
    let reported = users
        .iter()
        .filter_map(|u| {
            u.push_blocked_at
                .map(|t| (user_path(&u.username), u.username.clone(), fmt_time(t)))
        })
        .collect();
    Ok(page(
        &csrf,
        StatusCode::OK,
        &AdminPage {
            notice: q.notice(),
            reported,
            outbox: state.telephony.uses_outbox(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_single_path_segments() {
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
        assert_eq!(user_path("<x>"), "/admin/users/%3Cx%3E");
    }
}
