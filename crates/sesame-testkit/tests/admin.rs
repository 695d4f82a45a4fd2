//! The admin console (`/admin`) through the real HTTP server: who may open it, what each page
//! changes, that every change is audited, and that it resists cross-site posts and HTML
//! injection. Each test is named after the property it guards.

use sesame_core::policy::{AuthenticatorMode, GroupTarget, MfaRequirement, Targets};
use sesame_core::secret::SecretBytes;
use sesame_core::UserId;
use sesame_store::{AuditEvent, AuditFilter, NewDevice, NewUser, User};
use sesame_testkit::{Browser, Page, TestServer, START};

const PASSWORD: &str = "correct horse";
const FORM: &str = "application/x-www-form-urlencoded";

/// Every page of the console, for the access tests.
const PAGES: [&str; 8] = [
    "/admin",
    "/admin/users",
    "/admin/users/bob",
    "/admin/groups",
    "/admin/groups/Pilot",
    "/admin/policy",
    "/admin/log",
    "/admin/log?user=bob&result=failure",
];

async fn create_admin(srv: &TestServer, name: &str) -> User {
    let hash = sesame_core::password::hash(
        &sesame_core::secret::SecretString::new(PASSWORD.into()),
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    let tenant = srv.store.default_tenant().await.unwrap();
    srv.store
        .create_user(
            NewUser {
                tenant,
                username: name.into(),
                display_name: name.into(),
                password_hash: Some(hash),
                is_admin: true,
            },
            START,
        )
        .await
        .unwrap()
}

/// Signs in with the password through the real pages.
async fn sign_in(srv: &TestServer, name: &str) -> Browser {
    let mut b = srv.browser();
    let p = b.password_step(name, PASSWORD).await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);
    b
}

/// An administrator `root`, signed in.
async fn admin(srv: &TestServer) -> (User, Browser) {
    let u = create_admin(srv, "root").await;
    (u, sign_in(srv, "root").await)
}

/// An administrator `root` with an authenticator app, signed in with password and code (so
/// the session stays usable when the policy starts to require two-step verification).
async fn admin_with_code(srv: &TestServer) -> (User, Browser) {
    let u = create_admin(srv, "root").await;
    let secret = SecretBytes::new(b"0123456789abcdefghij".to_vec());
    srv.add_totp(u.id, &secret).await;
    let mut b = srv.browser();
    let p = b.password_step("root", PASSWORD).await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    b.follow(p).await;
    let p = b
        .post("/login/verify", &[("code", &srv.code(&secret))])
        .await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);
    (u, b)
}

async fn is_signed_in(b: &mut Browser) -> bool {
    match b.get("/account").await.status {
        200 => true,
        303 => false,
        s => panic!("unexpected status {s}"),
    }
}

async fn events(srv: &TestServer, event: &str) -> Vec<AuditEvent> {
    srv.store
        .list_audit(&AuditFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event == event)
        .collect()
}

async fn user(srv: &TestServer, name: &str) -> User {
    let t = srv.store.default_tenant().await.unwrap();
    srv.store
        .find_user_by_username(t, name)
        .await
        .unwrap()
        .unwrap()
}

/// A registered Sesame Authenticator app for `user`, as an activation would create it.
async fn device(srv: &TestServer, user: UserId, name: &str) -> sesame_store::Device {
    let t = srv.store.default_tenant().await.unwrap();
    let code = format!("code-{name}").into_bytes();
    srv.store
        .create_activation(user, &code, START + 600)
        .await
        .unwrap();
    srv.store.consume_activation(&code, START).await.unwrap();
    let new = NewDevice {
        tenant: t,
        user,
        name: name.into(),
        alg: "ES256".into(),
        public_key: format!("pk-{name}").into_bytes(),
    };
    srv.store
        .create_device(new, &code, &SecretBytes::new(vec![1; 20]), START)
        .await
        .unwrap()
}

