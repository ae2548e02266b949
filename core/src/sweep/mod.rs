//! The startup sweep: what a new pool may remove of what earlier servers left under
//! its root, and the protocol that keeps it away from everything else.
//!
//! The decisions are pure ([`plan()`], over a listing and probe results); [`startup_sweep`]
//! lists, probes, plans and carries the plan out through the backend traits.
//!
//! ## Names on disk
//!
//! Under `root`, a pool instance `I` (12 lowercase hex digits, unique per process start)
//! owns:
//! - its marker `<prefix>I.lock`, a regular file it holds an exclusive `flock` on for as
//!   long as it lives. The OS drops the lock when the process dies, however it dies;
//! - its session directories `<prefix>I-<n>` (`n` decimal).
//!
//! Directories of an earlier server that did not use these names (the incident's
//! `chromelambda-<uuid>`) are *legacy* directories; the sweep touches them only if the
//! configuration names their exact shape ([`LegacyPattern`]).
//!
//! ## What the sweep removes
//!
//! Nothing is removed by name alone. An entry is removed only if it is a real directory
//! (`lstat`: a symlink is never followed nor removed) owned by the current user, not of
//! our own instance, and one of:
//! - **a dead pool's session**: its name parses as `<prefix>I-<n>` and a probe of `I`'s
//!   marker, made after the listing, found it unlocked or absent;
//! - **a legacy leftover**: its name is exactly one of [`PoolConfig::legacy`]'s patterns
//!   (a literal prefix and a fixed shape such as a UUID), a no-follow look inside finds a
//!   Chrome profile in it or in its `profile/` subdirectory (`SingletonLock`,
//!   `Local State` or `Default/`), and nothing there changed for at least
//!   [`PoolConfig::legacy_min_age`].
//!
//! Before a directory is removed, the launcher's proven processes in it are killed
//! ([`ProcessLauncher::find_orphans`]); if that search or a kill fails, the directory
//! stays and the failure is reported. Every other entry under the listed prefixes is
//! left alone and reported in [`SweepReport::skipped`] with a [`SkipReason`] (a name that
//! is neither ours nor legacy, a symlink, another user's, a live pool's, a legacy
//! directory that is not a profile or is too recent, ...).
//!
//! ## The marker protocol
//!
//! How pools that start, run and stop concurrently on one root never sweep each other:
//! 1. A pool creates and locks its marker *before* it creates any session directory, and
//!    removes the marker (while still holding the lock) only *after* its directories are
//!    gone. So whenever one of its directories exists, its marker exists and is locked.
//! 2. The sweep lists the root first and probes afterwards. A probe opens the marker by
//!    the path built from the instance id (never through a symlink), for every instance
//!    named in the listing, *whether or not the marker itself was listed*: a `readdir`
//!    racing with creations may return a directory and miss the marker made before it.
//!    By rule 1 a listed directory's marker existed before the listing ended, so a
//!    probe after the listing sees it locked, unless its pool is gone.
//! 3. A session directory is removed only if its instance's probe said dead. A probe that
//!    failed, or a marker that is not a regular file of ours, keeps the instance's
//!    directories (reported as skipped).
//! 4. A probe takes a shared lock for an instant and never creates anything; a pool
//!    taking its own marker retries for a bounded time while a probe or a sweeper holds
//!    it, so a concurrent probe never makes a starting pool fail.
//!    A probe that catches a marker between its creation and its locking reports it dead;
//!    that is harmless, because by rule 1 that pool has no directory yet (none can be in
//!    the listing), and rule 5 keeps its marker.
//! 5. A dead marker is unlinked only while the sweep holds its exclusive lock and has
//!    checked that the path still names the file it locked
//!    ([`Filesystem::remove_dead_marker`]); a marker that is locked by then is left. A
//!    pool whose marker was unlinked before it locked it notices (the path no longer
//!    names its file) and makes a new one.
//! 6. An instance's marker is removed only after all of its directories were; if one
//!    could not be removed, the marker stays and the next start retries both.
//!
//! Instance ids must be unique per start ([`instance_from`] mixes the process id and the
//! time); a pool started with the id of a live pool fails to take its marker.
//!
//! [`PoolConfig::legacy`]: crate::PoolConfig::legacy
//! [`PoolConfig::legacy_min_age`]: crate::PoolConfig::legacy_min_age
//! [`ProcessLauncher::find_orphans`]: crate::ProcessLauncher::find_orphans
//! [`Filesystem::remove_dead_marker`]: crate::Filesystem::remove_dead_marker

