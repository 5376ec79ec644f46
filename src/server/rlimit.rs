//! The process's open-file limit, raised to its hard limit at start: every connection, and
//! every open topic and queue, holds files.

/// The soft and hard `RLIMIT_NOFILE` before and the soft one after: raises the soft limit to
/// the hard one and logs both. `None` when the limit cannot be read.
pub fn raise_open_file_limit() -> Option<(u64, u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        tracing::warn!(
            "cannot read the open-file limit: {}",
            std::io::Error::last_os_error()
        );
        return None;
    }
    let (soft, hard) = (r.rlim_cur, r.rlim_max);
    if soft >= hard {
        tracing::info!(soft, hard, "open-file limit");
        return Some((soft, hard, soft));
    }
    let raised = libc::rlimit {
        rlim_cur: r.rlim_max,
        rlim_max: r.rlim_max,
    };
    // SAFETY: setrlimit reads the struct it is given; raising the soft limit up to the hard one
    // needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(soft, hard, "cannot raise the open-file limit: {e}");
        return Some((soft, hard, soft));
    }
    tracing::info!(
        was = soft,
        now = hard,
        hard,
        "open-file limit raised to the hard limit"
    );
    Some((soft, hard, hard))
}
