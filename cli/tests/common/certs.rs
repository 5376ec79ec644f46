//! Certificates for the TLS tests, made with the `openssl` command.

use std::path::Path;
use std::process::Command;

/// Runs `openssl` with `args` in `dir`; panics on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA `name.pem`/`name.key` in `dir`.
pub fn ca(dir: &Path, name: &str) {
    let (key, pem, subj) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("/CN={name}"),
    );
    let args = [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &pem,
    ];
    openssl(dir, &[&args[..], &["-days", "2", "-subj", &subj]].concat());
}

/// A certificate `name.pem`/`name.key` for 127.0.0.1 and localhost, signed by CA `by`.
pub fn cert(dir: &Path, name: &str, by: &str) {
    cert_for(dir, name, by, "DNS:localhost,IP:127.0.0.1");
}

/// A certificate `name.pem`/`name.key` for the subject alternative names `san`
/// (`IP:127.0.0.2`, `DNS:node-2,IP:10.0.0.2`), signed by CA `by`.
#[allow(dead_code)] // not every test that shares this file uses it
pub fn cert_for(dir: &Path, name: &str, by: &str, san: &str) {
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    std::fs::write(dir.join("san.cnf"), format!("subjectAltName={san}\n")).unwrap();
    let subj = format!("/CN={name}");
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &subj,
        ],
    );
    let (ca, ca_key) = (format!("{by}.pem"), format!("{by}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ],
    );
}
