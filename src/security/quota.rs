//! Per-user quotas. Bytes per second are enforced by delaying, never by dropping: each user
//! has a theoretical arrival time per direction (GCRA); recording `n` bytes pushes it on by
//! `n / rate`, and the caller waits for whatever lies beyond one second of burst before it
//! reads the user's next request or sends its next bytes (Kafka's throttling, which mutes
//! the channel). Connections over a user's limit are refused at authentication.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes a user may send or read at once before being delayed: one second of its rate.
const BURST: Duration = Duration::from_secs(1);
/// The longest one delay lasts (a single huge batch under a tiny quota still gets through).
pub const THROTTLE_MAX: Duration = Duration::from_secs(30);

/// Which direction a quota limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Publishing.
    Produce,
    /// Reading.
    Fetch,
}

#[derive(Default)]
struct Usage {
    produce_tat: Option<Instant>,
    fetch_tat: Option<Instant>,
    connections: u32,
}

/// Every user's usage.
#[derive(Default)]
pub struct QuotaBook {
    users: Mutex<HashMap<String, Usage>>,
}

/// Counts one connection of a user while it lives.
pub struct ConnectionQuota {
    book: Arc<QuotaBook>,
    user: String,
}

impl Drop for ConnectionQuota {
    fn drop(&mut self) {
        let mut users = self.book.lock();
        if let Some(u) = users.get_mut(&self.user) {
            u.connections = u.connections.saturating_sub(1);
        }
    }
}

impl QuotaBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Usage>> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `bytes` of `user` at `now` under `rate` bytes per second; returns how long the
    /// user must wait (zero within its burst).
    pub fn record(
        &self,
        user: &str,
        d: Direction,
        rate: u64,
        bytes: u64,
        now: Instant,
    ) -> Duration {
        if rate == 0 {
            return Duration::ZERO;
        }
        let mut users = self.lock();
        let u = users.entry(user.to_string()).or_default();
        let tat = match d {
            Direction::Produce => &mut u.produce_tat,
            Direction::Fetch => &mut u.fetch_tat,
        };
        let start = tat.map_or(now, |t| t.max(now));
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let next = start + cost;
        *tat = Some(next);
        next.saturating_duration_since(now + BURST)
            .min(THROTTLE_MAX)
    }

    /// Takes one of `user`'s connections, unless it holds `max` already.
    pub fn connect(self: &Arc<Self>, user: &str, max: Option<u32>) -> Result<ConnectionQuota, u32> {
        let mut users = self.lock();
        let u = users.entry(user.to_string()).or_default();
        if let Some(max) = max {
            if u.connections >= max {
                return Err(max);
            }
        }
        u.connections += 1;
        Ok(ConnectionQuota {
            book: self.clone(),
            user: user.to_string(),
        })
    }

    /// Open connections of `user`.
    pub fn connections(&self, user: &str) -> u32 {
        self.lock().get(user).map_or(0, |u| u.connections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_past_the_burst_and_counts_connections() {
        let book = Arc::new(QuotaBook::default());
        let t0 = Instant::now();
        // 1000 B/s: the first second's worth passes, the next 500 bytes wait half a second.
        assert_eq!(
            book.record("a", Direction::Produce, 1000, 1000, t0),
            Duration::ZERO
        );
        let d = book.record("a", Direction::Produce, 1000, 500, t0);
        assert_eq!(d, Duration::from_millis(500));
        // Fetch is separate; other users too.
        assert_eq!(
            book.record("a", Direction::Fetch, 1000, 1000, t0),
            Duration::ZERO
        );
        assert_eq!(
            book.record("b", Direction::Produce, 1000, 1000, t0),
            Duration::ZERO
        );
        // Time passing pays the debt back.
        let later = t0 + Duration::from_secs(3);
        assert_eq!(
            book.record("a", Direction::Produce, 1000, 900, later),
            Duration::ZERO
        );
        assert_eq!(
            book.record("a", Direction::Produce, 0, 1 << 40, later),
            Duration::ZERO
        );
        let c1 = book.connect("a", Some(2)).unwrap();
        let _c2 = book.connect("a", Some(2)).unwrap();
        assert_eq!(book.connect("a", Some(2)).err(), Some(2));
        drop(c1);
        assert_eq!(book.connections("a"), 1);
        book.connect("a", Some(2)).unwrap();
    }
}
