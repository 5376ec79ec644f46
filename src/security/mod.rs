//! Users, authentication, access rules and quotas (`docs/security.md`), shared by every
//! protocol: each frontend authenticates a connection to a [`Principal`] and asks
//! [`Security::authorize`] before each operation.
//!
//! # Layout
//! - `file`: the security file in the data directory (magic, version, checksum).
//! - `users`: users (Argon2id password hash, SCRAM keys, expiry, quotas).
//! - `acl`: access rules and the decision (deny wins).
//! - `quota`: bytes-per-second delays and connection counts per user.
//! - `session`: tokens of the HTTP login.
//!
//! With no user stored, security is off: every client is anonymous and allowed everything,
//! and anonymous clients are served only from loopback addresses (unless `allow_anonymous`
//! or client certificates). Once a user exists, every client on every listener must
//! authenticate, and every request is checked.

pub mod acl;
pub mod file;
pub mod quota;
pub mod session;
pub mod users;
pub mod wire;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::RngCore;
use sluice_client::scram::{Credential, Mechanism};
use sluice_storage::FsRef;
use tokio::sync::Semaphore;

pub use acl::{Operation, PatternKind, Permission, Resource, ResourceKind, Rule};
pub use quota::{ConnectionQuota, Direction};
pub use users::{Quotas, UserInfo, UserOptions};

use file::State;
use users::User;

/// Why a first user that is not a superuser is refused.
const FIRST_USER: &str = "the first user must be a superuser (--superuser): once a user exists \
    every client authenticates, and only a superuser could then grant access to anyone";

/// Password checks (Argon2id, about 20 MiB and tens of ms each) running at once; more wait.
pub const PASSWORD_CHECKS_CONCURRENT_MAX: usize = 4;

/// Why a security operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The security file could not be read or written.
    #[error("security file {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The security file is damaged.
    #[error("security file {0} is damaged ({1}); restore it from a backup, or remove it to start with no users")]
    Corrupt(PathBuf, String),
    /// An argument was refused.
    #[error("{0}")]
    Invalid(String),
    /// The user exists.
    #[error("user {0} already exists")]
    UserExists(String),
    /// No such user.
    #[error("no user {0}")]
    NoUser(String),
    /// A running broker holds the data directory.
    #[error("a running broker holds {0}; change users and rules through it (--addr)")]
    Locked(PathBuf),
}

/// Who a connection is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// Not authenticated (allowed everything while no user exists).
    Anonymous,
    /// An authenticated user.
    User(Arc<str>),
}

impl Principal {
    /// The user's name, `None` when anonymous.
    pub fn user(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::User(u) => Some(u),
        }
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("anonymous"),
            Principal::User(u) => write!(f, "user {u}"),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The connection has not authenticated and users exist.
    #[error("authentication required: this broker has users")]
    Unauthenticated,
    /// The user was deleted after it authenticated.
    #[error("user {0} no longer exists")]
    Revoked(String),
    /// The user expired.
    #[error("user {0} has expired")]
    Expired(String),
    /// No rule allows it, or one denies it.
    #[error("{user} may not {operation} {kind}{}", named(.name))]
    Forbidden {
        /// The user.
        user: String,
        /// The operation.
        operation: Operation,
        /// The resource's kind.
        kind: ResourceKind,
        /// The resource's name.
        name: String,
    },
}

/// ` name`, or nothing for the unnamed cluster.
fn named(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" {name}")
    }
}

/// Why an authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Unknown user or wrong password (the same answer for both).
    #[error("authentication failed: invalid credentials")]
    InvalidCredentials,
    /// The user expired.
    #[error("authentication failed: user {0} has expired")]
    Expired(String),
    /// The user holds as many connections as its quota allows.
    #[error("user {0} already holds {1} connections, its limit")]
    TooManyConnections(String, u32),
    /// The mechanism is not offered here.
    #[error("{0}")]
    Mechanism(String),
}

