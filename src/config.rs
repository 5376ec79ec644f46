//! Server configuration: a TOML file (`sluice serve --config FILE`) whose every key is optional;
//! command-line flags override the file.
//!
//! ```toml
//! data_dir = "/var/lib/sluice"
//! listen = "0.0.0.0:7450"
//! retention_check_ms = 60000
//! kafka_listen = "0.0.0.0:9092"       # or "off"
//! kafka_advertised = "broker1.example:9092"
//! kafka_auto_create_topics = true
//! kafka_default_partitions = 1        # partitions of topics created without a count
//!
//! [kafka_groups]             # the Kafka group coordinator (server::kafka::group::GroupConfig)
//! session_timeout_ms_min = 6000
//! initial_rebalance_delay_ms = 300
//!
//! [kafka_share]              # Kafka share groups (server::kafka::share::ShareConfig)
//! session_timeout_ms = 45000
//! member_records_max = 1000
//!
//! [log]                      # defaults of new topics and queues (sluice_storage::LogConfig)
//! segment_bytes_max = 134217728
//! retention_ms = 604800000
//! fsync = "always"           # or "interval:<ms>" or "never"
//!
//! [limits]
//! frame_bytes_max = 16777216
//! connections_max = 1024
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sluice_storage::LogConfig;

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./sluice-data";
/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7450";
/// Default listen address of the Kafka protocol.
pub const DEFAULT_KAFKA_LISTEN: &str = "127.0.0.1:9092";
/// The `kafka_listen` (and `http_listen`) value that turns the listener off.
pub const KAFKA_LISTEN_OFF: &str = "off";
/// Default listen address of HTTP (metrics).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:7451";

/// Named, configurable limits of the server.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest frame accepted (the value of the length prefix). A larger prefix is rejected
    /// before anything is allocated and the connection is closed.
    pub frame_bytes_max: u32,
    /// Most simultaneous connections; one more gets an error frame and is closed.
    pub connections_max: usize,
    /// Most delivered-but-unacked messages per consumer (a consumer's prefetch is capped to it).
    pub unacked_per_consumer_max: u32,
    /// Most credit a subscription may hold (messages granted but not yet sent).
    pub credit_max: u32,
    /// Most subscriptions and consumers open on one connection.
    pub subscriptions_per_connection_max: usize,
    /// Most requests of one connection waiting for their reply (pipelining depth). The server
    /// stops reading the connection at the bound.
    pub pending_requests_max: usize,
    /// A connection with no subscription or consumer that sends nothing for this long is closed.
    pub idle_timeout_ms: u64,
    /// The `HELLO` frame must arrive within this time of connecting.
    pub handshake_timeout_ms: u64,
    /// Once a frame's first byte arrived, the whole frame must arrive within this time.
    pub frame_timeout_ms: u64,
    /// At shutdown, in-flight requests get this long to finish.
    pub shutdown_timeout_ms: u64,
    /// Smallest `segment_bytes_max` a client may ask for when it creates a topic or queue. Every
    /// segment holds open files: tiny segments from the wire would exhaust file descriptors.
    /// The `[log]` defaults of this file are the operator's and are not held to it.
    pub segment_bytes_min: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            frame_bytes_max: crate::protocol::DEFAULT_FRAME_BYTES_MAX,
            connections_max: 1024,
            unacked_per_consumer_max: 1000,
            credit_max: 100_000,
            subscriptions_per_connection_max: 256,
            pending_requests_max: 1024,
            idle_timeout_ms: 300_000,
            handshake_timeout_ms: 10_000,
            frame_timeout_ms: 30_000,
            shutdown_timeout_ms: 10_000,
            segment_bytes_min: 1 << 20,
        }
    }
}

