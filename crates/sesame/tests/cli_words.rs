//! What the `sesame` command line says with a count: "1 member", "2 members", never
//! "1 members" or "member(s)".

mod common;

use sesame_core::secret::SecretBytes;
use sesame_core::signin::SignInState;
use sesame_core::UserId;
use sesame_store::{MasterKey, NewDevice, SessionLimits, Store};
use std::path::Path;
use std::sync::Arc;

fn said(dir: &Path, args: &[&str]) -> String {
    let out = common::run(dir, args, None, &[]);
    assert!(
        out.status.success(),
        "sesame {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("(s)"), "sesame {args:?}: {text}");
    text
}

fn add_user(dir: &Path, name: &str) {
    said(dir, &["user", "add", name, "--no-password"]);
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The store of the data directory, opened beside the command.
struct Data {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn Store>,
}

impl Data {
    fn open(dir: &Path) -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = rt.block_on(async {
            let key = MasterKey::load_or_create(&dir.join("master.key")).unwrap();
            let url = sesame_store::Backend::sqlite_url(&dir.join("sesame.db"));
            sesame_store::open(&url, key).await.unwrap()
        });
        Data { rt, store }
    }

    fn user(&self, name: &str) -> sesame_store::User {
        self.rt.block_on(async {
            let t = self.store.default_tenant().await.unwrap();
            self.store
                .find_user_by_username(t, name)
                .await
                .unwrap()
                .unwrap()
        })
    }

    /// A live session of `user`, named `token`.
    fn session(&self, user: UserId, token: &[u8]) {
        self.rt.block_on(async {
            let t = self.store.default_tenant().await.unwrap();
            let done = SignInState::Done {
                user,
                amr: vec![sesame_core::method::Amr::Pwd],
            }
            .completed()
            .unwrap();
            let limits = SessionLimits {
                idle_secs: 3600,
                absolute_secs: 86_400,
            };
            self.store
                .create_session(token, t, &done, now(), limits)
                .await
                .unwrap();
        })
    }

    /// A verification-code method of `user`, as My security info adds it.
    fn code_method(&self, user: UserId) {
        self.rt.block_on(async {
            self.store
                .create_totp_method(
                    user,
                    "Authenticator app",
                    &SecretBytes::new(vec![9; 20]),
                    0,
                    now(),
                )
                .await
                .unwrap();
        })
    }

    /// The Sesame Authenticator app of `user`: one device, with its two methods.
    fn device(&self, user: UserId) {
        self.rt.block_on(async {
            let tenant = self.store.default_tenant().await.unwrap();
            self.store
                .create_activation(user, &[7; 32], now() + 600)
                .await
                .unwrap();
            self.store
                .consume_activation(&[7; 32], now())
                .await
                .unwrap();
            self.store
                .create_device(
                    NewDevice {
                        tenant,
                        user,
                        name: "phone".into(),
                        alg: "ES256".into(),
                        public_key: vec![4; 65],
                    },
                    &[7; 32],
                    &SecretBytes::new(vec![9; 20]),
                    now(),
                )
                .await
                .unwrap();
        })
    }
}

#[test]
fn group_show_counts_members_in_words() {
    let dir = common::data_dir();
    let d = dir.path();
    said(d, &["group", "add", "pilot"]);
    assert!(said(d, &["group", "show", "pilot"]).starts_with("Group pilot (0 members)\n"));
    add_user(d, "erin");
    said(d, &["group", "add-member", "pilot", "erin"]);
    let one = said(d, &["group", "show", "pilot"]);
    assert!(one.starts_with("Group pilot (1 member)\n"), "{one}");
    add_user(d, "fay");
    said(d, &["group", "add-member", "pilot", "fay"]);
    let two = said(d, &["group", "show", "pilot"]);
    assert!(two.starts_with("Group pilot (2 members)\n"), "{two}");
}

#[test]
fn user_block_counts_the_sessions_it_ended_in_words() {
    let dir = common::data_dir();
    let d = dir.path();
    let data = Data::open(d);
    for name in ["none", "one", "two"] {
        add_user(d, name);
    }
    data.session(data.user("one").id, b"one-session");
    data.session(data.user("two").id, b"two-session-a");
    data.session(data.user("two").id, b"two-session-b");
    assert_eq!(
        said(d, &["user", "block", "none"]),
        "Blocked none; ended 0 sessions.\n"
    );
    assert_eq!(
        said(d, &["user", "block", "one"]),
        "Blocked one; ended 1 session.\n"
    );
    assert_eq!(
        said(d, &["user", "block", "two"]),
        "Blocked two; ended 2 sessions.\n"
    );
}

#[test]
fn user_reset_methods_counts_methods_and_devices_in_words() {
    let dir = common::data_dir();
    let d = dir.path();
    let data = Data::open(d);
    for name in ["none", "codes", "app"] {
        add_user(d, name);
    }
    data.code_method(data.user("codes").id);
    data.device(data.user("app").id);
    assert_eq!(
        said(d, &["user", "reset-methods", "none"]),
        "Removed 0 methods and 0 devices of none.\n"
    );
    assert_eq!(
        said(d, &["user", "reset-methods", "codes"]),
        "Removed 1 method and 0 devices of codes.\n"
    );
    // The app is one device with two methods: notifications and its verification codes.
    assert_eq!(
        said(d, &["user", "reset-methods", "app"]),
        "Removed 2 methods and 1 device of app.\n"
    );
}

#[test]
fn user_show_counts_known_browsers_in_words() {
    let dir = common::data_dir();
    let d = dir.path();
    let data = Data::open(d);
    add_user(d, "fay");
    let fay = data.user("fay");
    let guesses = |browser: &str| {
        data.rt.block_on(async {
            let key = format!("browser:{}:{browser}", fay.id.0);
            data.store.set_guesses_if(&key, 0, 2, now()).await.unwrap();
        })
    };
    guesses("00ff");
    let text = said(d, &["user", "show", "fay"]);
    assert!(
        text.contains("; 1 known browser with wrong passwords"),
        "{text}"
    );
    guesses("11ee");
    let text = said(d, &["user", "show", "fay"]);
    assert!(
        text.contains("; 2 known browsers with wrong passwords"),
        "{text}"
    );
}
