//! The startup sweep's decisions (pure): which leftovers under the root a new pool may
//! remove, and which it must leave alone, and why.
//!
//! ## Names on disk
//!
//! Under `root`, a pool instance `I` (12 lowercase hex digits, unique per process start)
//! owns:
//! - its marker `<prefix>I.lock`, a regular file it holds an exclusive `flock` on for as
//!   long as it lives. The OS drops the lock when the process dies, however it dies;
//! - its session directories `<prefix>I-<n>`.
//!
//! ## The rules
//!
//! An entry whose name starts with the prefix is removed only if all hold:
//! 1. it is a real directory (`lstat`): a symlink is never followed nor removed, a file
//!    that is not a marker is left alone;
//! 2. it is owned by the current user;
//! 3. it does not belong to a live pool: if its name parses as `<prefix>I-<n>`, the marker
//!    of `I` must be absent or unlocked. A directory that does not parse (for example a
//!    legacy `chromelambda-<uuid>`) has no live owner to protect it;
//! 4. it is not our own instance's.
//!
//! A marker is removed when its lock is free (its pool is dead), after that pool's
//! directories. A marker that is not a regular file we own makes its instance
//! unverifiable, and that instance's directories are skipped.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::backend::{DirEntryInfo, EntryKind, MarkerState, Orphan};
use crate::error::BackendError;
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
    /// Anything else with the prefix (for example a legacy `chromelambda-<uuid>`).
    Other,
}

fn is_instance(s: &str) -> bool {
    s.len() == INSTANCE_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parse an entry name (which must start with `prefix`).
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

/// Why the sweep left an entry alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// A symbolic link: never followed, never removed.
    Symlink,
    /// Owned by another user.
    ForeignOwner {
        /// Its owner.
        uid: u32,
    },
    /// Belongs to a pool that is still running.
    LivePool {
        /// That pool's instance.
        instance: String,
    },
    /// Its instance's marker is not a regular file we own, so liveness cannot be proven.
    UnverifiableMarker {
        /// The instance.
        instance: String,
    },
    /// A file or other non-directory that is not a marker.
    NotADirectory,
    /// Our own instance's.
    Ours,
    /// The marker could not be probed.
    ProbeFailed {
        /// What the filesystem said.
        error: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Symlink => f.write_str("symlink (never followed)"),
            SkipReason::ForeignOwner { uid } => write!(f, "owned by another user (uid {uid})"),
            SkipReason::LivePool { instance } => write!(f, "belongs to live pool {instance}"),
            SkipReason::UnverifiableMarker { instance } => {
                write!(f, "marker of pool {instance} is not a regular file of ours")
            }
            SkipReason::NotADirectory => f.write_str("not a directory"),
            SkipReason::Ours => f.write_str("our own"),
            SkipReason::ProbeFailed { error } => write!(f, "marker probe failed: {error}"),
        }
    }
}

/// An entry left alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The entry.
    pub path: PathBuf,
    /// Why.
    pub reason: SkipReason,
}

/// What a sweep should do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepPlan {
    /// Leftover session directories to clean (kill proven processes, then remove), in
    /// name order.
    pub dirs: Vec<DirEntryInfo>,
    /// Dead pools' markers to remove after the directories.
    pub markers: Vec<DirEntryInfo>,
    /// Entries left alone.
    pub skipped: Vec<Skipped>,
}

/// Decide what to sweep. `entries` are the listing of `root` for `prefix`; `markers`
/// gives the probed state of every marker in the listing (by instance; a marker that
/// could not be probed maps to `Err`).
pub fn plan(
    prefix: &str,
    own_instance: &str,
    our_uid: u32,
    entries: &[DirEntryInfo],
    markers: &BTreeMap<String, Result<MarkerState, String>>,
) -> SweepPlan {
    let mut out = SweepPlan::default();
    // Which instances have a trustworthy marker, and in what state.
    let mut instance_state: BTreeMap<&str, Result<MarkerState, SkipReason>> = BTreeMap::new();
    for e in entries {
        if let ParsedName::Marker { instance } = parse_name(prefix, &e.name) {
            let st = if e.kind != EntryKind::File || e.uid != our_uid {
                Err(SkipReason::UnverifiableMarker {
                    instance: instance.clone(),
                })
            } else {
                match markers.get(&instance) {
                    Some(Ok(s)) => Ok(*s),
                    Some(Err(error)) => Err(SkipReason::ProbeFailed {
                        error: error.clone(),
                    }),
                    None => Err(SkipReason::ProbeFailed {
                        error: "not probed".into(),
                    }),
                }
            };
            let key = &e.name[prefix.len()..prefix.len() + INSTANCE_LEN];
            instance_state.insert(key, st);
        }
    }
    let skip = |out: &mut SweepPlan, e: &DirEntryInfo, reason| {
        out.skipped.push(Skipped {
            path: e.path.clone(),
            reason,
        })
    };
    for e in entries {
        let parsed = parse_name(prefix, &e.name);
        let instance = match &parsed {
            ParsedName::Session { instance, .. } | ParsedName::Marker { instance } => {
                Some(instance.as_str())
            }
            ParsedName::Other => None,
        };
        if instance == Some(own_instance) {
            skip(&mut out, e, SkipReason::Ours);
            continue;
        }
        match e.kind {
            EntryKind::Symlink => {
                skip(&mut out, e, SkipReason::Symlink);
                continue;
            }
            _ if e.uid != our_uid => {
                skip(&mut out, e, SkipReason::ForeignOwner { uid: e.uid });
                continue;
            }
            EntryKind::Dir => {}
            EntryKind::File if matches!(parsed, ParsedName::Marker { .. }) => {}
            EntryKind::File | EntryKind::Other => {
                skip(&mut out, e, SkipReason::NotADirectory);
                continue;
            }
        }
        let state = instance.and_then(|i| instance_state.get(i));
        match (state, &parsed) {
            (Some(Ok(MarkerState::Live)), _) => skip(
                &mut out,
                e,
                SkipReason::LivePool {
                    instance: instance.unwrap_or_default().to_owned(),
                },
            ),
            (Some(Err(reason)), _) => skip(&mut out, e, reason.clone()),
            (_, ParsedName::Marker { .. }) => out.markers.push(e.clone()),
            (Some(Ok(MarkerState::Dead)), _) | (None, _) => out.dirs.push(e.clone()),
        }
    }
    out
}

