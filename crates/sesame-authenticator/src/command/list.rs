//! `sesame-authenticator list`: every account with its current code.

use anyhow::Result;
use sesame_authenticator::Vault;

pub fn run(vault: &Vault, json: bool) -> Result<()> {
    super::print_codes(json, &super::all_codes(vault, super::now()))
}
