//! The time source of ack deadlines and nack delays, replaceable in tests.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::types::TimestampMs;

/// A source of time for ack deadlines and nack delays, replaceable in tests.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> TimestampMs;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> TimestampMs {
        crate::types::now_ms()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at `ms`.
    pub fn new(ms: TimestampMs) -> Self {
        ManualClock(AtomicI64::new(ms))
    }
    /// Moves the clock forward.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::AcqRel);
    }
    /// Sets the clock.
    pub fn set(&self, ms: TimestampMs) {
        self.0.store(ms, Ordering::Release);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> TimestampMs {
        self.0.load(Ordering::Acquire)
    }
}

/// Shared handle to a clock.
pub type ClockRef = Arc<dyn Clock>;
