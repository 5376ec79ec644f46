//! Cluster mode: this server as one node of a cluster (`--node-id`, `--cluster`), each topic
//! partition a replicated log (docs/replication.md).
//!
//! # Layout
//! - `apply`: applying the metadata's commands on this node (creations, deletions, moves,
//!   retention, offsets, nodes).
//! - `config`: [`ClusterConfig`], from `--node-id`, `--cluster`, `--join`, `--cluster-id`.
//! - `factor`: changing the replication factor of a topic's partitions or a queue.
//! - `forget`: deleting a consumer group of a replicated topic on every replica (a RESET,
//!   then a forget entry, through each partition's log).
//! - `grow`: adding partitions to a topic through the metadata.
//! - `identity`: the cluster's id and first nodes, as the data directory records them.
//! - `incarnation`: telling a topic or queue from an earlier one of the same name, and
//!   clearing a deleted one's group directories.
//! - `image`: snapshots of the metadata: the whole metadata of a node as one image, saved at
//!   each compaction of its log and sent to a node that lacks what was cut; `restore` puts
//!   one back (its memory half at a restart, all of it from a snapshot).
//! - `leaders`: handing each group back to its preferred leader (leader balance).
//! - `members`: the cluster's nodes, and moving every group onto them (a node added or
//!   removed).
//! - `meta`: the metadata commands of the `meta` group.
//! - `placement`: which nodes hold each group's replicas (`--replicas`), and moving them
//!   onto the cluster's nodes.
//! - `producers`: idempotent Kafka producers, checked by a partition's leader.
//! - `calls`: what a node asks of a partition's leader for a client (a share group's start
//!   offset moved or read there).
//! - `compact`: reclaiming a replicated log's segments (a queue's acked ones, a topic
//!   partition's beyond its retention) once every replica has them.
//! - `tls`: TLS between the nodes (`--cluster-tls-*`), from PEM files, reloaded on SIGHUP.
//! - `queues`: replicated queues: the link through which a queue's leader proposes its state
//!   changes, and the hook through which every replica applies them.
//! - this file: [`Cluster`]: starting the node (its cluster listener, the `meta` group, a
//!   group for every partition of the store), opening replicas, publishing through a
//!   partition's group, and what the broker asks of the cluster.
//!
//! What runs where: the consensus engine and the transport are the `sluice-replication` crate;
//! the broker reaches a cluster only through [`Cluster`], set on it once
//! ([`crate::broker::Broker::set_cluster`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock, Weak};

use sluice_replication::{
    ApplyHook, BoxFuture, ClusterId, ClusterNode, Command, Consensus, Error as ReplError, GroupId,
    GroupStatus, GroupStorage, Identity, LogSource, NodeInfo, ReplicatedLog,
};
use sluice_storage::{format, LogConfig, Offset, StdFs};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::broker::{Broker, BrokerError, ErrorKind, Published};

mod apply;
pub mod calls;
pub mod compact;
pub mod config;
mod factor;
pub mod forget;
pub mod groups;
mod grow;
pub mod identity;
pub mod image;
mod incarnation;
pub mod leaders;
pub mod members;
pub mod meta;
pub mod placement;
pub mod producers;
pub mod queues;
mod restore;
pub mod tls;

pub use config::ClusterConfig;
pub use meta::MetaCommand;

/// The group of the cluster metadata.
pub const META_GROUP: &str = "meta";

/// Longest a metadata change waits for the metadata to have a leader (an election).
pub const META_LEADER_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

/// Segment size of the metadata's log: a compaction frees whole segments only.
pub const META_SEGMENT_BYTES: u64 = 1 << 20;

