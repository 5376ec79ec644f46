//! What a closed topic holds, read from its files without opening it: the names of its named
//! subscribers and of its consumer groups. Listings across every topic (a Kafka client's
//! ListGroups, a group's offsets) then open only the topics that concern them.
//!
//! A closed topic's files are read as they are on disk: a topic opened by someone else while
//! they are read may rewrite its offsets snapshot (by an atomic rename) or cut a torn tail; a
//! read that fails for any reason falls back to opening the topic, whose answer is exact.

use std::sync::Arc;

use crate::error::Result;
use crate::fs::FileSystem;
use crate::offsets::inspect_offsets;

use super::inner::StoreInner;
use super::settings::{validate_name, CONFIG_FILE, GROUPS_DIR};

impl StoreInner {
    /// Names of topic `name`'s named subscribers (Kafka groups' committed offsets too), sorted.
    pub(in crate::store) fn topic_subscribers(self: &Arc<Self>, name: &str) -> Result<Vec<String>> {
        if self.topics.is_closed(name) {
            match inspect_offsets(&*self.fs, &self.topic_dir(name)) {
                Ok(map) => return Ok(map.into_keys().collect()),
                Err(e) => tracing::debug!(topic = name, "offsets not read closed, opening: {e}"),
            }
        }
        Ok(self.topic(name)?.subscribers())
    }

    /// Names of topic `name`'s consumer groups, sorted.
    pub(in crate::store) fn topic_groups(self: &Arc<Self>, name: &str) -> Result<Vec<String>> {
        if self.topics.is_closed(name) {
            match group_dirs(&*self.fs, &self.topic_dir(name).join(GROUPS_DIR)) {
                Ok(names) => return Ok(names),
                Err(e) => tracing::debug!(topic = name, "groups not read closed, opening: {e}"),
            }
        }
        Ok(self.topic(name)?.list_groups())
    }
}

/// The groups under `gdir` as a topic's opening would find them: directories with a valid name
/// and a config (one without is an unfinished create, removed at open).
fn group_dirs(fs: &dyn FileSystem, gdir: &std::path::Path) -> std::io::Result<Vec<String>> {
    if !fs.is_dir(gdir) {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = fs
        .read_dir(gdir)?
        .into_iter()
        .filter(|g| {
            let d = gdir.join(g);
            validate_name(g).is_ok() && fs.is_dir(&d) && fs.exists(&d.join(CONFIG_FILE))
        })
        .collect();
    names.sort();
    Ok(names)
}
