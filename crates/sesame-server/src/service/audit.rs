//! Audit lines: who did what, to whom, from where. A failure to write one alone is logged
//! loudly but does not fail what the person is doing; lines that must not be lost without
//! their change are written in the change's own store write instead.

use super::Services;
use sesame_core::audit::{AuditMethod, Event};
use sesame_core::{TenantId, UserId};
use sesame_store::{AuditEvent, AuditResult, User};

/// Where a request comes from, as every audit line records it.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The client's address (behind a trusted proxy: the forwarded one), or `local` for the
    /// command line.
    pub ip: String,
    pub user_agent: String,
    /// The entries of the browser's device cookie, unchecked (see [`super::browsers`]).
    pub browsers: Vec<String>,
}

impl Origin {
    /// A `sesame` command run on this machine.
    pub fn cli(command: &str) -> Self {
        Origin {
            ip: "local".into(),
            user_agent: command.into(),
            browsers: Vec::new(),
        }
    }
}

/// An administrator acting on others: in the admin console or with the `sesame` command.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The administrator's account (None on the command line).
    pub user: Option<UserId>,
    /// The name lines about the administrator's own action carry (the policy's changes).
    pub username: String,
    /// How lines about others name the administrator: `admin:NAME` or `cli:NAME`.
    pub by: String,
    pub origin: Origin,
}

impl Admin {
    /// A signed-in administrator in the web console.
    pub fn console(me: &User, origin: Origin) -> Self {
        Admin {
            user: Some(me.id),
            username: me.username.clone(),
            by: format!("admin:{}", me.username),
            origin,
        }
    }

    /// Someone at this machine's command line: `cli:USER` with the operating-system user
    /// (`cli` if unknown).
    pub fn cli(os_user: Option<&str>, command: &str) -> Self {
        let name = match os_user.map(str::trim).filter(|u| !u.is_empty()) {
            Some(u) => format!("cli:{u}"),
            None => "cli".to_string(),
        };
        Admin {
            user: None,
            username: name.clone(),
            by: name,
            origin: Origin::cli(command),
        }
    }

    /// The reason of a line about another user: who acted, then what happened.
    pub fn reason(&self, detail: Option<&str>) -> String {
        match detail {
            Some(d) => format!("{}; {d}", self.by),
            None => self.by.clone(),
        }
    }

    /// A line about `user` (or, with None, about the administrator's own account).
    pub fn line(
        &self,
        tenant: TenantId,
        user: Option<&User>,
        event: Event,
        detail: Option<&str>,
    ) -> Line {
        let (id, name) = match user {
            Some(u) => (Some(u.id), u.username.clone()),
            None => (self.user, self.username.clone()),
        };
        Line {
            tenant,
            user: id,
            username: name,
            event,
            method: None,
            result: AuditResult::Success,
            reason: Some(self.reason(detail)),
        }
    }
}

/// One audit line being put together.
#[derive(Debug, Clone)]
pub struct Line {
    tenant: TenantId,
    user: Option<UserId>,
    username: String,
    event: Event,
    method: Option<AuditMethod>,
    result: AuditResult,
    reason: Option<String>,
}

impl Line {
    /// A successful `event` of `user`.
    pub fn of(user: &User, event: Event) -> Self {
        Line {
            tenant: user.tenant,
            user: Some(user.id),
            username: user.username.clone(),
            event,
            method: None,
            result: AuditResult::Success,
            reason: None,
        }
    }

    /// An event about a name that may belong to nobody (an unknown username at sign-in).
    pub fn named(tenant: TenantId, user: Option<UserId>, username: &str, event: Event) -> Self {
        Line {
            tenant,
            user,
            username: username.to_string(),
            event,
            method: None,
            result: AuditResult::Success,
            reason: None,
        }
    }

    pub fn method(mut self, method: impl Into<AuditMethod>) -> Self {
        self.method = Some(method.into());
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// A failure, and why.
    pub fn failed(mut self, reason: impl Into<String>) -> Self {
        self.result = AuditResult::Failure;
        self.reason = Some(reason.into());
        self
    }

    pub fn result(mut self, result: AuditResult) -> Self {
        self.result = result;
        self
    }
}

impl Services {
    /// The stored form of `line`, for writing inside a store write.
    pub fn audit_event(&self, origin: &Origin, line: Line) -> AuditEvent {
        tracing::info!(
            event = line.event.as_str(),
            user = line.username,
            result = line.result.as_str(),
            reason = line.reason.as_deref(),
            "audit"
        );
        AuditEvent {
            id: 0,
            at: self.now(),
            tenant: line.tenant,
            user: line.user,
            username: line.username.chars().take(256).collect(),
            ip: origin.ip.clone(),
            user_agent: origin.user_agent.clone(),
            event: line.event,
            method: line.method,
            result: line.result,
            reason: line.reason,
        }
    }

    /// Writes `line` on its own.
    pub async fn audit(&self, origin: &Origin, line: Line) {
        // Failed sign-ins are counted as they are logged (successes when their session is
        // committed, in `signin::finish`).
        if line.event == Event::SignIn && line.result == AuditResult::Failure {
            let method = line.method.as_ref().map_or("unknown", |m| m.as_str());
            self.metrics.sign_in(method, false);
        }
        let event = self.audit_event(origin, line);
        if let Err(err) = self.store.append_audit(&event).await {
            tracing::error!(%err, "could not write the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn administrators_are_named_by_where_they_act() {
        let cli = Admin::cli(Some(" root "), "sesame user block");
        assert_eq!(cli.by, "cli:root");
        assert_eq!(
            cli.reason(Some("ended 2 session(s)")),
            "cli:root; ended 2 session(s)"
        );
        assert_eq!(cli.origin.ip, "local");
        assert_eq!(Admin::cli(Some(""), "x").by, "cli");
        assert_eq!(Admin::cli(None, "x").reason(None), "cli");
    }
}
