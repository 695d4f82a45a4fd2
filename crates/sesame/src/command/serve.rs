//! `sesame serve`: runs the server until SIGTERM or Ctrl-C; with `[tls]`, over HTTPS, the
//! certificate re-read on SIGHUP.

use crate::Cli;
use anyhow::{Context, Result};
use sesame_server::tls::CertStore;
use sesame_server::AppState;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "SESAME_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SESAME_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: a journal or a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let data = super::open(cli, args.listen, super::Create::Allowed).await?;
    let listen = data.resolved.listen;
    let config = data.resolved.server.clone();
    config
        .push
        .validate()
        .map_err(anyhow::Error::msg)
        .context("invalid [server.push] settings")?;
    // Never a fall back to plain HTTP: a broken certificate or key stops the start here.
    let certs = match &data.resolved.tls {
        Some(files) => Some(CertStore::open(files.clone()).context("cannot serve HTTPS")?),
        None => None,
    };
    // The services `open` made (one hub, one hashing pool, one policy cache), not a second set.
    let state = AppState::with_services(data.services.clone(), &data.key);
    // OpenID Connect signing keys are made on the first start (the first RSA key takes a
    // moment), not on the first sign-in to an application.
    state
        .oidc
        .keys
        .current(&*state.store, state.now())
        .await
        .context("cannot load or make the OpenID Connect signing keys")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (is another server running there?)"))?;
    let shutdown = shutdown_signal()?;
    reload_on_sighup(certs.clone())?;
    let local = listener.local_addr()?;
    let scheme = if certs.is_some() { "https" } else { "http" };
    let base = config
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{local}"));
    if certs.is_none() && !local.ip().is_loopback() && !base.starts_with("https://") {
        tracing::warn!(
            "listening on {local} without TLS: browsers keep Sesame's secure cookies only over HTTPS \
             (or at localhost), so signing in fails at any other name. Set [tls] cert_file and key_file, \
             or put Sesame behind a TLS reverse proxy listed in server.trusted_proxies and set \
             server.public_base_url to its https:// address"
        );
    }
    if state.telephony.uses_outbox() {
        tracing::warn!(
            sms = state.telephony.sms.name(),
            voice = state.telephony.voice.name(),
            "development only: texts and calls go to the outbox, not to phones. Read them with \
             `sesame outbox list`; configure [server.telephony.sms] and [server.telephony.voice] \
             gateways for real phones"
        );
    }
    // Behind a proxy the public address is not this node's own: say both (an operator checks
    // the node directly, a script started on port 0 needs the port it got).
    let own = format!("{scheme}://{local}");
    let listens = if base == own {
        String::new()
    } else {
        format!("; this node listens on {own}")
    };
    let stored = match &data.resolved.database {
        sesame_store::Backend::Sqlite(_) => {
            format!("data: {}", data.resolved.data_dir.display())
        }
        #[cfg(feature = "postgres")]
        db @ sesame_store::Backend::Postgres(_) => format!("database: {db}"),
    };
    println!("Sesame is running at {base}  ({stored}{listens})");
    if let Some(path) =
        sesame_server::service::setup::ensure_setup_link(&state, state.default_tenant).await?
    {
        println!(
            "No administrator exists yet. Open this one-time link to create one (valid 24 hours):"
        );
        println!("  {base}{path}");
    }
    println!("Press Ctrl-C to stop.");
    match certs {
        Some(certs) => sesame_server::serve_tls(listener, state, shutdown, certs).await,
        None => sesame_server::serve(listener, state, shutdown).await,
    }
    .context("server error")?;
    // One whole database file once stopped (a copy of it alone is then complete too).
    if let Err(e) = data.store.flush().await {
        tracing::warn!(error = %e, "could not checkpoint the database at shutdown; the next start recovers it from its log");
    }
    eprintln!("Sesame stopped.");
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers at once (before the server says it is running, so
/// a signal that arrives during start-up still shuts down gracefully) and resolves on either.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::info!("shutting down: finishing requests in flight");
    })
}

/// Re-reads the certificate and key on each SIGHUP (certbot and the like renew them in place).
/// Installed before the server says it is running, and without TLS too: SIGHUP's default
/// action ends the process, and a renewal hook or a `reload` sent to every service must not
/// stop a plain-HTTP server. A reload that fails is logged and the current certificate stays.
fn reload_on_sighup(certs: Option<Arc<CertStore>>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let Some(certs) = &certs else {
                tracing::info!("SIGHUP: no [tls] configured, so there is no certificate to reload");
                continue;
            };
            let files = certs.files().clone();
            // File reads and a key check: small, but blocking work all the same.
            let store = certs.clone();
            match tokio::task::spawn_blocking(move || store.reload()).await {
                Ok(Ok(())) => tracing::info!(
                    cert_file = %files.cert_file.display(),
                    key_file = %files.key_file.display(),
                    "TLS certificate reloaded: new connections use it"
                ),
                Ok(Err(e)) => tracing::error!(
                    "TLS certificate not reloaded, still serving the previous one: {e}"
                ),
                Err(e) => tracing::error!("TLS certificate not reloaded: {e}"),
            }
        }
    });
    Ok(())
}
