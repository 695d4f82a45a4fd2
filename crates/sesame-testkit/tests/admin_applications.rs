//! The console's applications pages (`/admin/applications`) through the real HTTP server:
//! listing, adding, changing, rotating the secret of and removing OpenID Connect clients; that
//! a secret is shown once and only in the response that made it; that the service's checks
//! reach the page; and that the pages are closed to non-administrators, forged posts, stale
//! sessions and HTML injection.

use sesame_core::secret::SecretBytes;
use sesame_server::service::oidc::clients;
use sesame_store::{AuditEvent, AuditFilter, Client, NewUser, User};
use sesame_testkit::{Browser, Page, TestServer, START};

const PASSWORD: &str = "correct horse";
const LIST: &str = "/admin/applications";

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

/// An administrator `root` with an authenticator app, signed in with password and code.
async fn admin(srv: &TestServer) -> Browser {
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
    b
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

async fn stored(srv: &TestServer) -> Vec<Client> {
    srv.store
        .list_clients(srv.state.default_tenant)
        .await
        .unwrap()
}

/// Whether `secret` is the client secret of `id` now.
async fn secret_works(srv: &TestServer, id: &str, secret: Option<&str>) -> bool {
    clients::authenticate(&srv.state, id, secret)
        .await
        .unwrap()
        .is_some()
}

/// The text between `start` and the next `<` (a cell, a paragraph).
fn text_after<'a>(body: &'a str, start: &str) -> Option<&'a str> {
    let at = body.find(start)? + start.len();
    Some(&body[at..at + body[at..].find('<')?])
}

fn shown_secret(p: &Page) -> Option<String> {
    text_after(&p.body, "<p class=\"secret\" id=\"client-secret\">").map(str::to_string)
}

fn client_id(p: &Page) -> String {
    text_after(&p.body, "<th>Client ID</th><td>")
        .unwrap_or_else(|| panic!("no client id: {}", p.body))
        .to_string()
}

/// Adds an application through the "Add application" form.
async fn add(b: &mut Browser, fields: &[(&str, &str)]) -> Page {
    b.get(LIST).await;
    b.post(LIST, fields).await
}

/// A confidential application `Hello app`, added through the form: (client id, secret).
async fn add_hello(b: &mut Browser) -> (String, String) {
    let p = add(
        b,
        &[
            ("name", "Hello app"),
            ("redirect_uris", "https://app.example/cb"),
            ("id_token_alg", "RS256"),
        ],
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.body);
    (client_id(&p), shown_secret(&p).expect("a secret"))
}

fn form(fields: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

/// A POST with the browser's cookies and the body as given (no CSRF token added).
async fn raw_post(b: &Browser, path: &str, body: String) -> Page {
    let cookie = b
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}{path}", b.base))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST");
    Page {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap_or_default(),
    }
}

