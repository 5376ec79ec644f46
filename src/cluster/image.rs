//! Snapshots of the cluster metadata: the whole metadata state of a node as one image, so the
//! `meta` group's log can be cut.
//!
//! The metadata's state is partly this node's store (topics, queues, committed offsets) and
//! partly memory rebuilt as the log is applied (the cluster's nodes, placements, each topic's
//! partition count as the metadata says). A [`MetaImage`] holds both. It is:
//!
//! - written by every node as it applies a [`sluice_replication::Command::Compact`] of the
//!   `meta` group (`<data dir>/cluster/meta-image`, atomically and synced, after the store's
//!   committed offsets are synced): a restart restores the memory half from it before the
//!   group applies the entries after the compaction, since those before it are gone;
//! - sent to a node that lacks entries the leader has cut (one down during a compaction, or a
//!   node added after one), which installs it (`restore`).
//!
//! An image is taken between two applied entries (the state machine's task applies, takes and
//! installs in turn), so it is the state after some entry at or after the compaction's; the
//! entries after the compaction are applied over it again, which leaves it as it is (every
//! metadata command, applied again in order over a later state, ends at that state).
//!
//! Bytes (little-endian; the CRC-32 covers every byte before it), the file's and a snapshot's
//! state alike:
//!
//! ```text
//!  0        4         6        8          16         20             20+n
//!  +--------+---------+--------+----------+----------+--------------+---------+
//!  | magic  | version | flags  | index    | len      | body         | crc u32 |
//!  | "SLMI" |  u16=2  | u16=0  | u64      | u32 = n  | postcard     |         |
//!  +--------+---------+--------+----------+----------+--------------+---------+
//! ```
//!
//! `index` is the metadata entry the image was taken for (the compaction's; 0 for one taken
//! for a snapshot, whose entry the snapshot names); `body` a postcard [`MetaImage`]. An
//! image of version 1 (written before the image kept where reassignments came from) is read
//! too: its body is a [`MetaImage`] without `reassigned_from`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_replication::GroupId;
use sluice_storage::fs::FileSystem;

use super::placement::Placement;
use super::Cluster;
use crate::broker::Broker;

/// The image file's name, in `<data dir>/cluster/`.
pub const IMAGE_FILE: &str = "meta-image";
const MAGIC: [u8; 4] = *b"SLMI";
const VERSION: u16 = 2;
/// The version before `reassigned_from`; still read.
const VERSION_1: u16 = 1;
const HEADER_LEN: usize = 20;
const CRC_LEN: usize = 4;
/// The largest image body; a longer length field is damage. As large as a snapshot's state
/// may be (`SNAPSHOT_STATE_BYTES_MAX`), header and checksum included.
pub const IMAGE_BODY_BYTES_MAX: u32 =
    sluice_replication::SNAPSHOT_STATE_BYTES_MAX - (HEADER_LEN + CRC_LEN) as u32;

/// The cluster metadata as applied on one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaImage {
    /// The cluster's nodes and their cluster addresses.
    pub nodes: BTreeMap<u64, String>,
    /// The metadata index of the last change of the nodes (0: the first nodes).
    pub nodes_version: u64,
    /// Every topic.
    pub topics: Vec<TopicImage>,
    /// Every queue, dead-letter queues too.
    pub queues: Vec<QueueImage>,
    /// Every group placed with a replication factor: `(group, nodes, factor)`.
    pub placements: Vec<(String, Vec<u64>, u32)>,
    /// Each topic's partition count as the metadata says.
    pub counts: Vec<(String, u32)>,
    /// Committed offsets of groups and named subscribers.
    pub offsets: Vec<OffsetsImage>,
    /// Where each group reassigned by name (Kafka's AlterPartitionReassignments) was before
    /// its last reassignment: `(group, nodes)`, what a cancel moves it back to.
    pub reassigned_from: Vec<(String, Vec<u64>)>,
}