fn form(fields: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

/// A POST with the browser's cookies, the body as given and extra headers; does not change
/// the browser.
async fn forged_post(b: &Browser, path: &str, body: String, headers: &[(&str, &str)]) -> Page {
    let cookie = b
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = client
        .post(format!("{}{path}", b.base))
        .header("cookie", cookie)
        .header("content-type", FORM)
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("POST");
    Page {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap_or_default(),
    }
}

/// The rows of the sign-in log table: the text of each cell.
fn log_rows(body: &str) -> Vec<Vec<String>> {
    let Some(start) = body.find("<table class=\"log\">") else {
        return Vec::new();
    };
    let table = &body[start..body[start..].find("</table>").unwrap() + start];
    let tbody = table.split("<tbody>").nth(1).unwrap_or("");
    tbody
        .split("<tr>")
        .filter(|r| r.starts_with("<td"))
        .map(|r| {
            r.trim_end_matches("</tr>")
                .split("</td>")
                .filter(|cell| cell.starts_with("<td"))
                // A cell's text follows its opening tag (which may carry a class and a label).
                .map(|cell| cell[cell.find('>').unwrap() + 1..].to_string())
                .collect()
        })
        .collect()
}

// ---- Who may use the console ----

#[tokio::test]
async fn non_admins_get_403_on_every_admin_page_and_post() {
    let srv = TestServer::spawn().await;
    create_admin(&srv, "root").await;
    let bob = srv.create_user("bob", Some(PASSWORD)).await;
    let root = user(&srv, "root").await;
    srv.store
        .create_group(root.tenant, "Pilot", START)
        .await
        .unwrap();
    let mut b = sign_in(&srv, "bob").await;
    for path in PAGES {
        let p = b.get(path).await;
        assert_eq!(p.status, 403, "{path}: {}", p.body);
        assert!(p.body.contains("administrators"), "{path}: {}", p.body);
    }
    // A valid CSRF token from bob's own pages does not help.
    b.get("/account").await;
    let p = b
        .post(
            "/admin/users",
            &[
                ("username", "mallory"),
                ("password", PASSWORD),
                ("admin", "yes"),
            ],
        )
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    let p = b.post("/admin/users/root/block", &[]).await;
    assert_eq!(p.status, 403, "{}", p.body);
    let p = b
        .post(
            "/admin/policy",
            &[
                ("version", "0"),
                ("enabled", "disabled"),
                ("targets", "all"),
                ("mfa", "nobody"),
            ],
        )
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    let t = bob.tenant;
    assert!(srv
        .store
        .find_user_by_username(t, "mallory")
        .await
        .unwrap()
        .is_none());
    assert!(!user(&srv, "root").await.is_blocked);
    assert!(srv.store.find_policy(t).await.unwrap().is_none());
    assert!(events(&srv, "policy_changed").await.is_empty());
}

#[tokio::test]
async fn anonymous_visitors_are_sent_to_sign_in() {
    let srv = TestServer::spawn().await;
    create_admin(&srv, "root").await;
    let mut b = srv.browser();
    for path in PAGES {
        let p = b.get(path).await;
        assert_eq!(p.status, 303, "{path}");
        assert!(
            p.location().unwrap().starts_with("/login?next=%2Fadmin"),
            "{path}: {:?}",
            p.location()
        );
    }
    b.get("/login").await;
    let p = b
        .post(
            "/admin/users",
            &[("username", "mallory"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(p.status, 303);
    assert!(p.location().unwrap().starts_with("/login"));
    let t = srv.store.default_tenant().await.unwrap();
    assert!(srv
        .store
        .find_user_by_username(t, "mallory")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn admin_sees_the_console() {
    let srv = TestServer::spawn().await;
    let (_, mut b) = admin(&srv).await;
    let p = b.get("/admin").await;
    assert_eq!(p.status, 200, "{}", p.body);
    for link in [
        "href=\"/admin/users\">Users",
        "href=\"/admin/groups\">Groups",
        "href=\"/admin/policy\">Authentication methods policy",
        "href=\"/admin/log\">Sign-in log",
    ] {
        assert!(p.body.contains(link), "{link}: {}", p.body);
    }
}

// ---- Users ----

#[tokio::test]
async fn admin_creates_a_user_who_can_sign_in_with_the_password() {
    let srv = TestServer::spawn().await;
    let (_, mut b) = admin(&srv).await;
    b.get("/admin/users").await;
    let p = b
        .post(
            "/admin/users",
            &[
                ("username", "carol"),
                ("display_name", "Carol C."),
                ("password", "carol's password"),
            ],
        )
        .await;
    assert_eq!(
        p.location(),
        Some("/admin/users/carol?done=created"),
        "{}",
        p.body
    );
    let page = b.follow(p).await;
    assert!(page.body.contains("Carol C."), "{}", page.body);
    let carol = user(&srv, "carol").await;
    assert!(!carol.is_admin && carol.has_password);
    let created = events(&srv, "admin_user_created").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].username, "carol");
    assert!(created[0].reason.as_deref().unwrap().contains("admin:root"));

    let mut c = srv.browser();
    let p = c.password_step("carol", "carol's password").await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);

    // Without a password; as an administrator; refused: a taken name, a short password.
    let p = b
        .post("/admin/users", &[("username", "dave"), ("admin", "yes")])
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let dave = user(&srv, "dave").await;
    assert!(dave.is_admin && !dave.has_password);
    assert_eq!(dave.display_name, "dave");
    let p = b
        .post(
            "/admin/users",
            &[("username", "CAROL"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("already exists"), "{}", p.body);
    let p = b
        .post(
            "/admin/users",
            &[
                ("username", "erin"),
                ("display_name", "Erin"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("at least 8"), "{}", p.body);
    assert!(
        p.body.contains("value=\"Erin\""),
        "typed values are kept: {}",
        p.body
    );
    let p = b.post("/admin/users", &[("username", "  ")]).await;
    assert_eq!(p.status, 400);
}

#[tokio::test]
async fn blocked_users_session_stops_working_and_unblock_restores_sign_in() {
    let srv = TestServer::spawn().await;
    let (_, mut a) = admin(&srv).await;
    let bob = srv.create_user("bob", Some(PASSWORD)).await;
    let mut b = sign_in(&srv, "bob").await;
    // A fraud report had blocked requests to bob's phone too.
    srv.store
        .update_user_push_blocked(bob.id, Some(START))
        .await
        .unwrap();
    let page = a.get("/admin/users").await;
    assert!(page.body.contains("Yes, since"), "{}", page.body);

    a.get("/admin/users/bob").await;
    let p = a.post("/admin/users/bob/block", &[]).await;
    assert_eq!(
        p.location(),
        Some("/admin/users/bob?done=blocked"),
        "{}",
        p.body
    );
    assert!(user(&srv, "bob").await.is_blocked);
    assert!(!is_signed_in(&mut b).await, "bob's session ended");
    let mut again = srv.browser();
    let p = again.password_step("bob", PASSWORD).await;
    assert_eq!(p.status, 403, "{}", p.body);
    let blocked = events(&srv, "admin_user_blocked").await;
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].user, Some(bob.id));
    assert!(blocked[0]
        .reason
        .as_deref()
        .unwrap()
        .starts_with("admin:root"));

    let page = a.get("/admin/users/bob").await;
    assert!(page.body.contains(">Unblock</button>"), "{}", page.body);
    let p = a.post("/admin/users/bob/unblock", &[]).await;
    assert_eq!(p.location(), Some("/admin/users/bob?done=unblocked"));
    let bob = user(&srv, "bob").await;
    assert!(!bob.is_blocked);
    assert_eq!(
        bob.push_blocked_at, None,
        "unblock also lifts the fraud-report block"
    );
    sign_in(&srv, "bob").await;
    assert_eq!(events(&srv, "admin_user_unblocked").await.len(), 1);
}

#[tokio::test]
async fn admin_cannot_block_themselves() {
    let srv = TestServer::spawn().await;
    let (root, mut a) = admin(&srv).await;
    let page = a.get("/admin/users/root").await;
    assert!(!page.body.contains(">Block</button>"), "{}", page.body);
    let p = a.post("/admin/users/root/block", &[]).await;
    assert_eq!(p.location(), Some("/admin/users/root?error=self_block"));
    let page = a.follow(p).await;
    assert!(
        page.body.contains("cannot block your own account"),
        "{}",
        page.body
    );
    assert!(
        !srv.store
            .find_user(root.id)
            .await
            .unwrap()
            .unwrap()
            .is_blocked
    );
    assert!(is_signed_in(&mut a).await);
}

#[tokio::test]
async fn destructive_actions_need_a_recent_sign_in() {
    let srv = TestServer::spawn().await;
    let (_, mut a) = admin(&srv).await;
    let bob = srv.create_user("bob", Some(PASSWORD)).await;
    srv.add_totp(bob.id, &SecretBytes::new(b"0123456789abcdefghij".to_vec()))
        .await;
    a.get("/admin/users/bob").await;
    srv.clock.advance(601);
    for action in ["block", "reset-methods"] {
        let p = a.post(&format!("/admin/users/bob/{action}"), &[]).await;
        assert_eq!(p.status, 303, "{action}");
        assert_eq!(
            p.location(),
            Some("/login?reauth=1&next=%2Fadmin%2Fusers%2Fbob"),
            "{action}"
        );
    }
    assert!(!user(&srv, "bob").await.is_blocked);
    assert_eq!(srv.store.list_methods(bob.id).await.unwrap().len(), 1);
    // Looking still works.
    assert_eq!(a.get("/admin/users/bob").await.status, 200);
}

/// The console shows the wrong passwords counted for a user, and Unlock forgets them (after a
/// recent sign-in, audited).
#[tokio::test]
async fn the_console_shows_wrong_passwords_and_unlocks_them() {
    let srv = TestServer::spawn().await;
    let (_, mut a) = admin(&srv).await;
    srv.create_user("bob", Some(PASSWORD)).await;
    let page = a.get("/admin/users/bob").await;
    assert!(!page.body.contains("/admin/users/bob/unlock"));
    let mut guesser = srv.browser();
    for _ in 0..6 {
        guesser.password_step("bob", "guess").await;
    }
    let page = a.get("/admin/users/bob").await;
    assert!(
        page.body
            .contains("5 in a row from browsers the user never signed in with: waiting until"),
        "{}",
        page.body
    );
    assert!(page.body.contains("/admin/users/bob/unlock"));
    // A stale console session must sign in again first.
    srv.clock.advance(601);
    let p = a.post("/admin/users/bob/unlock", &[]).await;
    assert_eq!(
        p.location(),
        Some("/login?reauth=1&next=%2Fadmin%2Fusers%2Fbob")
    );
    let a = &mut sign_in(&srv, "root").await;
    a.get("/admin/users/bob").await;
    let p = a.post("/admin/users/bob/unlock", &[]).await;
    assert_eq!(p.location(), Some("/admin/users/bob?done=unlocked"));
    let page = a.follow(p).await;
    assert!(page.body.contains("Unlocked"), "{}", page.body);
    assert!(!page.body.contains("in a row"), "{}", page.body);
    assert_eq!(events(&srv, "admin_user_unlocked").await.len(), 1);
    let p = guesser.password_step("bob", PASSWORD).await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);
}

/// Who gets in and who must use two-step verification are decided by users, groups and
/// membership: creating them and changing membership need a recent sign-in too.
#[tokio::test]
async fn creating_users_groups_and_membership_need_a_recent_sign_in() {
    let srv = TestServer::spawn().await;
    let (_, mut a) = admin(&srv).await;
    srv.create_user("bob", Some(PASSWORD)).await;
    let t = srv.state.default_tenant;
    let pilot = srv.store.create_group(t, "pilot", START).await.unwrap();
    a.get("/admin/groups/pilot").await;
    srv.clock.advance(601);
    let stale = [
        (
            "/admin/users",
            vec![("username", "carol")],
            "%2Fadmin%2Fusers",
        ),
        (
            "/admin/groups",
            vec![("name", "staff")],
            "%2Fadmin%2Fgroups",
        ),
        (
            "/admin/groups/pilot/members",
            vec![("username", "bob")],
            "%2Fadmin%2Fgroups%2Fpilot",
        ),
    ];
    for (path, fields, back) in stale {
        let p = a.post(path, &fields).await;
        assert_eq!(p.status, 303, "{path}: {}", p.body);
        assert_eq!(
            p.location(),
            Some(format!("/login?reauth=1&next={back}").as_str()),
            "{path}"
        );
    }
    assert!(srv
        .store
        .find_user_by_username(t, "carol")
        .await
        .unwrap()
        .is_none());
    assert!(srv
        .store
        .find_group_by_name(t, "staff")
        .await
        .unwrap()
        .is_none());
    assert!(srv
        .store
        .list_group_members(pilot.id)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn reset_methods_removes_methods_and_devices() {
    let srv = TestServer::spawn().await;
    let (_, mut a) = admin(&srv).await;
    let bob = srv.create_user("bob", Some(PASSWORD)).await;
    srv.add_totp(bob.id, &SecretBytes::new(b"0123456789abcdefghij".to_vec()))
        .await;
    let phone = device(&srv, bob.id, "Bob's phone").await;
    let page = a.get("/admin/users/bob").await;
    assert!(page.body.contains("Bob&#39;s phone"), "{}", page.body);
    assert!(
        page.body
            .contains(&format!("/admin/users/bob/devices/{}/remove", phone.id)),
        "{}",
        page.body
    );
    let p = a.post("/admin/users/bob/reset-methods", &[]).await;
    assert_eq!(
        p.location(),
        Some("/admin/users/bob?done=reset"),
        "{}",
        p.body
    );
    assert!(srv.store.list_methods(bob.id).await.unwrap().is_empty());
    assert!(srv.store.list_devices(bob.id).await.unwrap().is_empty());
    assert_eq!(user(&srv, "bob").await.default_method, None);
    let reset = events(&srv, "admin_methods_reset").await;
    assert_eq!(reset.len(), 1);
    assert!(reset[0].reason.as_deref().unwrap().contains("admin:root"));
    // Bob signs in with the password alone now.
    sign_in(&srv, "bob").await;
}

#[tokio::test]
async fn admin_device_actions_turn_off_phone_sign_in_allow_it_again_and_remove() {
    let srv = TestServer::spawn().await;
    let (_, mut a) = admin(&srv).await;
    let bob = srv.create_user("bob", Some(PASSWORD)).await;
    let eve = srv.create_user("eve", Some(PASSWORD)).await;
    let phone = device(&srv, bob.id, "phone").await;
    let other = device(&srv, eve.id, "eve-phone").await;
    srv.store
        .set_pin_key(phone.row_id, b"k1", None)
        .await
        .unwrap();
    srv.store
        .set_phone_sign_in(phone.row_id, Some(START))
        .await
        .unwrap();
    let base = format!("/admin/users/bob/devices/{}", phone.id);
    let page = a.get("/admin/users/bob").await;
    assert!(
        page.body.contains("Turn off phone sign-in"),
        "{}",
        page.body
    );

    let p = a.post(&format!("{base}/phone-sign-in-off"), &[]).await;
    assert_eq!(
        p.location(),
        Some("/admin/users/bob?done=phone_sign_in_off")
    );
    let d = srv.store.find_device(&phone.id).await.unwrap().unwrap();
    assert_eq!(d.phone_sign_in_at, None);
    assert_eq!(events(&srv, "admin_phone_sign_in_disabled").await.len(), 1);

    srv.store
        .disable_pin_key(phone.row_id, START)
        .await
        .unwrap();
    let p = a.post(&format!("{base}/allow-again"), &[]).await;
    assert_eq!(p.location(), Some("/admin/users/bob?done=allowed_again"));
    let d = srv.store.find_device(&phone.id).await.unwrap().unwrap();
    assert!(d.pin_key.is_none() && d.pin_key_disabled_at.is_none());
    assert_eq!(events(&srv, "admin_pin_key_reset").await.len(), 1);

    // A device is only reachable under its own user.
    let p = a
        .post(
            &format!("/admin/users/bob/devices/{}/remove", other.id),
            &[],
        )
        .await;
    assert_eq!(p.status, 404);
    assert!(srv.store.find_device(&other.id).await.unwrap().is_some());

    let p = a.post(&format!("{base}/remove"), &[]).await;
    assert_eq!(p.location(), Some("/admin/users/bob?done=device_removed"));
    assert!(srv.store.find_device(&phone.id).await.unwrap().is_none());
    let removed = events(&srv, "admin_device_removed").await;
    assert_eq!(removed.len(), 1);
    assert!(removed[0].reason.as_deref().unwrap().contains("admin:root"));
}

#[tokio::test]
async fn html_in_a_display_name_is_escaped() {
    let srv = TestServer::spawn().await;
    let (_, mut a) = admin(&srv).await;
    a.get("/admin/users").await;
    let evil = "<script>alert('x')</script><b>Bold</b>";
    // Markup in a new username is refused, and said so escaped.
    let p = a
        .post(
            "/admin/users",
            &[("username", "<i>mallory</i>"), ("display_name", evil)],
        )
        .await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.body.contains("not &quot;&lt;&quot;"), "{}", p.body);
    // A username stored before the rules (the store takes any) is shown escaped.
    srv.create_user("<i>mallory</i>", None).await;
    let p = a
        .post(
            "/admin/users",
            &[("username", "mallory2"), ("display_name", evil)],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let follow = a.follow(p).await;
    assert_eq!(follow.status, 200, "{}", follow.body);
    for page in [a.get("/admin/users").await, follow] {
        assert!(!page.body.contains("<script>alert"), "{}", page.body);
        assert!(!page.body.contains("<b>Bold"), "{}", page.body);
        assert!(!page.body.contains("<i>mallory"), "{}", page.body);
        assert!(
            page.body
                .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
            "{}",
            page.body
        );
    }
}

// ---- Groups ----

#[tokio::test]
async fn admin_creates_a_group_and_manages_its_members() {
    let srv = TestServer::spawn().await;
    let (_, mut a) = admin(&srv).await;
    let bob = srv.create_user("bob", Some(PASSWORD)).await;
    a.get("/admin/groups").await;
    let p = a.post("/admin/groups", &[("name", "Pilot team")]).await;
    assert_eq!(
        p.location(),
        Some("/admin/groups/Pilot%20team?done=group_created"),
        "{}",
        p.body
    );
    a.follow(p).await;
    let p = a.post("/admin/groups", &[("name", "pilot TEAM")]).await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("already exists"), "{}", p.body);

    let p = a
        .post("/admin/groups/Pilot%20team/members", &[("username", "bob")])
        .await;
    assert_eq!(
        p.location(),
        Some("/admin/groups/Pilot%20team?done=member_added")
    );
    let group = srv
        .store
        .find_group_by_name(bob.tenant, "Pilot team")
        .await
        .unwrap()
        .unwrap();
    let members = srv.store.list_group_members(group.id).await.unwrap();
    assert_eq!(members.iter().map(|u| u.id).collect::<Vec<_>>(), [bob.id]);
    let page = a.get("/admin/groups").await;
    assert!(
        page.body
            .contains("Pilot team</a></td><td data-label=\"Members\">1</td>"),
        "{}",
        page.body
    );
    let added = events(&srv, "admin_group_member_added").await;
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].user, Some(bob.id));

    let p = a
        .post(
            "/admin/groups/Pilot%20team/members",
            &[("username", "nobody")],
        )
        .await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("no user named"), "{}", p.body);

    a.get("/admin/groups/Pilot%20team").await;
    let p = a
        .post("/admin/groups/Pilot%20team/members/bob/remove", &[])
        .await;
    assert_eq!(
        p.location(),
        Some("/admin/groups/Pilot%20team?done=member_removed")
    );
    assert!(srv
        .store
        .list_group_members(group.id)
        .await
        .unwrap()
        .is_empty());
}

// ---- The policy ----

/// The policy form as a browser submits it, with `changes` replacing or adding fields
/// (an empty value leaves a field out, as an unticked checkbox does).
async fn submit_policy(a: &mut Browser, version: &str, changes: &[(&str, &str)]) -> Page {
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
    a.post("/admin/policy", &refs).await
}

#[tokio::test]
async fn policy_form_changes_the_policy_and_audits_it() {
    let srv = TestServer::spawn().await;
    let (root, mut a) = admin_with_code(&srv).await;
    let pilot = srv
        .store
        .create_group(root.tenant, "Pilot", START)
        .await
        .unwrap();
    srv.store
        .create_group(root.tenant, "Staff", START)
        .await
        .unwrap();
    let page = a.get("/admin/policy").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("initial policy"), "{}", page.body);
    let version = page.hidden("version").expect("version field");
    assert_eq!(version, "0");
    let (target, mode) = (format!("target_{}", pilot.id), format!("mode_{}", pilot.id));
    let p = submit_policy(
        &mut a,
        &version,
        &[
            ("targets", "groups"),
            (&target, "yes"),
            (&mode, "passwordless"),
            ("digits", "3"),
            ("lifetime", "90"),
            ("pin_required", "yes"),
            ("show_location", ""),
            ("mfa", "all"),
            // root (not in Pilot) keeps no allowed method under this policy: confirmed.
            ("confirm_lockout", "yes"),
        ],
    )
    .await;
    assert_eq!(p.location(), Some("/admin/policy?done=saved"), "{}", p.body);

    let (policy, v) = srv.store.find_policy(root.tenant).await.unwrap().unwrap();
    assert_eq!(v, 1);
    let auth = &policy.authenticator;
    assert_eq!(
        auth.targets,
        Targets::Groups {
            groups: vec![GroupTarget {
                group: pilot.id,
                mode: AuthenticatorMode::Passwordless
            }]
        }
    );
    assert_eq!((auth.digits, auth.lifetime_secs), (3, 90));
    assert!(auth.enabled && auth.pin_required && auth.show_app_name && !auth.show_location);
    assert_eq!(policy.mfa_required, MfaRequirement::All);
    let changed = events(&srv, "policy_changed").await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].username, "root");
    assert_eq!(changed[0].user, Some(root.id));
    let reason = changed[0].reason.as_deref().unwrap();
    assert!(reason.contains("groups [Pilot=passwordless]"), "{reason}");
    assert!(
        reason.contains("mfa_required: nobody -> all users"),
        "{reason}"
    );

    // The page shows what is in force and fills the form from it.
    let page = a.follow(p).await;
    assert!(page.body.contains("Policy saved"), "{}", page.body);
    assert!(page.body.contains("Pilot (passwordless)"), "{}", page.body);
    assert_eq!(page.hidden("version").as_deref(), Some("1"));
    assert!(
        page.body
            .contains(&format!("name=\"{target}\" value=\"yes\" checked")),
        "{}",
        page.body
    );

    // Two-step verification for chosen groups, back to all users for the app.
    let p = submit_policy(
        &mut a,
        "1",
        &[
            ("mfa", "groups"),
            (&format!("mfa_{}", pilot.id), "yes"),
            ("mode", "push"),
        ],
    )
    .await;
    assert_eq!(p.location(), Some("/admin/policy?done=saved"), "{}", p.body);
    let (policy, _) = srv.store.find_policy(root.tenant).await.unwrap().unwrap();
    assert_eq!(
        policy.authenticator.targets,
        Targets::All {
            mode: AuthenticatorMode::Push
        }
    );
    assert_eq!(
        policy.mfa_required,
        MfaRequirement::Groups {
            groups: vec![pilot.id]
        }
    );

    // The same form again changes nothing and leaves no audit line.
    let p = submit_policy(
        &mut a,
        "2",
        &[
            ("mfa", "groups"),
            (&format!("mfa_{}", pilot.id), "yes"),
            ("mode", "push"),
        ],
    )
    .await;
    assert_eq!(
        p.location(),
        Some("/admin/policy?done=unchanged"),
        "{}",
        p.body
    );
    assert_eq!(events(&srv, "policy_changed").await.len(), 2);
}