#[tokio::test]
async fn admin_adds_an_application_and_its_secret_is_shown_only_once() {
    let srv = TestServer::spawn().await;
    let mut a = admin(&srv).await;
    let p = a.get("/admin").await;
    assert!(
        p.body.contains("href=\"/admin/applications\">Applications"),
        "{}",
        p.body
    );
    let p = a.get(LIST).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("No applications yet."), "{}", p.body);
    assert!(
        p.body
            .contains("<option value=\"RS256\" selected>RS256 (default)</option>"),
        "RS256 is the default: {}",
        p.body
    );

    let p = a
        .post(
            LIST,
            &[
                ("name", "Hello app"),
                (
                    "redirect_uris",
                    "https://app.example/cb\r\n\r\n  http://localhost:3000/cb  \r\n",
                ),
                ("post_logout_redirect_uris", "https://app.example/bye"),
                ("require_mfa", "yes"),
                ("id_token_alg", "ES256"),
            ],
        )
        .await;
    // Rendered in the response to the post: no redirect could carry the secret anywhere.
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.location(), None);
    assert!(p.body.contains("shown only now"), "{}", p.body);
    let id = client_id(&p);
    let secret = shown_secret(&p).expect("the secret is on the page");
    assert!(secret.len() >= 32, "{secret}");
    assert!(secret_works(&srv, &id, Some(&secret)).await);
    assert!(!secret_works(&srv, &id, Some("wrong")).await);
    assert!(!secret_works(&srv, &id, None).await);

    let list = stored(&srv).await;
    assert_eq!(list.len(), 1);
    let c = &list[0];
    assert_eq!(c.client_id, id);
    assert_eq!(c.name, "Hello app");
    assert_eq!(
        c.redirect_uris,
        ["https://app.example/cb", "http://localhost:3000/cb"]
    );
    assert_eq!(c.post_logout_redirect_uris, ["https://app.example/bye"]);
    assert!(c.secret_hash.is_some() && c.require_mfa);
    assert!(!c.first_party && !c.client_credentials);
    assert_eq!(c.id_token_alg, "ES256");

    let added = events(&srv, "admin_client_added").await;
    assert_eq!(added.len(), 1);
    let reason = added[0].reason.as_deref().unwrap();
    assert!(
        reason.contains("admin:root") && reason.contains(&id),
        "{reason}"
    );
    assert!(!reason.contains(&secret));

    // The list shows the application; no page shows the secret again.
    let p = a.get(LIST).await;
    assert!(
        p.body.contains(&format!(
            "<a href=\"/admin/applications/{id}\">Hello app</a></td><td data-label=\"Client ID\"><code>{id}</code></td><td data-label=\"Type\">Confidential</td><td data-label=\"Two-step required\">Yes</td><td data-label=\"First-party\">No</td>"
        )),
        "{}",
        p.body
    );
    let page = a.get(&format!("{LIST}/{id}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("https://app.example/bye"),
        "{}",
        page.body
    );
    for p in [p, page] {
        assert!(!p.body.contains(&secret), "{}", p.body);
        assert_eq!(shown_secret(&p), None);
    }
}

#[tokio::test]
async fn a_public_application_has_no_secret_to_show_or_rotate() {
    let srv = TestServer::spawn().await;
    let mut a = admin(&srv).await;
    let p = add(
        &mut a,
        &[
            ("name", "Single page"),
            ("redirect_uris", "https://spa.example/cb"),
            ("public", "yes"),
            ("first_party", "yes"),
            ("id_token_alg", "EdDSA"),
        ],
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("public client"), "{}", p.body);
    assert_eq!(shown_secret(&p), None);
    let id = client_id(&p);
    assert!(secret_works(&srv, &id, None).await);
    let c = &stored(&srv).await[0];
    assert!(c.secret_hash.is_none() && c.first_party);
    assert_eq!(c.id_token_alg, "EdDSA");
    let list = a.get(LIST).await;
    assert!(
        list.body.contains(
            "<td data-label=\"Type\">Public</td><td data-label=\"Two-step required\">No</td><td data-label=\"First-party\">Yes</td>"
        ),
        "{}",
        list.body
    );
    let page = a.get(&format!("{LIST}/{id}")).await;
    assert!(!page.body.contains("rotate-secret"), "{}", page.body);

    assert_eq!(
        a.get(&format!("{LIST}/{id}/rotate-secret")).await.status,
        404
    );
    let p = a.post(&format!("{LIST}/{id}/rotate-secret"), &[]).await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.body.contains("is a public client"), "{}", p.body);
    assert!(stored(&srv).await[0].secret_hash.is_none());
    assert!(events(&srv, "admin_client_secret_rotated").await.is_empty());

    // A public client has no secret to get tokens for itself with.
    let p = add(
        &mut a,
        &[
            ("name", "Bad"),
            ("redirect_uris", "https://spa.example/cb"),
            ("public", "yes"),
            ("client_credentials", "yes"),
            ("id_token_alg", "RS256"),
        ],
    )
    .await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(
        p.body.contains("cannot use client credentials"),
        "{}",
        p.body
    );
    assert_eq!(stored(&srv).await.len(), 1);
}

