use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print a commented example configuration with every setting and its default.
    Example,
}

pub fn run(c: &ConfigCommand) -> Result<()> {
    match c {
        ConfigCommand::Example => print!("{}", crate::config::EXAMPLE),
    }
    Ok(())
}
