//! A thread of the store's own (upkeep, keeper): started with a weak handle to the store and
//! a [`Stop`], stopped and joined by [`Background::stop`] or on drop.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};

use super::inner::StoreInner;

/// The stop signal of a background thread.
#[derive(Clone, Debug, Default)]
pub(super) struct Stop(Arc<(Mutex<bool>, Condvar)>);

impl Stop {
    /// Waits up to `d`; true when the thread is to stop.
    pub(super) fn wait(&self, d: Duration) -> bool {
        let g = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        let (g, _) = self
            .0
             .1
            .wait_timeout_while(g, d, |stopped| !*stopped)
            .unwrap_or_else(|e| e.into_inner());
        *g
    }

    /// True when the thread is to stop.
    pub(super) fn stopped(&self) -> bool {
        *self.0 .0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self) {
        *self.0 .0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.0 .1.notify_all();
    }
}

/// A running background thread.
#[derive(Debug)]
pub(super) struct Background {
    stop: Stop,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Starts thread `name` running `run` with a weak handle to `inner`.
    pub(super) fn start(
        name: &str,
        inner: &Arc<StoreInner>,
        run: impl FnOnce(Weak<StoreInner>, Stop) + Send + 'static,
    ) -> Result<Background> {
        let stop = Stop::default();
        let (weak, s) = (Arc::downgrade(inner), stop.clone());
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(weak, s))
            .map_err(|e| Error::io(&inner.root, e))?;
        Ok(Background {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for its current pass to end.
    pub(super) fn stop(&mut self) {
        self.stop.set();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop();
    }
}
