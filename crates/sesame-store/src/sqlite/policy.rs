//! The authentication methods policy of each tenant.

use super::audit::insert_audit;
use super::{changed, one, SqliteStore};
use crate::{AuditEvent, PolicyRead, PolicyStore, Result, StoreError};
use async_trait::async_trait;
use rusqlite::params;
use sesame_core::policy::MethodsPolicy;
use sesame_core::{GroupId, TenantId, UnixTime, UserId};

fn parse_policy(text: &str) -> Result<MethodsPolicy> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Database(format!("stored policy is not valid: {e}")))
}

#[async_trait]
impl PolicyStore for SqliteStore {
    async fn find_policy(&self, tenant: TenantId) -> Result<Option<(MethodsPolicy, i64)>> {
        self.read(|c| {
            one(
                c,
                "SELECT policy, version FROM tenant_policies WHERE tenant_id = ?",
                [tenant.0],
                |r| Ok((parse_policy(&r.get::<_, String>(0)?)?, r.get(1)?)),
            )
        })
    }

    async fn find_policy_for_user(
        &self,
        tenant: TenantId,
        user: UserId,
        known_version: Option<i64>,
    ) -> Result<PolicyRead> {
        // One statement, so one snapshot: the version, the text only if it is not the version
        // the caller holds, and the user's groups.
        let (version, text, groups): (Option<i64>, Option<String>, Option<String>) =
            self.read(|c| {
                Ok(c.prepare_cached(
                    "SELECT (SELECT version FROM tenant_policies WHERE tenant_id = ?1), \
                     (SELECT policy FROM tenant_policies WHERE tenant_id = ?1 AND version IS NOT ?3), \
                     (SELECT group_concat(group_id) FROM group_members WHERE user_id = ?2)",
                )?
                .query_row(params![tenant.0, user.0, known_version], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?)
            })?;
        let groups = groups
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|g| !g.is_empty())
            .map(|g| {
                g.parse()
                    .map(GroupId)
                    .map_err(|_| StoreError::Database(format!("bad group id {g:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PolicyRead {
            version,
            policy: text.as_deref().map(parse_policy).transpose()?,
            groups,
        })
    }

    async fn save_policy(
        &self,
        tenant: TenantId,
        policy: &MethodsPolicy,
        expected_version: i64,
        now: UnixTime,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let text = serde_json::to_string(policy)
            .map_err(|e| StoreError::Database(format!("policy does not serialise: {e}")))?;
        let audit = audit.clone();
        self.group
            .write(move |c| {
                // Insert at version 1 when none exists yet, otherwise bump the expected version:
                // either way exactly one of two racing saves from the same version wins.
                let n = changed(
                    c,
                    "INSERT INTO tenant_policies (tenant_id, policy, version, updated_at) VALUES (?1, ?2, 1, ?3) \
                     ON CONFLICT (tenant_id) DO UPDATE SET policy = excluded.policy, \
                     version = tenant_policies.version + 1, updated_at = excluded.updated_at \
                     WHERE tenant_policies.version = ?4",
                    params![tenant.0, text, now, expected_version],
                )?;
                if n != 1 {
                    return Ok(false);
                }
                insert_audit(c, &audit)?;
                Ok(true)
            })
            .await
    }
}