/// The broker's users, rules, sessions and quota usage.
pub struct Security {
    fs: Option<FsRef>,
    dir: PathBuf,
    state: RwLock<Arc<State>>,
    /// The rules of `state` by principal.
    index: RwLock<Arc<acl::RuleIndex>>,
    /// Any user stored (read on every request: one relaxed load while security is off).
    enabled: AtomicBool,
    /// Changes run one at a time (each rewrites the file).
    change: Mutex<()>,
    /// Anonymous clients are served from beyond loopback (`allow_anonymous`, or client
    /// certificates checked by TLS).
    anonymous_remote: bool,
    checks: Arc<Semaphore>,
    quotas: Arc<quota::QuotaBook>,
    /// HTTP login sessions.
    pub sessions: session::Sessions,
    /// Bumped on every change: connections then check that their user still exists.
    changes: tokio::sync::watch::Sender<u64>,
}

/// Milliseconds since the epoch.
fn now_ms() -> u64 {
    sluice_storage::now_ms().max(0) as u64
}

pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

impl Security {
    /// Security of the data directory `dir`, read from its security file.
    pub fn open(fs: FsRef, dir: &Path, anonymous_remote: bool) -> Result<Security, SecurityError> {
        let state = file::load(&*fs, dir)?;
        Ok(Security::with_state(Some(fs), dir, state, anonymous_remote))
    }

    /// No users, nothing stored (a broker without a data directory of its own, in tests).
    pub fn disabled() -> Security {
        let state = State {
            secret: random_bytes(32),
            ..State::default()
        };
        Security::with_state(None, Path::new(""), state, true)
    }

    fn with_state(fs: Option<FsRef>, dir: &Path, state: State, anon: bool) -> Security {
        Security {
            fs,
            dir: dir.to_path_buf(),
            enabled: AtomicBool::new(!state.users.is_empty()),
            index: RwLock::new(Arc::new(acl::RuleIndex::new(&state.rules))),
            state: RwLock::new(Arc::new(state)),
            change: Mutex::new(()),
            anonymous_remote: anon,
            checks: Arc::new(Semaphore::new(PASSWORD_CHECKS_CONCURRENT_MAX)),
            quotas: Arc::default(),
            sessions: session::Sessions::default(),
            changes: tokio::sync::watch::channel(0).0,
        }
    }

    fn snapshot(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether users exist, so every client must authenticate.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Whether a client from `peer` may go on without authenticating.
    pub fn anonymous_allowed(&self, peer: IpAddr) -> bool {
        !self.enabled() && (self.anonymous_remote || is_loopback(peer))
    }

    /// Applies `f` to a copy of the state and stores it (file first, then memory). Blocking.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, SecurityError>,
    ) -> Result<T, SecurityError> {
        let _one = self.change.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = (*self.snapshot()).clone();
        let out = f(&mut next)?;
        if let Some(fs) = &self.fs {
            file::save(&**fs, &self.dir, &next)?;
        }
        self.enabled
            .store(!next.users.is_empty(), Ordering::Relaxed);
        let index = Arc::new(acl::RuleIndex::new(&next.rules));
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = index;
        self.changes.send_modify(|n| *n += 1);
        Ok(out)
    }

    /// Adds a user (slow: hashes the password; blocking).
    pub fn add_user(
        &self,
        name: &str,
        password: &str,
        o: UserOptions,
    ) -> Result<(), SecurityError> {
        users::validate_name(name).map_err(SecurityError::Invalid)?;
        users::validate_password(password).map_err(SecurityError::Invalid)?;
        if self.snapshot().users.contains_key(name) {
            return Err(SecurityError::UserExists(name.into()));
        }
        let user = User::new(name, password, o, now_ms());
        self.change(|s| {
            if s.users.contains_key(name) {
                return Err(SecurityError::UserExists(name.into()));
            }
            if s.users.is_empty() && !o.superuser {
                return Err(SecurityError::Invalid(FIRST_USER.into()));
            }
            if s.users.len() >= users::USERS_MAX {
                return Err(SecurityError::Invalid(format!(
                    "at most {} users",
                    users::USERS_MAX
                )));
            }
            s.users.insert(name.to_string(), user);
            Ok(())
        })
    }

