//! Configuration: defaults < TOML file < `SESAME_*` environment < command-line flags.
//! Unknown keys in the file are an error, so a typo never silently does nothing.

use anyhow::{Context, Result};
use serde::Deserialize;
use sesame_server::tls::TlsFiles;
use sesame_server::ServerConfig;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub master_key_file: Option<PathBuf>,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub tls: TlsConfig,
}

/// `[tls]`: Sesame's own HTTPS. Both files, or neither (plain HTTP).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: Option<String>,
}

/// Everything a command needs to reach the data, after layering.
#[derive(Debug)]
pub struct Resolved {
    pub data_dir: PathBuf,
    /// Where the data lives.
    pub database: sesame_store::Backend,
    pub master_key_file: PathBuf,
    /// Whether the key file was named (flag, environment or file) rather than the default in
    /// the data directory: a shared key may exist before a new node's database does.
    pub master_key_named: bool,
    pub listen: SocketAddr,
    pub server: ServerConfig,
    /// The certificate and key to serve HTTPS with; None serves plain HTTP.
    pub tls: Option<TlsFiles>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./sesame-data";

pub fn load_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Applies environment overrides for the keys of the `[server]`, `[database]` and `[tls]`
/// sections.
fn apply_env(file: &mut FileConfig) -> Result<()> {
    let s = &mut file.server;
    if let Some(v) = env("SESAME_SERVER__SERVICE_NAME").or_else(|| env("SESAME_SERVICE_NAME")) {
        s.service_name = v;
    } else if let Some(v) = env("SESAME_SERVER__ISSUER").or_else(|| env("SESAME_ISSUER")) {
        eprintln!(
            "warning: SESAME_SERVER__ISSUER is deprecated: call it SESAME_SERVER__SERVICE_NAME"
        );
        s.service_name = v;
    }
    if let Some(v) = env("SESAME_SERVER__PUBLIC_BASE_URL").or_else(|| env("SESAME_PUBLIC_BASE_URL"))
    {
        s.public_base_url = Some(v);
    }
    if let Some(v) = env("SESAME_SERVER__TRUSTED_PROXIES").or_else(|| env("SESAME_TRUSTED_PROXIES"))
    {
        s.trusted_proxies = v
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<IpAddr>()
                    .with_context(|| format!("SESAME_TRUSTED_PROXIES: bad address {p:?}"))
            })
            .collect::<Result<_>>()?;
    }
    if let Some(v) = env("SESAME_SERVER__HASHING_CONCURRENCY") {
        s.hashing_concurrency = v
            .parse()
            .context("SESAME_SERVER__HASHING_CONCURRENCY must be a number")?;
    }
    if let Some(v) = env("SESAME_TLS__CERT_FILE") {
        file.tls.cert_file = Some(v.into());
    }
    if let Some(v) = env("SESAME_TLS__KEY_FILE") {
        file.tls.key_file = Some(v.into());
    }
    if let Some(v) = env("SESAME_DB__URL") {
        file.database.url = Some(v);
    }
    if let Some(v) = env("SESAME_LISTEN") {
        file.listen = Some(
            v.parse()
                .context("SESAME_LISTEN must be an address like 127.0.0.1:8080")?,
        );
    }
    Ok(())
}

