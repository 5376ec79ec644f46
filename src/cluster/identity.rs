//! What a node's data directory says of its cluster (`cluster/identity`): the cluster's id and
//! its first nodes, written at the node's first start and read at every later one, so that
//! neither changes when nodes are added or removed or `--cluster` is given another list.
//!
//! The file is a replication state file (magic `SLCI`, version, CRC-32; see
//! `sluice_replication::store::state_file`). A node that joined a running cluster (`--join`)
//! records no first nodes: it was not one of them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sluice_replication::store::state_file;
use sluice_storage::FileSystem;

use super::config::{format_cluster_id, ClusterConfig};

/// The file's magic.
const MAGIC: [u8; 4] = *b"SLCI";

/// The file's name under the node's cluster directory.
pub const IDENTITY_FILE: &str = "identity";

/// A node's cluster, as its data directory records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredIdentity {
    /// The cluster's id (what peers' greetings must name).
    pub cluster_id: [u8; 16],
    /// The nodes the cluster was formed with and their cluster addresses; empty on a node that
    /// joined later.
    pub seeds: BTreeMap<u64, String>,
}

/// Reads the identity under `root`, or writes it from `config` at a first start. Refuses a
/// `--cluster-id` other than the recorded one, and `--join` on a node that formed its cluster.
pub fn load_or_create(
    fs: &dyn FileSystem,
    root: &Path,
    config: &ClusterConfig,
) -> Result<StoredIdentity, String> {
    let path = root.join(IDENTITY_FILE);
    let stored: Option<StoredIdentity> =
        state_file::load(fs, &path, MAGIC).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(s) = stored {
        if let Some(id) = config.cluster_id.filter(|id| *id != s.cluster_id) {
            return Err(format!(
                "--cluster-id {} is not the cluster {} this data directory belongs to",
                format_cluster_id(&id),
                format_cluster_id(&s.cluster_id)
            ));
        }
        return Ok(s);
    }
    let identity = match (config.join, config.cluster_id) {
        (true, Some(id)) => StoredIdentity {
            cluster_id: id,
            seeds: BTreeMap::new(),
        },
        (true, None) => return Err("--join needs --cluster-id".into()),
        (false, id) => StoredIdentity {
            cluster_id: id.unwrap_or_else(|| config.cluster_uuid()),
            seeds: config.nodes.clone(),
        },
    };
    fs.create_dir_all(root)
        .map_err(|e| format!("{}: {e}", root.display()))?;
    state_file::save(fs, &path, MAGIC, &identity)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::fs::sim::SimFs;

    #[test]
    fn the_first_start_decides_and_later_lists_change_nothing() {
        let fs = SimFs::new();
        let root = Path::new("/d/cluster");
        let first = ClusterConfig::parse(1, "1@a:1,2@b:2,3@c:3").unwrap();
        let made = load_or_create(&fs, root, &first).unwrap();
        assert_eq!(made.cluster_id, first.cluster_uuid());
        assert_eq!(made.seeds.len(), 3);
        // Restarted with another list (a node since added): the same cluster.
        let later = ClusterConfig::parse(1, "1@a:1,2@b:2,4@d:4").unwrap();
        assert_eq!(load_or_create(&fs, root, &later).unwrap(), made);
        // Told it is of another cluster: refused.
        let other = later.clone().joining([7; 16]);
        assert!(load_or_create(&fs, root, &other).is_err());
    }

    #[test]
    fn a_joining_node_records_the_given_id_and_no_seeds() {
        let fs = SimFs::new();
        let root = Path::new("/d/cluster");
        let plain = ClusterConfig::parse(4, "4@d:4").unwrap();
        let mut no_id = plain.clone();
        no_id.join = true;
        assert!(load_or_create(&fs, root, &no_id).is_err());
        let joining = plain.joining([9; 16]);
        let made = load_or_create(&fs, root, &joining).unwrap();
        assert_eq!(made.cluster_id, [9; 16]);
        assert!(made.seeds.is_empty());
        // A restart without --join and --cluster-id is the same node of the same cluster.
        let again = ClusterConfig::parse(4, "4@d:4").unwrap();
        assert_eq!(load_or_create(&fs, root, &again).unwrap(), made);
    }
}
