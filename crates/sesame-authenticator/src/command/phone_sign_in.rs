//! `sesame-authenticator phone-sign-in`: sign in with this app instead of a password.

use super::{read_pin, runtime};
use anyhow::{bail, Result};
use clap::Subcommand;
use sesame_authenticator::phone;
use sesame_authenticator::Vault;

#[derive(Subcommand)]
pub enum PhoneCommand {
    /// Turn on phone sign-in for a Sesame account (asks for the app PIN, or asks you to set one).
    /// You then confirm it on My security info, if it shows the code this prints; this waits
    /// for that (up to 10 minutes).
    Enable {
        account: String,
        /// Ask, and return without waiting for the confirmation on My security info.
        #[arg(long)]
        no_wait: bool,
    },
    /// Turn it off (sign in with your password again).
    Disable { account: String },
}

pub fn run(vault: &mut Vault, c: &PhoneCommand, json: bool) -> Result<()> {
    match c {
        PhoneCommand::Enable { account, no_wait } => enable(vault, account, *no_wait, json),
        PhoneCommand::Disable { account } => disable(vault, account, json),
    }
}

/// `phone-sign-in enable`: asks to set a PIN first when there is none, then proves it.
pub fn enable(vault: &mut Vault, account: &str, no_wait: bool, json: bool) -> Result<()> {
    let i = sesame_index(vault, account)?;
    let label = vault.data.accounts[i].otp.label();
    let server = vault.data.accounts[i]
        .sesame
        .as_ref()
        .map(|l| l.server.clone())
        .unwrap_or_default();
    // One Sesame account per organisation per device for phone sign-in.
    if let Some(other) = vault.data.accounts.iter().find(|a| {
        a.id != vault.data.accounts[i].id
            && a.sesame
                .as_ref()
                .is_some_and(|l| l.server == server && l.phone_sign_in)
    }) {
        bail!(
            "phone sign-in is already on for {} with this server; one account per organisation can use phone sign-in on a device (turn it off there first)",
            other.otp.label()
        );
    }
    let pin = if vault.data.pin_set {
        read_pin("App PIN: ", "SESAME_AUTHENTICATOR_PIN", false)?
    } else {
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            bail!(
                "phone sign-in needs an app PIN: set one first with `sesame-authenticator pin set`"
            );
        }
        say!("Phone sign-in needs an app PIN (at least 6 digits). Set one now.");
        let pin = read_pin("New app PIN: ", "SESAME_AUTHENTICATOR_NEW_PIN", true)?;
        super::pin::set_pin(vault, &pin)?;
        pin
    };
    let link = vault.data.accounts[i]
        .sesame
        .as_mut()
        .expect("a Sesame account");
    let rt = runtime()?;
    let result = rt.block_on(phone::enable(link, &pin));
    // A PIN key registered before a refusal is kept either way.
    vault.save()?;
    let mut status = result?;
    if status.phone_sign_in_awaiting_confirmation {
        let page = format!("{}/security-info", server.trim_end_matches('/'));
        // Someone with a copy of this device's key could ask too: the page shows the random
        // code of the request it would confirm, to compare with this one. (A server that
        // predates the code sends none.)
        let check = status
            .phone_sign_in_code
            .as_deref()
            .map(check_line)
            .unwrap_or_default();
        if no_wait || json {
            return super::output(json, &status, || {
                out!("Asked. Now confirm it on My security info: {page}");
                out!("(sign in there, then choose \"Turn on phone sign-in\" for this device within 10 minutes)");
                if !check.is_empty() {
                    out!("{check}");
                }
            });
        }
        out!("Almost done: confirm it on My security info: {page}");
        if !check.is_empty() {
            out!("{check}");
        }
        out!("Sign in there, then choose \"Turn on phone sign-in\" for this device. Waiting up to 10 minutes (Ctrl-C stops waiting)...");
        let link = vault.data.accounts[i]
            .sesame
            .as_mut()
            .expect("a Sesame account");
        status = rt.block_on(phone::wait_for_confirmation(
            link,
            std::time::Duration::from_secs(600),
        ))?;
        vault.save()?;
        if !status.phone_sign_in_enabled {
            bail!(
                "phone sign-in was not confirmed in time: {}",
                status.message
            );
        }
    }
    super::output(json, &status, || {
        say!("Phone sign-in is on for {label}. Next time, type your username and approve here with your PIN.");
    })
}

/// What the person checks on My security info before confirming the request with `code`.
fn check_line(code: &str) -> String {
    format!("Confirm on My security info only if it shows code {code}")
}

fn disable(vault: &mut Vault, account: &str, json: bool) -> Result<()> {
    let i = sesame_index(vault, account)?;
    let label = vault.data.accounts[i].otp.label();
    let link = vault.data.accounts[i]
        .sesame
        .as_mut()
        .expect("a Sesame account");
    let status = runtime()?.block_on(phone::disable(link))?;
    vault.save()?;
    super::output(json, &status, || {
        say!("Phone sign-in is off for {label}. Sign in with your password.");
    })
}

/// Index of the Sesame account matching `query`.
fn sesame_index(vault: &Vault, query: &str) -> Result<usize> {
    let id = vault.find(query).map_err(anyhow::Error::msg)?.id.clone();
    let i = vault
        .data
        .accounts
        .iter()
        .position(|a| a.id == id)
        .expect("found above");
    if vault.data.accounts[i].sesame.is_none() {
        bail!(
            "{} is not a Sesame account: phone sign-in works only with accounts added from My security info",
            vault.data.accounts[i].otp.label()
        );
    }
    Ok(i)
}
