//! The command line's arguments (clap): commands, subcommands and their options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use sluice::protocol::LogSettings;
use sluice::storage::FsyncPolicy;

use super::bench;

/// sluice: a durable, log-structured message broker.
#[derive(Parser, Debug)]
#[command(name = "sluice", version)]
pub struct Cli {
    /// Server address of client commands; for a cluster, its nodes' client addresses,
    /// comma-separated (any of them will do: the first that answers is used, and a request
    /// refused by a node that does not lead, or cut by a lost connection, goes to the next).
    #[arg(
        long,
        global = true,
        env = "SLUICE_ADDR",
        default_value = "127.0.0.1:7450",
        value_name = "HOST:PORT[,HOST:PORT...]"
    )]
    pub addr: String,
    /// With several --addr nodes: how long (ms) a request is retried on the next node before
    /// giving up (0: never retried).
    #[arg(long, global = true, env = "SLUICE_RETRY_MS", value_name = "MS", default_value_t = sluice::client::RETRY_DEADLINE_DEFAULT.as_millis() as u64)]
    pub retry_ms: u64,
    /// With several --addr nodes: how long (ms) one node may take to answer before the
    /// request goes to the next (a paused node).
    #[arg(long, global = true, env = "SLUICE_REQUEST_TIMEOUT_MS", value_name = "MS", default_value_t = sluice::client::REQUEST_TIMEOUT_DEFAULT.as_millis() as u64)]
    pub request_timeout_ms: u64,
    /// Speak TLS to the server, trusting the CA certificates of this PEM file.
    #[arg(long, global = true, env = "SLUICE_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for a server that asks for one (with --tls-ca).
    #[arg(long, global = true, env = "SLUICE_TLS_CLIENT_CERT", value_name = "FILE", requires_all = ["tls_ca", "tls_client_key"])]
    pub tls_client_cert: Option<PathBuf>,
    /// The private key of --tls-client-cert (PEM).
    #[arg(
        long,
        global = true,
        env = "SLUICE_TLS_CLIENT_KEY",
        value_name = "FILE",
        requires = "tls_client_cert"
    )]
    pub tls_client_key: Option<PathBuf>,
    /// The name the server's certificate must carry [default: the host of --addr].
    #[arg(long, global = true, value_name = "NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,
    /// Authenticate as this user (the password from SLUICE_PASSWORD, or asked on a terminal).
    #[arg(long, global = true, env = "SLUICE_USER", value_name = "NAME")]
    pub user: Option<String>,
    /// How --user authenticates: scram-sha-256, scram-sha-512, or plain (TLS only).
    #[arg(long, global = true, value_enum, default_value_t = AuthMechanismArg::ScramSha256)]
    pub auth_mechanism: AuthMechanismArg,
    /// Print JSON lines on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Format of the log lines on stderr: `text`, or `json` (one JSON object per line, for
    /// log collectors).
    #[arg(long, global = true, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// An authentication mechanism of `--user`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMechanismArg {
    /// SCRAM-SHA-256: the password never leaves the client.
    #[value(name = "scram-sha-256")]
    ScramSha256,
    /// SCRAM-SHA-512.
    #[value(name = "scram-sha-512")]
    ScramSha512,
    /// The password itself, over TLS only.
    Plain,
}

/// How log lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: time, level, target, message and fields.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`).
    Json,
}

/// Commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the broker.
    Serve(Box<ServeArgs>),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCmd),
    /// Create, list, describe and delete queues.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Publish messages to a topic or queue: the MESSAGE arguments, or else every line of stdin.
    Publish(PublishArgs),
    /// Read a topic as a named (durable) or anonymous subscriber.
    Subscribe(SubscribeArgs),
    /// Consume a queue (or a topic's consumer group) as a competing consumer, acking each message.
    Consume(ConsumeArgs),
    /// Inspect a cluster (its nodes, each replicated group's leader, members and replication)
    /// and add or remove its nodes.
    #[command(subcommand)]
    Cluster(super::cluster::ClusterCmd),
    /// Add, list and delete users and set their quotas (a running broker, or --data-dir).
    #[command(subcommand)]
    User(super::security::UserCmd),
    /// Add, list and remove access rules (a running broker, or --data-dir).
    #[command(subcommand)]
    Acl(super::security::AclCmd),
    /// Measure throughput and latency end to end, checking every message arrived.
    Bench(bench::BenchArgs),
    /// Inspect or verify a data directory, log directory or file offline (read-only).
    Inspect(crate::inspect_cli::InspectArgs),
    /// Repair a data directory offline, keeping removed bytes in side files (broker stopped).
    Repair(crate::inspect_cli::RepairArgs),
}