#[tokio::test]
async fn stale_policy_form_is_refused() {
    let srv = TestServer::spawn().await;
    let (root, mut a) = admin(&srv).await;
    let mut other = sign_in(&srv, "root").await;
    let stale = a.get("/admin/policy").await.hidden("version").unwrap();
    other.get("/admin/policy").await;
    let p = submit_policy(&mut other, "0", &[("digits", "4")]).await;
    assert_eq!(p.location(), Some("/admin/policy?done=saved"), "{}", p.body);

    let p = submit_policy(&mut a, &stale, &[("digits", "6"), ("pin_required", "yes")]).await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert!(
        p.body.contains("changed the policy after you opened"),
        "{}",
        p.body
    );
    // The form now shows the policy in force, at its new version.
    assert_eq!(p.hidden("version").as_deref(), Some("1"));
    assert!(
        p.body
            .contains("name=\"digits\" inputmode=\"numeric\" maxlength=\"3\" value=\"4\""),
        "{}",
        p.body
    );
    let (policy, v) = srv.store.find_policy(root.tenant).await.unwrap().unwrap();
    assert_eq!((policy.authenticator.digits, v), (4, 1));
    assert!(!policy.authenticator.pin_required);
    assert_eq!(events(&srv, "policy_changed").await.len(), 1);
}