#[tokio::test]
async fn admin_changes_an_application_and_a_refused_change_keeps_what_was_typed() {
    let srv = TestServer::spawn().await;
    let mut a = admin(&srv).await;
    let (id, secret) = add_hello(&mut a).await;
    let path = format!("{LIST}/{id}");
    let page = a.get(&path).await;
    assert!(
        page.body.contains(">Save changes</button>"),
        "{}",
        page.body
    );

    let p = a
        .post(
            &path,
            &[
                ("name", "Hello again"),
                (
                    "redirect_uris",
                    "https://app.example/cb\nhttps://app.example/cb2",
                ),
                ("post_logout_redirect_uris", "https://app.example/bye"),
                ("first_party", "yes"),
                ("client_credentials", "yes"),
                ("id_token_alg", "EdDSA"),
            ],
        )
        .await;
    assert_eq!(
        p.location(),
        Some(format!("{path}?done=application_saved").as_str()),
        "{}",
        p.body
    );
    let page = a.follow(p).await;
    assert!(page.body.contains("Changes saved."), "{}", page.body);
    assert!(
        page.body.contains("Application Hello again"),
        "{}",
        page.body
    );
    let c = &stored(&srv).await[0];
    assert_eq!(c.name, "Hello again");
    assert_eq!(
        c.redirect_uris,
        ["https://app.example/cb", "https://app.example/cb2"]
    );
    assert!(c.first_party && c.client_credentials && !c.require_mfa);
    assert_eq!(c.id_token_alg, "EdDSA");
    assert!(
        secret_works(&srv, &id, Some(&secret)).await,
        "the secret stays"
    );
    let changed = events(&srv, "admin_client_changed").await;
    assert_eq!(changed.len(), 1);
    assert!(changed[0].reason.as_deref().unwrap().contains("admin:root"));

    // Refused: the banner says why, the form keeps what was typed, nothing changes.
    let p = a
        .post(
            &path,
            &[
                ("name", "Renamed"),
                (
                    "redirect_uris",
                    "https://app.example/cb\nhttp://evil.example/cb",
                ),
                ("require_mfa", "yes"),
                ("id_token_alg", "ES256"),
            ],
        )
        .await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(
        p.body
            .contains("class=\"error\" role=\"alert\">Redirect URI"),
        "{}",
        p.body
    );
    assert!(p.body.contains("must use https"), "{}", p.body);
    assert!(p.body.contains("value=\"Renamed\""), "{}", p.body);
    assert!(
        p.body
            .contains("https://app.example/cb\nhttp://evil.example/cb</textarea>"),
        "{}",
        p.body
    );
    assert!(p
        .body
        .contains("id=\"require_mfa\" name=\"require_mfa\" value=\"yes\" checked"));
    assert!(
        p.body.contains("<option value=\"ES256\" selected>"),
        "{}",
        p.body
    );
    let after = &stored(&srv).await[0];
    assert_eq!(after.name, "Hello again");
    assert_eq!(after.redirect_uris, c.redirect_uris);
    assert_eq!(events(&srv, "admin_client_changed").await.len(), 1);

    assert_eq!(a.get(&format!("{LIST}/nosuchclient")).await.status, 404);
    let p = a
        .post(&format!("{LIST}/nosuchclient"), &[("name", "x")])
        .await;
    assert_eq!(p.status, 404);
}

