//! The audit log.

use super::{all, changed, SqliteStore};
use crate::rows;
use crate::{AuditEvent, AuditFilter, AuditStore, Result};
use async_trait::async_trait;
use rusqlite::{params, Connection};
use sesame_core::audit::AuditMethod;

/// Appends a line as part of a larger write (so the line and the change it records commit
/// together).
pub(super) fn insert_audit(c: &Connection, e: &AuditEvent) -> Result<()> {
    changed(
        c,
        "INSERT INTO audit_log (at, tenant_id, user_id, username, ip, user_agent, event, method, result, reason) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            e.at,
            e.tenant.0,
            e.user.map(|u| u.0),
            e.username,
            e.ip,
            e.user_agent,
            e.event.as_str(),
            e.method.as_ref().map(AuditMethod::as_str),
            e.result.as_str(),
            e.reason
        ],
    )?;
    Ok(())
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, e: &AuditEvent) -> Result<()> {
        let e = e.clone();
        self.group.write(move |c| insert_audit(c, &e)).await
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
        use rusqlite::types::Value;
        // Only the filters given, so that SQLite can use the (user_id, at) and (at) indexes
        // instead of walking the whole log.
        let mut sql = String::from(
            "SELECT id, at, tenant_id, user_id, username, ip, user_agent, event, method, result, reason \
             FROM audit_log WHERE 1",
        );
        let mut args: Vec<Value> = Vec::new();
        let mut and = |cond: &str, v: Value| {
            sql.push_str(" AND ");
            sql.push_str(cond);
            args.push(v);
        };
        if let Some(t) = f.tenant {
            and("tenant_id = ?", t.0.into());
        }
        if let Some(u) = f.user {
            and("user_id = ?", u.0.into());
        }
        if let Some(r) = f.result {
            and("result = ?", r.as_str().to_owned().into());
        }
        if let Some(m) = &f.method {
            and("method = ?", m.as_str().to_owned().into());
        }
        if let Some(t) = f.since {
            and("at >= ?", t.into());
        }
        if let Some(t) = f.until {
            and("at < ?", t.into());
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        args.push(Value::from(if f.limit > 0 { f.limit } else { 100 }));
        self.read_blocking(move |c| {
            all(c, &sql, rusqlite::params_from_iter(args), |r| {
                rows::audit_event(r)
            })
        })
        .await
    }
}