/// Arguments of `serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Data directory [default: ./sluice-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Listen address; port 0 picks a free port [default: 127.0.0.1:7450].
    #[arg(long)]
    pub listen: Option<String>,
    /// Durability: always | interval:<ms> | never [default: always].
    #[arg(long)]
    pub fsync: Option<FsyncPolicy>,
    /// TOML file with everything else (log settings, limits); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Listen address of the Kafka protocol; port 0 picks a free port; `off` disables it
    /// [default: 127.0.0.1:9092].
    #[arg(long, value_name = "ADDR")]
    pub kafka_listen: Option<String>,
    /// HOST:PORT native clients reach this server at, which a cluster node tells the other
    /// nodes [default: the bound --listen address].
    #[arg(long, value_name = "HOST:PORT")]
    pub advertised: Option<String>,
    /// HOST:PORT Kafka clients are told to connect to [default: the bound Kafka address].
    #[arg(long, value_name = "HOST:PORT")]
    pub kafka_advertised: Option<String>,
    /// Create unknown topics that Kafka clients ask Metadata for [default: true].
    #[arg(long, value_name = "BOOL")]
    pub kafka_auto_create_topics: Option<bool>,
    /// Listen address of HTTP (`GET /metrics`); port 0 picks a free port; `off` disables it
    /// [default: 127.0.0.1:7451].
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// The server's TLS certificate chain (PEM): with --tls-key, every listener (native,
    /// Kafka, HTTP) speaks TLS only. SIGHUP reloads it.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require every client to present a certificate this CA (PEM) signed (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve clients that do not authenticate on addresses beyond this host (without it, a
    /// listener on an address other than loopback requires --tls-client-ca).
    #[arg(long)]
    pub allow_anonymous: bool,
    /// This server's id in a cluster (with --cluster).
    #[arg(long, value_name = "ID", requires = "cluster")]
    pub node_id: Option<u64>,
    /// Run as a node of a cluster: every node, this one included, as ID@HOST:PORT of its
    /// cluster listener, comma-separated (with --node-id). Each topic partition is then
    /// replicated on every node.
    #[arg(long, value_name = "ID@HOST:PORT,...", requires = "node_id")]
    pub cluster: Option<String>,
    /// Join a running cluster as a new node (with --cluster-id): form no group, wait to be
    /// added (`sluice cluster add-node`). --cluster then needs only this node's address.
    #[arg(long, requires_all = ["cluster", "cluster_id"])]
    pub join: bool,
    /// The id of the cluster this node belongs to, as `sluice cluster status` shows it.
    #[arg(long, value_name = "UUID", requires = "cluster")]
    pub cluster_id: Option<String>,
    /// Where the cluster listener binds, when not at this node's address in --cluster (which
    /// peers dial: behind a NAT or a proxy, or 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT", requires = "cluster")]
    pub cluster_listen: Option<String>,
    /// Raft heartbeat interval (ms) of this node's groups; elections come after 6 to 12 missed
    /// heartbeats. Default 50 (elections in 300-600 ms). A replica must answer an append within
    /// one interval, round trip and fsync included: raise it for slow links or disks (every
    /// node alike; failover takes longer).
    #[arg(long, value_name = "MS", requires = "cluster")]
    pub raft_heartbeat_ms: Option<u64>,
    /// How long (ms) a group, caught up on every replica, has nothing to do before it goes
    /// quiet: no heartbeats, its followers watching the leader's node instead (one message per
    /// peer per heartbeat for all its quiet groups). Default 2000; 0 never (every group
    /// beats, which costs a node holding thousands of idle groups most of its CPU).
    #[arg(long, value_name = "MS", requires = "cluster")]
    pub raft_quiet_ms: Option<u64>,
    /// How often (ms) this node hands the groups it leads, and should not, back to their
    /// preferred leader (the first node of their placement; `*` in `sluice cluster status`)
    /// once that node has caught up: leaders spread again after a failover. Each hand-over
    /// stops the group's writes for about an election window. Default 5000; 0 never.
    #[arg(long, value_name = "MS", requires = "cluster")]
    pub leader_balance_ms: Option<u64>,
    /// How many cluster metadata entries (creations, offset commits...) may follow the last
    /// snapshot of the metadata before its leader takes the next: every node then saves its
    /// metadata image and cuts the metadata's log, and a restart applies only what follows.
    /// Default 10000; 0 never.
    #[arg(long, value_name = "N", requires = "cluster")]
    pub meta_snapshot_entries: Option<u64>,
    /// TLS between the nodes: this node's certificate chain (PEM). It must name the host the
    /// peers dial (its HOST in --cluster). With --cluster-tls-key and --cluster-tls-ca, every
    /// connection between nodes is TLS, both sides authenticated by the cluster's CA; every
    /// node needs them. SIGHUP reloads the three files.
    #[arg(
        long,
        value_name = "FILE",
        requires_all = ["cluster", "cluster_tls_key", "cluster_tls_ca"]
    )]
    pub cluster_tls_cert: Option<PathBuf>,
    /// The private key of --cluster-tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "cluster_tls_cert")]
    pub cluster_tls_key: Option<PathBuf>,
    /// The cluster's CA (PEM): the certificate of every peer must be signed by it. Use a CA
    /// of the cluster's own: whoever holds a certificate it signed is taken for a node.
    #[arg(long, value_name = "FILE", requires = "cluster_tls_cert")]
    pub cluster_tls_ca: Option<PathBuf>,
}