#[tokio::test]
async fn invalid_policy_input_is_explained_and_changes_nothing() {
    let srv = TestServer::spawn().await;
    let (root, mut a) = admin(&srv).await;
    let pilot = srv
        .store
        .create_group(root.tenant, "Pilot", START)
        .await
        .unwrap();
    a.get("/admin/policy").await;
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("digits", "12")], "digits must be 2 to 8"),
        (&[("digits", "six")], "must be a number from 2 to 8"),
        (&[("lifetime", "5")], "lifetime must be 10 to 600"),
        (&[("targets", "groups")], "at least one group"),
        (&[("mfa", "groups")], "at least one group"),
        (&[("mode", "sometimes")], "unknown mode"),
    ];
    for (changes, message) in cases {
        let p = submit_policy(&mut a, "0", changes).await;
        assert_eq!(p.status, 400, "{changes:?}: {}", p.body);
        assert!(p.body.contains(message), "{changes:?}: {}", p.body);
        assert!(p.body.contains("role=\"alert\""), "{}", p.body);
    }
    // What was typed is shown again.
    let p = submit_policy(
        &mut a,
        "0",
        &[
            ("digits", "12"),
            ("targets", "groups"),
            (&format!("target_{}", pilot.id), "yes"),
        ],
    )
    .await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("value=\"12\""), "{}", p.body);
    assert!(p.body.contains("value=\"groups\" checked"), "{}", p.body);
    assert!(srv.store.find_policy(root.tenant).await.unwrap().is_none());
    assert!(events(&srv, "policy_changed").await.is_empty());
}

