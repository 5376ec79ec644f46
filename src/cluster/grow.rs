//! Adding partitions to a topic of a cluster (`sluice topic alter --partitions`, Kafka's
//! CreatePartitions): one metadata command, [`MetaCommand::AddPartitions`], carries the new
//! partitions' placements, chosen by the node it goes through as at creation.
//!
//! The command is made from the partition count its node saw (`from`), and is applied only
//! where the metadata's count of the topic is still `from` ([`Cluster::meta_partitions`]):
//! two changes made from the same count at once, the first applied wins everywhere, the other
//! is dropped everywhere. That count is rebuilt as the metadata log is applied again after a
//! restart, so the decision is the same then too.

use std::sync::Arc;

use super::{partition_group, wait_on_runtime, Cluster, MetaCommand, NEW_TOPIC_LEADER_WAIT};
use crate::broker::{Broker, BrokerError, ErrorKind};
use tracing::warn;

impl Cluster {
    /// The partition count of `topic` as the metadata applied here says.
    pub fn meta_partitions(&self, topic: &str) -> Option<u32> {
        let counts = self.meta_counts.read().unwrap_or_else(|e| e.into_inner());
        counts.get(topic).copied()
    }

    /// Records a topic created by the metadata (kept when it existed: a creation applied
    /// again) or deleted (`None`).
    pub(super) fn set_meta_partitions(&self, topic: &str, count: Option<u32>) {
        let mut counts = self.meta_counts.write().unwrap_or_else(|e| e.into_inner());
        match count {
            Some(n) => {
                counts.entry(topic.to_string()).or_insert(n);
            }
            None => {
                counts.remove(topic);
            }
        }
    }

    /// Grows topic `name` (id `id`) from `from` to `count` partitions through the metadata,
    /// placed with the factor of its first partition (or on the nodes `assigned`, one list
    /// per new partition of that many nodes); answers once this node has applied it and
    /// knows a leader of each. Blocking.
    pub fn add_partitions_blocking(
        self: &Arc<Self>,
        name: &str,
        id: [u8; 16],
        (from, count): (u32, u32),
        assigned: Option<Vec<Vec<u64>>>,
    ) -> Result<u32, BrokerError> {
        let factor = match self.placement(&partition_group(name, 0)) {
            Some(p) => p.factor,
            None => self.replication_factor(None)?,
        };
        let replicas = match assigned {
            None => self.place((count - from) as usize, factor),
            Some(a) if a.len() == (count - from) as usize => {
                self.check_assignment(a, Some(factor))?
            }
            Some(a) => {
                let m = format!(
                    "{} partitions assigned for {} new ones",
                    a.len(),
                    count - from
                );
                return Err(BrokerError::new(ErrorKind::InvalidArgument, m));
            }
        };
        let cmd = MetaCommand::AddPartitions {
            name: name.to_string(),
            id,
            from,
            replicas,
        };
        let (me, name) = (self.clone(), name.to_string());
        wait_on_runtime(async move {
            me.propose_meta(cmd).await?;
            // Proposed through another node, it is applied here a little later.
            let deadline = tokio::time::Instant::now() + NEW_TOPIC_LEADER_WAIT;
            while me.meta_partitions(&name).is_some_and(|n| n < count)
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            match me.meta_partitions(&name) {
                Some(n) if n == count => {}
                other => {
                    return Err(BrokerError::new(
                        ErrorKind::InvalidArgument,
                        format!(
                            "topic {name:?} has {} partitions: another change of its \
                             partitions came first",
                            other.map_or("no".to_string(), |n| n.to_string())
                        ),
                    ))
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            me.wait_leaders(&name, count, left).await;
            Ok(count)
        })?
    }

    /// Applies [`MetaCommand::AddPartitions`]: when the topic still has `from` partitions as
    /// the metadata says, the new ones on this node, and their groups where placed here.
    pub(super) async fn apply_add_partitions(
        self: &Arc<Self>,
        index: u64,
        broker: Arc<Broker>,
        name: String,
        id: [u8; 16],
        from: u32,
        replicas: Vec<Vec<u64>>,
    ) {
        let to = from + replicas.len() as u32;
        {
            let mut counts = self.meta_counts.write().unwrap_or_else(|e| e.into_inner());
            if counts.get(&name) != Some(&from) {
                let now = counts.get(&name).copied();
                return warn!(index, topic = %name, from, now, "metadata: partitions not added: the topic changed first");
            }
            counts.insert(name.clone(), to);
        }
        let n = name.clone();
        let made = crate::broker::spawn_blocking(move || -> Result<(), BrokerError> {
            let t = broker.store().topic(&n)?;
            if t.id().0 != id {
                return Err(BrokerError::new(
                    ErrorKind::NotFound,
                    format!("topic {n:?} is another topic of that name"),
                ));
            }
            // A restart applies the metadata again over a store that has them.
            if t.partition_count() < to {
                broker.store().add_partitions(&n, to)?;
            }
            Ok(())
        })
        .await;
        match made {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return warn!(index, topic = %name, "metadata: cannot add partitions: {e}")
            }
            Err(e) => return warn!(index, topic = %name, "metadata: cannot add partitions: {e}"),
        }
        for (k, nodes) in replicas.into_iter().enumerate() {
            self.set_placement(partition_group(&name, from + k as u32), nodes);
        }
        self.open_partitions(index, &name, from..to).await;
    }
}
