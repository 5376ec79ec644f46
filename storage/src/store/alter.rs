//! Adding partitions to a topic (never removing): the new partitions' logs and every group's
//! ack state over them are made complete and durable first, and only then does the config that
//! counts them replace the old one (an atomic, durable write). A crash before leaves
//! directories past the old count, which the next open removes; a crash after leaves the
//! topic with every new partition.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::log::Log;

use super::group::Group;
use super::partition::{check_partitions, partition_log_dir, TopicConfig};
use super::queue::Queue;
use super::settings::write_config;
use super::{lock, Topic, KIND_TOPIC_V2};

/// What an add made before its config was written: undone if anything fails.
struct Made {
    logs: Vec<Log>,
    queues: Vec<(Arc<Group>, Vec<Arc<Queue>>)>,
}

impl Made {
    fn undo(self, topic: &Topic, from: u32) {
        for (_, qs) in &self.queues {
            for q in qs {
                let _ = q.shut(false);
            }
        }
        for l in &self.logs {
            let _ = l.close();
        }
        // Not counted by any config: removed here, or at the next open.
        for (g, _) in &self.queues {
            for p in from..from + self.logs.len() as u32 {
                let d = super::partition::group_partition_dir(g.dir(), p);
                let _ = topic.fs.remove_dir_all(&d);
            }
        }
        for p in from..from + self.logs.len() as u32 {
            let _ = topic.fs.remove_dir_all(&partition_log_dir(&topic.dir, p));
        }
    }
}

impl Topic {
    /// Grows the topic to `count` partitions (durable on return, whatever the fsync policy).
    /// `InvalidArgument` unless `count` is above the current count and at most
    /// [`super::PARTITIONS_MAX`]. Every open group gets an ack state over the new partitions,
    /// starting at their start; named subscribers read them from their start when they next
    /// subscribe. Returns the new count.
    pub fn add_partitions(&self, count: u32) -> Result<u32> {
        check_partitions(count)?;
        let mut cfg = lock(&self.config);
        let from = cfg.partitions;
        if count <= from {
            return Err(Error::InvalidArgument(format!(
                "topic {:?} has {from} partitions: partitions are only added, so the new count \
                 must be above {from}, not {count}",
                self.name
            )));
        }
        if self.log().is_closed() {
            return Err(Error::Closed);
        }
        let mut made = Made {
            logs: Vec::new(),
            queues: Vec::new(),
        };
        let r = self.make_partitions(&cfg, from, count, &mut made);
        let next = TopicConfig {
            partitions: count,
            ..cfg.clone()
        };
        let r = r.and_then(|()| write_config(&*self.fs, &self.dir, KIND_TOPIC_V2, &next));
        if let Err(e) = r {
            made.undo(self, from);
            return Err(e);
        }
        *cfg = next;
        // Logs first, then groups: a reclaim that sees a log without every group's queue over
        // it keeps everything (see `Topic::reclaim`).
        self.logs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(made.logs);
        for (g, qs) in made.queues {
            g.parts
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .extend(qs);
        }
        tracing::info!(topic = %self.name, from, to = count, "partitions added");
        Ok(count)
    }

    /// Makes the logs of partitions `from..count` and every open group's queues over them.
    fn make_partitions(
        &self,
        cfg: &TopicConfig,
        from: u32,
        count: u32,
        made: &mut Made,
    ) -> Result<()> {
        for p in from..count {
            let dir = partition_log_dir(&self.dir, p);
            if self.fs.exists(&dir) {
                // Left by an add that failed: it counts nothing.
                let _ = self.fs.remove_dir_all(&dir);
            }
            made.logs
                .push(Log::open(self.fs.clone(), dir, cfg.log.clone())?);
        }
        if self.groups.any_damaged() {
            return Err(Error::InvalidArgument(format!(
                "topic {:?} has a damaged consumer group: repair or delete it before adding \
                 partitions",
                self.name
            )));
        }
        for g in self.groups.open_values() {
            let mut qs = Vec::new();
            for (i, log) in made.logs.iter().enumerate() {
                let p = from + i as u32;
                let d = super::partition::group_partition_dir(g.dir(), p);
                if self.fs.exists(&d) {
                    // Left by an add that failed: it counts nothing.
                    let _ = self.fs.remove_dir_all(&d);
                }
                match self.open_group_partition(&g.name, &g.dir, &g.config, p, log.clone()) {
                    Ok(q) => qs.push(q),
                    Err(e) => {
                        made.queues.push((g, qs));
                        return Err(e);
                    }
                }
            }
            made.queues.push((g, qs));
        }
        Ok(())
    }
}
