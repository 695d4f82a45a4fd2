//! `sesame-authenticator watch`: starts the full-screen app (`sesame_authenticator::watch`).

use anyhow::{bail, Result};
use sesame_authenticator::Vault;

pub fn run(vault: Vault) -> Result<()> {
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!("watch needs a terminal; for scripts use `pending` and `respond`");
    }
    sesame_authenticator::watch::run(vault)
}
