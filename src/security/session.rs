//! Sessions of the HTTP login: a random token (the cookie) standing for a user for
//! `SESSION_TTL`. Kept in memory: a restart logs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept; the oldest go first.
pub const SESSIONS_MAX: usize = 10_000;

/// The open sessions.
#[derive(Default)]
pub struct Sessions {
    by_token: Mutex<HashMap<String, (String, Instant)>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.by_token.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session for `user`; returns its token.
    pub fn open(&self, user: &str, now: Instant) -> String {
        let token: String = super::random_bytes(32)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut m = self.lock();
        m.retain(|_, (_, expires)| *expires > now);
        if m.len() >= SESSIONS_MAX {
            if let Some(oldest) = m
                .iter()
                .min_by_key(|(_, (_, e))| *e)
                .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
        }
        m.insert(token.clone(), (user.to_string(), now + SESSION_TTL));
        token
    }

    /// The user of a live session.
    pub fn user(&self, token: &str, now: Instant) -> Option<String> {
        let m = self.lock();
        m.get(token)
            .filter(|(_, expires)| *expires > now)
            .map(|(u, _)| u.clone())
    }

    /// Ends a session.
    pub fn close(&self, token: &str) {
        self.lock().remove(token);
    }

    /// Ends every session of `user` (deleted).
    pub fn close_user(&self, user: &str) {
        self.lock().retain(|_, (u, _)| u != user);
    }
}
