//! Groups and their members.

use super::users::insert_one;
use super::{first, retrying, PgStore};
use crate::rows::{self, USER_COLUMNS};
use crate::{name_key, Group, GroupStore, Result, User};
use async_trait::async_trait;
use sesame_core::{GroupId, TenantId, UnixTime, UserId};

const GROUP_SELECT: &str = "SELECT g.id, g.tenant_id, g.name, g.created_at, \
     (SELECT count(*) FROM group_members m WHERE m.group_id = g.id) AS member_count FROM groups g";

#[async_trait]
impl GroupStore for PgStore {
    async fn create_group(&self, tenant: TenantId, name: &str, now: UnixTime) -> Result<Group> {
        let trimmed = name.trim();
        let key = name_key(name);
        let id: i64 = retrying(|| async {
            insert_one(
                &self.conn().await?,
                "INSERT INTO groups (tenant_id, name, name_key, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&tenant.0, &trimmed, &key, &now],
                || format!("group {trimmed:?}"),
                first,
            )
            .await
        })
        .await?;
        Ok(Group {
            id: GroupId(id),
            tenant,
            name: trimmed.to_owned(),
            member_count: 0,
            created_at: now,
        })
    }

    async fn find_group_by_name(&self, tenant: TenantId, name: &str) -> Result<Option<Group>> {
        let sql = format!("{GROUP_SELECT} WHERE g.tenant_id = $1 AND g.name_key = $2");
        self.one(&sql, &[&tenant.0, &name_key(name)], rows::group)
            .await
    }

    async fn list_groups(&self, tenant: TenantId) -> Result<Vec<Group>> {
        let sql = format!("{GROUP_SELECT} WHERE g.tenant_id = $1 ORDER BY g.name_key");
        self.all(&sql, &[&tenant.0], rows::group).await
    }

    async fn list_user_groups(&self, user: UserId) -> Result<Vec<Group>> {
        let sql = format!(
            "{GROUP_SELECT} WHERE g.id IN (SELECT group_id FROM group_members WHERE user_id = $1) ORDER BY g.name_key"
        );
        self.all(&sql, &[&user.0], rows::group).await
    }

    async fn list_group_members(&self, group: GroupId) -> Result<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id IN (SELECT user_id FROM group_members WHERE group_id = $1) \
             ORDER BY username_key"
        );
        self.all(&sql, &[&group.0], rows::user).await
    }

    async fn add_group_member(&self, group: GroupId, user: UserId) -> Result<bool> {
        Ok(self
            .exec(
                "INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&group.0, &user.0],
            )
            .await?
            == 1)
    }

    async fn remove_group_member(&self, group: GroupId, user: UserId) -> Result<bool> {
        Ok(self
            .exec(
                "DELETE FROM group_members WHERE group_id = $1 AND user_id = $2",
                &[&group.0, &user.0],
            )
            .await?
            == 1)
    }

    async fn delete_group(&self, group: GroupId) -> Result<bool> {
        // Memberships go with it (ON DELETE CASCADE).
        Ok(self
            .exec("DELETE FROM groups WHERE id = $1", &[&group.0])
            .await?
            == 1)
    }
}