/// Log settings of a new topic or queue.
#[derive(Args, Debug)]
pub struct LogArgs {
    /// Segment size in bytes.
    #[arg(long)]
    pub segment_bytes: Option<u64>,
    /// Delete old segments while the log is larger than this many bytes.
    #[arg(long)]
    pub retention_bytes: Option<u64>,
    /// Delete segments whose newest message is older than this many milliseconds.
    #[arg(long)]
    pub retention_ms: Option<u64>,
}

impl LogArgs {
    pub(super) fn settings(&self) -> LogSettings {
        LogSettings {
            segment_bytes_max: self.segment_bytes,
            retention_bytes: self.retention_bytes,
            retention_ms: self.retention_ms,
            replicas: None,
        }
    }
}

/// Topic commands.
#[derive(Subcommand, Debug)]
pub enum TopicCmd {
    /// Create topics.
    Create {
        /// Names (several are created together, pipelined).
        names: Vec<String>,
        /// Also the names in this file, one per line (`-`: standard input).
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        /// Number of partitions (each its own log; ordering is per partition).
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// In a cluster: how many nodes hold a replica of each partition (1 to the cluster's
        /// nodes; default 3, or the cluster's size when smaller).
        #[arg(long, value_name = "N")]
        replicas: Option<u32>,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Change a topic: add partitions (never removes any).
    Alter {
        /// Name.
        name: String,
        /// The new number of partitions, above the current one.
        #[arg(long)]
        partitions: u32,
    },
    /// List topics.
    List,
    /// Show a topic's id and, per partition, its offsets, size and subscribers' lag.
    Describe {
        /// Name.
        name: String,
    },
    /// Delete topics and their data.
    Delete {
        /// Names (several are deleted together, pipelined).
        names: Vec<String>,
        /// Also the names in this file, one per line (`-`: standard input).
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
    },
}

/// Queue commands.
#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// Create queues (each dead-letter queue is made by its first dead letter).
    Create {
        /// Names (several are created together, pipelined).
        names: Vec<String>,
        /// Also the names in this file, one per line (`-`: standard input).
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        /// A delivered message not acked within this time is delivered again.
        #[arg(long)]
        ack_timeout_ms: Option<u64>,
        /// After this many deliveries without an ack a message goes to the dead-letter queue.
        #[arg(long)]
        max_deliveries: Option<u32>,
        /// Name of the dead-letter queue [default: <queue>.dlq].
        #[arg(long)]
        dead_letter: Option<String>,
        /// In a cluster: how many nodes hold a replica of the queue (1 to the cluster's nodes;
        /// default 3, or the cluster's size when smaller). A new dead-letter queue gets the
        /// same nodes.
        #[arg(long, value_name = "N")]
        replicas: Option<u32>,
        #[command(flatten)]
        log: LogArgs,
    },
    /// List queues.
    List,
    /// Show a queue's depth, in-flight and dead-lettered counts.
    Describe {
        /// Name.
        name: String,
    },
    /// Delete queues and their data (not their dead-letter queues).
    Delete {
        /// Names (several are deleted together, pipelined).
        names: Vec<String>,
        /// Also the names in this file, one per line (`-`: standard input).
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
    },
}

/// Arguments of `publish`.
#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Topic or queue.
    pub name: String,
    /// Key of every message; a topic's partition is then the key's (Kafka's default
    /// partitioner: murmur2 of the key modulo the partition count).
    #[arg(long)]
    pub key: Option<String>,
    /// Publish to this partition of the topic (default: the key's, or any for keyless
    /// messages).
    #[arg(long, conflicts_with = "key")]
    pub partition: Option<u32>,
    /// Messages; without any, each line of stdin is one message.
    pub messages: Vec<String>,
}

/// Arguments of `subscribe`.
#[derive(Args, Debug)]
pub struct SubscribeArgs {
    /// Topic.
    pub topic: String,
    /// Durable subscriber name; without it the read is anonymous and commits nothing.
    #[arg(long)]
    pub name: Option<String>,
    /// Read only these partitions (repeat or comma-separate; default: every partition).
    #[arg(long, value_delimiter = ',')]
    pub partition: Vec<u32>,
    /// earliest | latest | <offset> | <RFC 3339 time>. Default: a named subscriber resumes at its
    /// committed offset, an anonymous one starts at latest.
    #[arg(long)]
    pub from: Option<String>,
    /// Stop after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many milliseconds with nothing new.
    #[arg(long)]
    pub wait_ms: Option<u64>,
}

/// Arguments of `consume`.
#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// Queue (or topic, with --group).
    pub name: String,
    /// Consume the topic NAME as a member of this consumer group.
    #[arg(long)]
    pub group: Option<String>,
    /// Stop after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many milliseconds with nothing new.
    #[arg(long)]
    pub wait_ms: Option<u64>,
    /// Do not ack: the messages are delivered again to the next consumer.
    #[arg(long)]
    pub no_ack: bool,
}