    /// Sets a user's quotas. Blocking.
    pub fn set_quotas(&self, name: &str, quotas: Quotas) -> Result<(), SecurityError> {
        self.change(|s| {
            let u = s
                .users
                .get_mut(name)
                .ok_or_else(|| SecurityError::NoUser(name.into()))?;
            u.quotas = quotas;
            Ok(())
        })
    }

    /// Deletes a user: its connections are refused from their next request, its sessions end.
    /// Its rules stay (they name the user; a user added again under the name gets them).
    /// Blocking.
    pub fn delete_user(&self, name: &str) -> Result<(), SecurityError> {
        self.change(|s| {
            s.users
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| SecurityError::NoUser(name.into()))
        })?;
        self.sessions.close_user(name);
        Ok(())
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<UserInfo> {
        self.snapshot().users.values().map(User::info).collect()
    }

    /// Adds a rule (an identical one is not added twice). Blocking.
    pub fn add_rule(&self, rule: Rule) -> Result<bool, SecurityError> {
        rule.validate().map_err(SecurityError::Invalid)?;
        self.change(|s| {
            if s.rules.contains(&rule) {
                return Ok(false);
            }
            if s.rules.len() >= acl::RULES_MAX {
                return Err(SecurityError::Invalid(format!(
                    "at most {} rules",
                    acl::RULES_MAX
                )));
            }
            s.rules.push(rule);
            Ok(true)
        })
    }

    /// Removes the rules `keep` returns false for; returns them. Blocking.
    pub fn remove_rules(&self, remove: impl Fn(&Rule) -> bool) -> Result<Vec<Rule>, SecurityError> {
        self.change(|s| {
            let (gone, kept) = s.rules.drain(..).partition(|r| remove(r));
            s.rules = kept;
            Ok(gone)
        })
    }

    /// Every rule, in the order added.
    pub fn rules(&self) -> Vec<Rule> {
        self.snapshot().rules.clone()
    }

    /// Checks a password (PLAIN, the HTTP login) on a blocking thread, at most
    /// [`PASSWORD_CHECKS_CONCURRENT_MAX`] at once.
    pub async fn check_password(&self, user: &str, password: &str) -> Result<Principal, AuthError> {
        let _permit = self.checks.clone().acquire_owned().await;
        let state = self.snapshot();
        let found = state.users.get(user).cloned();
        let password = password.to_string();
        let ok = crate::broker::spawn_blocking(move || match found {
            Some(u) => u.verify_password(&password),
            // As slow as a wrong password: the time taken does not tell which users exist.
            None => {
                let _ = stand_in().verify_password(&password);
                false
            }
        })
        .await
        .unwrap_or(false);
        if !ok {
            return Err(AuthError::InvalidCredentials);
        }
        self.admit(user)
    }

    /// The SCRAM keys to challenge `user` with: a stand-in for an unknown user, so the
    /// exchange fails only at the proof.
    pub fn scram_credential(&self, user: &str, mechanism: Mechanism) -> Credential {
        let state = self.snapshot();
        state
            .users
            .get(user)
            .and_then(|u| u.credential(mechanism).cloned())
            .unwrap_or_else(|| Credential::decoy(mechanism, user, &state.secret))
    }

    /// The principal of a user who proved its password: refused if it expired.
    pub fn admit(&self, user: &str) -> Result<Principal, AuthError> {
        let state = self.snapshot();
        let u = state.users.get(user).ok_or(AuthError::InvalidCredentials)?;
        if u.expired(now_ms()) {
            return Err(AuthError::Expired(user.into()));
        }
        Ok(Principal::User(Arc::from(user)))
    }

    /// Counts a connection of `principal` against its quota until the guard drops.
    pub fn connect(&self, principal: &Principal) -> Result<Option<ConnectionQuota>, AuthError> {
        let Some(user) = principal.user() else {
            return Ok(None);
        };
        let max = self
            .snapshot()
            .users
            .get(user)
            .and_then(|u| u.quotas.connections_max);
        self.quotas
            .connect(user, max)
            .map(Some)
            .map_err(|max| AuthError::TooManyConnections(user.into(), max))
    }

