//! Headless Chromium for the web console's test (cli/tests/console.rs): Debian's `chromium`
//! (`bash tests/kafka/install.sh chromium`) run with `--dump-dom` after a virtual-time budget,
//! and the small reads of the DOM it prints that the test needs (an element by a marker in its
//! start tag, its text, a `data-field` cell's figure).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::wait_bounded;

/// Debian's Chromium, if installed.
pub fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
            .find(|f| f.is_file())
    });
    found.or_else(|| super::kafka::missing("chromium"))
}

/// Runs Chromium headless on a fresh profile with `args`; its stdout, killed after 60 s.
pub fn run_chromium(chromium: &Path, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chromium");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = String::new();
        let _ = out.read_to_string(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = String::new();
        let _ = err.read_to_string(&mut v);
        v
    });
    let status = wait_bounded(&mut child, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("chromium {args:?} did not finish within 60 s"));
    let (out, err) = (t_out.join().unwrap(), t_err.join().unwrap());
    assert!(status.success(), "chromium {args:?} failed: {err}");
    out
}

/// The DOM of the console at `#hash` after 8 s of virtual time (four polls; the page's fetches
/// hold virtual time until they are answered).
pub fn dump(chromium: &Path, http: &str, hash: &str) -> String {
    let url = format!("http://{http}/#{hash}");
    let dom = run_chromium(
        chromium,
        &["--virtual-time-budget=8000", "--dump-dom", url.as_str()],
    );
    assert!(
        dom.contains("data-polls=\""),
        "the page never finished a poll at {url}:\n{dom}"
    );
    dom
}

/// The element whose start tag holds `marker`, through its matching end tag.
pub fn element<'a>(html: &'a str, marker: &str) -> &'a str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in:\n{html}"));
    let start = html[..at].rfind('<').unwrap();
    let name: String = html[start + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let (open, close) = (format!("<{name}"), format!("</{name}>"));
    let mut depth = 0;
    let mut i = start;
    while i < html.len() {
        let rest = &html[i..];
        if rest.starts_with(&close) {
            depth -= 1;
            if depth == 0 {
                return &html[start..i + close.len()];
            }
            i += close.len();
        } else if rest.starts_with(&open) && rest[open.len()..].starts_with([' ', '>']) {
            depth += 1;
            i += open.len();
        } else {
            i += rest.chars().next().unwrap().len_utf8();
        }
    }
    &html[start..]
}

/// The text of an HTML fragment: tags dropped, the five entities decoded.
pub fn text(fragment: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in fragment.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The text of the `data-field="field"` element in `scope`.
pub fn field(scope: &str, field: &str) -> String {
    text(element(scope, &format!("data-field=\"{field}\"")))
}

/// The number a `data-field` cell shows; its `data-value` must say the same.
pub fn num(scope: &str, name: &str) -> u64 {
    let cell = element(scope, &format!("data-field=\"{name}\""));
    let shown = text(cell).replace(',', "");
    let n: u64 = shown
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name} shows {shown:?}: {cell}"));
    let head = &cell[..cell.find('>').unwrap()];
    assert!(
        head.contains(&format!("data-value=\"{n}\"")),
        "{name}: {head}"
    );
    n
}

/// The `tr` holding the text `>needle<`.
pub fn row_with<'a>(scope: &'a str, needle: &str) -> &'a str {
    let at = scope
        .find(&format!(">{needle}<"))
        .unwrap_or_else(|| panic!("no {needle} in:\n{scope}"));
    let start = scope[..at].rfind("<tr").unwrap();
    let end = at + scope[at..].find("</tr>").unwrap() + 5;
    &scope[start..end]
}
