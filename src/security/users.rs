//! Users: a name, an Argon2id hash of the password (checked for SASL PLAIN, the HTTP login and
//! the native `PLAIN` mechanism), SCRAM-SHA-256 and SCRAM-SHA-512 keys (for SCRAM), whether the
//! user is a superuser (every rule skipped), when it expires, and its quotas.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};
use sluice_client::scram::{Credential, Mechanism, ITERATIONS_DEFAULT};

/// Longest user name.
pub const USER_NAME_BYTES_MAX: usize = 255;
/// Longest password.
pub const PASSWORD_BYTES_MAX: usize = 1024;
/// Most users a broker keeps.
pub const USERS_MAX: usize = 100_000;

/// Per-user limits, enforced by delaying (bytes) or refusing a new connection (connections).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    /// Bytes per second this user may publish, over all its connections.
    pub produce_bytes_per_sec: Option<u64>,
    /// Bytes per second this user may read, over all its connections.
    pub fetch_bytes_per_sec: Option<u64>,
    /// Connections this user may hold open at once.
    pub connections_max: Option<u32>,
}

/// What an administrator sets when adding a user.
#[derive(Clone, Copy, Debug, Default)]
pub struct UserOptions {
    /// Skips every access rule.
    pub superuser: bool,
    /// When the user stops being accepted (ms since the epoch).
    pub expires_at_ms: Option<u64>,
    /// Its quotas.
    pub quotas: Quotas,
}

/// One stored user.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    /// The name.
    pub name: String,
    /// Argon2id, in the PHC string format (`$argon2id$v=19$m=...`).
    pub password_hash: String,
    /// SCRAM keys, one per mechanism.
    pub scram: Vec<Credential>,
    /// Skips every access rule.
    pub superuser: bool,
    /// When the user stops being accepted (ms since the epoch).
    pub expires_at_ms: Option<u64>,
    /// Its quotas.
    pub quotas: Quotas,
    /// When it was added (ms since the epoch).
    pub created_ms: u64,
}

/// A user as listed: no hash, no keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The name.
    pub name: String,
    /// Skips every access rule.
    pub superuser: bool,
    /// When it expires (ms since the epoch).
    pub expires_at_ms: Option<u64>,
    /// Its quotas.
    pub quotas: Quotas,
    /// When it was added.
    pub created_ms: u64,
    /// The SASL mechanisms it can use.
    pub mechanisms: Vec<String>,
}

impl User {
    /// A user with `password` hashed (slow: Argon2id and two PBKDF2 runs; call off the async
    /// threads).
    pub fn new(name: &str, password: &str, options: UserOptions, now_ms: u64) -> User {
        let salt = SaltString::encode_b64(&super::random_bytes(16)).expect("16 bytes encode");
        let password_hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .expect("Argon2id with default parameters hashes any password")
            .to_string();
        User {
            name: name.to_string(),
            password_hash,
            scram: [Mechanism::Sha256, Mechanism::Sha512]
                .into_iter()
                .map(|m| Credential::new(m, password, ITERATIONS_DEFAULT))
                .collect(),
            superuser: options.superuser,
            expires_at_ms: options.expires_at_ms,
            quotas: options.quotas,
            created_ms: now_ms,
        }
    }

    /// Whether `password` is this user's (slow: Argon2id).
    pub fn verify_password(&self, password: &str) -> bool {
        let Ok(hash) = PasswordHash::new(&self.password_hash) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    }

    /// The SCRAM keys for `mechanism`.
    pub fn credential(&self, mechanism: Mechanism) -> Option<&Credential> {
        self.scram.iter().find(|c| c.mechanism == mechanism)
    }

    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|t| now_ms >= t)
    }

    /// The listing of this user.
    pub fn info(&self) -> UserInfo {
        UserInfo {
            name: self.name.clone(),
            superuser: self.superuser,
            expires_at_ms: self.expires_at_ms,
            quotas: self.quotas,
            created_ms: self.created_ms,
            mechanisms: self
                .scram
                .iter()
                .map(|c| c.mechanism.name().to_string())
                .chain(["PLAIN".to_string()])
                .collect(),
        }
    }
}

/// Checks a user name: 1 to 255 bytes of letters, digits and `._-@`, not `*` (which names
/// every user in a rule).
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > USER_NAME_BYTES_MAX {
        return Err(format!("a user name has 1 to {USER_NAME_BYTES_MAX} bytes"));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || "._-@".contains(c);
    if !name.chars().all(ok) {
        return Err(format!(
            "user name {name:?}: only letters, digits and . _ - @ are allowed"
        ));
    }
    Ok(())
}

/// Checks a password: 1 to 1024 bytes.
pub fn validate_password(password: &str) -> Result<(), String> {
    if password.is_empty() || password.len() > PASSWORD_BYTES_MAX {
        return Err(format!("a password has 1 to {PASSWORD_BYTES_MAX} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_names_are_checked() {
        let u = User::new("bob", "correct horse", UserOptions::default(), 5);
        assert!(u.password_hash.starts_with("$argon2id$"));
        assert!(!u.password_hash.contains("correct horse"));
        assert!(u.verify_password("correct horse"));
        assert!(!u.verify_password("correct hors"));
        assert!(u
            .credential(Mechanism::Sha512)
            .unwrap()
            .verify("correct horse"));
        assert!(!u.expired(u64::MAX));
        for bad in ["", "a b", "*", "x,y", "é"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        validate_name("svc.orders-writer@prod").unwrap();
        assert!(validate_password("").is_err());
    }
}
