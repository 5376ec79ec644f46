//! Deleting a consumer group of a replicated topic (HTTP `DELETE
//! /api/topics/{t}/groups/{g}`, Kafka DeleteShareGroupOffsets) on every replica.
//!
//! A group's state on partition p lives in p's log, so its deletion goes there too, in order
//! with the group's other changes. For each partition, through the partition's leader:
//!
//! 1. a RESET of the group to the partition's log start ([`Cluster::reset_group`]): refused
//!    while consumers hold records of the group there;
//! 2. a **forget entry**, `{kind u8 = 2 | version u8 = 1 | name_len u16 LE | name}`
//!    (docs/format.md), committed to the partition's log.
//!
//! Each replica applying a forget entry deletes the group from its store when the group holds
//! nothing on any partition (`is_pristine`: no message delivered, so nothing acked, held,
//! delayed or waiting for redelivery). A group in that state is what a group made anew is, so
//! whether a replica deletes it at partition p's forget or at a later partition's, and whether
//! a later change of the group (a consumer using the name again) makes it anew before or
//! after, every replica ends with the same group state; a restart, which applies each
//! partition's entries again, reaches the same end.

use sluice_storage::Queue;
use tracing::info;

use super::calls::{Answer, NodeCall, Refusal};
use super::{partition_group, Cluster};

/// First byte of a forget entry in a partition's log.
pub const GROUP_FORGET: u8 = 2;
/// Second byte: the layout's version.
pub const GROUP_FORGET_VERSION: u8 = 1;

/// The forget entry of group `group`.
pub fn forget_entry(group: &str) -> Vec<u8> {
    let name = group.as_bytes();
    let mut out = Vec::with_capacity(4 + name.len());
    out.push(GROUP_FORGET);
    out.push(GROUP_FORGET_VERSION);
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name);
    out
}

/// The group a forget entry names; `None` for another entry; an error for a forget entry
/// that does not read (never a panic).
pub fn decode_forget(payload: &[u8]) -> Option<Result<String, String>> {
    if payload.first() != Some(&GROUP_FORGET) {
        return None;
    }
    let read = || {
        let [_, version, a, b, name @ ..] = payload else {
            return Err(format!("a forget entry of {} bytes", payload.len()));
        };
        if *version != GROUP_FORGET_VERSION {
            return Err(format!("a forget entry of version {version}"));
        }
        if name.len() != u16::from_le_bytes([*a, *b]) as usize {
            return Err("a forget entry's name is not its length".to_string());
        }
        String::from_utf8(name.to_vec()).map_err(|_| "a forget entry's name is not UTF-8".into())
    };
    Some(read())
}

/// Whether partition queue `q` of a group holds nothing a group made anew would not: no
/// message delivered (held, delayed, waiting for redelivery, or acked: its cursor and ack
/// floor are not past the partition's first message). The acks of the log's own control
/// entries (a replicated queue acks each where it stands) do not count: a group made anew
/// passes them as it reaches them.
fn is_pristine(q: &Queue) -> bool {
    let s = q.stats();
    if s.in_flight > 0 || s.delayed > 0 || s.redelivery_ready > 0 {
        return false;
    }
    match q.log().read_records(s.start_offset, 1, 1) {
        Ok(first) => match first.first() {
            Some((m, _)) => s.cursor <= *m && s.ack_floor <= *m,
            None => true,
        },
        Err(_) => false,
    }
}