/// Longest a replica of a new partition waits for its first candidate to lead before it forms
/// the group itself.
pub const FIRST_LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Longest a topic or queue creation waits, once proposed, to be applied here and for its
/// first leaders before answering. With [`META_LEADER_WAIT`] it stays below a client's
/// request timeout (5 s by default), so a creation is not sent again for being slow.
pub const NEW_TOPIC_LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// This server as a node of a cluster.
pub struct Cluster {
    config: ClusterConfig,
    /// The cluster's id, as the data directory records it.
    cluster_id: [u8; 16],
    /// The cluster's nodes, as the metadata applied here says.
    nodes: RwLock<members::NodeSet>,
    node: Arc<ClusterNode>,
    broker: Weak<Broker>,
    meta: std::sync::OnceLock<ReplicatedLog>,
    partitions: RwLock<HashMap<(String, u32), ReplicatedLog>>,
    queues: RwLock<HashMap<String, ReplicatedLog>>,
    /// Every queue's link to its group, set on the store's queue once (a queue this node
    /// holds no replica of has one too: its consumers are refused, naming the leader).
    links: std::sync::Mutex<HashMap<String, Arc<queues::QueueLink>>>,
    /// Every consumer group's link to each partition's group, by (topic, group, partition)
    /// (`groups`).
    group_links: std::sync::Mutex<HashMap<(String, String, u32), Arc<queues::QueueLink>>>,
    /// Idempotent producers of the partitions this node leads.
    gates: producers::Gates,
    /// Where each group placed with a replication factor is (`placement`).
    placements: RwLock<HashMap<GroupId, placement::Placement>>,
    /// Each topic's partition count as the metadata applied here says (`grow`).
    meta_counts: RwLock<HashMap<String, u32>>,
    /// On the metadata's leader: the groups whose members are not yet their placement, as
    /// its last reconcile found them (`factor`, Kafka's ListPartitionReassignments).
    moving: RwLock<std::collections::HashSet<GroupId>>,
    /// The nodes each group reassigned by name had before that reassignment, as the metadata
    /// applied here says, while no other move has moved it since (`factor`: where a cancelled
    /// reassignment goes back to; kept in the metadata's image).
    reassigned_from: RwLock<HashMap<GroupId, Vec<u64>>>,
    /// Leadership hand-overs this node started (`leaders`).
    handovers: leaders::Handovers,
    /// Held while a partition or queue opens: the node's start and the metadata applied again
    /// both open them, and a queue is attached to its group once.
    opening: tokio::sync::Mutex<()>,
    /// What serves the calls of this node's peers (`calls`), held here; its node holds it
    /// weakly.
    calls: std::sync::OnceLock<Arc<calls::Calls>>,
    /// `<data dir>/cluster`, where the metadata image is saved (`image`).
    root: std::path::PathBuf,
    /// The metadata entry of the last image saved or installed here (0: none).
    image_at: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("config", &self.config)
            .finish()
    }
}

/// The Raft group of `topic`'s `partition` (`t/<topic>/<partition>`).
pub fn partition_group(topic: &str, partition: u32) -> GroupId {
    GroupId(format!("t/{topic}/{partition}"))
}

/// Runs `fut` on the runtime and waits for it on this blocking thread (an admin call on the
/// blocking pool).
fn wait_on_runtime<T: Send + 'static>(
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, BrokerError> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| BrokerError::new(ErrorKind::Internal, "no runtime for a cluster call"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| BrokerError::new(ErrorKind::Internal, "the cluster call failed"))
}

/// A replication error as the broker's; a `NotLeader` names the leader's client address when
/// `node` knows it, so that a client (or its user) can go straight there.
fn broker_error(node: &ClusterNode, e: ReplError) -> BrokerError {
    match e {
        ReplError::NotLeader {
            group,
            leader,
            leader_addr,
        } => {
            let native = leader.and_then(|id| node.info(id)?.native);
            let at = match (leader, native, leader_addr) {
                (Some(id), Some(client), _) => format!("node {id} (client address {client})"),
                (Some(id), None, Some(a)) => format!("node {id} (cluster address {a})"),
                (Some(id), None, None) => format!("node {id}"),
                (None, ..) => "not known yet (an election is under way)".into(),
            };
            BrokerError::new(
                ErrorKind::NotLeader,
                format!("this node does not lead {group}; its leader is {at}: retry there"),
            )
        }
        ReplError::Storage(e) => e.into(),
        other => BrokerError::new(ErrorKind::Storage, other.to_string()),
    }
}

