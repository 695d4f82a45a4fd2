//! `sesame-authenticator pin`: set or change the app PIN.

use super::{read_pin, runtime};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use sesame_authenticator::phone;
use sesame_authenticator::Vault;

#[derive(Subcommand)]
pub enum PinCommand {
    /// Set the app PIN (from a prompt, or SESAME_AUTHENTICATOR_PIN for scripts).
    Set,
    /// Change it (current PIN: prompt or SESAME_AUTHENTICATOR_PIN; new: prompt or
    /// SESAME_AUTHENTICATOR_NEW_PIN).
    Change,
}

pub fn run(vault: &mut Vault, c: &PinCommand) -> Result<()> {
    match c {
        PinCommand::Set => {
            if vault.data.pin_set {
                bail!(
                    "an app PIN is already set; change it with `sesame-authenticator pin change`"
                );
            }
            let pin = read_pin("New app PIN: ", "SESAME_AUTHENTICATOR_PIN", true)?;
            set_pin(vault, &pin)?;
            say!("App PIN set. It stays on this device, stored nowhere: remember it.");
        }
        PinCommand::Change => change_pin(vault)?,
    }
    Ok(())
}

/// Sets the app PIN and sets up the PIN key of every Sesame account that has none.
pub fn set_pin(vault: &mut Vault, pin: &str) -> Result<()> {
    sesame_authenticator::pin::validate(pin)?;
    let rt = runtime()?;
    for i in 0..vault.data.accounts.len() {
        let label = vault.data.accounts[i].otp.label();
        let Some(link) = vault.data.accounts[i]
            .sesame
            .as_mut()
            .filter(|l| l.pin_key.is_none())
        else {
            continue;
        };
        if let Err(e) = rt.block_on(phone::register_pin_key(link, pin)) {
            super::warn(&format!(
                "warning: {}",
                sesame_proto::text::printable(&format!("{label}: {e}"))
            ));
        }
    }
    vault.data.pin_set = true;
    vault.save()?;
    Ok(())
}

fn change_pin(vault: &mut Vault) -> Result<()> {
    if !vault.data.pin_set {
        bail!("no app PIN is set yet; set one with `sesame-authenticator pin set`");
    }
    let current = read_pin("Current app PIN: ", "SESAME_AUTHENTICATOR_PIN", false)?;
    let new = read_pin("New app PIN: ", "SESAME_AUTHENTICATOR_NEW_PIN", true)?;
    sesame_authenticator::pin::validate(&new)?;
    // Each PIN key is replaced under the new PIN, proven by the key the current PIN
    // unlocks: a wrong current PIN is refused (and counted) by the server.
    let rt = runtime()?;
    let mut changed = 0;
    for i in 0..vault.data.accounts.len() {
        let label = vault.data.accounts[i].otp.label();
        let Some(link) = vault.data.accounts[i].sesame.as_mut() else {
            continue;
        };
        if link.pin_key.is_none() {
            continue;
        }
        rt.block_on(phone::rotate_pin_key(link, &current, &new))
            .with_context(|| format!("the PIN was not changed for {label}"))?;
        vault.save()?;
        changed += 1;
    }
    say!(
        "App PIN changed ({} updated).",
        super::counted(changed, "account key", "account keys")
    );
    Ok(())
}
