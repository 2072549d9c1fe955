//! The open-files limit (`RLIMIT_NOFILE`). Every connection holds a descriptor,
//! and the usual soft limit (1024) is about the default `max_connections` with
//! nothing to spare for the rest of the server; past it `accept` fails (EMFILE)
//! and new clients wait in the listen queue instead of getting an answer. So at
//! start-up the soft limit is raised to the hard limit, as Postfix and nginx do,
//! and a `max_connections` that still cannot fit is reported.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors kept for everything that is not a client connection: listeners,
/// log files, Maildir files being written, the runtime's own, DNS, Redis and
/// SQLite sockets and files.
pub(crate) const RESERVED_DESCRIPTORS: u64 = 64;

/// The process's open-files limit after [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenFiles {
    /// The soft limit found at start-up.
    pub(crate) before: u64,
    /// The soft limit in force now.
    pub(crate) soft: u64,
    /// The hard limit (the most the soft limit can be raised to without privileges).
    pub(crate) hard: u64,
}

impl OpenFiles {
    /// Connections that fit under the soft limit, with [`RESERVED_DESCRIPTORS`] kept.
    pub(crate) fn connections_that_fit(&self) -> u64 {
        self.soft.saturating_sub(RESERVED_DESCRIPTORS)
    }

    /// What to tell the operator when `max_connections` cannot all be open at once
    /// under this limit; `None` when they fit.
    pub(crate) fn shortfall(&self, max_connections: usize) -> Option<String> {
        let wanted = u64::try_from(max_connections).unwrap_or(u64::MAX);
        let fit = self.connections_that_fit();
        (wanted > fit).then(|| {
            format!(
                "max_connections = {wanted} does not fit the open files limit of {} \
                 (hard limit {}, {RESERVED_DESCRIPTORS} kept for the server): beyond about \
                 {fit} connections accept fails and clients wait unanswered; raise the \
                 hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower max_connections",
                self.soft, self.hard
            )
        })
    }
}

/// Raises the soft open-files limit to the hard limit and returns the limits in
/// force. If the raise is refused, the soft limit stays as it was (and
/// [`OpenFiles::shortfall`] tells whether that matters).
///
/// # Errors
///
/// The limit could not even be read.
pub(crate) fn raise_open_files_limit() -> nix::Result<OpenFiles> {
    let (before, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let raised = before < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok();
    Ok(OpenFiles {
        before,
        soft: if raised { hard } else { before },
        hard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_limit() {
        let limit = raise_open_files_limit().expect("getrlimit");
        assert!(limit.soft >= limit.before, "{limit:?}");
        assert_eq!(limit.soft, limit.hard, "{limit:?}");
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        assert_eq!((soft, hard), (limit.soft, limit.hard));
        // Raising again changes nothing.
        let again = raise_open_files_limit().expect("getrlimit");
        assert_eq!(again.before, again.soft);
    }

    #[test]
    fn shortfall_names_the_limits_when_max_connections_does_not_fit() {
        let limit = OpenFiles {
            before: 256,
            soft: 1024,
            hard: 1024,
        };
        assert_eq!(limit.connections_that_fit(), 960);
        assert_eq!(limit.shortfall(960), None);
        let warning = limit.shortfall(1000).expect("1000 do not fit");
        assert!(
            warning.starts_with("max_connections = 1000 does not fit the open files limit of 1024"),
            "{warning}"
        );
        assert!(warning.contains("hard limit 1024"), "{warning}");
        assert!(
            warning.contains("beyond about 960 connections"),
            "{warning}"
        );
        let tiny = OpenFiles {
            before: 10,
            soft: 10,
            hard: 10,
        };
        assert_eq!(tiny.connections_that_fit(), 0);
        assert!(tiny.shortfall(1).is_some());
    }
}