/// A [`MetaImage`] of version 1: everything but `reassigned_from`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct MetaImageV1 {
    nodes: BTreeMap<u64, String>,
    nodes_version: u64,
    topics: Vec<TopicImage>,
    queues: Vec<QueueImage>,
    placements: Vec<(String, Vec<u64>, u32)>,
    counts: Vec<(String, u32)>,
    offsets: Vec<OffsetsImage>,
}

impl From<MetaImageV1> for MetaImage {
    fn from(v1: MetaImageV1) -> Self {
        MetaImage {
            nodes: v1.nodes,
            nodes_version: v1.nodes_version,
            topics: v1.topics,
            queues: v1.queues,
            placements: v1.placements,
            counts: v1.counts,
            offsets: v1.offsets,
            reassigned_from: Vec::new(),
        }
    }
}

/// A topic, as its creation (and later changes) made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: [u8; 16],
    /// Its partitions in the store.
    pub partitions: u32,
    /// Its segment size.
    pub segment_bytes_max: u64,
    /// Its retention by age.
    pub retention_ms: Option<u64>,
    /// Its retention by size.
    pub retention_bytes: Option<u64>,
}

/// A queue and its settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueImage {
    /// Its name.
    pub name: String,
    /// Its settings.
    pub config: sluice_storage::QueueConfig,
}

/// The committed offsets of one group (or named subscriber) on one topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetsImage {
    /// The group or subscriber.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// `(partition, next offset, metadata)`.
    pub commits: Vec<(u32, u64, Vec<u8>)>,
}

/// Why image bytes were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than a header and checksum.
    #[error("{0} bytes, shorter than a metadata image's header and checksum")]
    Short(usize),
    /// Another magic.
    #[error("not a metadata image (magic {0:?})")]
    Magic([u8; 4]),
    /// A version this build does not read.
    #[error("metadata image version {0}, this build reads version {VERSION}")]
    Version(u16),
    /// The length field disagrees with the bytes, or is over the limit.
    #[error("metadata image body of {0} bytes does not match its {1} bytes")]
    Length(u32, usize),
    /// The checksum does not match.
    #[error("metadata image checksum mismatch")]
    Checksum,
    /// The body does not decode.
    #[error("metadata image body does not decode: {0}")]
    Body(String),
}

impl MetaImage {
    /// Its bytes, standing for metadata entry `index`.
    pub fn encode(&self, index: u64) -> Vec<u8> {
        let body = postcard::to_allocvec(self).expect("a metadata image encodes");
        let n = u32::try_from(body.len()).expect("a metadata image fits its length field");
        assert!(
            n <= IMAGE_BODY_BYTES_MAX,
            "a metadata image of {n} bytes is over {IMAGE_BODY_BYTES_MAX}"
        );
        let mut b = Vec::with_capacity(HEADER_LEN + body.len() + CRC_LEN);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&index.to_le_bytes());
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(&body);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// The image in `bytes` and the entry it stands for; an error, never a panic, on any
    /// damage.
    pub fn decode(bytes: &[u8]) -> Result<(MetaImage, u64), ImageError> {
        if bytes.len() < HEADER_LEN + CRC_LEN {
            return Err(ImageError::Short(bytes.len()));
        }
        let magic: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
        if magic != MAGIC {
            return Err(ImageError::Magic(magic));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != VERSION && version != VERSION_1 {
            return Err(ImageError::Version(version));
        }
        let index = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let n = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
        if n > IMAGE_BODY_BYTES_MAX || bytes.len() != HEADER_LEN + n as usize + CRC_LEN {
            return Err(ImageError::Length(n, bytes.len()));
        }
        let (covered, crc) = bytes.split_at(bytes.len() - CRC_LEN);
        if crc32fast::hash(covered) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(ImageError::Checksum);
        }
        let body = &covered[HEADER_LEN..];
        let image = match version {
            VERSION_1 => postcard::from_bytes::<MetaImageV1>(body).map(MetaImage::from),
            _ => postcard::from_bytes(body),
        };
        Ok((image.map_err(|e| ImageError::Body(e.to_string()))?, index))
    }

