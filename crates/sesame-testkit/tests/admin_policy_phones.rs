//! Text messages and phone calls on the console's policy page (`/admin/policy`): shown as in
//! force, changed through the same service as `sesame policy set --sms/--voice`, audited, and
//! refused with the page's banner when no group is chosen.

use sesame_core::policy::{MfaRequirement, PhoneMethodPolicy};
use sesame_store::{AuditEvent, AuditFilter, Group};
use sesame_testkit::{Browser, Page, TestServer, START};

const PASSWORD: &str = "correct horse";

/// An administrator `root` signed in with the password (the policy asks nobody for a second
/// step until changed), and the groups `Pilot` and `Staff`.
async fn admin_and_groups(srv: &TestServer) -> (Browser, Group, Group) {
    let root = srv.create_admin("root", Some(PASSWORD)).await;
    let mut b = srv.browser();
    let p = b.password_step("root", PASSWORD).await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);
    let pilot = srv
        .store
        .create_group(root.tenant, "Pilot", START)
        .await
        .unwrap();
    let staff = srv
        .store
        .create_group(root.tenant, "Staff", START)
        .await
        .unwrap();
    (b, pilot, staff)
}

/// The whole form as the initial policy fills it, with `changes` replacing or adding fields
/// (an empty value leaves a field out, as an unticked checkbox does).
async fn submit(b: &mut Browser, version: &str, changes: &[(&str, &str)]) -> Page {
    let mut fields: Vec<(String, String)> = [
        ("version", version),
        ("enabled", "enabled"),
        ("targets", "all"),
        ("mode", "any"),
        ("digits", "2"),
        ("lifetime", "120"),
        ("show_app_name", "yes"),
        ("show_location", "yes"),
        ("mfa", "nobody"),
        ("sms", "enabled"),
        ("sms_targets", "all"),
        ("voice", "enabled"),
        ("voice_targets", "all"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in changes {
        fields.retain(|(f, _)| f != k);
        if !v.is_empty() {
            fields.push((k.to_string(), v.to_string()));
        }
    }
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    b.post("/admin/policy", &refs).await
}

async fn policy_changes(srv: &TestServer) -> Vec<AuditEvent> {
    srv.store
        .list_audit(&AuditFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event == "policy_changed")
        .collect()
}

/// The "In force" row named `what`, as the page renders it.
fn in_force(what: &str, value: &str) -> String {
    format!("<tr><th>{what}</th><td>{value}</td></tr>")
}

/// The on/off switch of `key` (`sms` or `voice`) with `enabled` selected or not.
fn switch(key: &str, enabled: bool) -> String {
    let (on, off) = if enabled {
        (" selected", "")
    } else {
        ("", " selected")
    };
    format!(
        "name=\"{key}\"><option value=\"enabled\"{on}>Enabled</option><option value=\"disabled\"{off}>Disabled</option>"
    )
}

/// The target radio button of `key` for `target` (`all` or `groups`), checked.
fn target_checked(key: &str, target: &str) -> String {
    format!("id=\"{key}_{target}\" name=\"{key}_targets\" value=\"{target}\" checked>")
}

/// The checkbox of `group` under `key`, and whether it is ticked.
fn group_box(key: &str, group: &Group, ticked: bool) -> String {
    let name = format!("{key}_{}", group.id);
    let checked = if ticked { " checked" } else { "" };
    format!(
        "id=\"{name}\" name=\"{name}\" value=\"yes\"{checked}> {}</label>",
        group.name
    )
}

#[tokio::test]
async fn policy_page_shows_texts_and_calls_on_for_all_users_by_default() {
    let srv = TestServer::spawn().await;
    let (mut b, pilot, staff) = admin_and_groups(&srv).await;
    let page = b.get("/admin/policy").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let body = &page.body;
    for expected in [
        in_force("Text message codes", "all users"),
        in_force("Phone calls", "all users"),
        "<h3>Text message (SMS)</h3>".to_string(),
        "<h3>Phone call (voice)</h3>".to_string(),
        switch("sms", true),
        switch("voice", true),
        target_checked("sms", "all"),
        target_checked("voice", "all"),
    ] {
        assert!(body.contains(&expected), "{expected}: {body}");
    }
    for key in ["sms", "voice"] {
        for g in [&pilot, &staff] {
            let unticked = group_box(key, g, false);
            assert!(body.contains(&unticked), "{unticked}: {body}");
        }
    }
}

#[tokio::test]
async fn policy_form_turns_texts_off_and_calls_on_for_one_group() {
    let srv = TestServer::spawn().await;
    let (mut b, pilot, staff) = admin_and_groups(&srv).await;
    let tenant = srv.state.default_tenant;
    let version = b.get("/admin/policy").await.hidden("version").unwrap();
    let voice_pilot = format!("voice_{}", pilot.id);
    let changes = [
        ("sms", "disabled"),
        ("voice_targets", "groups"),
        (voice_pilot.as_str(), "yes"),
    ];
    let p = submit(&mut b, &version, &changes).await;
    assert_eq!(p.location(), Some("/admin/policy?done=saved"), "{}", p.body);

    let (policy, v) = srv.store.find_policy(tenant).await.unwrap().unwrap();
    assert_eq!(v, 1);
    assert_eq!(
        policy.sms,
        PhoneMethodPolicy {
            enabled: false,
            groups: None
        }
    );
    assert_eq!(
        policy.voice,
        PhoneMethodPolicy {
            enabled: true,
            groups: Some(vec![pilot.id])
        }
    );
    assert_eq!(policy.mfa_required, MfaRequirement::Nobody);
    let changed = policy_changes(&srv).await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].username, "root");
    assert_eq!(
        changed[0].reason.as_deref(),
        Some("sms: all users -> off; voice: all users -> groups [Pilot]"),
        "only texts and calls changed"
    );

    // The page shows what is in force and fills the form from it.
    let page = b.follow(p).await;
    let body = &page.body;
    assert_eq!(page.hidden("version").as_deref(), Some("1"));
    for expected in [
        "Policy saved".to_string(),
        in_force("Text message codes", "off"),
        in_force("Phone calls", "Pilot"),
        switch("sms", false),
        switch("voice", true),
        target_checked("sms", "all"),
        target_checked("voice", "groups"),
        group_box("voice", &pilot, true),
        group_box("voice", &staff, false),
        group_box("sms", &pilot, false),
    ] {
        assert!(body.contains(&expected), "{expected}: {body}");
    }

    // The same form again is no change: no new version, no audit line.
    let p = submit(&mut b, "1", &changes).await;
    assert_eq!(
        p.location(),
        Some("/admin/policy?done=unchanged"),
        "{}",
        p.body
    );
    assert_eq!(policy_changes(&srv).await.len(), 1);
}

