//! The names of a store's topics or queues, or of a topic's consumer groups, each in one state.
//!
//! A create or a delete first marks its name busy under the catalog's lock, then does its
//! directory I/O (creating, opening, fsyncing, renaming to a tombstone) with the lock released,
//! and last publishes the outcome. Requests for other names never wait for that I/O, and two
//! operations never work on one name's directory at once: a create or delete of a busy name
//! waits until the operation on it is over, and a lookup of a busy name finds nothing.
//!
//! A name can also be known but closed: found on disk at start and not opened yet, or closed
//! after it sat unused ([`Catalog::take_idle`]). Its first lookup opens it ([`Catalog::get_with`])
//! while other lookups of that name wait; lookups of other names do not.

use std::collections::{btree_map, BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
    /// Being opened or closed; lookups of the name wait for it.
    Moving,
    /// Open, and when it was last looked up.
    Open(Arc<T>, Instant),
    /// On disk, not open: the first lookup opens it.
    Closed,
    Damaged(Damage),
}

/// What holds a name that a create wanted.
pub(crate) enum Taken<T> {
    Open(Arc<T>),
    Closed,
    Damaged(Damage),
}

/// The slots of a catalog, and which of them are open (kept beside them, so that the passes
/// over open things cost what is open, not what is known).
struct Slots<T> {
    map: BTreeMap<String, Slot<T>>,
    open: BTreeSet<String>,
}

impl<T> Slots<T> {
    fn get(&self, name: &str) -> Option<&Slot<T>> {
        self.map.get(name)
    }

    /// For changes within a slot (not of its state).
    fn get_mut(&mut self, name: &str) -> Option<&mut Slot<T>> {
        self.map.get_mut(name)
    }

    fn insert(&mut self, name: String, slot: Slot<T>) -> Option<Slot<T>> {
        if matches!(slot, Slot::Open(..)) {
            self.open.insert(name.clone());
        } else {
            self.open.remove(&name);
        }
        self.map.insert(name, slot)
    }

    fn remove(&mut self, name: &str) -> Option<Slot<T>> {
        self.open.remove(name);
        self.map.remove(name)
    }

    fn iter(&self) -> btree_map::Iter<'_, String, Slot<T>> {
        self.map.iter()
    }

    fn values(&self) -> btree_map::Values<'_, String, Slot<T>> {
        self.map.values()
    }

    /// The open things with their names and last use.
    fn open(&self) -> impl Iterator<Item = (&String, &Arc<T>, Instant)> {
        self.open.iter().filter_map(|n| match self.map.get(n) {
            Some(Slot::Open(x, used)) => Some((n, x, *used)),
            _ => None,
        })
    }
}

/// A catalog of named things of one kind.
pub(crate) struct Catalog<T> {
    kind: &'static str,
    map: Mutex<Slots<T>>,
    /// Signalled whenever a busy name becomes free, open or damaged.
    changed: Condvar,
}

