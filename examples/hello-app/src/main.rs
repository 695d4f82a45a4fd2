//! `hello-app`: see the library for what it does.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = hello_app::Config::parse();
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    // The address really bound (a port of 0 becomes a free one): the redirect URIs use it.
    config.listen = listener.local_addr()?;
    let base = config.base();
    println!(
        "hello-app at {base} (register it with: sesame client add 'Hello App' --redirect-uri {base}/callback --post-logout-redirect-uri {base}/ --first-party)"
    );
    hello_app::serve(listener, config).await
}
