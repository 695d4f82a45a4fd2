//! `sesame-authenticator unregister`: tell the server to forget this device, then forget the
//! account here.

use super::runtime;
use anyhow::{Context, Result};
use sesame_authenticator::client::DeviceClient;
use sesame_authenticator::device::DeviceKey;
use sesame_authenticator::Vault;

#[derive(clap::Args)]
pub struct Args {
    /// The Sesame account: its name as `list` shows it, a unique part of it, or its id.
    pub account: String,
}

pub fn run(vault: &mut Vault, args: &Args, json: bool) -> Result<()> {
    let a = vault
        .find(&args.account)
        .map_err(anyhow::Error::msg)?
        .clone();
    let l = a
        .sesame
        .clone()
        .with_context(|| format!("{} is not a Sesame account; use `remove`", a.otp.label()))?;
    let key = DeviceKey::from_secret(&l.device_key).context("damaged device key")?;
    let c = DeviceClient::new(&l.server, &l.device_id, &key);
    match runtime()?.block_on(c.unregister()) {
        Ok(_) => {}
        // Already removed on the server (e.g. from My security info): forget it here too.
        Err(e) if e.is_unknown_device() => {}
        Err(e) => return Err(e).context("the server could not be told; the account was kept"),
    }
    vault.data.accounts.retain(|x| x.id != a.id);
    vault.save()?;
    if json {
        out!("{}", serde_json::json!({"unregistered": a.otp.label()}));
    } else {
        say!(
            "Unregistered this device from {} and removed the account from this app.",
            a.otp.label()
        );
    }
    Ok(())
}
