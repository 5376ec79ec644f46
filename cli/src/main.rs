//! The `sluice` binary: `sluice serve` runs the broker; the other commands are its clients.

mod cli;
mod inspect_cli;

use std::process::ExitCode;

use clap::Parser;

/// Allocations below this come from the heap rather than their own mapping.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_MMAP_THRESHOLD_BYTES: libc::c_int = 32 << 20;
/// Free memory at the top of the heap kept rather than returned to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_TRIM_THRESHOLD_BYTES: libc::c_int = 256 << 20;

/// Batches and frames are up to a few MiB, allocated and freed thousands of times a second.
/// glibc serves such sizes with fresh mappings (or trims them back to the system), so every
/// one page-faults and is zeroed by the kernel anew: a quarter of a producer's CPU with
/// 1 MiB batches. Keep them in the heap instead.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD_BYTES);
    }
}

/// Log lines on stderr, as `--log-format` asks; `RUST_LOG` filters them (default: `info` for
/// `serve`, `warn` for the rest).
fn init_logs(cli: &cli::Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = if matches!(cli.command, cli::Command::Serve(_)) {
            "info"
        } else {
            "warn"
        };
        tracing_subscriber::EnvFilter::new(level)
    });
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        cli::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        cli::LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = cli::Cli::parse();
    init_logs(&cli);
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