impl Cluster {
    /// Starts this node: binds its cluster listener, opens the `meta` group and a group for
    /// every partition the store holds, sets itself on `broker`, and introduces itself to its
    /// peers with `info`, the addresses its clients use.
    pub async fn start(
        config: ClusterConfig,
        broker: &Arc<Broker>,
        data_dir: &Path,
        info: NodeInfo,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Cluster>, String> {
        let listener = TcpListener::bind(config.bind_addr())
            .await
            .map_err(|e| format!("cluster listener {}: {e}", config.bind_addr()))?;
        let root = data_dir.join("cluster");
        let identity = identity::load_or_create(&StdFs, &root, &config)?;
        let me = Identity {
            cluster: ClusterId(identity.cluster_id),
            node: config.node_id,
        };
        let peer_tls = match &config.tls {
            None => None,
            Some(files) => {
                let loaded = tls::load(files).map_err(|e| format!("cluster TLS: {e}"))?;
                tokio::spawn(tls::reload_on_sighup(files.clone(), loaded.clone()));
                info!("TLS between nodes; SIGHUP reloads the cluster certificate and key");
                Some(loaded)
            }
        };
        let node = ClusterNode::with_tls(me, Arc::new(StdFs), &root, config.timing()?, peer_tls);
        for (id, addr) in identity.seeds.iter().chain(&config.nodes) {
            node.set_peer(*id, addr.clone());
        }
        node.set_info(info);
        let (n, stop) = (node.clone(), shutdown.clone());
        tokio::spawn(async move { n.introduce(stop).await });
        let (n, stop) = (node.clone(), shutdown.clone());
        tokio::spawn(async move { n.announce_leaders(stop).await });
        // Only a node the cluster was formed with forms the metadata group: a joining node
        // waits for the metadata's leader to add it.
        let form_meta = (!config.join && identity.seeds.contains_key(&config.node_id))
            .then(|| members::members_of(&identity.seeds));
        let cluster = Arc::new(Cluster {
            config,
            cluster_id: identity.cluster_id,
            nodes: RwLock::new(members::NodeSet {
                nodes: identity.seeds,
                version: 0,
            }),
            node: node.clone(),
            broker: Arc::downgrade(broker),
            meta: std::sync::OnceLock::new(),
            partitions: RwLock::default(),
            queues: RwLock::default(),
            links: std::sync::Mutex::default(),
            group_links: std::sync::Mutex::default(),
            gates: producers::Gates::default(),
            placements: RwLock::default(),
            meta_counts: RwLock::default(),
            moving: RwLock::default(),
            reassigned_from: RwLock::default(),
            handovers: leaders::Handovers::default(),
            opening: tokio::sync::Mutex::new(()),
            calls: std::sync::OnceLock::new(),
            root: root.clone(),
            image_at: std::sync::atomic::AtomicU64::new(0),
        });
        // The metadata's memory half as of its last compaction: the entries that built it
        // are gone, and the group applies only those after it.
        if let Some((image, at)) = image::load(&StdFs, &root)? {
            cluster.restore_memory(&image);
            cluster
                .image_at
                .store(at, std::sync::atomic::Ordering::Release);
            info!(
                index = at,
                topics = image.topics.len(),
                "metadata image restored"
            );
        }
        let calls = cluster
            .calls
            .get_or_init(|| Arc::new(calls::Calls(Arc::downgrade(&cluster))));
        let handler: Arc<dyn sluice_replication::CallHandler> = calls.clone();
        cluster.node.serve_calls(Arc::downgrade(&handler));
        let reconcile_stop = shutdown.clone();
        let balance_stop = shutdown.clone();
        let meta_stop = shutdown.clone();
        tokio::spawn(async move { node.serve(listener, shutdown).await });
        broker.set_cluster(cluster.clone());
        let hook: Arc<dyn ApplyHook> = Arc::new(apply::MetaHook(Arc::downgrade(&cluster)));
        let meta = cluster
            .node
            .open_group(
                GroupId(META_GROUP.into()),
                GroupStorage {
                    log: LogSource::Own(LogConfig {
                        segment_bytes_max: META_SEGMENT_BYTES,
                        ..LogConfig::default()
                    }),
                    hook: Some(hook),
                },
                form_meta,
            )
            .await
            .map_err(|e| format!("the metadata group: {e}"))?;
        let _ = cluster.meta.set(meta);
        // Each group is formed, if need be, when the metadata's creation of it is applied
        // again (`apply_create`): only a node of the cluster at that index may form it. A
        // partition this node has no replica of on disk is placed elsewhere, or will be
        // opened by the metadata.
        for topic in broker.list_topics() {
            let count = broker.topic_meta(&topic).map(|(_, n)| n).unwrap_or(0);
            for p in 0..count {
                let group = partition_group(&topic, p);
                if !cluster.node.has_group_dir(&group) {
                    let why = match cluster.placement(&group) {
                        Some(_) if !cluster.is_placed_here(&group) => {
                            format!("this node holds no replica of {group}")
                        }
                        _ => "this node has not applied its cluster's metadata yet".into(),
                    };
                    cluster.mark_elsewhere(&topic, p, &why);
                    continue;
                }
                cluster
                    .open_partition(&topic, p)
                    .await
                    .map_err(|e| format!("topic {topic:?} partition {p}: {e}"))?;
            }
        }
        for queue in broker.list_queues() {
            let opened = match cluster.node.has_group_dir(&queues::queue_group(&queue)) {
                true => cluster.open_queue(&queue).await.map(|_| ()),
                false => cluster.link_queue(&queue).map(|_| ()),
            };
            opened.map_err(|e| format!("queue {queue:?}: {e}"))?;
        }
        tokio::spawn(members::reconcile_loop(
            Arc::downgrade(&cluster),
            reconcile_stop,
        ));
        if let Some(entries) = cluster.config.meta_snapshot_entries() {
            let weak = Arc::downgrade(&cluster);
            tokio::spawn(compact::meta_loop(weak, entries, meta_stop));
        }
        if let Some(every) = cluster.config.leader_balance_interval() {
            let weak = Arc::downgrade(&cluster);
            tokio::spawn(leaders::balance_loop(weak, every, balance_stop));
        }
        info!(
            node = cluster.config.node_id,
            nodes = cluster.nodes().len(),
            "cluster node started"
        );
        Ok(cluster)
    }

    fn broker(&self) -> Result<Arc<Broker>, BrokerError> {
        self.broker
            .upgrade()
            .ok_or_else(|| BrokerError::new(ErrorKind::Internal, "the broker has stopped"))
    }

    /// Opens this node's replica of a partition (its store log, attached) and joins its
    /// group, which it does not form: see [`Cluster::form`].
    async fn open_partition(
        self: &Arc<Self>,
        topic: &str,
        partition: u32,
    ) -> Result<ReplicatedLog, BrokerError> {
        let _opening = self.opening.lock().await;
        let log = self.local_partition_log(topic, partition)?;
        log.set_placed_elsewhere(None);
        if let Some(g) = self.partition(topic, partition) {
            return Ok(g);
        }
        let group = partition_group(topic, partition);
        // Its consumer groups' changes are entries of its log (`groups`).
        let hook: Arc<dyn ApplyHook> = Arc::new(groups::PartitionHook {
            topic: topic.to_string(),
            partition,
            cluster: Arc::downgrade(self),
        });
        let g = self.open_replica(group.clone(), log, Some(hook)).await?;
        self.partitions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((topic.to_string(), partition), g.clone());
        let node = self.node.clone();
        tokio::spawn(compact::retention_loop(g.clone(), move || {
            node.group(&group).is_none()
        }));
        Ok(g)
    }

    /// Opens this node's replica of a queue and joins its group, as [`Cluster::open_partition`];
    /// the queue's state changes go through the group from then on.
    async fn open_queue(self: &Arc<Self>, name: &str) -> Result<ReplicatedLog, BrokerError> {
        let _opening = self.opening.lock().await;
        if let Some(g) = self.queue(name) {
            return Ok(g);
        }
        let q = self.broker()?.store().queue(name)?;
        let link = self.link_queue(name)?;
        let hook: Arc<dyn ApplyHook> = Arc::new(queues::QueueHook {
            name: name.to_string(),
            cluster: Arc::downgrade(self),
        });
        let g = self
            .open_replica(queues::queue_group(name), q.log().clone(), Some(hook))
            .await?;
        link.attach(g.clone());
        self.queues
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), g.clone());
        Ok(g)
    }

    /// Joins `group` with `log` as its Raft log (see [`Cluster::open_partition`]).
    async fn open_replica(
        &self,
        group: GroupId,
        log: sluice_storage::Log,
        hook: Option<Arc<dyn ApplyHook>>,
    ) -> Result<ReplicatedLog, BrokerError> {
        self.node
            .open_group(
                group,
                GroupStorage {
                    log: LogSource::Attached(log),
                    hook,
                },
                None,
            )
            .await
            .map_err(|e| broker_error(&self.node, e))
    }

    /// Queue `name`'s link to its group, set on the store's queue the first time (on the
    /// runtime).
    fn link_queue(self: &Arc<Self>, name: &str) -> Result<Arc<queues::QueueLink>, BrokerError> {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = links.get(name) {
            return Ok(l.clone());
        }
        let q = self.broker()?.store().queue(name)?;
        let link = queues::QueueLink::new(name, Arc::downgrade(self), self.node.clone());
        q.replicate(link.clone())?;
        links.insert(name.to_string(), link.clone());
        Ok(link)
    }

    fn queue(&self, name: &str) -> Option<ReplicatedLog> {
        self.queues
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn partition(&self, topic: &str, partition: u32) -> Option<ReplicatedLog> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// Submits a batch to a partition, in the order of the caller's earlier submissions, and
    /// returns the future of its confirm: validated here, confirmed once a majority of the
    /// partition's replicas has it on disk. `NotLeader` on a follower.
    pub async fn submit_publish(
        &self,
        topic: &str,
        partition: u32,
        batch: Vec<u8>,
    ) -> Result<BoxFuture<'static, Result<Published, BrokerError>>, BrokerError> {
        let g = self
            .partition(topic, partition)
            .ok_or_else(|| self.not_here(partition_group(topic, partition)))?;
        self.submit_to(g, batch).await
    }

    /// [`Cluster::submit_publish`] of a batch for a queue.
    pub async fn submit_queue_publish(
        &self,
        queue: &str,
        batch: Vec<u8>,
    ) -> Result<BoxFuture<'static, Result<Published, BrokerError>>, BrokerError> {
        let g = self
            .queue(queue)
            .ok_or_else(|| self.not_here(queues::queue_group(queue)))?;
        self.submit_to(g, batch).await
    }

    async fn submit_to(
        &self,
        g: ReplicatedLog,
        batch: Vec<u8>,
    ) -> Result<BoxFuture<'static, Result<Published, BrokerError>>, BrokerError> {
        format::validate_batch(&batch, g.log().config().batch_bytes_max)
            .map_err(|e| BrokerError::new(ErrorKind::InvalidBatch, e.to_string()))?;
        let pending = g
            .submit(Command::Batch(batch.into()))
            .await
            .map_err(|e| broker_error(&self.node, e))?;
        let node = self.node.clone();
        Ok(Box::pin(async move {
            let a = pending.await.map_err(|e| broker_error(&node, e))?;
            Ok(Published {
                base_offset: Offset(a.base_offset),
                last_offset: Offset(a.last_offset),
            })
        }))
    }

    /// [`Cluster::submit_publish`] of an idempotent Kafka producer's batch (`p`, from its Kafka
    /// header): checked against the producer's last batches first (`producers`), a retry of a
    /// committed batch answered with its offsets without being proposed again.
    pub async fn submit_idempotent(
        &self,
        topic: &str,
        partition: u32,
        batch: Vec<u8>,
        p: sluice_storage::ProducerBatch,
    ) -> Result<BoxFuture<'static, Result<Published, BrokerError>>, producers::GateError> {
        use producers::{Admitted, GateError};
        let g = self
            .partition(topic, partition)
            .ok_or_else(|| GateError::Broker(self.not_here(partition_group(topic, partition))))?;
        // Refused before it is recorded: after `admit`, only a lost leadership fails it.
        format::validate_batch(&batch, g.log().config().batch_bytes_max).map_err(|e| {
            GateError::Broker(BrokerError::new(ErrorKind::InvalidBatch, e.to_string()))
        })?;
        let gate = self.gate(topic, partition);
        if let Admitted::Duplicate(at) = gate.admit(&g, &p)? {
            return Ok(Box::pin(async move { Ok(at) }));
        }
        let confirm = match self.submit_publish(topic, partition, batch).await {
            Ok(c) => c,
            Err(e) => {
                gate.forget();
                return Err(GateError::Broker(e));
            }
        };
        Ok(Box::pin(async move {
            let r = confirm.await;
            match &r {
                Ok(at) => gate.settle(&p, at),
                Err(_) => gate.forget(),
            }
            r
        }))
    }

    fn gate(&self, topic: &str, partition: u32) -> Arc<producers::ProducerGate> {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates
            .entry((topic.to_string(), partition))
            .or_default()
            .clone()
    }

    /// Proposes a metadata change, through the metadata's leader when this node does not
    /// lead it; answers once it is committed and applied on the leader.
    /// While the metadata has no leader (an election under way), it waits for one, at most
    /// [`META_LEADER_WAIT`].
    pub async fn propose_meta(&self, cmd: MetaCommand) -> Result<(), BrokerError> {
        let payload: bytes::Bytes = cmd.encode().into();
        let group = GroupId(META_GROUP.into());
        self.node
            .propose_waiting(&group, Command::Control(payload), META_LEADER_WAIT)
            .await
            .map(|_| ())
            .map_err(|e| broker_error(&self.node, e))
    }

    /// [`Cluster::propose_meta`] from a blocking thread (the broker's admin calls).
    pub fn propose_meta_blocking(self: &Arc<Self>, cmd: MetaCommand) -> Result<(), BrokerError> {
        let me = self.clone();
        wait_on_runtime(async move { me.propose_meta(cmd).await })?
    }

    /// [`Cluster::propose_meta`] of a new queue from a blocking thread, then the wait for its
    /// first leader, so the creator can publish at once.
    pub fn create_queue_blocking(
        self: &Arc<Self>,
        cmd: MetaCommand,
        name: &str,
    ) -> Result<(), BrokerError> {
        let (me, name) = (self.clone(), name.to_string());
        wait_on_runtime(async move {
            me.propose_meta(cmd).await?;
            me.wait_queue_leader(&name, NEW_TOPIC_LEADER_WAIT).await;
            Ok(())
        })?
    }

    /// Waits until every partition of `topic` has a leader this node knows, at most `timeout`.
    pub async fn wait_leaders(&self, topic: &str, partitions: u32, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        for p in 0..partitions {
            if let Some(g) = self.partition(topic, p) {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                g.wait_leader(left).await;
                continue;
            }
            // Placed on other nodes: until their leader has told this one.
            let group = partition_group(topic, p);
            while self.node.leader_of(&group).is_none() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }

    /// [`Cluster::propose_meta`] of a new topic from a blocking thread, then the wait for its
    /// partitions' first leaders ([`NEW_TOPIC_LEADER_WAIT`]), so the creator can publish at once.
    pub fn create_topic_blocking(
        self: &Arc<Self>,
        cmd: MetaCommand,
        topic: &str,
        partitions: u32,
    ) -> Result<(), BrokerError> {
        let (me, name) = (self.clone(), topic.to_string());
        wait_on_runtime(async move {
            me.propose_meta(cmd).await?;
            // Proposed through another node, it is applied here a little later.
            let deadline = tokio::time::Instant::now() + NEW_TOPIC_LEADER_WAIT;
            let last = partition_group(&name, partitions - 1);
            while me.placement(&last).is_none()
                && me.partition(&name, partitions - 1).is_none()
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            me.wait_leaders(&name, partitions, left).await;
            Ok(())
        })?
    }

    /// Waits until queue `name` has a replica here and a leader this node knows, at most
    /// `timeout`.
    pub async fn wait_queue_leader(&self, name: &str, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let group = queues::queue_group(name);
        let known = |c: &Self| c.queue(name).is_some() || c.placement(&group).is_some();
        while !known(self) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if let Some(g) = self.queue(name) {
            g.wait_leader(deadline.saturating_duration_since(tokio::time::Instant::now()))
                .await;
            return;
        }
        // Placed on other nodes: until their leader has told this one.
        while self.node.leader_of(&group).is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Every group's state on this node: `meta` first, then the partitions by name.
    pub fn status(&self) -> Vec<GroupStatus> {
        let mut out: Vec<GroupStatus> = self.meta.get().map(|m| m.status()).into_iter().collect();
        let mut parts: Vec<GroupStatus> = self
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|g| g.status())
            .collect();
        parts.extend(
            self.queues
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .map(|g| g.status()),
        );
        parts.sort_by(|a, b| a.group.cmp(&b.group));
        out.extend(parts);
        out
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.config.node_id
    }

    /// A node's client addresses, once it has introduced itself (this node's always).
    pub fn node_info(&self, id: u64) -> Option<NodeInfo> {
        self.node.info(id)
    }

    /// True when this node leads the metadata and has applied every entry of the terms
    /// before its own: what it holds of the metadata (committed offsets among them) is then
    /// every committed change.
    pub fn meta_ready(&self) -> bool {
        self.meta.get().is_some_and(|m| m.leading_term().is_some())
    }

    /// The leader of the metadata, when one is known.
    pub fn meta_leader(&self) -> Option<u64> {
        self.meta.get().and_then(|m| m.status().leader)
    }

    /// The nodes holding a replica of a partition.
    pub fn partition_replicas(&self, topic: &str, partition: u32) -> Vec<u64> {
        self.replicas_of(&partition_group(topic, partition))
    }

    /// The leader of a partition as this node knows it: its replica's view, or, when it has
    /// none, the leader directory's.
    pub fn partition_leader(&self, topic: &str, partition: u32) -> Option<u64> {
        self.node.leader_of(&partition_group(topic, partition))
    }

    /// A partition's group state on this node; `None` when this node has no replica of it.
    pub fn partition_status(&self, topic: &str, partition: u32) -> Option<GroupStatus> {
        self.partition(topic, partition).map(|g| g.status())
    }

    /// The cluster's id, as this node's data directory records it.
    pub fn cluster_uuid(&self) -> [u8; 16] {
        self.cluster_id
    }

    /// Stops every group of this node.
    pub async fn shutdown(&self) {
        self.node.shutdown().await;
    }
}