#[tokio::test]
async fn selected_groups_without_a_group_ticked_are_refused() {
    let srv = TestServer::spawn().await;
    let (mut b, pilot, _) = admin_and_groups(&srv).await;
    let tenant = srv.state.default_tenant;
    b.get("/admin/policy").await;
    for (key, message) in [
        (
            "sms",
            "Choose at least one group for text messages, or target all users, or disable them.",
        ),
        (
            "voice",
            "Choose at least one group for phone calls, or target all users, or disable them.",
        ),
    ] {
        let targets = format!("{key}_targets");
        // Other typed values come back as typed.
        let p = submit(&mut b, "0", &[(&targets, "groups"), ("digits", "5")]).await;
        assert_eq!(p.status, 400, "{key}: {}", p.body);
        let banner = format!("<p class=\"error\" role=\"alert\">{message}</p>");
        assert!(p.body.contains(&banner), "{key}: {}", p.body);
        assert!(
            p.body.contains(&target_checked(key, "groups")),
            "{key}: {}",
            p.body
        );
        assert!(p.body.contains(&switch(key, true)), "{key}: {}", p.body);
        assert!(p.body.contains("value=\"5\""), "{key}: {}", p.body);
        assert!(
            p.body.contains(&group_box(key, &pilot, false)),
            "{key}: {}",
            p.body
        );
    }
    assert!(srv.store.find_policy(tenant).await.unwrap().is_none());
    assert!(policy_changes(&srv).await.is_empty());

    // Disabled, the target does not matter.
    let p = submit(
        &mut b,
        "0",
        &[("sms", "disabled"), ("sms_targets", "groups")],
    )
    .await;
    assert_eq!(p.location(), Some("/admin/policy?done=saved"), "{}", p.body);
    let (policy, _) = srv.store.find_policy(tenant).await.unwrap().unwrap();
    assert!(!policy.sms.enabled);
}