impl<T> Catalog<T> {
    pub(crate) fn new(kind: &'static str) -> Self {
        Catalog {
            kind,
            map: Mutex::new(Slots {
                map: BTreeMap::new(),
                open: BTreeSet::new(),
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots<T>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The map once `name` is not busy (nor being opened or closed).
    fn lock_settled(&self, name: &str) -> MutexGuard<'_, Slots<T>> {
        self.lock_while(name, |s| matches!(s, Slot::Busy | Slot::Moving))
    }

    /// The map once `name`'s slot no longer satisfies `wait`.
    fn lock_while(&self, name: &str, wait: impl Fn(&Slot<T>) -> bool) -> MutexGuard<'_, Slots<T>> {
        let mut map = self.lock();
        while map.get(name).is_some_and(&wait) {
            map = self.changed.wait(map).unwrap_or_else(|e| e.into_inner());
        }
        map
    }

    /// Sets `name`'s slot (`None` removes it) and wakes whoever waits on a name.
    fn settle_slot(&self, name: &str, slot: Option<Slot<T>>) {
        let mut map = self.lock();
        match slot {
            Some(s) => map.insert(name.to_string(), s),
            None => map.remove(name),
        };
        self.changed.notify_all();
    }

    fn not_found(&self, name: &str) -> Error {
        Error::NotFound {
            kind: self.kind,
            name: name.into(),
        }
    }

    /// The thing `name`, opened by `open` when it is closed (`Ok(None)` from `open`: it is not
    /// there after all, an unfinished creation). An open that fails for damage
    /// ([`Error::Corruption`]) leaves the name damaged; any other failure (a full open-file
    /// table, say) leaves it closed, for a later lookup to try again.
    pub(crate) fn get_with(
        &self,
        name: &str,
        open: impl FnOnce() -> Result<Option<Arc<T>>>,
    ) -> Result<Arc<T>> {
        let mut map = self.lock_while(name, |s| matches!(s, Slot::Moving));
        match map.get_mut(name) {
            Some(Slot::Open(x, used)) => {
                *used = Instant::now();
                return Ok(x.clone());
            }
            Some(Slot::Damaged(d)) => return Err(d.error()),
            Some(Slot::Busy | Slot::Moving) | None => return Err(self.not_found(name)),
            Some(Slot::Closed) => {}
        }
        map.insert(name.to_string(), Slot::Moving);
        drop(map);
        let mut moving = Moving {
            catalog: self,
            name,
            back: true,
        };
        let opened = open();
        moving.back = false;
        match opened {
            Ok(Some(x)) => {
                self.settle_slot(name, Some(Slot::Open(x.clone(), Instant::now())));
                Ok(x)
            }
            Ok(None) => {
                self.settle_slot(name, None);
                Err(self.not_found(name))
            }
            Err(e @ Error::Corruption { .. }) => {
                let d = Damage::from_error(self.kind, name, Path::new(name), &e);
                tracing::error!(kind = self.kind, %name, "not opened: {e}");
                self.settle_slot(name, Some(Slot::Damaged(d)));
                Err(e)
            }
            Err(e) => {
                self.settle_slot(name, Some(Slot::Closed));
                Err(e)
            }
        }
    }

    /// The open thing `name`, if it is open now.
    pub(crate) fn get_open(&self, name: &str) -> Option<Arc<T>> {
        match self.lock().get(name) {
            Some(Slot::Open(x, _)) => Some(x.clone()),
            _ => None,
        }
    }

    /// True when `name` is known and closed now.
    pub(crate) fn is_closed(&self, name: &str) -> bool {
        matches!(self.lock().get(name), Some(Slot::Closed))
    }

    /// True when `name` is open, closed, being opened or closed, or damaged: a thing of that
    /// name exists (a busy name is being created or deleted, and counts as absent).
    pub(crate) fn contains(&self, name: &str) -> bool {
        !matches!(self.lock().get(name), Some(Slot::Busy) | None)
    }

    /// Names of the closed things, sorted.
    pub(crate) fn closed_names(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Closed))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// How many things are open.
    pub(crate) fn open_count(&self) -> usize {
        self.lock().open.len()
    }

    /// What the open things cost together, by `cost`.
    pub(crate) fn cost(&self, cost: impl Fn(&T) -> usize) -> usize {
        let open: Vec<Arc<T>> = self.lock().open().map(|(_, x, _)| x.clone()).collect();
        open.iter().map(|x| cost(x)).sum()
    }

    /// Marks `name` closing (as [`Catalog::take_idle`] does) when it is open, held by no one
    /// else and `idle` says it may close.
    pub(crate) fn take_if_idle(&self, name: &str, idle: impl Fn(&T) -> bool) -> Option<Arc<T>> {
        let x = self.get_open(name)?;
        // Asked without the catalog's lock: `idle` takes the thing's own locks, and code that
        // holds those may look names up.
        if !idle(&x) {
            return None;
        }
        self.mark_closing(vec![(name.to_string(), x)])
            .pop()
            .map(|(_, x)| x)
    }

    /// Marks each of `picked` closing when it is still the open thing of its name and no one
    /// but the caller (its one handle in `picked`) and the catalog holds it.
    fn mark_closing(&self, picked: Vec<(String, Arc<T>)>) -> Vec<(String, Arc<T>)> {
        let mut map = self.lock();
        let mut out = Vec::new();
        for (name, x) in picked {
            let same = matches!(map.get(&name), Some(Slot::Open(y, _)) if Arc::ptr_eq(y, &x));
            if same && Arc::strong_count(&x) == 2 {
                map.insert(name.clone(), Slot::Moving);
                out.push((name, x));
            }
        }
        out
    }

    /// Picks open things to close and marks them so (lookups wait until [`Catalog::closed`]):
    /// among those `idle` says may close (no one else holds them, nothing pending), every one
    /// not looked up for `unused`, and more, least recently used first, until what stays open
    /// takes at most `budget` by `cost` (open files, say).
    pub(crate) fn take_idle(
        &self,
        unused: Duration,
        budget: usize,
        cost: impl Fn(&T) -> usize,
        idle: impl Fn(&T) -> bool,
    ) -> Vec<(String, Arc<T>)> {
        let open: Vec<(String, Arc<T>, Instant)> = self
            .lock()
            .open()
            .map(|(n, x, used)| (n.clone(), x.clone(), used))
            .collect();
        // Costs and idleness are asked without the catalog's lock (see take_if_idle).
        let mut total = 0usize;
        let mut candidates = Vec::new();
        for (name, x, used) in open {
            let c = cost(&x);
            total += c;
            if Arc::strong_count(&x) == 2 && idle(&x) {
                candidates.push((used, name, x, c));
            }
        }
        candidates.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut picked = Vec::new();
        for (used, name, x, c) in candidates {
            if used.elapsed() < unused && total <= budget {
                break;
            }
            total -= c;
            picked.push((name, x));
        }
        self.mark_closing(picked)
    }

    /// A thing [`Catalog::take_idle`] picked is closed now.
    pub(crate) fn closed(&self, name: &str) {
        self.settle_slot(name, Some(Slot::Closed));
    }

    /// Names of the open, closed and damaged things, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, s)| !matches!(s, Slot::Busy))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every open thing.
    pub(crate) fn open_values(&self) -> Vec<Arc<T>> {
        self.lock().open().map(|(_, x, _)| x.clone()).collect()
    }

    /// True when something could not be opened.
    pub(crate) fn any_damaged(&self) -> bool {
        self.lock().values().any(|s| matches!(s, Slot::Damaged(_)))
    }

    /// Adds a thing opened at start.
    pub(crate) fn insert(&self, name: String, x: Arc<T>) {
        self.lock().insert(name, Slot::Open(x, Instant::now()));
    }

    /// Adds a thing found on disk at start, to be opened when first looked up.
    pub(crate) fn insert_closed(&self, name: String) {
        self.lock().insert(name, Slot::Closed);
    }

    /// Adds a thing that could not be opened at start.
    pub(crate) fn insert_damaged(&self, name: String, d: Damage) {
        self.lock().insert(name, Slot::Damaged(d));
    }

    /// Reserves `name` for a create, once no other operation is on it; what holds it otherwise.
    pub(crate) fn reserve(&self, name: &str) -> std::result::Result<Reservation<'_, T>, Taken<T>> {
        let mut map = self.lock_settled(name);
        match map.get(name) {
            Some(Slot::Open(x, _)) => Err(Taken::Open(x.clone())),
            Some(Slot::Closed) => Err(Taken::Closed),
            Some(Slot::Damaged(d)) => Err(Taken::Damaged(d.clone())),
            Some(Slot::Busy | Slot::Moving) | None => {
                map.insert(name.to_string(), Slot::Busy);
                Ok(Reservation::new(self, name))
            }
        }
    }