#[tokio::test]
async fn policy_change_needs_a_recent_sign_in() {
    let srv = TestServer::spawn().await;
    let (root, mut a) = admin(&srv).await;
    a.get("/admin/policy").await;
    srv.clock.advance(601);
    let p = submit_policy(&mut a, "0", &[("digits", "4")]).await;
    assert_eq!(p.location(), Some("/login?reauth=1&next=%2Fadmin%2Fpolicy"));
    assert!(srv.store.find_policy(root.tenant).await.unwrap().is_none());
}

// ---- The sign-in log ----

#[tokio::test]
async fn log_filters_return_the_right_rows() {
    let srv = TestServer::spawn().await;
    let (_, mut a) = admin(&srv).await;
    srv.create_user("bob", Some(PASSWORD)).await;
    srv.create_user("carol", Some(PASSWORD)).await;
    sign_in(&srv, "bob").await;
    srv.browser().password_step("bob", "wrong password").await;
    srv.browser().password_step("carol", "wrong password").await;

    let rows = log_rows(&a.get("/admin/log?user=bob").await.body);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r[1] == "bob"), "{rows:?}");
    // Newest first.
    assert_eq!(
        (rows[0][4].as_str(), rows[0][5].as_str()),
        ("failure", "wrong_password")
    );
    assert_eq!(rows[1][4], "success");
    assert_eq!(rows[0][6], "127.0.0.1");
    // The browser as a short label, never its own text (the test client is no browser).
    assert_eq!(rows[0][7], "Unknown browser", "{rows:?}");

    let rows = log_rows(&a.get("/admin/log?result=failure").await.body);
    let users: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(users, ["carol", "bob"], "{rows:?}");
    assert!(rows.iter().all(|r| r[4] == "failure"));

    let rows = log_rows(
        &a.get("/admin/log?user=BOB&result=success&method=password")
            .await
            .body,
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (
            rows[0][1].as_str(),
            rows[0][2].as_str(),
            rows[0][3].as_str()
        ),
        ("bob", "Sign-in", "Password")
    );

    // Time: all of the above happened at START; two hours later, the last hour is empty.
    // (The administrator's session went idle meanwhile: a new sign-in, a success.)
    srv.clock.advance(7200);
    srv.browser().password_step("carol", "wrong again").await;
    let mut a = sign_in(&srv, "root").await;
    let rows = log_rows(&a.get("/admin/log?hours=1&result=failure").await.body);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][1], "carol");
    // START is 2025-06-15 15:06 UTC.
    let rows = log_rows(
        &a.get("/admin/log?from=2025-06-15&to=2025-06-15&user=bob")
            .await
            .body,
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    let page = a.get("/admin/log?from=2025-06-16").await;
    assert!(log_rows(&page.body).is_empty());
    assert!(page.body.contains("No entries match"), "{}", page.body);

    // Bad filters are explained.
    for (query, message) in [
        ("user=ghost", "no user named"),
        ("result=maybe", "success or failure"),
        ("from=15.06.2025", "From date"),
        ("hours=1&from=2025-06-15", "not both"),
        ("method=carrier-pigeon", "method from the list"),
    ] {
        let p = a.get(&format!("/admin/log?{query}")).await;
        assert_eq!(p.status, 400, "{query}");
        assert!(p.body.contains(message), "{query}: {}", p.body);
    }
}

