//! `sesame serve`: runs the server until SIGTERM or Ctrl-C.

use crate::Cli;
use anyhow::{Context, Result};
use sesame_server::AppState;
use std::net::SocketAddr;

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
        .init();
    let data = super::open(cli, args.listen, super::Create::Allowed).await?;
    let listen = data.resolved.listen;
    let config = data.resolved.server.clone();
    config
        .push
        .validate()
        .map_err(anyhow::Error::msg)
        .context("invalid [server.push] settings")?;
    // The services `open` made (one hub, one hashing pool, one policy cache), not a second set.
    let state = AppState::with_services(data.services.clone(), &data.key);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (is another server running there?)"))?;
    let shutdown = shutdown_signal()?;
    let local = listener.local_addr()?;
    let base = config
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    if !local.ip().is_loopback() && !base.starts_with("https://") {
        tracing::warn!(
            "listening on {local} without TLS: browsers only keep Sesame's secure cookies over HTTPS. \
             Put Sesame behind a TLS reverse proxy and set server.public_base_url to its https:// address"
        );
    }
    println!(
        "Sesame is running at {base}  (data: {})",
        data.resolved.data_dir.display()
    );
    if let Some(path) =
        sesame_server::service::setup::ensure_setup_link(&state, state.default_tenant).await?
    {
        println!(
            "No administrator exists yet. Open this one-time link to create one (valid 24 hours):"
        );
        println!("  {base}{path}");
    }
    println!("Press Ctrl-C to stop.");
    sesame_server::serve(listener, state, shutdown)
        .await
        .context("server error")?;
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