#[tokio::test]
async fn a_form_without_texts_and_calls_keeps_them_as_stored() {
    // A console page opened before it showed texts and calls, submitted after the upgrade.
    use sesame_server::service::policy::PolicyEdit;
    let srv = TestServer::spawn().await;
    let (mut b, _, _) = admin_and_groups(&srv).await;
    let tenant = srv.state.default_tenant;
    srv.set_policy(PolicyEdit {
        sms: Some("Staff".into()),
        voice: Some("off".into()),
        ..Default::default()
    })
    .await;
    let (before, version) = srv.store.find_policy(tenant).await.unwrap().unwrap();
    b.get("/admin/policy").await;
    let p = submit(
        &mut b,
        &version.to_string(),
        &[
            ("sms", ""),
            ("sms_targets", ""),
            ("voice", ""),
            ("voice_targets", ""),
            ("digits", "4"),
        ],
    )
    .await;
    assert_eq!(p.location(), Some("/admin/policy?done=saved"), "{}", p.body);
    let (after, _) = srv.store.find_policy(tenant).await.unwrap().unwrap();
    assert_eq!((after.sms, after.voice), (before.sms, before.voice));
    assert_eq!(after.authenticator.digits, 4);
}

#[tokio::test]
async fn non_administrators_cannot_change_texts_or_calls() {
    let srv = TestServer::spawn().await;
    srv.create_user("bob", Some(PASSWORD)).await;
    let mut b = srv.browser();
    let p = b.password_step("bob", PASSWORD).await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);
    // A valid CSRF token from bob's own pages does not help.
    b.get("/account").await;
    let p = submit(&mut b, "0", &[("sms", "disabled"), ("voice", "disabled")]).await;
    assert_eq!(p.status, 403, "{}", p.body);
    let tenant = srv.state.default_tenant;
    assert!(srv.store.find_policy(tenant).await.unwrap().is_none());
    assert!(policy_changes(&srv).await.is_empty());
}

/// Saving a policy that would leave the administrator saving it without an allowed method is
/// asked first (the policy trap of issue 14), and saved only once confirmed.
#[tokio::test]
async fn a_policy_that_would_trap_the_administrator_is_asked_about_first() {
    let srv = TestServer::spawn().await;
    let (mut b, _, _) = admin_and_groups(&srv).await;
    let tenant = srv.state.default_tenant;
    // root has no method: "two-step verification for all" would send them to set one up.
    let p = submit(&mut b, "0", &[("mfa", "all")]).await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert!(
        p.body.contains("none of your methods would be allowed"),
        "{}",
        p.body
    );
    assert!(p.body.contains("name=\"confirm_lockout\""), "{}", p.body);
    assert_eq!(
        srv.store.find_policy(tenant).await.unwrap(),
        None,
        "nothing saved"
    );
    // Confirmed: saved, and said so.
    let p = submit(&mut b, "0", &[("mfa", "all"), ("confirm_lockout", "yes")]).await;
    assert_eq!(p.location(), Some("/admin/policy?done=saved"), "{}", p.body);
    let (policy, _) = srv.store.find_policy(tenant).await.unwrap().unwrap();
    assert_eq!(policy.mfa_required, MfaRequirement::All);
    // With a method the new policy allows, nothing is asked.
    let root = srv
        .store
        .find_user_by_username(tenant, "root")
        .await
        .unwrap()
        .unwrap();
    srv.add_totp(
        root.id,
        &sesame_core::secret::SecretBytes::new(b"0123456789abcdefghij".to_vec()),
    )
    .await;
    let p = submit(&mut b, "1", &[("mfa", "all"), ("digits", "3")]).await;
    assert_eq!(p.location(), Some("/admin/policy?done=saved"), "{}", p.body);
    // But turning off the only kind of method root has is asked about again.
    let p = submit(
        &mut b,
        "2",
        &[("mfa", "all"), ("digits", "3"), ("enabled", "disabled")],
    )
    .await;
    assert_eq!(p.status, 409, "{}", p.body);
}
