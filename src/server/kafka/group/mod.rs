//! The Kafka classic consumer group coordinator: group membership (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup), committed offsets (OffsetCommit, OffsetFetch) and group
//! administration (DescribeGroups, ListGroups, DeleteGroups), served as Kafka 4.x brokers do
//! for `group.protocol=classic` clients. The listener's dispatch calls one method of
//! [`GroupCoordinator`] per request with the decoded request of the `kafka-protocol` crate and
//! the request's api version, and encodes the response it returns at that version.
//!
//! # Layout
//! - `mod.rs`: [`GroupCoordinator`] (construction, the per-group locking, the timer task),
//!   [`API_VERSIONS`].
//! - `config`: [`GroupConfig`], the settings and named limits.
//! - `clock`: [`Clock`], [`SystemClock`], [`ManualClock`] (tests drive time).
//! - `offsets`: [`GroupOffsets`], the durable store of committed offsets, and
//!   [`MemoryGroupOffsets`].
//! - `state`: one group's data and queries (Kafka's `ClassicGroup`).
//! - `join`: the join phase and rebalances; `member`: SyncGroup, Heartbeat, LeaveGroup, the
//!   commit checks and the group's timers.
//! - `api_members`, `api_offsets`, `api_admin`: the request handlers (version differences,
//!   group lookup, replies).
//!
//! # Concurrency
//! Each group is one state machine behind its own mutex; a request locks only its group, never
//! across an `.await`. A JoinGroup or SyncGroup that must wait parks a oneshot sender in its
//! member and the state machine answers it when the phase completes (or drops it, and the
//! handler answers with a retriable error). Timers are deadlines kept in the group and fired
//! by [`GroupCoordinator::run_timers`], which the timer task calls at the earliest deadline
//! and tests call after moving a [`ManualClock`]. Committed offsets are written on the
//! blocking pool, outside every group lock. Membership is memory only (members rejoin after a
//! restart, as with Kafka); committed offsets are durable before OffsetCommit is answered.

mod api_admin;
mod api_members;
mod api_offsets;
mod clock;
mod config;
mod join;
mod member;
mod offsets;
mod state;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{GroupConfig, GroupConfigError};
pub use offsets::{
    CommittedOffset, GroupOffsets, MemoryGroupOffsets, OffsetCommitEntry, OffsetStoreError,
};
pub use state::GroupState;

use join::{Ctx, MemberIds};
use state::Group;

/// The Kafka api keys and version ranges this coordinator serves, for ApiVersions:
/// `(api key, min version, max version)`.
pub const API_VERSIONS: &[(i16, i16, i16)] = &[
    (8, 2, 9),  // OffsetCommit (v10 addresses topics by id)
    (9, 1, 9),  // OffsetFetch (v10 addresses topics by id)
    (11, 0, 9), // JoinGroup
    (12, 0, 4), // Heartbeat
    (13, 0, 5), // LeaveGroup
    (14, 0, 5), // SyncGroup
    (15, 0, 6), // DescribeGroups
    (16, 0, 5), // ListGroups
    (42, 0, 2), // DeleteGroups
];

/// Whether `version` of `api_key` is served.
pub(crate) fn version_served(api_key: i16, version: i16) -> bool {
    API_VERSIONS
        .iter()
        .any(|&(key, min, max)| key == api_key && (min..=max).contains(&version))
}

/// Why a group step did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoGroup {
    /// The group does not exist (and was not to be created).
    NotFound,
    /// Creating it would exceed `groups_max`.
    TooMany,
}

/// A reply that may still be parked in the state machine.
struct Parked<T> {
    rx: oneshot::Receiver<T>,
    /// The reply if the state machine drops the sender (replaced request, group removed).
    fallback: T,
}

impl<T> Parked<T> {
    /// A reply known now.
    fn ready(reply: T, fallback: T) -> Parked<T> {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(reply);
        Parked { rx, fallback }
    }

    async fn wait(self) -> T {
        self.rx.await.unwrap_or(self.fallback)
    }