pub(crate) mod exec;
mod legacy;
mod plan;

#[cfg(test)]
mod props;

pub(crate) use exec::startup_sweep;
pub use legacy::{LegacyPattern, LegacyShape};
pub use plan::{
    plan, to_probe, PlanInput, PlannedDir, Removal, SkipReason, Skipped, SweepPlan, SweepReport,
    ToProbe,
};

use crate::session::SessionId;

/// Length of an instance id in hex digits.
pub const INSTANCE_LEN: usize = 12;

/// What an entry's name says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParsedName {
    /// `<prefix>I-<n>`: session `n` of instance `I`.
    Session {
        /// The instance.
        instance: String,
        /// The session number.
        id: u64,
    },
    /// `<prefix>I.lock`: the marker of instance `I`.
    Marker {
        /// The instance.
        instance: String,
    },
    /// Anything else, with or without the prefix (for example a legacy
    /// `chromelambda-<uuid>`, see [`LegacyPattern`]).
    Other,
}

impl ParsedName {
    /// The instance a session or marker name belongs to.
    pub fn instance(&self) -> Option<&str> {
        match self {
            ParsedName::Session { instance, .. } | ParsedName::Marker { instance } => {
                Some(instance)
            }
            ParsedName::Other => None,
        }
    }
}

fn is_instance(s: &str) -> bool {
    s.len() == INSTANCE_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parse an entry name: `<prefix>I-<n>` (`n` decimal digits that fit in a `u64`) is a
/// session, `<prefix>I.lock` a marker, anything else (including names without the
/// prefix) is [`ParsedName::Other`].
pub fn parse_name(prefix: &str, name: &str) -> ParsedName {
    let Some(rest) = name.strip_prefix(prefix) else {
        return ParsedName::Other;
    };
    if let Some(inst) = rest.strip_suffix(".lock") {
        if is_instance(inst) {
            return ParsedName::Marker {
                instance: inst.to_owned(),
            };
        }
    }
    if let Some((inst, n)) = rest.split_once('-') {
        if is_instance(inst) && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(id) = n.parse() {
                return ParsedName::Session {
                    instance: inst.to_owned(),
                    id,
                };
            }
        }
    }
    ParsedName::Other
}

/// The marker file name of `instance`.
pub fn marker_name(prefix: &str, instance: &str) -> String {
    format!("{prefix}{instance}.lock")
}

/// The directory name of session `id` of `instance`.
pub fn session_dir_name(prefix: &str, instance: &str, id: SessionId) -> String {
    format!("{prefix}{instance}-{}", id.0)
}

/// Make an instance id from any 64-bit value (the pool mixes its pid and the time; a
/// simulation passes a seeded value).
pub fn instance_from(value: u64) -> String {
    format!("{:012x}", value & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let inst = instance_from(0xabc);
        assert_eq!(inst, "000000000abc");
        let d = session_dir_name("bp-", &inst, SessionId(7));
        assert_eq!(
            parse_name("bp-", &d),
            ParsedName::Session {
                instance: inst.clone(),
                id: 7
            }
        );
        assert_eq!(
            parse_name("bp-", &marker_name("bp-", &inst)),
            ParsedName::Marker { instance: inst }
        );
        assert_eq!(
            parse_name(
                "chromelambda-",
                "chromelambda-550e8400-e29b-41d4-a716-446655440000"
            ),
            ParsedName::Other
        );
        assert_eq!(parse_name("bp-", "bp-000000000abc-"), ParsedName::Other);
        assert_eq!(parse_name("bp-", "bp-000000000ABC-1"), ParsedName::Other);
        assert_eq!(
            parse_name("bp-", "bp-000000000abc-99999999999999999999"),
            ParsedName::Other,
            "a session number that overflows u64 is not ours"
        );
        assert_eq!(parse_name("bp-", "xx-000000000abc-1"), ParsedName::Other);
        assert_eq!(ParsedName::Other.instance(), None);
    }
}