#[tokio::test]
async fn rotating_shows_the_new_secret_once_and_the_old_one_stops_working() {
    let srv = TestServer::spawn().await;
    let mut a = admin(&srv).await;
    let (id, old) = add_hello(&mut a).await;
    let path = format!("{LIST}/{id}");
    let page = a.get(&path).await;
    assert!(
        page.body
            .contains(&format!("href=\"{path}/rotate-secret\"")),
        "{}",
        page.body
    );
    let confirm = a.get(&format!("{path}/rotate-secret")).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(
        confirm.body.contains("stops working at once"),
        "{}",
        confirm.body
    );
    assert!(
        secret_works(&srv, &id, Some(&old)).await,
        "looking changes nothing"
    );

    let p = a.post(&format!("{path}/rotate-secret"), &[]).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.location(), None);
    assert!(p.body.contains("shown only now"), "{}", p.body);
    let new = shown_secret(&p).expect("the new secret is on the page");
    assert_ne!(new, old);
    assert!(!secret_works(&srv, &id, Some(&old)).await);
    assert!(secret_works(&srv, &id, Some(&new)).await);
    let rotated = events(&srv, "admin_client_secret_rotated").await;
    assert_eq!(rotated.len(), 1);
    assert!(!rotated[0].reason.as_deref().unwrap().contains(&new));

    let page = a.get(&path).await;
    assert!(!page.body.contains(&new), "{}", page.body);
    assert_eq!(shown_secret(&page), None);
}

#[tokio::test]
async fn removing_an_application_takes_a_confirmation_and_ends_its_secret() {
    let srv = TestServer::spawn().await;
    let mut a = admin(&srv).await;
    let (id, secret) = add_hello(&mut a).await;
    let path = format!("{LIST}/{id}");
    let page = a.get(&path).await;
    assert!(
        page.body
            .contains(&format!("href=\"{path}/remove\">Remove application")),
        "{}",
        page.body
    );
    let confirm = a.get(&format!("{path}/remove")).await;
    assert_eq!(confirm.status, 200);
    assert!(
        confirm.body.contains(&format!(
            "action=\"{path}/remove\"><input type=\"hidden\" name=\"csrf\""
        )),
        "{}",
        confirm.body
    );
    assert!(confirm.body.contains(">Remove application</button>"));
    assert!(
        confirm.body.contains("cannot be undone"),
        "{}",
        confirm.body
    );
    assert_eq!(
        stored(&srv).await.len(),
        1,
        "the confirmation page changes nothing"
    );

    let p = a.post(&format!("{path}/remove"), &[]).await;
    assert_eq!(
        p.location(),
        Some("/admin/applications?done=application_removed"),
        "{}",
        p.body
    );
    let list = a.follow(p).await;
    assert!(list.body.contains("Application removed"), "{}", list.body);
    assert!(list.body.contains("No applications yet."), "{}", list.body);
    assert!(stored(&srv).await.is_empty());
    assert!(!secret_works(&srv, &id, Some(&secret)).await);
    assert_eq!(events(&srv, "admin_client_removed").await.len(), 1);
    assert_eq!(a.get(&path).await.status, 404);
    assert_eq!(a.post(&format!("{path}/remove"), &[]).await.status, 404);
}

