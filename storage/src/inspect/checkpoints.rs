//! The recovery point and the clean-shutdown marker, checked against the scans of their log
//! directory.

use super::*;

impl Walker<'_> {
    /// `recovery-point` or `clean-shutdown`, checked against the scans of the directory.
    pub(super) fn state_file(
        &mut self,
        path: &Path,
        name: &str,
        segs: &[(Offset, Scanned)],
    ) -> Result<()> {
        self.sum.state_files += 1;
        let bytes = crate::fs::read_all(self.fs, path).at(path)?;
        let mut fields = Vec::new();
        let problem: Option<String>;
        if name == RECOVERY_POINT_FILE {
            match RecoveryPoint::decode(&bytes) {
                Err(e) => {
                    problem = Some(format!(
                        "invalid recovery point: {e} (ignored at open: the whole log is rescanned)"
                    ))
                }
                Ok(rp) => {
                    fields = vec![
                        ("segment_base".into(), Field::UInt(rp.segment_base.0)),
                        ("position".into(), Field::UInt(rp.position)),
                        ("next_offset".into(), Field::UInt(rp.next_offset.0)),
                        ("max_timestamp_ms".into(), Field::Int(rp.max_timestamp_ms)),
                    ];
                    problem = check_recovery_point(&rp, segs);
                }
            }
        } else {
            match CleanShutdown::decode(&bytes) {
                Err(e) => problem = Some(format!("invalid clean-shutdown marker: {e}")),
                Ok(cs) => {
                    fields = vec![
                        ("next_offset".into(), Field::UInt(cs.next_offset.0)),
                        ("active_base".into(), Field::UInt(cs.active_base.0)),
                        ("active_size".into(), Field::UInt(cs.active_size)),
                    ];
                    problem = check_clean_shutdown(&cs, segs);
                }
            }
        }
        self.v.item(Item::State(StateFileReport {
            file: path.to_path_buf(),
            kind: name.into(),
            size_bytes: bytes.len() as u64,
            fields,
            valid: Some(problem.is_none()),
        }));
        if let Some(p) = problem {
            self.error(path, 0, p);
        }
        Ok(())
    }
}

pub(super) fn check_recovery_point(
    rp: &RecoveryPoint,
    segs: &[(Offset, Scanned)],
) -> Option<String> {
    let first = segs.first().map(|s| s.0)?;
    let Some((_, s)) = segs.iter().find(|(b, _)| *b == rp.segment_base) else {
        return (rp.segment_base > first).then(|| {
            format!(
                "recovery point names segment {} which does not exist",
                rp.segment_base
            )
        });
    };
    if rp.position > s.valid_end {
        return Some(format!(
            "recovery point at byte {} (offset {}) of segment {} is past the segment's valid end at byte {} (offset {}): records the broker had made durable are damaged or missing",
            rp.position, rp.next_offset, rp.segment_base, s.valid_end, s.next_offset
        ));
    }
    let at = if rp.position == FILE_HEADER_LEN as u64 {
        Some(rp.segment_base)
    } else if rp.position == s.valid_end {
        Some(s.next_offset)
    } else {
        s.boundary_at(rp.position).map(|b| b.base)
    };
    match at {
        Some(o) if o == rp.next_offset => None,
        Some(o) => Some(format!(
            "recovery point says offset {} at byte {} but the batch there starts at {o}",
            rp.next_offset, rp.position
        )),
        None => Some(format!(
            "recovery point byte {} is not a batch boundary of segment {}",
            rp.position, rp.segment_base
        )),
    }
}

pub(super) fn check_clean_shutdown(
    cs: &CleanShutdown,
    segs: &[(Offset, Scanned)],
) -> Option<String> {
    let (base, s) = segs.last()?;
    if cs.active_base != *base {
        return Some(format!(
            "clean-shutdown marker names segment {} as the last, but the last is {base}",
            cs.active_base
        ));
    }
    if cs.active_size != s.len || cs.next_offset != s.next_offset || s.valid_end != s.len {
        return Some(format!(
            "clean-shutdown marker says the log ends at offset {} with {} bytes, but the last segment has {} bytes ending at offset {} (valid to byte {}): files changed after the clean stop",
            cs.next_offset, cs.active_size, s.len, s.next_offset, s.valid_end
        ));
    }
    None
}
