//! A user's own changes on My security info: deleting a method and choosing the default.
//! (Adding one is each method's set-up, in `methods/`; devices are in `devices`.)

use super::{Line, Origin, Services};
use sesame_core::audit::Event;
use sesame_core::MethodId;
use sesame_store::{StoreError, User};

/// Deletes one of the user's methods; the default moves to the oldest one left. False: the
/// user has no such method.
pub async fn delete_method(
    svc: &Services,
    origin: &Origin,
    user: &User,
    id: MethodId,
) -> Result<bool, StoreError> {
    let methods = svc.store.list_methods(user.id).await?;
    let Some(m) = methods.iter().find(|m| m.id == id) else {
        return Ok(false);
    };
    if !svc.store.delete_method(user.id, m.id).await? {
        return Ok(false);
    }
    if user.default_method == Some(m.id) {
        let next = methods.iter().find(|x| x.id != m.id).map(|x| x.id);
        svc.store.update_default_method(user.id, next).await?;
    }
    svc.audit(origin, Line::of(user, Event::MethodRemoved).method(m.kind))
        .await;
    Ok(true)
}

/// Makes one of the user's methods the default (the store refuses another user's method).
pub async fn set_default_method(
    svc: &Services,
    origin: &Origin,
    user: &User,
    id: MethodId,
) -> Result<(), StoreError> {
    svc.store.update_default_method(user.id, Some(id)).await?;
    svc.audit(origin, Line::of(user, Event::DefaultMethodChanged))
        .await;
    Ok(())
}
