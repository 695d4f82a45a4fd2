//! Administrators' actions on groups, for the admin console and `sesame group ...` alike.

use super::{Admin, Services};
use sesame_core::audit::Event;
use sesame_core::TenantId;
use sesame_store::{Group, StoreError, User};

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("a group name must have 1 to 256 characters")]
    BadName,
    #[error("that group name cannot be used: {0}")]
    Hidden(sesame_core::names::NameError),
    #[error("a group named {0:?} already exists")]
    Exists(String),
    #[error("the authentication methods policy names the group {0:?}: change the policy first")]
    InPolicy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn create(
    svc: &Services,
    admin: &Admin,
    tenant: TenantId,
    name: &str,
) -> Result<Group, GroupError> {
    let name = name.trim();
    if name.is_empty() || name.len() > super::users::MAX_NAME {
        return Err(GroupError::BadName);
    }
    let name = sesame_core::names::group_name(name).map_err(GroupError::Hidden)?;
    let group = match svc.store.create_group(tenant, name, svc.now()).await {
        Ok(g) => g,
        Err(StoreError::Conflict(_)) => return Err(GroupError::Exists(name.to_string())),
        Err(e) => return Err(e.into()),
    };
    let detail = format!("group {}", group.name);
    svc.audit(
        &admin.origin,
        admin.line(tenant, None, Event::AdminGroupCreated, Some(&detail)),
    )
    .await;
    Ok(group)
}

/// Removes a group and its memberships. A group the methods policy names is refused: its
/// members' sign-in options would change without anyone deciding it.
pub async fn remove(svc: &Services, admin: &Admin, group: &Group) -> Result<(), GroupError> {
    let (policy, _) = svc.current_policy(group.tenant).await?;
    if policy.groups().contains(&group.id) {
        return Err(GroupError::InPolicy(group.name.clone()));
    }
    if !svc.store.delete_group(group.id).await? {
        return Err(StoreError::NotFound(format!("group {}", group.name)).into());
    }
    let detail = format!("group {}", group.name);
    svc.audit(
        &admin.origin,
        admin.line(group.tenant, None, Event::AdminGroupRemoved, Some(&detail)),
    )
    .await;
    Ok(())
}

/// Adds `user` to `group`; false (and no audit line) if they already were a member.
pub async fn add_member(
    svc: &Services,
    admin: &Admin,
    group: &Group,
    user: &User,
) -> Result<bool, StoreError> {
    let added = svc.store.add_group_member(group.id, user.id).await?;
    member_changed(svc, admin, group, user, added, Event::AdminGroupMemberAdded).await;
    Ok(added)
}

/// Removes `user` from `group`; false (and no audit line) if they were not a member.
pub async fn remove_member(
    svc: &Services,
    admin: &Admin,
    group: &Group,
    user: &User,
) -> Result<bool, StoreError> {
    let removed = svc.store.remove_group_member(group.id, user.id).await?;
    member_changed(
        svc,
        admin,
        group,
        user,
        removed,
        Event::AdminGroupMemberRemoved,
    )
    .await;
    Ok(removed)
}

/// Records a change of membership, if there was one.
async fn member_changed(
    svc: &Services,
    admin: &Admin,
    group: &Group,
    user: &User,
    changed: bool,
    event: Event,
) {
    if changed {
        let detail = format!("group {}", group.name);
        svc.audit(
            &admin.origin,
            admin.line(group.tenant, Some(user), event, Some(&detail)),
        )
        .await;
    }
}