    /// The reply if it is there (tests: whether a request is still parked).
    #[cfg(test)]
    fn try_take(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The coordinator of every classic group of the broker (sluice is its own and only
/// coordinator: FindCoordinator answers with this broker).
pub struct GroupCoordinator {
    cfg: GroupConfig,
    clock: Arc<dyn Clock>,
    offsets: Arc<dyn GroupOffsets>,
    groups: Mutex<HashMap<String, Arc<Mutex<Group>>>>,
    ids: MemberIds,
    /// Wakes the timer task when a sooner deadline is set.
    timer_wake: Arc<Notify>,
    /// The deadline the timer task sleeps until (u64::MAX: none).
    next_wake_ms: AtomicU64,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator")
            .field("cfg", &self.cfg)
            .field("groups", &lock(&self.groups).len())
            .finish()
    }
}

impl GroupCoordinator {
    /// A coordinator over `offsets` (the durable store of committed offsets) and `clock`
    /// ([`SystemClock`] in the server). Start its timers with
    /// [`GroupCoordinator::spawn_timer_task`].
    pub fn new(
        cfg: GroupConfig,
        offsets: Arc<dyn GroupOffsets>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<GroupCoordinator>, GroupConfigError> {
        cfg.validate()?;
        Ok(Arc::new(GroupCoordinator {
            cfg,
            clock,
            offsets,
            groups: Mutex::new(HashMap::new()),
            ids: MemberIds::new(),
            timer_wake: Arc::new(Notify::new()),
            next_wake_ms: AtomicU64::new(u64::MAX),
        }))
    }

    /// The settings.
    pub fn config(&self) -> &GroupConfig {
        &self.cfg
    }

    /// Spawns the task that fires timers (session, rebalance and join-delay timeouts) at their
    /// deadlines; it ends when the coordinator is dropped (or when the handle is aborted).
    pub fn spawn_timer_task(self: &Arc<Self>) -> JoinHandle<()> {
        let weak: Weak<GroupCoordinator> = Arc::downgrade(self);
        let wake = Arc::clone(&self.timer_wake);
        tokio::spawn(async move {
            loop {
                let (sleep_ms, resolution_ms) = {
                    let Some(coordinator) = weak.upgrade() else {
                        return;
                    };
                    let next = coordinator.run_timers();
                    let idle_ms = u64::from(coordinator.cfg.timer_idle_ms_max);
                    let resolution_ms = u64::from(coordinator.cfg.timer_resolution_ms);
                    let now = coordinator.clock.now_ms();
                    let sleep_ms = next.map_or(idle_ms, |d| {
                        d.saturating_sub(now).clamp(resolution_ms, idle_ms)
                    });
                    (sleep_ms, resolution_ms)
                };
                let slept = tokio::time::Instant::now();
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
                    _ = wake.notified() => {
                        // Woken for a sooner deadline: still no more often than the resolution.
                        let min = Duration::from_millis(resolution_ms);
                        tokio::time::sleep(min.saturating_sub(slept.elapsed())).await;
                    }
                }
            }
        })
    }

    /// Fires every timer that is due on the clock; returns the earliest deadline left.
    pub fn run_timers(&self) -> Option<u64> {
        let groups: Vec<Arc<Mutex<Group>>> = lock(&self.groups).values().cloned().collect();
        self.next_wake_ms.store(u64::MAX, Ordering::SeqCst);
        let mut next: Option<u64> = None;
        for arc in groups {
            let mut group = lock(&arc);
            if group.state == GroupState::Dead {
                continue;
            }
            let ctx = self.ctx();
            group.fire_due_timers(&ctx);
            if let Some(deadline) = group.next_deadline_ms() {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
            self.after_step(&arc, &mut group);
        }
        next
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            now_ms: self.clock.now_ms(),
            cfg: &self.cfg,
            ids: &self.ids,
        }
    }

    /// Runs one step of a group's state machine under its lock; `create` makes the group if
    /// it does not exist. A group removed meanwhile (Dead) is looked up again.
    fn with_group<R>(
        &self,
        group_id: &str,
        create: bool,
        step: impl FnOnce(&mut Group, &Ctx) -> R,
    ) -> Result<R, NoGroup> {
        let mut step = Some(step);
        // A group is marked Dead only as it leaves the map, so the second look finds
        // another incarnation or none; the bound only guards that.
        for _ in 0..4 {
            let arc = {
                let mut groups = lock(&self.groups);
                match groups.get(group_id) {
                    Some(arc) => Arc::clone(arc),
                    None if !create => return Err(NoGroup::NotFound),
                    None if groups.len() >= self.cfg.groups_max => return Err(NoGroup::TooMany),
                    None => {
                        let arc = Arc::new(Mutex::new(Group::new(group_id)));
                        groups.insert(group_id.to_string(), Arc::clone(&arc));
                        arc
                    }
                }
            };
            let mut group = lock(&arc);
            if group.state == GroupState::Dead {
                continue;
            }
            let ctx = self.ctx();
            let step = step.take().ok_or(NoGroup::NotFound)?;
            let result = step(&mut group, &ctx);
            self.after_step(&arc, &mut group);
            return Ok(result);
        }
        Err(NoGroup::NotFound)
    }

    /// After a step: an Empty group with nothing pending leaves memory (it is Dead to whoever
    /// still holds it); otherwise the timer task learns of a sooner deadline.
    fn after_step(&self, arc: &Arc<Mutex<Group>>, group: &mut Group) {
        if group.is_removable() {
            group.state = GroupState::Dead;
            let mut groups = lock(&self.groups);
            if groups.get(&group.id).is_some_and(|a| Arc::ptr_eq(a, arc)) {
                groups.remove(&group.id);
            }
            return;
        }
        if let Some(deadline) = group.next_deadline_ms() {
            if deadline < self.next_wake_ms.fetch_min(deadline, Ordering::SeqCst) {
                self.timer_wake.notify_one();
            }
        }
    }

    /// Removes an Empty group from memory (DeleteGroups); false if it has members.
    fn remove_if_empty(&self, group_id: &str) -> Result<bool, NoGroup> {
        let arc = lock(&self.groups)
            .get(group_id)
            .cloned()
            .ok_or(NoGroup::NotFound)?;
        let mut group = lock(&arc);
        if group.state == GroupState::Dead {
            return Err(NoGroup::NotFound);
        }
        if group.state != GroupState::Empty {
            return Ok(false);
        }
        group.state = GroupState::Dead;
        let mut groups = lock(&self.groups);
        if groups.get(group_id).is_some_and(|a| Arc::ptr_eq(a, &arc)) {
            groups.remove(group_id);
        }
        Ok(true)
    }

    /// The ids of the groups in memory (those with members or pending members).
    fn groups_in_memory(&self) -> Vec<Arc<Mutex<Group>>> {
        lock(&self.groups).values().cloned().collect()
    }

    /// Runs a store call on the blocking pool.
    async fn store_call<R: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn GroupOffsets) -> Result<R, OffsetStoreError> + Send + 'static,
    ) -> Result<R, OffsetStoreError> {
        let offsets = Arc::clone(&self.offsets);
        crate::broker::spawn_blocking(move || call(offsets.as_ref()))
            .await
            .unwrap_or_else(|e| Err(OffsetStoreError::Storage(format!("store task failed: {e}"))))
    }
}