    /// Reserves `name` for a create when nothing holds it now, without waiting.
    pub(crate) fn try_reserve(&self, name: &str) -> Option<Reservation<'_, T>> {
        let mut map = self.lock();
        if map.get(name).is_some() {
            return None;
        }
        map.insert(name.to_string(), Slot::Busy);
        Some(Reservation::new(self, name))
    }

    /// Marks `name` busy for a delete, once no other operation is on it; returns what it held.
    pub(crate) fn begin_delete(&self, name: &str) -> Result<(Reservation<'_, T>, Taken<T>)> {
        let mut map = self.lock_settled(name);
        let prev = match map.insert(name.to_string(), Slot::Busy) {
            Some(Slot::Open(x, _)) => Taken::Open(x),
            Some(Slot::Closed) => Taken::Closed,
            Some(Slot::Damaged(d)) => Taken::Damaged(d),
            Some(Slot::Busy | Slot::Moving) | None => {
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
        self.catalog.settle_slot(&self.name, slot);
        self.done = true;
    }

    /// The create succeeded: the name now holds `x`.
    pub(crate) fn fill(mut self, x: Arc<T>) {
        self.settle(Some(Slot::Open(x, Instant::now())));
    }

    /// The delete failed before anything changed: the name holds what it held.
    pub(crate) fn restore(mut self, prev: Taken<T>) {
        self.settle(Some(match prev {
            Taken::Open(x) => Slot::Open(x, Instant::now()),
            Taken::Closed => Slot::Closed,
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

/// A name being opened: if the open panics, the name goes back to closed rather than staying
/// in the state that makes its lookups wait.
struct Moving<'a, T> {
    catalog: &'a Catalog<T>,
    name: &'a str,
    back: bool,
}

impl<T> Drop for Moving<'_, T> {
    fn drop(&mut self) {
        if self.back {
            self.catalog.settle_slot(self.name, Some(Slot::Closed));
        }
    }
}
