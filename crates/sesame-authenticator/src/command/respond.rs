//! `sesame-authenticator respond`: approve, deny or report one sign-in request.

use super::{pending_of, read_pin, runtime, sesame_accounts};
use anyhow::{bail, Context, Result};
use sesame_authenticator::approval::{self, UserPresence};
use sesame_authenticator::client::DeviceClient;
use sesame_authenticator::device::DeviceKey;
use sesame_authenticator::Vault;
use sesame_proto::device::{Challenge, Decision};

#[derive(clap::Args)]
pub struct Args {
    /// The request id (or a unique prefix of it) from `pending`.
    pub request: String,
    /// The number shown on the sign-in page (needed with --approve).
    #[arg(long, required_if_eq("approve", "true"))]
    pub number: Option<String>,
    /// Approve: this is me. The browser showing the number signs in (the app PIN is asked
    /// for if the sign-in needs it).
    #[arg(long, group = "decision")]
    pub approve: bool,
    /// Deny: the sign-in fails, and nothing else happens. For a sign-in of your own that you
    /// do not want to finish; if it wasn't you, use --report.
    #[arg(long, group = "decision")]
    pub deny: bool,
    /// Deny and report: this wasn't me. The sign-in fails, requests to your phone are blocked
    /// until an administrator unblocks them, and your administrator is told (the report shows
    /// in the admin console and in `sesame user list`).
    #[arg(long, group = "decision")]
    pub report: bool,
}

/// Asks at the terminal (or reads SESAME_AUTHENTICATOR_PIN, for scripts).
struct PromptPresence;

impl UserPresence for PromptPresence {
    fn pin(&mut self, c: &Challenge) -> Result<zeroize::Zeroizing<String>, String> {
        read_pin(
            &sesame_proto::text::printable(&format!(
                "App PIN to approve {} for {}: ",
                c.app_name, c.username
            )),
            "SESAME_AUTHENTICATOR_PIN",
            false,
        )
        .map_err(|e| e.to_string())
    }
}

pub fn run(vault: &mut Vault, args: &Args, json: bool) -> Result<()> {
    let request = &args.request;
    let decision = match (args.approve, args.deny, args.report) {
        (true, _, _) => Decision::Approve,
        (_, true, _) => Decision::Deny,
        (_, _, true) => Decision::Report,
        _ => bail!("choose --approve (with --number), --deny or --report"),
    };
    let number = args.number.as_deref().unwrap_or_default();
    if decision == Decision::Approve && number.trim().is_empty() {
        bail!("type the number shown on the sign-in page with --number");
    }
    let rt = runtime()?;
    let mut found = None;
    let ids: Vec<String> = sesame_accounts(vault)?
        .iter()
        .map(|(a, ..)| a.id.clone())
        .collect();
    for id in ids {
        let pending = pending_of(vault, &rt, &id)?;
        let l = vault
            .data
            .accounts
            .iter()
            .find(|a| a.id == id)
            .and_then(|a| a.sesame.as_ref())
            .context("no such Sesame account")?;
        for ch in pending
            .challenges
            .into_iter()
            .filter(|ch| ch.id.starts_with(request.trim()))
        {
            if found.is_some() {
                bail!("{request:?} matches more than one request; give more of its id");
            }
            found = Some((
                id.clone(),
                l.clone(),
                DeviceKey::from_secret(&l.device_key).context("damaged device key")?,
                ch,
            ));
        }
    }
    let Some((id, l, key, ch)) = found else {
        bail!("no waiting sign-in request matches {request:?}: it may have expired, been answered, or been replaced by a newer one");
    };
    let c = DeviceClient::new(&l.server, &l.device_id, &key);
    let req = approval::answer(&l, &key, &ch, decision, number, &mut PromptPresence)
        .map_err(anyhow::Error::msg)?;
    let resp = match rt.block_on(c.respond(&req)) {
        Ok(resp) => resp,
        Err(e) => {
            // Removed on the server since the request was listed.
            if e.is_unknown_device() {
                super::record_removed(vault, &id);
            }
            return Err(e.into());
        }
    };
    super::output(json, &resp, || say!("{}", resp.message))?;
    if resp.outcome == "wrong_number" {
        return Err(anyhow::anyhow!("the number did not match"));
    }
    Ok(())
}
