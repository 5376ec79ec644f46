//! The `sluice` binary: `sluice serve` runs the broker; the other commands are its clients.

mod cli;
mod inspect_cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                let level = if matches!(cli.command, cli::Command::Serve(_)) {
                    "info"
                } else {
                    "warn"
                };
                tracing_subscriber::EnvFilter::new(level)
            }),
        )
        .init();
    // Offline tools exit 0 (fine), 1 (problems found, or --yes needed) or 2 (tool failure).
    let offline = match cli.command {
        cli::Command::Inspect(mut a) => {
            a.json |= cli.json;
            inspect_cli::run_inspect(a)
        }
        cli::Command::Repair(mut a) => {
            a.json |= cli.json;
            inspect_cli::run_repair(a)
        }
        command => {
            return match cli::run(cli::Cli { command, ..cli }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match offline {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