/// The whole server configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Listen address (port 0 picks a free port).
    pub listen: String,
    /// Log settings of topics and queues created without their own (fsync policy included).
    pub log: LogConfig,
    /// Limits.
    pub limits: Limits,
    /// How often retention is applied to every topic and queue (it is also applied whenever a
    /// segment rolls).
    pub retention_check_ms: u64,
    /// Listen address of the Kafka wire protocol (port 0 picks a free port), or `off`.
    pub kafka_listen: String,
    /// `host:port` the Kafka listener tells clients to connect to (Metadata, FindCoordinator);
    /// the bound address when absent.
    pub kafka_advertised: Option<String>,
    /// `host:port` native clients reach this server at, which a cluster node tells its peers;
    /// the bound address when absent.
    pub advertised: Option<String>,
    /// A Kafka Metadata request naming an unknown topic creates it with the server's defaults
    /// (as Kafka's `auto.create.topics.enable`); when false it gets UNKNOWN_TOPIC_OR_PARTITION.
    pub kafka_auto_create_topics: bool,
    /// Partitions of a topic created through Kafka without a count: auto-created, or
    /// CreateTopics with `num_partitions` -1 (Kafka's `num.partitions`).
    pub kafka_default_partitions: u32,
    /// Settings of the Kafka consumer group coordinator.
    pub kafka_groups: crate::server::kafka::group::GroupConfig,
    /// Settings of Kafka share groups.
    pub kafka_share: crate::server::kafka::share::ShareConfig,
    /// Most files the open topics and queues may hold; unused ones are closed, least recently
    /// used first, to stay within it. 0: a quarter of the open-file limit (which the server raises
    /// to its hard limit at start).
    pub open_files_max: usize,
    /// A topic or queue unused this long (no lookup, no holder, nothing in flight) is closed,
    /// its files synced first; it opens again when next used.
    pub idle_close_ms: u64,
    /// Sync each log and state file on its own instead of one sync of the whole file system for
    /// the syncs of many topics and queues that arrive together. For a data directory on a file
    /// system that other busy writers share.
    pub sync_per_file: bool,
    /// Listen address of HTTP (`GET /metrics`; port 0 picks a free port), or `off`.
    pub http_listen: String,
    /// The server's TLS certificate chain (PEM): with `tls_key`, every listener speaks TLS.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
    /// A CA (PEM) whose certificate every client must present (mutual TLS).
    pub tls_client_ca: Option<PathBuf>,
    /// Serve clients that did not authenticate on addresses beyond this host. Without it, a
    /// listener on an address other than loopback requires client certificates
    /// (`tls_client_ca`): the broker has no other authentication yet.
    pub allow_anonymous: bool,
    /// Cluster mode: this node and its peers (`--node-id`, `--cluster`); `None` for a single
    /// node.
    #[serde(skip)]
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN.into(),
            log: LogConfig::default(),
            limits: Limits::default(),
            retention_check_ms: 60_000,
            kafka_listen: DEFAULT_KAFKA_LISTEN.into(),
            kafka_advertised: None,
            advertised: None,
            kafka_auto_create_topics: true,
            kafka_default_partitions: 1,
            kafka_groups: Default::default(),
            kafka_share: Default::default(),
            open_files_max: 0,
            idle_close_ms: 60_000,
            sync_per_file: false,
            http_listen: DEFAULT_HTTP_LISTEN.into(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            allow_anonymous: false,
            cluster: None,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("invalid configuration in {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A listen address that may be `off` (`None`).
fn optional_addr(key: &str, value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if value == KAFKA_LISTEN_OFF {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|e| {
        ConfigError::Invalid(format!(
            "{key} address {value:?}: {e} (or \"{KAFKA_LISTEN_OFF}\")"
        ))
    })
}

impl Config {
    /// Parses TOML text.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// The listen address, parsed.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|e| ConfigError::Invalid(format!("listen address {:?}: {e}", self.listen)))
    }

    /// The Kafka listen address, parsed; `None` when it is `off`.
    pub fn kafka_listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        optional_addr("kafka_listen", &self.kafka_listen)
    }

    /// The listeners on an address other than loopback (reachable beyond this host), as
    /// `(key, address)`.
    pub fn exposed_listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        let all = [
            ("listen", self.listen_addr().ok()),
            ("kafka_listen", self.kafka_listen_addr().ok().flatten()),
            ("http_listen", self.http_listen_addr().ok().flatten()),
        ];
        all.into_iter()
            .filter_map(|(k, a)| a.filter(|a| !a.ip().is_loopback()).map(|a| (k, a)))
            .collect()
    }

    /// Refuses a listener beyond this host that would serve anyone: it needs users (`users`:
    /// the data directory has some, so every client authenticates), client certificates
    /// (`tls_client_ca`) or an explicit `allow_anonymous`.
    pub fn check_exposure(&self, users: bool) -> Result<(), ConfigError> {
        if users || self.allow_anonymous || self.tls_client_ca.is_some() {
            return Ok(());
        }
        match self.exposed_listeners().first() {
            None => Ok(()),
            Some((key, addr)) => Err(ConfigError::Invalid(format!(
                "{key} {addr} is reachable beyond this host, and clients do not authenticate: \
                 anyone reaching it could read, write and delete every topic and queue. \
                 Add a user (sluice user add), require client certificates (--tls-cert, \
                 --tls-key, --tls-client-ca), listen on a loopback address, or accept this \
                 with --allow-anonymous"
            ))),
        }
    }

    /// The TLS files of every listener; `None` without TLS. Refuses a certificate without a
    /// key, a key without a certificate, and a client CA without either.
    pub fn tls_files(&self) -> Result<Option<crate::server::tls::TlsFiles>, ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(crate::server::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            })),
            (None, None) if self.tls_client_ca.is_none() => Ok(None),
            (None, None) => Err(ConfigError::Invalid(
                "tls_client_ca needs tls_cert and tls_key".into(),
            )),
            _ => Err(ConfigError::Invalid(
                "tls_cert and tls_key go together: give both or neither".into(),
            )),
        }
    }

    /// The HTTP listen address, parsed; `None` when it is `off`.
    pub fn http_listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        optional_addr("http_listen", &self.http_listen)
    }

    /// The advertised Kafka address split into host and port, if one is set.
    pub fn kafka_advertised_host_port(&self) -> Result<Option<(String, u16)>, ConfigError> {
        host_port("kafka_advertised", self.kafka_advertised.as_deref())
    }

    /// The advertised native address split into host and port, if one is set.
    pub fn advertised_host_port(&self) -> Result<Option<(String, u16)>, ConfigError> {
        host_port("advertised", self.advertised.as_deref())
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.log.validate().map_err(ConfigError::Invalid)?;
        self.listen_addr()?;
        self.kafka_listen_addr()?;
        self.http_listen_addr()?;
        self.kafka_advertised_host_port()?;
        self.advertised_host_port()?;
        sluice_storage::store::check_partitions(self.kafka_default_partitions)
            .map_err(|e| ConfigError::Invalid(format!("kafka_default_partitions: {e}")))?;
        self.kafka_groups
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.kafka_share.validate().map_err(ConfigError::Invalid)?;
        let l = &self.limits;
        let min_frame = self.log.batch_bytes_max as u64 + 64 * 1024;
        if (l.frame_bytes_max as u64) < min_frame {
            return Err(ConfigError::Invalid(format!(
                "limits.frame_bytes_max ({}) must be at least log.batch_bytes_max + 64 KiB ({min_frame})",
                l.frame_bytes_max
            )));
        }
        for (name, v) in [
            ("connections_max", l.connections_max as u64),
            (
                "unacked_per_consumer_max",
                l.unacked_per_consumer_max as u64,
            ),
            ("credit_max", l.credit_max as u64),
            (
                "subscriptions_per_connection_max",
                l.subscriptions_per_connection_max as u64,
            ),
            ("pending_requests_max", l.pending_requests_max as u64),
            ("idle_timeout_ms", l.idle_timeout_ms),
            ("handshake_timeout_ms", l.handshake_timeout_ms),
            ("frame_timeout_ms", l.frame_timeout_ms),
            ("retention_check_ms", self.retention_check_ms),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be above 0")));
            }
        }
        Ok(())
    }
}

