//! Groups and their members.

use super::{all, conflict, one, SqliteStore};
use crate::rows::{self, USER_COLUMNS};
use crate::{name_key, Group, GroupStore, Result, User};
use async_trait::async_trait;
use rusqlite::params;
use sesame_core::{GroupId, TenantId, UnixTime, UserId};

const GROUP_SELECT: &str = "SELECT g.id, g.tenant_id, g.name, g.created_at, \
     (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id) AS member_count FROM groups g";

#[async_trait]
impl GroupStore for SqliteStore {
    async fn create_group(&self, tenant: TenantId, name: &str, now: UnixTime) -> Result<Group> {
        let name = name.to_owned();
        self.group
            .write(move |c| {
                let trimmed = name.trim();
                let id: i64 = c
                    .prepare_cached(
                        "INSERT INTO groups (tenant_id, name, name_key, created_at) VALUES (?, ?, ?, ?) RETURNING id",
                    )?
                    .query_row(params![tenant.0, trimmed, name_key(&name), now], |r| r.get(0))
                    .map_err(conflict(|| format!("group {trimmed:?}")))?;
                Ok(Group {
                    id: GroupId(id),
                    tenant,
                    name: trimmed.to_owned(),
                    member_count: 0,
                    created_at: now,
                })
            })
            .await
    }

    async fn find_group_by_name(&self, tenant: TenantId, name: &str) -> Result<Option<Group>> {
        let sql = format!("{GROUP_SELECT} WHERE g.tenant_id = ? AND g.name_key = ?");
        self.read(|c| {
            one(c, &sql, params![tenant.0, name_key(name)], |r| {
                rows::group(r)
            })
        })
    }

    async fn list_groups(&self, tenant: TenantId) -> Result<Vec<Group>> {
        let sql = format!("{GROUP_SELECT} WHERE g.tenant_id = ? ORDER BY g.name_key");
        self.read(|c| all(c, &sql, [tenant.0], |r| rows::group(r)))
    }

    async fn list_user_groups(&self, user: UserId) -> Result<Vec<Group>> {
        let sql = format!(
            "{GROUP_SELECT} WHERE g.id IN (SELECT group_id FROM group_members WHERE user_id = ?) ORDER BY g.name_key"
        );
        self.read(|c| all(c, &sql, [user.0], |r| rows::group(r)))
    }

    async fn list_group_members(&self, group: GroupId) -> Result<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id IN (SELECT user_id FROM group_members WHERE group_id = ?) \
             ORDER BY username_key"
        );
        self.read_blocking(move |c| all(c, &sql, [group.0], |r| rows::user(r)))
            .await
    }

    async fn add_group_member(&self, group: GroupId, user: UserId) -> Result<bool> {
        Ok(self
            .execute(
                "INSERT INTO group_members (group_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (group.0, user.0),
            )
            .await?
            == 1)
    }

    async fn remove_group_member(&self, group: GroupId, user: UserId) -> Result<bool> {
        Ok(self
            .execute(
                "DELETE FROM group_members WHERE group_id = ? AND user_id = ?",
                (group.0, user.0),
            )
            .await?
            == 1)
    }

    async fn delete_group(&self, group: GroupId) -> Result<bool> {
        // Memberships go with it (ON DELETE CASCADE).
        Ok(self
            .execute("DELETE FROM groups WHERE id = ?", (group.0,))
            .await?
            == 1)
    }
}