    /// Records `bytes` produced or fetched by `principal`; returns how long to delay it.
    pub fn throttle(&self, principal: &Principal, d: Direction, bytes: usize) -> Duration {
        let Some(user) = principal.user() else {
            return Duration::ZERO;
        };
        let state = self.snapshot();
        let Some(u) = state.users.get(user) else {
            return Duration::ZERO;
        };
        let rate = match d {
            Direction::Produce => u.quotas.produce_bytes_per_sec,
            Direction::Fetch => u.quotas.fetch_bytes_per_sec,
        };
        match rate {
            Some(rate) => self
                .quotas
                .record(user, d, rate, bytes as u64, Instant::now()),
            None => Duration::ZERO,
        }
    }

    /// Whether `principal` may do `op` on `r`.
    pub fn authorize(&self, p: &Principal, op: Operation, r: Resource<'_>) -> Result<(), Denied> {
        if !self.enabled() {
            return Ok(());
        }
        let Principal::User(user) = p else {
            return Err(Denied::Unauthenticated);
        };
        let state = self.snapshot();
        let u = state
            .users
            .get(&**user)
            .ok_or_else(|| Denied::Revoked(user.to_string()))?;
        if u.expired(now_ms()) {
            return Err(Denied::Expired(user.to_string()));
        }
        if u.superuser {
            return Ok(());
        }
        let index = self.index.read().unwrap_or_else(|e| e.into_inner()).clone();
        if index.decide(user, op, &r) {
            return Ok(());
        }
        Err(Denied::Forbidden {
            user: user.to_string(),
            operation: op,
            kind: r.kind,
            name: r.name.to_string(),
        })
    }

    /// Changes of users and rules, as a counter that each change bumps.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// When `principal`'s user expires (ms since the epoch), if it does.
    pub fn expires_at_ms(&self, p: &Principal) -> Option<u64> {
        let user = p.user()?;
        self.snapshot().users.get(user)?.expires_at_ms
    }

    /// Whether `principal`'s user still exists and has not expired (anonymous: always).
    pub fn still_valid(&self, p: &Principal) -> Result<(), Denied> {
        let Principal::User(user) = p else {
            return Ok(());
        };
        let state = self.snapshot();
        match state.users.get(&**user) {
            None => Err(Denied::Revoked(user.to_string())),
            Some(u) if u.expired(now_ms()) => Err(Denied::Expired(user.to_string())),
            Some(_) => Ok(()),
        }
    }

    /// Whether `principal` may do `op` on `r` (a filter for listings).
    pub fn allows(&self, p: &Principal, op: Operation, r: Resource<'_>) -> bool {
        self.authorize(p, op, r).is_ok()
    }
}

/// A user no password matches, checked for unknown names.
fn stand_in() -> &'static User {
    static STAND_IN: std::sync::OnceLock<User> = std::sync::OnceLock::new();
    STAND_IN.get_or_init(|| {
        let password: String = random_bytes(24)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        User::new("-", &password, UserOptions::default(), 0)
    })
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Opens the security file of a stopped broker's data directory, holding the directory's
/// lock so no broker starts meanwhile (`sluice user`, `sluice acl` with `--data-dir`).
pub struct Offline {
    /// The security of the directory.
    pub security: Security,
    _lock: sluice_storage::fs::LockRef,
}

impl Offline {
    /// Locks `dir` (refused while a broker runs) and reads its security file.
    pub fn open(fs: FsRef, dir: &Path) -> Result<Offline, SecurityError> {
        let lock_path = dir.join(sluice_storage::inspect::LOCK_FILE);
        if !fs.is_dir(dir) {
            return Err(SecurityError::Invalid(format!(
                "{} is not a data directory",
                dir.display()
            )));
        }
        let lock = fs.lock_exclusive(&lock_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                SecurityError::Locked(dir.to_path_buf())
            } else {
                SecurityError::Io(lock_path.clone(), e)
            }
        })?;
        let security = Security::open(fs, dir, true)?;
        Ok(Offline {
            security,
            _lock: lock,
        })
    }
}

#[cfg(test)]
mod tests;