/// `value` of setting `key` split into host and port, if one is set.
fn host_port(key: &str, value: Option<&str>) -> Result<Option<(String, u16)>, ConfigError> {
    let Some(a) = value else {
        return Ok(None);
    };
    let bad = |why: &str| ConfigError::Invalid(format!("{key} {a:?}: {why} (expected HOST:PORT)"));
    let (host, port) = a.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(Some((host.to_owned(), p))),
        _ => Err(bad("the port must be 1 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::FsyncPolicy;

    #[test]
    fn a_listener_beyond_loopback_needs_client_certificates_or_allow_anonymous() {
        let loopback = Config::default();
        assert!(loopback.check_exposure(false).is_ok() && loopback.exposed_listeners().is_empty());
        for (key, value) in [
            ("listen", "0.0.0.0:7450"),
            ("kafka_listen", "[::]:9092"),
            ("http_listen", "10.0.0.1:7451"),
        ] {
            let mut c = Config::default();
            match key {
                "listen" => c.listen = value.into(),
                "kafka_listen" => c.kafka_listen = value.into(),
                _ => c.http_listen = value.into(),
            }
            let e = c.check_exposure(false).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("--allow-anonymous"), "{e}");
            assert!(c.check_exposure(true).is_ok(), "users authenticate");
            let mut anonymous = c.clone();
            anonymous.allow_anonymous = true;
            assert!(anonymous.check_exposure(false).is_ok());
            c.tls_cert = Some("c.pem".into());
            c.tls_key = Some("k.pem".into());
            c.tls_client_ca = Some("ca.pem".into());
            assert!(
                c.check_exposure(false).is_ok(),
                "client certificates authenticate"
            );
        }
        let v6 = Config {
            listen: "[::1]:7450".into(),
            ..Config::default()
        };
        assert!(v6.check_exposure(false).is_ok());
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("", Path::new("x")).unwrap();
        assert_eq!(c, Config::default());
        c.validate().unwrap();
        assert_eq!(c.listen, "127.0.0.1:7450");
        assert_eq!(c.data_dir, PathBuf::from("./sluice-data"));
        assert_eq!(
            c.kafka_listen_addr().unwrap(),
            Some("127.0.0.1:9092".parse().unwrap())
        );
        assert!(c.kafka_auto_create_topics);
    }

    #[test]
    fn kafka_settings_parse_and_are_checked() {
        let c = Config::from_toml(
            "kafka_listen = \"off\"\nkafka_auto_create_topics = false\nkafka_advertised = \"[::1]:19092\"\n",
            Path::new("x"),
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.kafka_listen_addr().unwrap(), None);
        assert!(!c.kafka_auto_create_topics);
        assert_eq!(
            c.kafka_advertised_host_port().unwrap(),
            Some(("::1".to_string(), 19092))
        );
        for bad in [
            "kafka_listen = \"nowhere\"\n",
            "kafka_advertised = \"host\"\n",
            "kafka_advertised = \"host:0\"\n",
            "kafka_advertised = \":9092\"\n",
        ] {
            let c = Config::from_toml(bad, Path::new("x")).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn file_sets_values_and_rejects_unknown_keys() {
        let c = Config::from_toml(
            "listen = \"127.0.0.1:0\"\n[log]\nsegment_bytes_max = 1048576\nfsync = \"interval:5\"\n[limits]\nconnections_max = 3\nidle_timeout_ms = 50\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(c.limits.connections_max, 3);
        assert_eq!(c.limits.idle_timeout_ms, 50);
        assert_eq!(c.log.segment_bytes_max, 1 << 20);
        assert_eq!(c.log.fsync, FsyncPolicy::Interval(5));
        c.validate().unwrap();
        assert!(Config::from_toml("[limits]\nbogus = 1\n", Path::new("x")).is_err());
        assert!(Config::from_toml("bogus = 1\n", Path::new("x")).is_err());
        let c = Config::from_toml("[limits]\nframe_bytes_max = 100\n", Path::new("x")).unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn durations_past_the_signed_range_are_refused() {
        for text in [
            "[log]\nretention_ms = 9223372036854775807\n",
            "[log]\nsegment_ms_max = 3153600000001\n",
        ] {
            let c = Config::from_toml(text, Path::new("x")).unwrap();
            assert!(c.validate().is_err(), "{text}");
        }
        assert!(Config::from_toml(
            "[log]\nfsync = \"interval:18446744073709551615\"\n",
            Path::new("x")
        )
        .is_err());
    }
}
