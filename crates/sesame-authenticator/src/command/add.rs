//! `sesame-authenticator add`: a Sesame activation link, or any site's otpauth:// link.

use super::{code_line, now, read_pin, runtime, spaced};
use anyhow::{bail, Context, Result};
use rand::RngCore;
use sesame_authenticator::client;
use sesame_authenticator::device::DeviceKey;
use sesame_authenticator::otp::OtpauthError;
use sesame_authenticator::phone;
use sesame_authenticator::vault::{Account, SesameLink};
use sesame_authenticator::{OtpAccount, Vault};
use sesame_proto::device::parse_activation_link;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The link: sesame://activate?... from My security info, or otpauth://totp/... (omit it
    /// with --qr).
    #[arg(required_unless_present = "qr")]
    pub link: Option<String>,
    /// Read the link from a QR code in this image (PNG), e.g. a screenshot of the set-up page.
    #[arg(long, value_name = "IMAGE", conflicts_with = "link")]
    pub qr: Option<PathBuf>,
    /// Name of this device as the server will show it.
    #[arg(long)]
    pub device_name: Option<String>,
}

pub fn run(vault: &mut Vault, args: &Args, json: bool) -> Result<()> {
    // `add --qr IMAGE` is `add LINK` with the link read from the image.
    let link = match (&args.qr, &args.link) {
        (Some(image), _) => sesame_authenticator::qr::read(image)?,
        (None, Some(link)) => link.clone(),
        (None, None) => bail!("give a link, or --qr IMAGE"),
    };
    // Pasted links often come with a space or a line end around them.
    let link = link.trim();
    if link.starts_with("sesame://") {
        add_sesame(vault, link, args.device_name.clone(), json)
    } else {
        add_otpauth(vault, link, json)
    }
}

fn add_sesame(vault: &mut Vault, link: &str, name: Option<String>, json: bool) -> Result<()> {
    let (server, code) =
        parse_activation_link(link).context("this is not a valid Sesame activation link")?;
    let key = DeviceKey::generate();
    let name = name.unwrap_or_else(device_name);
    let resp = runtime()?.block_on(client::activate(&server, &code, &name, &key))?;
    let uri = format!(
        "otpauth://totp/{}:{}?secret={}&algorithm={}&digits={}&period={}",
        enc(&resp.issuer),
        enc(&resp.username),
        resp.totp.secret_base32,
        resp.totp.algorithm,
        resp.totp.digits,
        resp.totp.period
    );
    let mut otp = OtpAccount::from_uri(&uri).context("the server sent unusable code parameters")?;
    otp.issuer = resp.issuer.clone();
    let mut link = SesameLink {
        server,
        device_id: resp.device_id.clone(),
        username: resp.username.clone(),
        device_key: key.to_secret().to_string(),
        pin_key: None,
        phone_sign_in: false,
        removed_on_server: false,
    };
    // With an app PIN set, the new account gets its PIN key now, so PIN approvals work.
    let mut pin_note = None;
    if vault.data.pin_set {
        match read_pin("App PIN: ", "SESAME_AUTHENTICATOR_PIN", false) {
            Ok(pin) => {
                runtime()?.block_on(phone::register_pin_key(&mut link, &pin))?;
            }
            Err(_) => {
                pin_note = Some("No PIN given: this account's PIN key will be set up when you turn on phone sign-in.")
            }
        }
    }
    let added = save_new(vault, otp, Some(link))?.clone();
    let line = code_line(&added, now());
    let selector = super::account_arg(vault, &added);
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"account": line.account, "device_id": resp.device_id, "code": line.code, "phone_sign_in_allowed": resp.phone_sign_in_allowed})
            )?
        );
        return Ok(());
    }
    say!(
        "Added {} ({}) as {name}. Sign-in requests for this account now come to this app.",
        line.account,
        resp.display_name
    );
    if let Some(n) = pin_note {
        say!("{n}");
    }
    if resp.phone_sign_in_allowed {
        // Offered at once: phone sign-in is what this app is for.
        say!("Phone sign-in is available: sign in with just your username and this app.");
        if std::io::IsTerminal::is_terminal(&std::io::stdin())
            && confirm("Turn on phone sign-in now? [y/N] ")?
        {
            // By id: the label may not be unique.
            super::phone_sign_in::enable(vault, &added.id, false, json)?;
        } else {
            // Pasted into a shell as printed, this must select exactly this account.
            say!("Turn it on with: sesame-authenticator phone-sign-in enable {selector}");
        }
    }
    Ok(())
}

fn add_otpauth(vault: &mut Vault, link: &str, json: bool) -> Result<()> {
    let otp = OtpAccount::from_uri(link).map_err(|e| match e {
        // Neither kind: say both, since either may be what the person meant to paste.
        OtpauthError::NotOtpauth => anyhow::anyhow!(
            "cannot add this link: it is neither a Sesame activation link (sesame://activate?..., \
             from My security info) nor an otpauth:// link (any site's verification codes)"
        ),
        e => anyhow::Error::new(e).context("cannot add this link"),
    })?;
    if vault
        .data
        .accounts
        .iter()
        .any(|a| a.otp.secret_base32 == otp.secret_base32 && a.otp.label() == otp.label())
    {
        bail!("{} is already in this app", otp.label());
    }
    let line = code_line(save_new(vault, otp, None)?, now());
    super::output(json, &line, || {
        say!(
            "Added {}. Current code: {} ({} s left)",
            line.account,
            spaced(&line.code),
            line.seconds_left
        );
    })
}

/// Adds the account under a new random id and saves the vault.
fn save_new(vault: &mut Vault, otp: OtpAccount, sesame: Option<SesameLink>) -> Result<&Account> {
    let mut id = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut id);
    vault.data.accounts.push(Account {
        id: data_encoding::HEXLOWER.encode(&id),
        added_at: now(),
        otp,
        sesame,
    });
    vault.save()?;
    Ok(vault.data.accounts.last().expect("pushed above"))
}

fn device_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    match host {
        Some(h) => format!("Sesame Authenticator on {h}"),
        None => "Sesame Authenticator".into(),
    }
}

fn confirm(question: &str) -> Result<bool> {
    super::write_out(format_args!("{}", sesame_proto::text::printable(question)));
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
