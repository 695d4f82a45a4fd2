//! `sesame-authenticator pending`: sign-in requests waiting for an answer, for every Sesame
//! account.

use super::{now, pending_of, runtime, sesame_accounts};
use anyhow::Result;
use serde::Serialize;
use sesame_authenticator::Vault;
use sesame_proto::device::ChallengeKind;

#[derive(Serialize)]
struct PendingLine {
    request: String,
    account: String,
    kind: &'static str,
    app: String,
    ip: String,
    location: String,
    browser: String,
    requested_at: i64,
    expires_in: i64,
}

pub fn run(vault: &mut Vault, json: bool) -> Result<()> {
    let rt = runtime()?;
    let t = now() as i64;
    let mut lines = Vec::new();
    let accounts: Vec<(String, String)> = sesame_accounts(vault)?
        .iter()
        .map(|(a, ..)| (a.id.clone(), a.otp.label()))
        .collect();
    for (id, label) in accounts {
        let pending = pending_of(vault, &rt, &id)?;
        for ch in pending.challenges {
            lines.push(PendingLine {
                request: ch.id,
                account: label.clone(),
                kind: if ch.kind == ChallengeKind::PhoneSignIn {
                    "phone sign-in"
                } else {
                    "two-step verification"
                },
                app: ch.app_name,
                ip: ch.ip,
                location: ch.location,
                browser: ch.browser,
                requested_at: ch.requested_at,
                expires_in: (ch.expires_at - t).max(0),
            });
        }
    }
    super::output(json, &lines, || {
        if lines.is_empty() {
            say!("No sign-in requests are waiting.");
            return;
        }
        for l in &lines {
            say!(
                "Request {}  ({}, expires in {} s)",
                l.request,
                l.kind,
                l.expires_in
            );
            say!("  Account:  {}", l.account);
            say!("  App:      {}", l.app);
            say!("  From:     {} ({})", l.ip, l.location);
            say!("  When:     {} s ago", (t - l.requested_at).max(0));
            say!("  Browser:  {}", l.browser);
        }
        say!("Answer with: sesame-authenticator respond REQUEST --number N --approve   (or --deny, --report)");
    })
}