#[tokio::test]
async fn unsafe_redirect_uris_are_refused_with_a_message_and_nothing_is_stored() {
    let srv = TestServer::spawn().await;
    let mut a = admin(&srv).await;
    for (field, uri, message) in [
        ("redirect_uris", "http://evil.example/cb", "must use https"),
        (
            "redirect_uris",
            "https://x/cb#frag",
            "cannot have a fragment",
        ),
        ("redirect_uris", "https://evil@x/cb", "cannot name a user"),
        (
            "redirect_uris",
            "javascript:alert(1)",
            "cannot use that scheme",
        ),
        (
            "post_logout_redirect_uris",
            "http://evil.example/bye",
            "must use https",
        ),
    ] {
        let mut fields = vec![("name", "Evil"), (field, uri), ("id_token_alg", "RS256")];
        if field != "redirect_uris" {
            fields.push(("redirect_uris", "https://app.example/cb"));
        }
        let p = add(&mut a, &fields).await;
        assert_eq!(p.status, 400, "{uri}: {}", p.body);
        assert!(p.body.contains(message), "{uri}: {}", p.body);
        assert!(p.body.contains("value=\"Evil\""), "{uri}: {}", p.body);
        assert!(
            p.body.contains(&format!(">{uri}</textarea>")),
            "{uri}: {}",
            p.body
        );
        assert_eq!(shown_secret(&p), None);
    }
    // No redirect URI at all; an algorithm Sesame does not sign with.
    let p = add(&mut a, &[("name", "Empty"), ("id_token_alg", "RS256")]).await;
    assert_eq!(p.status, 400);
    assert!(
        p.body.contains("Give at least one redirect URI."),
        "{}",
        p.body
    );
    assert!(!p.body.contains("--redirect-uri"), "{}", p.body);
    let p = add(
        &mut a,
        &[
            ("name", "None"),
            ("redirect_uris", "https://app.example/cb"),
            ("id_token_alg", "none"),
        ],
    )
    .await;
    assert_eq!(p.status, 400);
    assert!(
        p.body.contains("Choose RS256, ES256 or EdDSA"),
        "{}",
        p.body
    );
    assert!(stored(&srv).await.is_empty());
    assert!(events(&srv, "admin_client_added").await.is_empty());
}

#[tokio::test]
async fn non_admins_get_403_on_every_applications_page_and_post() {
    let srv = TestServer::spawn().await;
    let mut a = admin(&srv).await;
    let (id, secret) = add_hello(&mut a).await;
    srv.create_user("bob", Some(PASSWORD)).await;
    let mut b = srv.browser();
    let p = b.password_step("bob", PASSWORD).await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);
    let path = format!("{LIST}/{id}");
    for page in [
        LIST.to_string(),
        path.clone(),
        format!("{path}/rotate-secret"),
        format!("{path}/remove"),
    ] {
        let p = b.get(&page).await;
        assert_eq!(p.status, 403, "{page}: {}", p.body);
        assert!(p.body.contains("administrators"), "{page}: {}", p.body);
    }
    // A valid CSRF token from bob's own pages does not help.
    b.get("/account").await;
    let add = [
        ("name", "Mallory"),
        ("redirect_uris", "https://mallory.example/cb"),
        ("id_token_alg", "RS256"),
    ];
    let tries: [(String, &[(&str, &str)]); 4] = [
        (LIST.to_string(), &add),
        (path.clone(), &add),
        (format!("{path}/rotate-secret"), &[]),
        (format!("{path}/remove"), &[]),
    ];
    for (post, fields) in &tries {
        let p = b.post(post, fields).await;
        assert_eq!(p.status, 403, "{post}: {}", p.body);
        assert_eq!(shown_secret(&p), None);
    }
    let list = stored(&srv).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "Hello app");
    assert!(secret_works(&srv, &id, Some(&secret)).await);

    // Not signed in: sent to sign in.
    let mut anon = srv.browser();
    let p = anon.get(LIST).await;
    assert_eq!(p.location(), Some("/login?next=%2Fadmin%2Fapplications"));
}

