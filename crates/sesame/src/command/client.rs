//! `sesame client ...`: applications that sign their users in through Sesame (OpenID Connect).

use super::{open, output};
use crate::Cli;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use sesame_server::service::oidc::clients::{self, NewClient};
use sesame_server::service::oidc::keys::Alg;
use sesame_server::web::fmt_time;
use sesame_store::Client;

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Register an application. Prints its client id and (unless --public) its secret, once.
    Add(AddArgs),
    /// List the registered applications.
    List,
    /// Show one application.
    Show { client_id: String },
    /// Remove an application and every token issued to it.
    Remove { client_id: String },
    /// Give a confidential application a new secret; the old one stops working at once.
    RotateSecret { client_id: String },
}

#[derive(Args)]
pub struct AddArgs {
    /// What people see: on the sign-in page and on the phone ("the application asking").
    pub name: String,
    /// Where Sesame may send people back with a code, exactly as the application sends it
    /// (repeat for several).
    #[arg(long = "redirect-uri", value_name = "URI")]
    pub redirect_uris: Vec<String>,
    /// Where Sesame may send people after signing out (repeat for several).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    pub post_logout_redirect_uris: Vec<String>,
    /// A public client (single-page or native app): no secret, PKCE only.
    #[arg(long)]
    pub public: bool,
    /// Your own application: people are not asked to consent.
    #[arg(long)]
    pub first_party: bool,
    /// Every sign-in to this application completes two-step verification.
    #[arg(long)]
    pub require_mfa: bool,
    /// How ID tokens are signed: RS256 (the default), ES256 or EdDSA.
    #[arg(long, default_value = "RS256", value_name = "ALG")]
    pub id_token_alg: String,
    /// The application may get tokens for itself (client credentials grant).
    #[arg(long)]
    pub client_credentials: bool,
}

fn kind(c: &Client) -> &'static str {
    if c.secret_hash.is_some() {
        "confidential"
    } else {
        "public"
    }
}

fn describe(c: &Client) {
    say!("{} ({} client)", c.name, kind(c));
    say!("  client_id:        {}", c.client_id);
    for u in &c.redirect_uris {
        say!("  redirect URI:     {u}");
    }
    for u in &c.post_logout_redirect_uris {
        say!("  after sign-out:   {u}");
    }
    say!("  ID tokens:        {}", c.id_token_alg);
    say!(
        "  consent:          {}",
        if c.first_party {
            "not asked (first-party)"
        } else {
            "asked once"
        }
    );
    say!(
        "  two-step:         {}",
        if c.require_mfa {
            "required"
        } else {
            "as the policy says"
        }
    );
    if c.client_credentials {
        say!("  client credentials: allowed");
    }
    say!("  registered:       {}", fmt_time(c.created_at));
}

pub async fn run(cli: &Cli, cmd: &ClientCommand) -> Result<()> {
    let data = open(cli, None, super::Create::Refused).await?;
    let svc = &data.services;
    match cmd {
        ClientCommand::Add(a) => {
            let Some(alg) = Alg::parse(&a.id_token_alg) else {
                bail!("--id-token-alg must be RS256, ES256 or EdDSA");
            };
            let created = clients::add(
                svc,
                &data.admin("sesame client add"),
                data.tenant,
                NewClient {
                    name: a.name.clone(),
                    redirect_uris: a.redirect_uris.clone(),
                    post_logout_redirect_uris: a.post_logout_redirect_uris.clone(),
                    public: a.public,
                    first_party: a.first_party,
                    require_mfa: a.require_mfa,
                    id_token_alg: alg,
                    client_credentials: a.client_credentials,
                },
            )
            .await?;
            let c = &created.client;
            output(
                cli.json,
                &serde_json::json!({"client": c, "client_secret": created.secret}),
                || {
                    say!("Registered {}.", c.name);
                    describe(c);
                    if let Some(s) = &created.secret {
                        say!("  client_secret:    {s}");
                        say!("The secret is shown only now: put it in the application's configuration. (`sesame client rotate-secret` makes a new one.)");
                    }
                },
            )?;
        }
        ClientCommand::List => {
            let list = data.store.list_clients(data.tenant).await?;
            output(cli.json, &list, || {
                say!("{:<34} {:<13} NAME", "CLIENT ID", "TYPE");
                for c in &list {
                    say!("{:<34} {:<13} {}", c.client_id, kind(c), c.name);
                }
                if list.is_empty() {
                    say!("(no applications yet: add one with `sesame client add NAME --redirect-uri URI`)");
                }
            })?;
        }
        ClientCommand::Show { client_id } => {
            let c = clients::find(svc, data.tenant, client_id).await?;
            output(cli.json, &c, || describe(&c))?;
        }
        ClientCommand::Remove { client_id } => {
            let c = clients::remove(
                svc,
                &data.admin("sesame client remove"),
                data.tenant,
                client_id,
            )
            .await?;
            output(cli.json, &c, || {
                say!(
                    "Removed {} ({}): its tokens no longer work.",
                    c.name,
                    c.client_id
                )
            })?;
        }
        ClientCommand::RotateSecret { client_id } => {
            let secret = clients::rotate_secret(
                svc,
                &data.admin("sesame client rotate-secret"),
                data.tenant,
                client_id,
            )
            .await?;
            output(
                cli.json,
                &serde_json::json!({"client_id": client_id, "client_secret": secret}),
                || {
                    say!("New secret for {client_id}: {secret}");
                    say!("The old secret no longer works. This one is shown only now.");
                },
            )?;
        }
    }
    Ok(())
}
