//! The audit log.

use super::{insert_audit, retrying, PgStore};
use crate::rows;
use crate::{AuditEvent, AuditFilter, AuditStore, Result};
use async_trait::async_trait;
use tokio_postgres::types::ToSql;

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, e: &AuditEvent) -> Result<()> {
        retrying(|| async { insert_audit(&self.conn().await?, e).await }).await
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
        // Only the filters given, so that PostgreSQL can use the (user_id, at) and (at)
        // indexes instead of walking the whole log.
        let mut sql = String::from(
            "SELECT id, at, tenant_id, user_id, username, ip, user_agent, event, method, result, reason \
             FROM audit_log WHERE TRUE",
        );
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut and = |column: &str, v: Box<dyn ToSql + Sync + Send>| {
            args.push(v);
            sql.push_str(&format!(" AND {column} ${}", args.len()));
        };
        if let Some(t) = f.tenant {
            and("tenant_id =", Box::new(t.0));
        }
        if let Some(u) = f.user {
            and("user_id =", Box::new(u.0));
        }
        if let Some(r) = f.result {
            and("result =", Box::new(r.as_str().to_owned()));
        }
        if let Some(m) = &f.method {
            and("method =", Box::new(m.as_str().to_owned()));
        }
        if let Some(t) = f.since {
            and("at >=", Box::new(t));
        }
        if let Some(t) = f.until {
            and("at <", Box::new(t));
        }
        args.push(Box::new(if f.limit > 0 { f.limit } else { 100 }));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", args.len()));
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        self.all(&sql, &params, rows::audit_event).await
    }
}
