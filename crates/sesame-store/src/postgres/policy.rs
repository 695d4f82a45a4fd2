//! The authentication methods policy of each tenant.

use super::{exec, insert_audit, PgStore};
use crate::{AuditEvent, PolicyRead, PolicyStore, Result, StoreError};
use async_trait::async_trait;
use sesame_core::policy::MethodsPolicy;
use sesame_core::{GroupId, TenantId, UnixTime, UserId};

fn parse_policy(text: &str) -> Result<MethodsPolicy> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Database(format!("stored policy is not valid: {e}")))
}

#[async_trait]
impl PolicyStore for PgStore {
    async fn find_policy(&self, tenant: TenantId) -> Result<Option<(MethodsPolicy, i64)>> {
        self.one(
            "SELECT policy, version FROM tenant_policies WHERE tenant_id = $1",
            &[&tenant.0],
            |r| Ok((parse_policy(&r.try_get::<_, String>(0)?)?, r.try_get(1)?)),
        )
        .await
    }

    async fn find_policy_for_user(
        &self,
        tenant: TenantId,
        user: UserId,
        known_version: Option<i64>,
    ) -> Result<PolicyRead> {
        // One statement, so one snapshot: the version, the text only if it is not the version
        // the caller holds, and the user's groups.
        let row: Option<(Option<i64>, Option<String>, Option<Vec<i64>>)> = self
            .one(
                "SELECT (SELECT version FROM tenant_policies WHERE tenant_id = $1), \
                 (SELECT policy FROM tenant_policies WHERE tenant_id = $1 AND version IS DISTINCT FROM $3::BIGINT), \
                 (SELECT array_agg(group_id ORDER BY group_id) FROM group_members WHERE user_id = $2)",
                &[&tenant.0, &user.0, &known_version],
                |r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)),
            )
            .await?;
        let (version, text, groups) = row.unwrap_or_default();
        Ok(PolicyRead {
            version,
            policy: text.as_deref().map(parse_policy).transpose()?,
            groups: groups
                .unwrap_or_default()
                .into_iter()
                .map(GroupId)
                .collect(),
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
        write!(self, |tx| {
            // Insert at version 1 when none exists yet, otherwise bump the expected version:
            // either way exactly one of two racing saves from the same version wins (the
            // loser waits for the winner's row, then finds its version moved on).
            let n = exec(
                &tx,
                "INSERT INTO tenant_policies (tenant_id, policy, version, updated_at) VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (tenant_id) DO UPDATE SET policy = excluded.policy, \
                 version = tenant_policies.version + 1, updated_at = excluded.updated_at \
                 WHERE tenant_policies.version = $4",
                &[&tenant.0, &text, &now, &expected_version],
            )
            .await?;
            if n != 1 {
                return Ok(false);
            }
            insert_audit(&tx, audit).await?;
            Ok(true)
        })
    }
}