    /// The placements as the cluster keeps them.
    pub(super) fn placement_map(&self) -> HashMap<GroupId, Placement> {
        self.placements
            .iter()
            .map(|(g, nodes, factor)| {
                let p = Placement {
                    nodes: nodes.clone(),
                    factor: *factor,
                };
                (GroupId(g.clone()), p)
            })
            .collect()
    }
}

/// Writes `bytes` (an encoded image) as the image file in `dir`, atomically and synced.
pub fn save(fs: &dyn FileSystem, dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    sluice_storage::fs::write_atomic(fs, &dir.join(IMAGE_FILE), bytes)
}

/// The image saved in `dir` and the entry it stands for; `None` without one.
pub fn load(fs: &dyn FileSystem, dir: &Path) -> Result<Option<(MetaImage, u64)>, String> {
    let path = dir.join(IMAGE_FILE);
    if !fs.exists(&path) {
        return Ok(None);
    }
    let bytes =
        sluice_storage::fs::read_all(fs, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    MetaImage::decode(&bytes)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl Cluster {
    /// This node's metadata now, its store's half read on this blocking thread. With `sync`,
    /// the committed offsets of every open topic are synced first (a compaction: the entries
    /// that made them will not be applied again).
    pub(super) fn capture_image(&self, broker: &Broker, sync: bool) -> Result<MetaImage, String> {
        let store = broker.store();
        if sync {
            for t in store.open_topics() {
                t.flush_offsets()
                    .map_err(|e| format!("topic {:?}: {e}", t.name()))?;
            }
        }
        let mut image = self.memory_image();
        for name in store.list_topics() {
            let t = match store.topic(&name) {
                Ok(t) => t,
                Err(sluice_storage::Error::NotFound { .. }) => continue,
                Err(e) => return Err(format!("topic {name:?}: {e}")),
            };
            let log = t.log_config();
            image.topics.push(TopicImage {
                name: name.clone(),
                id: t.id().0,
                partitions: t.partition_count(),
                segment_bytes_max: log.segment_bytes_max,
                retention_ms: log.retention_ms,
                retention_bytes: log.retention_bytes,
            });
            for group in t.subscribers() {
                let commits: Vec<(u32, u64, Vec<u8>)> = (0..t.partition_count())
                    .filter_map(|p| t.committed(&group, p).map(|(o, m)| (p, o.0, m)))
                    .collect();
                if !commits.is_empty() {
                    let topic = name.clone();
                    image.offsets.push(OffsetsImage {
                        group,
                        topic,
                        commits,
                    });
                }
            }
        }
        for name in store.list_queues() {
            match store.queue(&name) {
                Ok(q) => image.queues.push(QueueImage {
                    name,
                    config: q.config().clone(),
                }),
                Err(sluice_storage::Error::NotFound { .. }) => {}
                Err(e) => return Err(format!("queue {name:?}: {e}")),
            }
        }
        Ok(image)
    }

    /// The memory half of this node's metadata: nodes, placements and partition counts.
    fn memory_image(&self) -> MetaImage {
        let set = self.node_set();
        let mut placements: Vec<(String, Vec<u64>, u32)> = self
            .placements
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(g, p)| (g.0.clone(), p.nodes.clone(), p.factor))
            .collect();
        placements.sort();
        let mut counts: Vec<(String, u32)> = self
            .meta_counts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        counts.sort();
        let mut reassigned_from: Vec<(String, Vec<u64>)> = self
            .reassigned_from
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(g, nodes)| (g.0.clone(), nodes.clone()))
            .collect();
        reassigned_from.sort();
        MetaImage {
            nodes: set.nodes,
            nodes_version: set.version,
            placements,
            counts,
            reassigned_from,
            ..MetaImage::default()
        }
    }

    /// Takes this node's image for a compaction at metadata entry `index` and saves it, off
    /// the async threads.
    pub(super) async fn save_image(self: &Arc<Self>, index: u64) -> Result<(), String> {
        let broker = self.broker().map_err(|e| e.to_string())?;
        let me = self.clone();
        crate::broker::spawn_blocking(move || {
            let image = me.capture_image(&broker, true)?;
            save(&sluice_storage::StdFs, &me.root, &image.encode(index))
                .map_err(|e| format!("the metadata image: {e}"))?;
            me.image_at
                .fetch_max(index, std::sync::atomic::Ordering::AcqRel);
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MetaImage {
        MetaImage {
            nodes: [(1, "a:1".to_string()), (2, "b:2".to_string())].into(),
            nodes_version: 7,
            topics: vec![TopicImage {
                name: "t".into(),
                id: [3; 16],
                partitions: 2,
                segment_bytes_max: 1 << 20,
                retention_ms: Some(60_000),
                retention_bytes: None,
            }],
            queues: vec![QueueImage {
                name: "q".into(),
                config: sluice_storage::QueueConfig::default(),
            }],
            placements: vec![("t/t/0".into(), vec![2, 1], 2)],
            counts: vec![("t".into(), 2)],
            offsets: vec![OffsetsImage {
                group: "g".into(),
                topic: "t".into(),
                commits: vec![(0, 5, b"m".to_vec()), (1, 9, vec![])],
            }],
            reassigned_from: vec![("t/t/0".into(), vec![1])],
        }
    }

    fn seed_path() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/cluster_input/seed-meta-image")
    }

    /// The seed of the `cluster_input` fuzz target: a byte its first (picking nothing here),
    /// then an image.
    fn seed() -> Vec<u8> {
        [vec![0xc0], sample().encode(42)].concat()
    }

    #[test]
    #[ignore = "writes a seed of cluster_input into fuzz/corpus"]
    fn write_seed() {
        std::fs::write(seed_path(), seed()).unwrap();
    }

    #[test]
    fn the_seed_is_stored_and_decodes() {
        let stored = std::fs::read(seed_path()).unwrap();
        assert_eq!(stored, seed(), "write the seed again (write_seed)");
        assert_eq!(MetaImage::decode(&stored[1..]), Ok((sample(), 42)));
    }

    #[test]
    fn an_image_reads_back_as_written() {
        let image = sample();
        assert_eq!(MetaImage::decode(&image.encode(42)), Ok((image, 42)));
    }

    #[test]
    fn an_image_of_version_1_reads_without_reassignment_origins() {
        let image = sample();
        let v1 = MetaImageV1 {
            nodes: image.nodes.clone(),
            nodes_version: image.nodes_version,
            topics: image.topics.clone(),
            queues: image.queues.clone(),
            placements: image.placements.clone(),
            counts: image.counts.clone(),
            offsets: image.offsets.clone(),
        };
        let body = postcard::to_stdvec(&v1).unwrap();
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&VERSION_1.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&42u64.to_le_bytes());
        b.extend_from_slice(&(body.len() as u32).to_le_bytes());
        b.extend_from_slice(&body);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        let want = MetaImage {
            reassigned_from: Vec::new(),
            ..image
        };
        assert_eq!(MetaImage::decode(&b), Ok((want, 42)));
        b[4] = 3;
        assert_eq!(MetaImage::decode(&b), Err(ImageError::Version(3)));
    }

    #[test]
    fn every_cut_or_damaged_image_is_an_error() {
        let bytes = sample().encode(42);
        for len in 0..bytes.len() {
            assert!(MetaImage::decode(&bytes[..len]).is_err(), "cut at {len}");
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(MetaImage::decode(&bad).is_err(), "byte {at} flipped");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            MetaImage::decode(&longer),
            Err(ImageError::Length(..))
        ));
    }
}
