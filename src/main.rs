//! The `sluice` binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod inspect_cli;

/// A durable, log-structured message broker.
#[derive(Parser, Debug)]
#[command(name = "sluice", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Inspect or verify a data directory or file offline (read-only).
    Inspect(inspect_cli::InspectArgs),
    /// Repair a data directory offline (the broker must be stopped).
    Repair(inspect_cli::RepairArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect_cli::run_inspect(args),
        Command::Repair(args) => inspect_cli::run_repair(args),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
