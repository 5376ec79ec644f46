//! The background sync of `fsync = interval:<ms>`.

use super::*;

pub(super) fn interval_flusher(weak: Weak<Shared>, every: Duration) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        {
            let stop = lock(&shared.flusher_stop);
            if *stop {
                return;
            }
            let (stop, _) = shared
                .flusher_cv
                .wait_timeout(stop, every)
                .unwrap_or_else(|e| e.into_inner());
            if *stop {
                return;
            }
        }
        let log = Log { shared };
        if log.has_failed() || log.is_closed() {
            return;
        }
        if let Err(e) = log.flush() {
            tracing::error!(dir = %log.dir().display(), "interval sync failed: {e}");
            return;
        }
    }
}
