//! Commands over many names at once (`queue create a b c`, `topic delete --from-file names`):
//! the requests are pipelined on one connection, so the server works on many names at once,
//! and each name's outcome is printed in the order given.

use std::collections::VecDeque;
use std::future::Future;
use std::io::BufRead;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;
use sluice::client::{Client, ClientError};
use tokio::task::JoinHandle;

use super::Out;

/// Requests in flight at once.
pub(super) const NAMES_WINDOW: usize = 64;

/// The names of a command: those given, then those of `from_file` (one per line, `-` for
/// standard input; blank lines and lines starting with `#` skipped).
pub(super) fn gather(mut names: Vec<String>, from_file: Option<&Path>) -> Result<Vec<String>> {
    if let Some(p) = from_file {
        let lines: Vec<String> = if p == Path::new("-") {
            std::io::stdin().lock().lines().collect::<Result<_, _>>()
        } else {
            let f =
                std::fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?;
            std::io::BufReader::new(f).lines().collect::<Result<_, _>>()
        }
        .context("cannot read the names")?;
        names.extend(
            lines
                .into_iter()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty() && !l.starts_with('#')),
        );
    }
    if names.is_empty() {
        bail!("no names given (as arguments or with --from-file)");
    }
    Ok(names)
}

/// Runs `op` for every name, [`NAMES_WINDOW`] at a time, and prints each outcome in order:
/// `done(name)` for a success, the error otherwise. Fails when any name failed, after all ran.
pub(super) async fn run_each<F, Fut>(
    c: &Client,
    out: &Out,
    what: &str,
    names: Vec<String>,
    op: F,
    done: impl Fn(&str) -> (String, serde_json::Value),
) -> Result<()>
where
    F: Fn(Client, String) -> Fut,
    Fut: Future<Output = Result<(), ClientError>> + Send + 'static,
{
    let total = names.len();
    let mut failed = 0usize;
    let mut inflight: VecDeque<(String, JoinHandle<Result<(), ClientError>>)> = VecDeque::new();
    let mut next = names.into_iter();
    loop {
        while inflight.len() < NAMES_WINDOW {
            let Some(n) = next.next() else { break };
            inflight.push_back((n.clone(), tokio::spawn(op(c.clone(), n))));
        }
        let Some((name, task)) = inflight.pop_front() else {
            break;
        };
        match task.await.context("request task failed")? {
            Ok(()) => {
                let (text, value) = done(&name);
                out.line(|| text.clone(), || value.clone());
            }
            Err(e) if total == 1 => return Err(e).with_context(|| format!("cannot {what} {name}")),
            Err(e) => {
                failed += 1;
                out.line(
                    || format!("cannot {what} {name}: {e}"),
                    || json!({"name": name, "error": e.to_string()}),
                );
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {total} could not be done ({what})");
    }
    Ok(())
}
