use anyhow::{Context, Result};
use clap::Subcommand;
use sesame_store::MasterKey;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum MasterKeyCommand {
    /// Write a new master key to FILE (mode 0600). Refuses to overwrite an existing file.
    Generate { file: PathBuf },
}

pub fn run(c: &MasterKeyCommand) -> Result<()> {
    match c {
        MasterKeyCommand::Generate { file } => {
            MasterKey::write_new(file)
                .with_context(|| format!("cannot create {}", file.display()))?;
            eprintln!("Wrote a new master key to {}. Keep it secret and back it up: without it, stored secrets cannot be read.", file.display());
        }
    }
    Ok(())
}