/// Layers the sources. `flag_*` come from clap, which already merged flags over their
/// environment variables.
pub fn resolve(
    config_file: Option<&Path>,
    flag_data_dir: Option<&Path>,
    flag_database_url: Option<&str>,
    flag_master_key: Option<&Path>,
    flag_listen: Option<SocketAddr>,
) -> Result<Resolved> {
    let mut file = match config_file {
        Some(p) => load_file(p)?,
        None => FileConfig::default(),
    };
    // The file's deprecated names first, so that the environment still wins over the file.
    for warning in file.server.apply_deprecated() {
        eprintln!("warning: {warning}");
    }
    apply_env(&mut file)?;
    let data_dir = flag_data_dir
        .map(Path::to_path_buf)
        .or(file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let url = flag_database_url
        .map(str::to_string)
        .or(file.database.url.clone());
    // The default is a path, never a URL made from one (a data directory may have any name);
    // a URL someone typed is refused now if no backend takes it, before anything is created.
    let database = match url {
        None => sesame_store::Backend::Sqlite(data_dir.join("sesame.db")),
        Some(u) => sesame_store::Backend::parse(&u)?,
    };
    let master_key_named = flag_master_key.is_some() || file.master_key_file.is_some();
    let master_key_file = flag_master_key
        .map(Path::to_path_buf)
        .or(file.master_key_file.clone())
        .unwrap_or_else(|| data_dir.join("master.key"));
    let listen = match flag_listen.or(file.listen) {
        Some(l) => l,
        None => DEFAULT_LISTEN
            .parse()
            .expect("default listen address parses"),
    };
    let tls = match (file.tls.cert_file, file.tls.key_file) {
        (Some(cert_file), Some(key_file)) => Some(TlsFiles {
            cert_file,
            key_file,
        }),
        (None, None) => None,
        // Half a TLS set-up must not quietly serve plain HTTP.
        (Some(_), None) => anyhow::bail!(
            "[tls] cert_file is set but key_file is not (SESAME_TLS__KEY_FILE): set both, or neither"
        ),
        (None, Some(_)) => anyhow::bail!(
            "[tls] key_file is set but cert_file is not (SESAME_TLS__CERT_FILE): set both, or neither"
        ),
    };
    Ok(Resolved {
        data_dir,
        database,
        master_key_file,
        master_key_named,
        listen,
        server: file.server,
        tls,
    })
}

pub const EXAMPLE: &str = r#"# Sesame configuration (TOML). Every key is optional; shown values are the defaults.
# Precedence: defaults < this file < SESAME_* environment variables < command-line flags.

# Address to listen on. Plain HTTP belongs on loopback only: anywhere else give Sesame a
# certificate ([tls], at the end) or put it behind a TLS-terminating reverse proxy and set
# server.public_base_url. (SESAME_LISTEN, --listen)
listen = "127.0.0.1:8080"

# Where the embedded database and the master key live. (SESAME_DATA_DIR, --data-dir)
data_dir = "./sesame-data"

# The key that encrypts secrets at rest. Created on first start when missing; nodes that
# share a database must share it (`sesame master-key generate FILE`). (SESAME_MASTER_KEY_FILE)
# master_key_file = "./sesame-data/master.key"

[database]
# sqlite://FILE (one node), or postgres://USER:PASSWORD@HOST:PORT/DATABASE for several nodes
# sharing one PostgreSQL database (each with the same master key file). Default: sesame.db in
# data_dir. (SESAME_DB__URL, SESAME_DATABASE_URL, --database-url)
# url = "sqlite://./sesame-data/sesame.db"

[server]
# The service's name as people see it: in authenticator apps, on sign-in requests to the
# phone, in verification-code set-up links. (SESAME_SERVER__SERVICE_NAME; the old name
# `issuer` is still read, with a warning.)
service_name = "Sesame"
# Public address people use, e.g. "https://login.example.com". (SESAME_SERVER__PUBLIC_BASE_URL)
# public_base_url = "https://login.example.com"
# Reverse proxies whose X-Forwarded-For header is believed. (SESAME_SERVER__TRUSTED_PROXIES, comma-separated)
trusted_proxies = []
# Sessions end after this long without use, and after this long in any case.
session_idle_secs = 3600
session_absolute_secs = 86400
# Time allowed from username to signed in.
signin_lifetime_secs = 600
# Adding or removing sign-in methods needs a sign-in at most this old.
recent_auth_secs = 600
# Password hashes (Argon2id, 19 MiB each) computed at once; 0 = one per CPU core.
hashing_concurrency = 0
# Sign-ins that may wait for a hashing slot; beyond this the server answers 503 at once.
hashing_queue = 1024
# Of those, how many one client address may hold (addresses are served in turn, so one
# client's flood never makes others wait behind all of it).
hashing_per_client = 64
# Client addresses that may read /metrics (Prometheus text); add your Prometheus server's.
metrics_allow = ["127.0.0.1", "::1"]

# Failed second-step attempts, per user and method: soft lock after soft_after failures for
# base_lock_secs, doubling with each further failure; stop at hard_after until an admin resets.
[server.lockout]
soft_after = 10
base_lock_secs = 60
hard_after = 100

# Wrong passwords, counted in the database (shared by every node). After `free` in a row, each
# further attempt waits first_delay_secs, doubling up to max_delay_secs, and is refused before
# any hashing; at hard_after (0 = never) only `sesame user unlock` lets it in again; a count is
# forgotten after forget_after_secs without a wrong password (0 = never).
# Per account name (known or not), for browsers the user never signed in with; each browser
# the user signed in with before (a device cookie) has an allowance of its own, the same size.
[server.guessing.account]
free = 5
first_delay_secs = 30
max_delay_secs = 900
hard_after = 100
forget_after_secs = 0
# Per client address (an IPv6 /64), across usernames, for browsers not known to the user.
[server.guessing.address]
free = 50
first_delay_secs = 10
max_delay_secs = 900
hard_after = 0
forget_after_secs = 3600

# Connections. A request's headers must arrive within header_read_secs (which also closes a
# kept-alive connection idle that long), its body within body_read_secs. One client address
# (an IPv4 address, or an IPv6 /64) holds at most per_client connections (trusted_proxies are
# exempt): the ones beyond are answered slowly with 429 and do not count toward max, and past
# twice per_client they are closed at once. Past max in all, new connections get only
# /healthz and /readyz answered (503 for the rest). A shutdown (SIGTERM)
# waits at most shutdown_secs for requests in flight; device event streams end at once with
# a hint to reconnect.
[server.connections]
header_read_secs = 10
body_read_secs = 10
max = 4096
per_client = 256
shutdown_secs = 10

# Sign-in requests to the Sesame Authenticator app. digits, lifetime_secs and pin_required are
# the starting values of the authentication methods policy: once an administrator saves the
# policy (`sesame policy set`, or /admin/policy), the policy's values apply instead.
[server.push]
# Digits of the number shown on the sign-in page and typed in the app (2 to 8; 6 meets
# NIST SP 800-63B rev 4 AAL2).
digits = 2
# How long a request waits for an answer (at most 600).
lifetime_secs = 120
# At most this many requests per user within window_secs without a successful sign-in.
max_per_window = 5
window_secs = 900
# Whether approving a second step needs the app PIN (which never leaves the phone; the server
# checks a signature only the right PIN unlocks). Phone sign-in always needs it.
pin_required = false

# Texts and calls (see the README, "Texts and calls"). Without a gateway they go to the
# development outbox (`sesame outbox list`), and nothing reaches a phone.
[server.telephony]
# Country calling codes numbers may have, e.g. [31, 32, 49]; empty: every country. List the
# countries your users live in: texts to expensive destinations are how SMS pumping pays.
allowed_country_codes = []
# Texts and calls per user, per number and per client address within send_window_secs.
sends_per_window = 3
send_window_secs = 900
# How long the person has to press # once a call's prompt starts, and how long it may ring.
call_key_timeout_secs = 20
call_ring_timeout_secs = 30
# The development page /admin/outbox: administrators read the outbox's texts and answer its
# calls in the browser (the outbox only; `sesame outbox` does the same on the command line).
outbox_page = false
# [server.telephony.sms]
# gateway = "kannel"          # or "twilio" (account_sid, auth_token, from, webhook_base)
# sendsms_url = "http://127.0.0.1:13013/cgi-bin/sendsms"
# username = "sesame"
# password = "secret"
# dlr_url = "https://login.example.com/telephony/kannel/dlr"
# [server.telephony.voice]
# gateway = "baresip"         # or "twilio"
# agents = ["127.0.0.1:4444"]
# dial = "sip:{number}@trunk.example.com"
# prompt_dir = "/var/lib/sesame/prompts"

# Sesame's own HTTPS. With both files set, `sesame serve` serves HTTPS (and no plain HTTP) on
# `listen`. PEM files: the certificate chain (the server's certificate first, then any
# intermediates) and its private key. SIGHUP re-reads both, e.g. after a renewal (new
# connections get the new certificate; if the new files are broken, the old one stays).
# (SESAME_TLS__CERT_FILE, SESAME_TLS__KEY_FILE)
# [tls]
# cert_file = "/etc/letsencrypt/live/login.example.com/fullchain.pem"
# key_file = "/etc/letsencrypt/live/login.example.com/privkey.pem"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let f: FileConfig = toml::from_str(EXAMPLE).unwrap();
        let d = ServerConfig::default();
        assert_eq!(f.server.service_name, d.service_name);
        assert_eq!(f.server.session_idle_secs, d.session_idle_secs);
        assert_eq!(f.server.lockout, d.lockout);
        assert_eq!(f.server.guessing, d.guessing);
        assert_eq!(f.server.connections, d.connections);
        assert_eq!(f.server.hashing_per_client, d.hashing_per_client);
        assert_eq!(f.server.push, d.push);
        assert_eq!(
            f.server.telephony.sends_per_window,
            d.telephony.sends_per_window
        );
        assert_eq!(
            f.server.telephony.call_key_timeout_secs,
            d.telephony.call_key_timeout_secs
        );
        assert_eq!(f.listen.unwrap().to_string(), DEFAULT_LISTEN);
        assert!(f.tls.cert_file.is_none() && f.tls.key_file.is_none());
    }

    #[test]
    fn the_examples_tls_section_works_uncommented() {
        let text = EXAMPLE
            .replace("# [tls]", "[tls]")
            .replace("# cert_file", "cert_file")
            .replace("# key_file", "key_file");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        let tls = resolve(Some(&p), None, None, None, None)
            .unwrap()
            .tls
            .expect("[tls] is read");
        assert!(tls.cert_file.ends_with("fullchain.pem"));
        assert!(tls.key_file.ends_with("privkey.pem"));
    }

    #[test]
    fn half_a_tls_section_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[tls]\ncert_file = \"/c.pem\"\n").unwrap();
        let e = resolve(Some(&p), None, None, None, None).unwrap_err();
        assert!(e.to_string().contains("key_file is not"), "{e}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<FileConfig>("lisen = \"127.0.0.1:1\"").is_err());
        assert!(toml::from_str::<FileConfig>("[server]\nissuer_name = \"x\"").is_err());
    }

    #[test]
    fn database_urls_are_checked_before_anything_is_created() {
        let r = resolve(
            None,
            Some(Path::new("/d")),
            Some("sqlite:///tmp/x.db"),
            None,
            None,
        )
        .unwrap();
        use sesame_store::Backend;
        assert_eq!(r.database, Backend::Sqlite("/tmp/x.db".into()));
        let default = resolve(None, Some(Path::new("/d")), None, None, None).unwrap();
        assert_eq!(default.database, Backend::Sqlite("/d/sesame.db".into()));
        // Any name a directory may have stays a path (not cut at a '?' as in a URL).
        let odd = resolve(None, Some(Path::new("/srv/a?b")), None, None, None).unwrap();
        assert_eq!(odd.database, Backend::Sqlite("/srv/a?b/sesame.db".into()));
        let pg = resolve(
            None,
            None,
            Some("postgres://u:secret@db/sesame"),
            None,
            None,
        )
        .unwrap();
        assert!(matches!(pg.database, Backend::Postgres(_)));
        assert!(
            !pg.database.to_string().contains("secret"),
            "{}",
            pg.database
        );
        let err = resolve(None, None, Some("postgres://u@db:port/x"), None, None).unwrap_err();
        assert!(err.to_string().contains("PostgreSQL"), "{err}");
        assert!(resolve(None, None, Some("mysql://x"), None, None).is_err());
    }

    #[test]
    fn the_environment_wins_over_the_files_deprecated_issuer() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[server]\nissuer = \"FromFile\"\n").unwrap();
        assert_eq!(
            resolve(Some(&p), None, None, None, None)
                .unwrap()
                .server
                .service_name,
            "FromFile"
        );
        // SAFETY of the test: no other test in this binary reads this variable.
        std::env::set_var("SESAME_SERVER__SERVICE_NAME", "FromEnv");
        let r = resolve(Some(&p), None, None, None, None).unwrap();
        std::env::remove_var("SESAME_SERVER__SERVICE_NAME");
        assert_eq!(r.server.service_name, "FromEnv");
    }

    #[test]
    fn flags_win_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from/file\"\n",
        )
        .unwrap();
        let r = resolve(Some(&p), None, None, None, None).unwrap();
        assert_eq!(r.listen.port(), 9000);
        assert_eq!(r.data_dir, PathBuf::from("/from/file"));
        let r = resolve(
            Some(&p),
            Some(Path::new("/from/flag")),
            None,
            None,
            Some("127.0.0.1:1".parse().unwrap()),
        )
        .unwrap();
        assert_eq!(r.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(r.listen.port(), 1);
        assert_eq!(
            r.database,
            sesame_store::Backend::Sqlite("/from/flag/sesame.db".into())
        );
    }
}