// ---- Cross-site requests ----

#[tokio::test]
async fn cross_site_admin_posts_are_refused() {
    let srv = TestServer::spawn().await;
    let (root, mut a) = admin(&srv).await;
    srv.create_user("bob", Some(PASSWORD)).await;
    let token = a.get("/admin/users").await.csrf().unwrap();
    let create = |csrf: Option<&str>| {
        let mut f = vec![
            ("username", "mallory"),
            ("password", PASSWORD),
            ("admin", "yes"),
        ];
        if let Some(t) = csrf {
            f.insert(0, ("csrf", t));
        }
        form(&f)
    };
    let tries: [(String, Vec<(&str, &str)>); 4] = [
        (create(None), vec![]),
        (
            create(Some(&token)),
            vec![("origin", "http://evil.example")],
        ),
        (create(Some(&token)), vec![("sec-fetch-site", "cross-site")]),
        (create(Some("forged-token")), vec![]),
    ];
    for (body, headers) in &tries {
        let p = forged_post(&a, "/admin/users", body.clone(), headers).await;
        assert_eq!(p.status, 403, "{headers:?}: {}", p.body);
        assert!(p.body.contains("another site"), "{}", p.body);
    }
    assert!(srv
        .store
        .find_user_by_username(root.tenant, "mallory")
        .await
        .unwrap()
        .is_none());
    for path in ["/admin/users/bob/block", "/admin/users/bob/reset-methods"] {
        let p = forged_post(&a, path, form(&[]), &[]).await;
        assert_eq!(p.status, 403, "{path}");
    }
    let p = forged_post(
        &a,
        "/admin/policy",
        form(&[
            ("csrf", &token),
            ("version", "0"),
            ("enabled", "disabled"),
            ("targets", "all"),
            ("mode", "any"),
            ("digits", "2"),
            ("lifetime", "120"),
            ("mfa", "nobody"),
        ]),
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(p.status, 403);
    assert!(!user(&srv, "bob").await.is_blocked);
    assert!(srv.store.find_policy(root.tenant).await.unwrap().is_none());

    // The control: the same request from the console's own page works.
    let origin = srv.base.clone();
    let p = forged_post(
        &a,
        "/admin/users",
        create(Some(&token)),
        &[("origin", &origin), ("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);
}

/// An administrator sets a user's password (a reset): every session of the user ends; it
/// needs a recent sign-in; a bad or mismatched password changes nothing.
#[tokio::test]
async fn setting_a_password_in_the_console_ends_the_users_sessions() {
    let srv = TestServer::spawn().await;
    let (_, mut a) = admin(&srv).await;
    srv.create_user("bob", Some(PASSWORD)).await;
    let mut bobs = sign_in(&srv, "bob").await;
    let page = a.get("/admin/users/bob").await;
    assert!(
        page.body.contains("/admin/users/bob/password"),
        "{}",
        page.body
    );
    a.get("/admin/users/bob/password").await;
    let p = a
        .post(
            "/admin/users/bob/password",
            &[("new", "brand new pass"), ("confirm", "brand new pasS")],
        )
        .await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("do not match"));
    let p = a
        .post(
            "/admin/users/bob/password",
            &[("new", "short"), ("confirm", "short")],
        )
        .await;
    assert_eq!(p.status, 400);
    assert!(is_signed_in(&mut bobs).await, "nothing changed yet");
    // A stale console session signs in again first.
    srv.clock.advance(601);
    let p = a
        .post(
            "/admin/users/bob/password",
            &[("new", "brand new pass"), ("confirm", "brand new pass")],
        )
        .await;
    assert_eq!(
        p.location(),
        Some("/login?reauth=1&next=%2Fadmin%2Fusers%2Fbob")
    );
    let mut a = sign_in(&srv, "root").await;
    a.get("/admin/users/bob/password").await;
    let p = a
        .post(
            "/admin/users/bob/password",
            &[("new", "brand new pass"), ("confirm", "brand new pass")],
        )
        .await;
    assert_eq!(p.location(), Some("/admin/users/bob?done=password_set"));
    assert!(!is_signed_in(&mut bobs).await, "bob's session ended");
    assert_eq!(
        srv.browser()
            .password_step("bob", "brand new pass")
            .await
            .location(),
        Some("/account")
    );
    let set = events(&srv, "admin_password_set").await;
    assert_eq!(set.len(), 1);
}

/// Deleting a group asks first, keeps its members as users, is audited, and is refused while
/// the methods policy names the group.
#[tokio::test]
async fn admin_deletes_a_group_after_confirming_unless_the_policy_names_it() {
    use sesame_server::service::policy::PolicyEdit;
    let srv = TestServer::spawn().await;
    let (_, mut a) = admin(&srv).await;
    let bob = srv.create_user("bob", Some(PASSWORD)).await;
    let tenant = srv.state.default_tenant;
    let pilot = srv
        .store
        .create_group(tenant, "Pilot", START)
        .await
        .unwrap();
    srv.store.add_group_member(pilot.id, bob.id).await.unwrap();
    let page = a.get("/admin/groups/Pilot").await;
    assert!(
        page.body.contains("/admin/groups/Pilot/remove"),
        "{}",
        page.body
    );
    let confirm = a.get("/admin/groups/Pilot/remove").await;
    assert_eq!(confirm.status, 200);
    assert!(
        confirm.body.contains("Its one member keeps their account"),
        "{}",
        confirm.body
    );
    // A post without the page's token does nothing.
    let forged = a
        .post("/admin/groups/Pilot/remove", &[("csrf", "forged")])
        .await;
    assert_eq!(forged.status, 403);
    assert!(srv
        .store
        .find_group_by_name(tenant, "Pilot")
        .await
        .unwrap()
        .is_some());
    // Named by the policy: refused, with the reason.
    srv.set_policy(PolicyEdit {
        targets: Some("Pilot".into()),
        ..Default::default()
    })
    .await;
    a.get("/admin/groups/Pilot/remove").await;
    let p = a.post("/admin/groups/Pilot/remove", &[]).await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert!(p.body.contains("change the policy first"), "{}", p.body);
    srv.set_policy(PolicyEdit {
        targets: Some("all".into()),
        ..Default::default()
    })
    .await;
    a.get("/admin/groups/Pilot/remove").await;
    let p = a.post("/admin/groups/Pilot/remove", &[]).await;
    assert_eq!(
        p.location(),
        Some("/admin/groups?done=group_removed"),
        "{}",
        p.body
    );
    let list = a.follow(p).await;
    assert!(list.body.contains("Group deleted"), "{}", list.body);
    assert!(srv
        .store
        .find_group_by_name(tenant, "Pilot")
        .await
        .unwrap()
        .is_none());
    assert!(
        srv.store.find_user(bob.id).await.unwrap().is_some(),
        "bob stays"
    );
    let log = srv.store.list_audit(&AuditFilter::default()).await.unwrap();
    assert!(log.iter().any(|e| e.event == "admin_group_removed"
        && e.reason.as_deref().is_some_and(|r| r.contains("Pilot"))));
}

/// "Deny and report" says the administrator was told: the users page shows open fraud reports
/// in a banner, newest first, each linking to the user; unblocking ends it.
#[tokio::test]
async fn open_fraud_reports_are_shown_on_the_users_page() {
    let srv = TestServer::spawn().await;
    let (_, mut a) = admin(&srv).await;
    let page = a.get("/admin/users").await;
    assert!(!page.body.contains("fraud-reports"), "{}", page.body);
    let bob = srv.create_user("bob", Some(PASSWORD)).await;
    let eve = srv.create_user("<b>eve</b>", Some(PASSWORD)).await;
    srv.store
        .update_user_push_blocked(bob.id, Some(START + 10))
        .await
        .unwrap();
    srv.store
        .update_user_push_blocked(eve.id, Some(START + 20))
        .await
        .unwrap();
    let page = a.get("/admin/users").await;
    let banner = &page.body[page.body.find("id=\"fraud-reports\"").expect("a banner")..];
    assert!(banner.contains("2 open fraud reports"), "{banner}");
    let (e, b) = (
        banner.find("&lt;b&gt;eve&lt;/b&gt;").expect("escaped"),
        banner.find(">bob</a>").expect("bob"),
    );
    assert!(e < b, "newest first");
    assert!(banner.contains("href=\"/admin/users/bob\""));
    srv.store.unblock_user(bob.id).await.unwrap();
    srv.store.unblock_user(eve.id).await.unwrap();
    let page = a.get("/admin/users").await;
    assert!(!page.body.contains("fraud-reports"), "{}", page.body);
}
