//! `sesame-authenticator remove`: forget an account here (a Sesame account stays registered).

use anyhow::Result;
use sesame_authenticator::Vault;

#[derive(clap::Args)]
pub struct Args {
    /// The account: its name as `list` shows it, a unique part of it, or its id.
    pub account: String,
}

pub fn run(vault: &mut Vault, args: &Args, json: bool) -> Result<()> {
    let a = vault.find(&args.account).map_err(anyhow::Error::msg)?;
    let (id, label) = (a.id.clone(), a.otp.label());
    vault.data.accounts.retain(|a| a.id != id);
    vault.save()?;
    if json {
        out!("{}", serde_json::json!({"removed": label}));
    } else {
        say!("Removed {label} from this app. (If it was protecting a sign-in, add another method there first.)");
    }
    Ok(())
}