#[tokio::test]
async fn posts_without_the_csrf_token_are_refused() {
    let srv = TestServer::spawn().await;
    let mut a = admin(&srv).await;
    let (id, secret) = add_hello(&mut a).await;
    let path = format!("{LIST}/{id}");
    let token = a.get(&path).await.csrf().unwrap();
    let fields = [
        ("name", "Forged"),
        ("redirect_uris", "https://forged.example/cb"),
        ("id_token_alg", "RS256"),
    ];
    for post in [
        LIST.to_string(),
        path.clone(),
        format!("{path}/rotate-secret"),
        format!("{path}/remove"),
    ] {
        for csrf in [None, Some("forged-token")] {
            let mut f = fields.to_vec();
            if let Some(t) = csrf {
                f.push(("csrf", t));
            }
            let p = raw_post(&a, &post, form(&f)).await;
            assert_eq!(p.status, 403, "{post} {csrf:?}: {}", p.body);
            assert!(p.body.contains("another site"), "{}", p.body);
            assert_eq!(shown_secret(&p), None);
        }
    }
    let list = stored(&srv).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "Hello app");
    assert!(secret_works(&srv, &id, Some(&secret)).await);
    assert_eq!(events(&srv, "admin_client_added").await.len(), 1);

    // The control: the same post with the page's token works.
    let mut f = fields.to_vec();
    f.push(("csrf", &token));
    let p = raw_post(&a, &path, form(&f)).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(stored(&srv).await[0].name, "Forged");
}

#[tokio::test]
async fn html_in_an_application_name_is_escaped() {
    let srv = TestServer::spawn().await;
    let mut a = admin(&srv).await;
    let evil = "<script>alert('x')</script><b>Bold</b>";
    let p = add(
        &mut a,
        &[
            ("name", evil),
            ("redirect_uris", "https://app.example/cb?a=1&b=\"2\""),
            ("id_token_alg", "RS256"),
        ],
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let id = client_id(&p);
    assert_eq!(stored(&srv).await[0].name, evil, "stored as typed");
    let path = format!("{LIST}/{id}");
    let refused = add(
        &mut a,
        &[
            ("name", evil),
            ("redirect_uris", "http://evil.example/<script>"),
            ("id_token_alg", "RS256"),
        ],
    )
    .await;
    assert_eq!(refused.status, 400);
    let pages = [
        p,
        refused,
        a.get(LIST).await,
        a.get(&path).await,
        a.get(&format!("{path}/rotate-secret")).await,
        a.get(&format!("{path}/remove")).await,
    ];
    for page in pages {
        assert!(!page.body.contains("<script>"), "{}", page.body);
        assert!(!page.body.contains("<b>Bold"), "{}", page.body);
        assert!(
            page.body
                .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&lt;b&gt;Bold&lt;/b&gt;"),
            "{}",
            page.body
        );
    }
    let page = a.get(&path).await;
    assert!(
        page.body
            .contains("https://app.example/cb?a=1&amp;b=&quot;2&quot;"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn changes_need_a_recent_sign_in_and_looking_does_not() {
    let srv = TestServer::spawn().await;
    let mut a = admin(&srv).await;
    let (id, secret) = add_hello(&mut a).await;
    let path = format!("{LIST}/{id}");
    a.get(&path).await;
    srv.clock.advance(601);
    // The server encodes every byte but letters and digits.
    let next = |p: &str| {
        let encoded: String = p
            .bytes()
            .map(|c| match c {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (c as char).to_string(),
                _ => format!("%{c:02X}"),
            })
            .collect();
        format!("/login?reauth=1&next={encoded}")
    };
    let fields = [
        ("name", "Stale"),
        ("redirect_uris", "https://stale.example/cb"),
        ("id_token_alg", "RS256"),
    ];
    // Each comes back, after signing in again, to a page where the change can be made.
    for (post, back) in [
        (LIST.to_string(), LIST.to_string()),
        (path.clone(), path.clone()),
        (
            format!("{path}/rotate-secret"),
            format!("{path}/rotate-secret"),
        ),
        (format!("{path}/remove"), format!("{path}/remove")),
    ] {
        let p = a.post(&post, &fields).await;
        assert_eq!(p.status, 303, "{post}: {}", p.body);
        assert_eq!(p.location(), Some(next(&back).as_str()), "{post}");
        assert_eq!(a.get(&back).await.status, 200, "{back} is a page");
    }
    let list = stored(&srv).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "Hello app");
    assert!(secret_works(&srv, &id, Some(&secret)).await);
    assert_eq!(events(&srv, "admin_client_added").await.len(), 1);
}
