//! Groups: the list, creating one, and one group's members.

use super::users::find_user;
use super::{group_path, seg, user_path, Flash};
use crate::error::Error;
use crate::service::groups::{self, GroupError};
use crate::service::{Admin, Origin};
use crate::web::extract::{Admin as AdminUser, Checked, RecentAdmin, SignedIn};
use crate::web::templates::{GroupPage, GroupRemovePage, GroupsPage, MemberRow};
use crate::web::{page, see_other, CsrfToken};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use sesame_store::Group;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/groups", get(groups_page).post(create_group))
        .route("/admin/groups/{name}", get(group_page))
        .route("/admin/groups/{name}/members", post(add_member))
        .route(
            "/admin/groups/{name}/remove",
            get(remove_page).post(remove_group),
        )
        .route(
            "/admin/groups/{name}/members/{username}/remove",
            post(remove_member),
        )
}

async fn find_group(state: &AppState, me: &SignedIn, name: &str) -> Result<Group, Error> {
    state
        .store
        .find_group_by_name(me.user.tenant, name)
        .await?
        .ok_or_else(Error::not_found)
}

async fn groups_view(
    state: &AppState,
    me: &SignedIn,
    csrf: &CsrfToken,
    status: StatusCode,
    flash: &Flash,
    typed: &str,
    error: Option<&str>,
) -> Result<Response, Error> {
    let groups = state
        .store
        .list_groups(me.user.tenant)
        .await?
        .into_iter()
        .map(|g| (group_path(&g.name), g.name, g.member_count))
        .collect();
    Ok(page(
        csrf,
        status,
        &GroupsPage {
            csrf: &csrf.token,
            notice: flash.notice(),
            flash_error: flash.error(),
            error,
            groups,
            typed,
        },
    ))
}

async fn groups_page(
    State(state): State<AppState>,
    AdminUser(me): AdminUser,
    csrf: CsrfToken,
    q: Query<Flash>,
) -> Result<Response, Error> {
    groups_view(&state, &me, &csrf, StatusCode::OK, &q, "", None).await
}

// Groups decide who must use two-step verification and how: creating one and changing its
// members need a recent sign-in.
async fn create_group(
    State(state): State<AppState>,
    origin: Origin,
    csrf: CsrfToken,
    Checked { me, form, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let name = form.text("name").trim().to_string();
    let admin = Admin::console(&me.user, origin);
    let message = match groups::create(&state, &admin, me.user.tenant, &name).await {
        Ok(group) => {
            return Ok(see_other(&format!(
                "{}?done=group_created",
                group_path(&group.name)
            )))
        }
        Err(GroupError::BadName) => "Enter a group name (at most 256 characters).".to_string(),
        Err(e @ GroupError::Hidden(_)) => crate::web::sentence(&e.to_string()),
        Err(GroupError::Exists(n)) => format!("A group named {n:?} already exists."),
        Err(e @ GroupError::InPolicy(_)) => crate::web::sentence(&e.to_string()),
        Err(GroupError::Store(e)) => return Err(e.into()),
    };
    groups_view(
        &state,
        &me,
        &csrf,
        StatusCode::BAD_REQUEST,
        &Flash::default(),
        &name,
        Some(&message),
    )
    .await
}

#[allow(clippy::too_many_arguments)] // one page, with what was typed and what went wrong
async fn group_view(
    state: &AppState,
    csrf: &CsrfToken,
    status: StatusCode,
    group: &Group,
    flash: &Flash,
    typed: &str,
    error: Option<&str>,
) -> Result<Response, Error> {
    let base = group_path(&group.name);
    let members = state
        .store
        .list_group_members(group.id)
        .await?
        .into_iter()
        .map(|u| MemberRow {
            path: user_path(&u.username),
            remove: format!("{base}/members/{}/remove", seg(&u.username)),
            username: u.username,
            display_name: u.display_name,
        })
        .collect();
    let (policy, _) = state.current_policy(group.tenant).await?;
    Ok(page(
        csrf,
        status,
        &GroupPage {
            csrf: &csrf.token,
            notice: flash.notice(),
            flash_error: flash.error(),
            error,
            name: &group.name,
            base: &base,
            in_policy: policy.groups().contains(&group.id),
            members,
            typed,
        },
    ))
}

async fn group_page(
    State(state): State<AppState>,
    AdminUser(me): AdminUser,
    csrf: CsrfToken,
    Path(name): Path<String>,
    q: Query<Flash>,
) -> Result<Response, Error> {
    let group = find_group(&state, &me, &name).await?;
    group_view(&state, &csrf, StatusCode::OK, &group, &q, "", None).await
}

async fn add_member(
    State(state): State<AppState>,
    origin: Origin,
    csrf: CsrfToken,
    Path(name): Path<String>,
    Checked { me, form, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let group = find_group(&state, &me, &name).await?;
    let username = form.text("username").trim().to_string();
    let Some(user) = state
        .store
        .find_user_by_username(me.user.tenant, &username)
        .await?
    else {
        let message = if username.is_empty() {
            "Enter the username of the user to add.".to_string()
        } else {
            format!("There is no user named {username:?}.")
        };
        return group_view(
            &state,
            &csrf,
            StatusCode::BAD_REQUEST,
            &group,
            &Flash::default(),
            &username,
            Some(&message),
        )
        .await;
    };
    let admin = Admin::console(&me.user, origin);
    let done = if groups::add_member(&state, &admin, &group, &user).await? {
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
    origin: Origin,
    Path((name, username)): Path<(String, String)>,
    Checked { me, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let group = find_group(&state, &me, &name).await?;
    let user = find_user(&state, &me, &username).await?;
    let admin = Admin::console(&me.user, origin);
    let done = if groups::remove_member(&state, &admin, &group, &user).await? {
        "member_removed"
    } else {
        "member_not"
    };
    Ok(see_other(&format!(
        "{}?done={done}",
        group_path(&group.name)
    )))
}

/// "Delete group": a page that asks first (it works without JavaScript), and the deletion.
async fn remove_page(
    State(state): State<AppState>,
    AdminUser(me): AdminUser,
    csrf: CsrfToken,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    let group = find_group(&state, &me, &name).await?;
    let members = state.store.list_group_members(group.id).await?.len();
    let (policy, _) = state.current_policy(group.tenant).await?;
    Ok(page(
        &csrf,
        StatusCode::OK,
        &GroupRemovePage {
            csrf: &csrf.token,
            name: &group.name,
            base: &group_path(&group.name),
            members,
            in_policy: policy.groups().contains(&group.id),
        },
    ))
}

async fn remove_group(
    State(state): State<AppState>,
    origin: Origin,
    csrf: CsrfToken,
    Path(name): Path<String>,
    Checked { me, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    let group = find_group(&state, &me, &name).await?;
    let admin = Admin::console(&me.user, origin);
    match groups::remove(&state, &admin, &group).await {
        Ok(()) => Ok(see_other("/admin/groups?done=group_removed")),
        Err(e @ GroupError::InPolicy(_)) => {
            let message = crate::web::sentence(&e.to_string());
            group_view(
                &state,
                &csrf,
                StatusCode::CONFLICT,
                &group,
                &Flash::default(),
                "",
                Some(&message),
            )
            .await
        }
        Err(GroupError::Store(e)) => Err(e.into()),
        Err(e) => Err(Error::internal(e.to_string())),
    }
}
