//! `sesame-authenticator code`: the current code of one account, or of all.

use anyhow::Result;
use sesame_authenticator::Vault;

#[derive(clap::Args)]
pub struct Args {
    pub account: Option<String>,
}

pub fn run(vault: &Vault, args: &Args, json: bool) -> Result<()> {
    let t = super::now();
    let lines = match &args.account {
        Some(q) => vec![super::code_line(
            vault.find(q).map_err(anyhow::Error::msg)?,
            t,
        )],
        None => super::all_codes(vault, t),
    };
    super::print_codes(json, &lines)
}
