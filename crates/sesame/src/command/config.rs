use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print a commented example configuration with every setting and its default.
    Example,
}

pub fn run(c: &ConfigCommand) -> Result<()> {
    match c {
        ConfigCommand::Example => super::emit(crate::config::EXAMPLE.trim_end_matches('\n')),
    }
    Ok(())
}
