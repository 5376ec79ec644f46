//! The names of a store's topics or queues, or of a topic's consumer groups, each in one state.
//!
//! A create or a delete first marks its name busy under the catalog's lock, then does its
//! directory I/O (creating, opening, fsyncing, renaming to a tombstone) with the lock released,
//! and last publishes the outcome. Requests for other names never wait for that I/O, and two
//! operations never work on one name's directory at once: a create or delete of a busy name
//! waits until the operation on it is over, and a lookup of a busy name finds nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};

/// Why a topic, queue or group found at open was not opened, kept to answer its requests.
#[derive(Clone, Debug)]
pub(crate) struct Damage {
    path: PathBuf,
    position: u64,
    reason: String,
}

impl Damage {
    /// The damage `e` did to `kind` `name` (at `dir`) when it was opened.
    pub(crate) fn from_error(kind: &str, name: &str, dir: &Path, e: &Error) -> Damage {
        match e {
            Error::Corruption {
                segment,
                position,
                reason,
            } => Damage {
                path: segment.clone(),
                position: *position,
                reason: format!("{kind} {name:?} is damaged and was not opened: {reason}"),
            },
            other => Damage {
                path: dir.to_path_buf(),
                position: 0,
                reason: format!("{kind} {name:?} could not be opened: {other}"),
            },
        }
    }

    /// The error its requests get: a `Corruption` naming the damaged file.
    pub(crate) fn error(&self) -> Error {
        Error::corruption(&self.path, self.position, self.reason.clone())
    }
}

enum Slot<T> {
    /// A create or delete is doing this name's directory I/O.
    Busy,
    Open(Arc<T>),
    Damaged(Damage),
}

/// What holds a name that a create wanted.
pub(crate) enum Taken<T> {
    Open(Arc<T>),
    Damaged(Damage),
}

/// A catalog of named things of one kind.
pub(crate) struct Catalog<T> {
    kind: &'static str,
    map: Mutex<BTreeMap<String, Slot<T>>>,
    /// Signalled whenever a busy name becomes free, open or damaged.
    changed: Condvar,
}

impl<T> Catalog<T> {
    pub(crate) fn new(kind: &'static str) -> Self {
        Catalog {
            kind,
            map: Mutex::new(BTreeMap::new()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Slot<T>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The map once `name` is not busy.
    fn lock_settled(&self, name: &str) -> MutexGuard<'_, BTreeMap<String, Slot<T>>> {
        let mut map = self.lock();
        while matches!(map.get(name), Some(Slot::Busy)) {
            map = self.changed.wait(map).unwrap_or_else(|e| e.into_inner());
        }
        map
    }

    fn not_found(&self, name: &str) -> Error {
        Error::NotFound {
            kind: self.kind,
            name: name.into(),
        }
    }

    /// The open thing `name`: `NotFound` when absent or busy, `Corruption` when damaged.
    pub(crate) fn get(&self, name: &str) -> Result<Arc<T>> {
        match self.lock().get(name) {
            Some(Slot::Open(x)) => Ok(x.clone()),
            Some(Slot::Damaged(d)) => Err(d.error()),
            Some(Slot::Busy) | None => Err(self.not_found(name)),
        }
    }

    /// The open thing `name`, if it is open now.
    pub(crate) fn get_open(&self, name: &str) -> Option<Arc<T>> {
        match self.lock().get(name) {
            Some(Slot::Open(x)) => Some(x.clone()),
            _ => None,
        }
    }

    /// Names of the open and the damaged things, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, s)| !matches!(s, Slot::Busy))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every open thing.
    pub(crate) fn open_values(&self) -> Vec<Arc<T>> {
        self.lock()
            .values()
            .filter_map(|s| match s {
                Slot::Open(x) => Some(x.clone()),
                _ => None,
            })
            .collect()
    }

    /// True when something could not be opened.
    pub(crate) fn any_damaged(&self) -> bool {
        self.lock().values().any(|s| matches!(s, Slot::Damaged(_)))
    }

    /// Adds a thing opened at start.
    pub(crate) fn insert(&self, name: String, x: Arc<T>) {
        self.lock().insert(name, Slot::Open(x));
    }

    /// Adds a thing that could not be opened at start.
    pub(crate) fn insert_damaged(&self, name: String, d: Damage) {
        self.lock().insert(name, Slot::Damaged(d));
    }

    /// Reserves `name` for a create, once no other operation is on it; what holds it otherwise.
    pub(crate) fn reserve(&self, name: &str) -> std::result::Result<Reservation<'_, T>, Taken<T>> {
        let mut map = self.lock_settled(name);
        match map.get(name) {
            Some(Slot::Open(x)) => Err(Taken::Open(x.clone())),
            Some(Slot::Damaged(d)) => Err(Taken::Damaged(d.clone())),
            Some(Slot::Busy) | None => {
                map.insert(name.to_string(), Slot::Busy);
                Ok(Reservation::new(self, name))
            }
        }
    }

    /// Reserves `name` for a create when nothing holds it now, without waiting.
    pub(crate) fn try_reserve(&self, name: &str) -> Option<Reservation<'_, T>> {
        let mut map = self.lock();
        if map.contains_key(name) {
            return None;
        }
        map.insert(name.to_string(), Slot::Busy);
        Some(Reservation::new(self, name))
    }

    /// Marks `name` busy for a delete, once no other operation is on it; returns what it held.
    pub(crate) fn begin_delete(&self, name: &str) -> Result<(Reservation<'_, T>, Taken<T>)> {
        let mut map = self.lock_settled(name);
        let prev = match map.insert(name.to_string(), Slot::Busy) {
            Some(Slot::Open(x)) => Taken::Open(x),
            Some(Slot::Damaged(d)) => Taken::Damaged(d),
            Some(Slot::Busy) | None => {
                map.remove(name);
                return Err(self.not_found(name));
            }
        };
        Ok((Reservation::new(self, name), prev))
    }
}

/// A busy name. Dropped without [`Reservation::fill`] or [`Reservation::restore`], it frees the
/// name (a create that failed, a delete that is done).
pub(crate) struct Reservation<'a, T> {
    catalog: &'a Catalog<T>,
    name: String,
    done: bool,
}

impl<'a, T> Reservation<'a, T> {
    fn new(catalog: &'a Catalog<T>, name: &str) -> Self {
        Reservation {
            catalog,
            name: name.to_string(),
            done: false,
        }
    }

    fn settle(&mut self, slot: Option<Slot<T>>) {
        let mut map = self.catalog.lock();
        match slot {
            Some(s) => map.insert(self.name.clone(), s),
            None => map.remove(&self.name),
        };
        self.done = true;
        self.catalog.changed.notify_all();
    }

    /// The create succeeded: the name now holds `x`.
    pub(crate) fn fill(mut self, x: Arc<T>) {
        self.settle(Some(Slot::Open(x)));
    }

    /// The delete failed before anything changed: the name holds what it held.
    pub(crate) fn restore(mut self, prev: Taken<T>) {
        self.settle(Some(match prev {
            Taken::Open(x) => Slot::Open(x),
            Taken::Damaged(d) => Slot::Damaged(d),
        }));
    }
}

impl<T> Drop for Reservation<'_, T> {
    fn drop(&mut self) {
        if !self.done {
            self.settle(None);
        }
    }
}
