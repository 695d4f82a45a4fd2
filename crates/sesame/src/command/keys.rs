//! `sesame keys ...`: the keys that sign OpenID Connect tokens.

use super::{open, output};
use crate::Cli;
use anyhow::{bail, Result};
use clap::Subcommand;
use sesame_core::audit::Event;
use sesame_server::service::oidc::keys::{self, Alg, OVERLAP_SECS};
use sesame_server::web::fmt_time;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// List the signing keys: the current one of each algorithm, and retired ones still
    /// published.
    List,
    /// Make a new signing key; the one it replaces stays published for a day, so tokens it
    /// signed keep verifying, then it is forgotten. Running servers pick it up within a minute.
    Rotate {
        /// RS256, ES256, EdDSA, or all.
        #[arg(long, default_value = "all", value_name = "ALG")]
        alg: String,
    },
}

pub async fn run(cli: &Cli, cmd: &KeysCommand) -> Result<()> {
    let data = open(cli, None, super::Create::Refused).await?;
    let svc = &data.services;
    let now = svc.now();
    match cmd {
        KeysCommand::List => {
            // Makes the first keys if the server never has.
            let loaded = svc.oidc.keys.current(&*svc.store, now).await?;
            let rows: Vec<serde_json::Value> = loaded
                .keys
                .iter()
                .map(|k| {
                    serde_json::json!({
                        "kid": k.kid,
                        "alg": k.alg.as_str(),
                        "created_at": k.created_at,
                        "retired_at": k.retired_at,
                        "published_until": k.retired_at.map(|r| r + OVERLAP_SECS),
                    })
                })
                .collect();
            output(cli.json, &rows, || {
                say!("{:<18} {:<6} {:<22} STATE", "KID", "ALG", "CREATED");
                for k in &loaded.keys {
                    let state = match k.retired_at {
                        None => "signing".to_string(),
                        Some(r) if now < r + OVERLAP_SECS => {
                            format!("retired, published until {}", fmt_time(r + OVERLAP_SECS))
                        }
                        Some(_) => "retired".to_string(),
                    };
                    say!(
                        "{:<18} {:<6} {:<22} {state}",
                        k.kid,
                        k.alg.as_str(),
                        fmt_time(k.created_at)
                    );
                }
            })?;
        }
        KeysCommand::Rotate { alg } => {
            let algs: Vec<Alg> = match alg.as_str() {
                "all" => Alg::ALL.to_vec(),
                a => match Alg::parse(a) {
                    Some(a) => vec![a],
                    None => bail!("--alg must be RS256, ES256, EdDSA or all"),
                },
            };
            let mut made = Vec::new();
            for a in algs {
                let kid = keys::rotate(&*svc.store, a, now).await?;
                let admin = data.admin("sesame keys rotate");
                let detail = format!("{} key {kid}", a.as_str());
                svc.audit(
                    &admin.origin,
                    admin.line(data.tenant, None, Event::AdminKeyRotated, Some(&detail)),
                )
                .await;
                made.push(serde_json::json!({"alg": a.as_str(), "kid": kid}));
            }
            output(cli.json, &made, || {
                for m in &made {
                    say!(
                        "New {} key {}.",
                        m["alg"].as_str().unwrap_or(""),
                        m["kid"].as_str().unwrap_or("")
                    );
                }
                say!("Retired keys stay published for a day; running servers sign with the new keys within a minute.");
            })?;
        }
    }
    Ok(())
}