/// Applies a forget entry of `group` on topic `t` here: deletes the group when every one of
/// its partitions is pristine.
pub(super) fn apply_forget(t: &sluice_storage::Topic, group: &str) -> sluice_storage::Result<()> {
    let Some(g) = t.existing_group(group) else {
        return Ok(());
    };
    if !g.partitions().iter().all(|q| is_pristine(q)) {
        return Ok(());
    }
    drop(g);
    match t.delete_group(group) {
        Ok(()) | Err(sluice_storage::Error::NotFound { .. }) => {
            info!(topic = t.name(), group, "group deleted");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

impl Cluster {
    /// Deletes `group` of `topic` on every replica of each of its `partitions` (see the
    /// module's docs); answers on how many partitions the group had state.
    ///
    /// Refused ([`Refusal::Held`]) when consumers hold records of the group: every
    /// partition's leader is asked first, and nothing is changed if one holds any. A consumer
    /// that takes records between that question and the partition's turn gets the delete
    /// refused there, with the partitions before it deleted already (sending the delete again,
    /// once the records are settled, finishes it).
    pub async fn forget_group(
        &self,
        topic: &str,
        group: &str,
        partitions: u32,
    ) -> Result<u32, Refusal> {
        let mut with_state = Vec::new();
        for p in 0..partitions {
            if self.group_start(topic, group, p).await?.is_none() {
                continue;
            }
            if self.group_held(topic, group, p).await? > 0 {
                return Err(Refusal::Held);
            }
            with_state.push(p);
        }
        let config = sluice_storage::QueueConfig::default();
        for &p in &with_state {
            self.reset_group(topic, group, &config, p, 0).await?;
            let call = NodeCall::ForgetGroup {
                topic: topic.to_string(),
                group: group.to_string(),
                partition: p,
            };
            self.ask_leader(topic, p, &call, |a| matches!(a, Answer::Done).then_some(()))
                .await?;
        }
        Ok(with_state.len() as u32)
    }

    /// How many records of `group` on `topic`'s `partition` consumers hold, as the
    /// partition's leader has it.
    async fn group_held(&self, topic: &str, group: &str, partition: u32) -> Result<u64, Refusal> {
        let call = NodeCall::GroupHeld {
            topic: topic.to_string(),
            group: group.to_string(),
            partition,
        };
        self.ask_leader(topic, partition, &call, |a| match a {
            Answer::Held(n) => Some(*n),
            _ => None,
        })
        .await
    }

    /// Answers [`NodeCall::GroupHeld`] as the partition's leader.
    pub(super) async fn answer_held(
        &self,
        broker: std::sync::Arc<crate::broker::Broker>,
        topic: String,
        group: String,
        partition: u32,
    ) -> Answer {
        let leads = self
            .partition_status(&topic, partition)
            .is_some_and(|s| s.leader == Some(self.node_id()));
        if !leads {
            return Answer::Refused(Refusal::NotLeader);
        }
        let held = crate::broker::spawn_blocking(move || -> Result<u64, Refusal> {
            let t = broker.store().topic(&topic)?;
            let Some(g) = t.existing_group(&group) else {
                return Ok(0);
            };
            let q = g.queue(partition)?;
            Ok(q.stats().in_flight)
        })
        .await;
        match held {
            Ok(Ok(n)) => Answer::Held(n),
            Ok(Err(r)) => Answer::Refused(r),
            Err(e) => Answer::Refused(Refusal::Failed(e.to_string())),
        }
    }

    /// Answers [`NodeCall::ForgetGroup`] as the partition's leader: the forget entry
    /// committed and applied here.
    pub(super) async fn answer_forget(&self, topic: &str, group: &str, partition: u32) -> Answer {
        let leads = self
            .partition_status(topic, partition)
            .is_some_and(|s| s.leader == Some(self.node_id()));
        if !leads {
            return Answer::Refused(Refusal::NotLeader);
        }
        let entry = bytes::Bytes::from(forget_entry(group));
        let at = partition_group(topic, partition);
        match self.node.propose_control(&at, entry).await {
            Ok(_) => Answer::Done,
            Err(sluice_replication::Error::NotLeader { .. }) => Answer::Refused(Refusal::NotLeader),
            Err(e) => Answer::Refused(Refusal::Failed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forget_entry_reads_back_and_bad_bytes_are_refused() {
        let e = forget_entry("billing");
        assert_eq!(decode_forget(&e), Some(Ok("billing".to_string())));
        assert_eq!(decode_forget(&[1, 1, 0, 0]), None);
        for cut in 1..e.len() {
            assert!(matches!(decode_forget(&e[..cut]), Some(Err(_))), "{cut}");
        }
        let mut bad = e.clone();
        bad[1] = 9;
        assert!(matches!(decode_forget(&bad), Some(Err(_))));
        let mut bad = e;
        bad[4] = 0xff;
        assert!(matches!(decode_forget(&bad), Some(Err(_))));
    }
}