/// What a startup sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Directories removed (and dead markers).
    pub removed: Vec<PathBuf>,
    /// Processes killed, each proven to belong to a removed directory.
    pub killed: Vec<Orphan>,
    /// Entries left alone, with the reason.
    pub skipped: Vec<Skipped>,
    /// Entries that should have been removed but could not be; the next start retries.
    pub failed: Vec<(PathBuf, BackendError)>,
}

impl SweepReport {
    /// True if the sweep found nothing to do and nothing failed.
    pub fn is_clean(&self) -> bool {
        self.removed.is_empty() && self.killed.is_empty() && self.failed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: u32 = 1000;

    fn entry(name: &str, kind: EntryKind, uid: u32) -> DirEntryInfo {
        DirEntryInfo {
            name: name.into(),
            path: PathBuf::from("/tmp").join(name),
            kind,
            uid,
        }
    }

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
    }

    #[test]
    fn refuses_symlinks_foreign_owners_live_pools_and_files() {
        let live = instance_from(1);
        let dead = instance_from(2);
        let own = instance_from(3);
        let entries = vec![
            entry(&marker_name("bp-", &live), EntryKind::File, UID),
            entry(&format!("bp-{live}-1"), EntryKind::Dir, UID),
            entry(&marker_name("bp-", &dead), EntryKind::File, UID),
            entry(&format!("bp-{dead}-4"), EntryKind::Dir, UID),
            entry(&format!("bp-{own}-1"), EntryKind::Dir, UID),
            entry("bp-legacy-uuid", EntryKind::Dir, UID),
            entry("bp-link", EntryKind::Symlink, UID),
            entry(&format!("bp-{dead}-5"), EntryKind::Symlink, UID),
            entry("bp-theirs", EntryKind::Dir, 0),
            entry("bp-notes.txt", EntryKind::File, UID),
        ];
        let markers = BTreeMap::from([
            (live.clone(), Ok(MarkerState::Live)),
            (dead.clone(), Ok(MarkerState::Dead)),
        ]);
        let p = plan("bp-", &own, UID, &entries, &markers);
        let dirs: Vec<&str> = p.dirs.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            dirs,
            vec![format!("bp-{dead}-4").as_str(), "bp-legacy-uuid"]
        );
        assert_eq!(p.markers.len(), 1);
        assert_eq!(p.markers[0].name, marker_name("bp-", &dead));
        let reason = |n: &str| {
            p.skipped
                .iter()
                .find(|s| s.path.ends_with(n))
                .map(|s| s.reason.clone())
        };
        assert_eq!(
            reason(&format!("bp-{live}-1")),
            Some(SkipReason::LivePool {
                instance: live.clone()
            })
        );
        assert!(matches!(
            reason(&marker_name("bp-", &live)),
            Some(SkipReason::LivePool { .. })
        ));
        assert_eq!(reason("bp-link"), Some(SkipReason::Symlink));
        assert_eq!(reason(&format!("bp-{dead}-5")), Some(SkipReason::Symlink));
        assert_eq!(
            reason("bp-theirs"),
            Some(SkipReason::ForeignOwner { uid: 0 })
        );
        assert_eq!(reason("bp-notes.txt"), Some(SkipReason::NotADirectory));
        assert_eq!(reason(&format!("bp-{own}-1")), Some(SkipReason::Ours));
    }

    #[test]
    fn a_marker_that_is_a_symlink_makes_its_instance_unverifiable() {
        let inst = instance_from(9);
        let entries = vec![
            entry(&marker_name("bp-", &inst), EntryKind::Symlink, UID),
            entry(&format!("bp-{inst}-1"), EntryKind::Dir, UID),
        ];
        let p = plan("bp-", &instance_from(1), UID, &entries, &BTreeMap::new());
        assert!(p.dirs.is_empty() && p.markers.is_empty());
        assert!(p
            .skipped
            .iter()
            .any(|s| matches!(s.reason, SkipReason::UnverifiableMarker { .. })));
    }
}
