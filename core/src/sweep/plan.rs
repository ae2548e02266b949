//! The sweep's decisions (pure): from a listing and probe results, what to remove and
//! why, and what to leave alone and why. The rules are in the [module docs](super).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::{parse_name, LegacyPattern, ParsedName};
use crate::backend::{DirEntryInfo, EntryKind, MarkerState, Orphan, ProfileLayout, ProfileProbe};
use crate::error::BackendError;

/// Why the sweep left an entry alone.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// A file or other non-directory where a session or legacy directory would be.
    NotADirectory,
    /// Our own instance's.
    Ours,
    /// The marker could not be probed, so liveness cannot be proven.
    ProbeFailed {
        /// What the filesystem said.
        error: String,
    },
    /// The name is neither `<prefix><instance>-<n>` nor a marker of this pool's prefix,
    /// nor one of the configured legacy patterns: not ours to judge.
    UnrecognisedName,
    /// The name matches a legacy pattern, but neither the directory nor its `profile/`
    /// holds a Chrome profile (`SingletonLock`, `Local State`, `Default/`).
    NotAProfile,
    /// A legacy directory that changed too recently: it may belong to a server that is
    /// still running (a rolling deploy).
    TooRecent {
        /// How long ago it last changed.
        age: Duration,
        /// The configured minimum age.
        min_age: Duration,
    },
    /// A legacy directory whose contents could not be examined.
    ProfileProbeFailed {
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
            SkipReason::UnrecognisedName => {
                f.write_str("name is neither one of this pool's nor a configured legacy pattern")
            }
            SkipReason::NotAProfile => {
                f.write_str("legacy name but no Chrome profile inside (SingletonLock, Local State, Default/)")
            }
            SkipReason::TooRecent { age, min_age } => write!(
                f,
                "legacy directory changed {}s ago, less than legacy_min_age ({}s): it may still be in use",
                age.as_secs(),
                min_age.as_secs()
            ),
            SkipReason::ProfileProbeFailed { error } => {
                write!(f, "could not examine legacy directory: {error}")
            }
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

/// Why a directory may be removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// A session directory of a pool whose marker was probed dead (or absent) after the
    /// listing.
    DeadPool {
        /// The dead instance.
        instance: String,
    },
    /// A legacy directory: its name matches `pattern`, it holds a Chrome profile and it
    /// is older than the minimum age.
    Legacy {
        /// The pattern it matched.
        pattern: LegacyPattern,
        /// Where its profile is.
        layout: ProfileLayout,
        /// How long ago it last changed.
        age: Duration,
    },
}

/// A directory the sweep should clean (kill its proven processes, then remove it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedDir {
    /// The directory.
    pub entry: DirEntryInfo,
    /// Why it may go.
    pub why: Removal,
}

/// What a sweep should do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepPlan {
    /// Directories to clean, in name order.
    pub dirs: Vec<PlannedDir>,
    /// Dead pools' markers, to remove (under their lock) after their directories.
    pub markers: Vec<DirEntryInfo>,
    /// Entries left alone.
    pub skipped: Vec<Skipped>,
}

/// Everything [`plan()`] decides on.
#[derive(Clone, Copy, Debug)]
pub struct PlanInput<'a> {
    /// The pool's prefix.
    pub prefix: &'a str,
    /// The configured legacy patterns.
    pub legacy: &'a [LegacyPattern],
    /// The configured minimum age of a legacy directory.
    pub legacy_min_age: Duration,
    /// The sweeping pool's own instance.
    pub own_instance: &'a str,
    /// The current user.
    pub our_uid: u32,
    /// The listing of the root under the pool's and the legacy prefixes.
    pub entries: &'a [DirEntryInfo],
    /// Probed marker states by instance, made after the listing (see [`to_probe`]). An
    /// instance that is missing here counts as unprobed: its directories stay.
    pub markers: &'a BTreeMap<String, Result<MarkerState, String>>,
    /// Profile probes of legacy candidates by entry name (see [`to_probe`]). A candidate
    /// missing here stays.
    pub profiles: &'a BTreeMap<String, Result<ProfileProbe, String>>,
}

/// What must be probed, after the listing, before [`plan()`] can decide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToProbe {
    /// Every other instance named by an entry of ours (a session directory or a
    /// marker), whether or not its marker was listed.
    pub instances: BTreeSet<String>,
    /// Real directories of ours whose names match a legacy pattern.
    pub legacy: Vec<DirEntryInfo>,
}

fn legacy_match<'a>(legacy: &'a [LegacyPattern], name: &str) -> Option<&'a LegacyPattern> {
    legacy.iter().find(|p| p.matches(name))
}

/// The probes the executor must make for `entries` (pure).
pub fn to_probe(
    prefix: &str,
    legacy: &[LegacyPattern],
    own_instance: &str,
    our_uid: u32,
    entries: &[DirEntryInfo],
) -> ToProbe {
    let mut out = ToProbe::default();
    for e in entries {
        if e.kind == EntryKind::Symlink || e.uid != our_uid {
            continue;
        }
        match parse_name(prefix, &e.name) {
            ParsedName::Other => {
                if e.kind == EntryKind::Dir && legacy_match(legacy, &e.name).is_some() {
                    out.legacy.push(e.clone());
                }
            }
            parsed => {
                if let Some(i) = parsed.instance().filter(|i| *i != own_instance) {
                    out.instances.insert(i.to_owned());
                }
            }
        }
    }
    out
}

/// Decide what to sweep (pure). See the [module docs](super) for the rules.
pub fn plan(input: &PlanInput<'_>) -> SweepPlan {
    let prefix = input.prefix;
    let mut out = SweepPlan::default();
    // Instances whose listed marker is not a regular file of ours cannot be proven dead.
    let mut unverifiable: BTreeSet<String> = BTreeSet::new();
    for e in input.entries {
        if let ParsedName::Marker { instance } = parse_name(prefix, &e.name) {
            if e.kind != EntryKind::File || e.uid != input.our_uid {
                unverifiable.insert(instance);
            }
        }
    }
    let instance_state = |instance: &str| -> Result<MarkerState, SkipReason> {
        if unverifiable.contains(instance) {
            return Err(SkipReason::UnverifiableMarker {
                instance: instance.to_owned(),
            });
        }
        match input.markers.get(instance) {
            Some(Ok(s)) => Ok(*s),
            Some(Err(error)) => Err(SkipReason::ProbeFailed {
                error: error.clone(),
            }),
            None => Err(SkipReason::ProbeFailed {
                error: "not probed".into(),
            }),
        }
    };
    for e in input.entries {
        let mut skip = |reason| {
            out.skipped.push(Skipped {
                path: e.path.clone(),
                reason,
            })
        };
        let parsed = parse_name(prefix, &e.name);
        if parsed.instance() == Some(input.own_instance) {
            skip(SkipReason::Ours);
            continue;
        }
        if e.kind == EntryKind::Symlink {
            skip(SkipReason::Symlink);
            continue;
        }
        if e.uid != input.our_uid {
            skip(SkipReason::ForeignOwner { uid: e.uid });
            continue;
        }
        match parsed {
            ParsedName::Marker { instance } => match instance_state(&instance) {
                Err(reason) => skip(reason),
                Ok(MarkerState::Live) => skip(SkipReason::LivePool { instance }),
                Ok(MarkerState::Dead) => out.markers.push(e.clone()),
            },
            ParsedName::Session { instance, .. } => {
                if e.kind != EntryKind::Dir {
                    skip(SkipReason::NotADirectory);
                    continue;
                }
                match instance_state(&instance) {
                    Err(reason) => skip(reason),
                    Ok(MarkerState::Live) => skip(SkipReason::LivePool { instance }),
                    Ok(MarkerState::Dead) => out.dirs.push(PlannedDir {
                        entry: e.clone(),
                        why: Removal::DeadPool { instance },
                    }),
                }
            }
            ParsedName::Other => {
                let Some(pattern) = legacy_match(input.legacy, &e.name) else {
                    skip(SkipReason::UnrecognisedName);
                    continue;
                };
                if e.kind != EntryKind::Dir {
                    skip(SkipReason::NotADirectory);
                    continue;
                }
                match input.profiles.get(&e.name) {
                    None => skip(SkipReason::ProfileProbeFailed {
                        error: "not probed".into(),
                    }),
                    Some(Err(error)) => skip(SkipReason::ProfileProbeFailed {
                        error: error.clone(),
                    }),
                    Some(Ok(ProfileProbe { layout: None, .. })) => skip(SkipReason::NotAProfile),
                    Some(Ok(ProfileProbe { age, .. })) if *age < input.legacy_min_age => {
                        skip(SkipReason::TooRecent {
                            age: *age,
                            min_age: input.legacy_min_age,
                        })
                    }
                    Some(Ok(ProfileProbe {
                        age,
                        layout: Some(layout),
                    })) => out.dirs.push(PlannedDir {
                        entry: e.clone(),
                        why: Removal::Legacy {
                            pattern: pattern.clone(),
                            layout: *layout,
                            age: *age,
                        },
                    }),
                }
            }
        }
    }
    out
}

/// What a startup sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
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
    /// True if the sweep removed nothing, killed nothing and nothing failed (entries it
    /// left alone do not count: they are not its to clean).
    pub fn is_clean(&self) -> bool {
        self.removed.is_empty() && self.killed.is_empty() && self.failed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ProfileLayout;
    use crate::error::BackendErrorKind;
    use crate::sweep::{instance_from, marker_name};

    const UID: u32 = 1000;
    const HOUR: Duration = Duration::from_secs(3600);
    const UUID: &str = "550e8400-e29b-41d4-a716-446655440000";

    fn entry(name: &str, kind: EntryKind, uid: u32) -> DirEntryInfo {
        DirEntryInfo {
            name: name.into(),
            path: PathBuf::from("/tmp").join(name),
            kind,
            uid,
        }
    }

    struct Case {
        legacy: Vec<LegacyPattern>,
        entries: Vec<DirEntryInfo>,
        markers: BTreeMap<String, Result<MarkerState, String>>,
        profiles: BTreeMap<String, Result<ProfileProbe, String>>,
        own: String,
    }

    impl Case {
        fn new(entries: Vec<DirEntryInfo>) -> Self {
            Case {
                legacy: vec![LegacyPattern::uuid("bp-")],
                entries,
                markers: BTreeMap::new(),
                profiles: BTreeMap::new(),
                own: instance_from(3),
            }
        }
        fn plan(&self) -> SweepPlan {
            plan(&PlanInput {
                prefix: "bp-",
                legacy: &self.legacy,
                legacy_min_age: HOUR,
                own_instance: &self.own,
                our_uid: UID,
                entries: &self.entries,
                markers: &self.markers,
                profiles: &self.profiles,
            })
        }
    }

    fn reason(p: &SweepPlan, name: &str) -> Option<SkipReason> {
        p.skipped
            .iter()
            .find(|s| s.path.file_name().is_some_and(|n| n == name))
            .map(|s| s.reason.clone())
    }

    fn planned(p: &SweepPlan) -> Vec<&str> {
        p.dirs.iter().map(|d| d.entry.name.as_str()).collect()
    }

    #[test]
    fn refuses_symlinks_foreign_owners_live_pools_and_files() {
        let live = instance_from(1);
        let dead = instance_from(2);
        let own = instance_from(3);
        let mut c = Case::new(vec![
            entry(&marker_name("bp-", &live), EntryKind::File, UID),
            entry(&format!("bp-{live}-1"), EntryKind::Dir, UID),
            entry(&marker_name("bp-", &dead), EntryKind::File, UID),
            entry(&format!("bp-{dead}-4"), EntryKind::Dir, UID),
            entry(&format!("bp-{own}-1"), EntryKind::Dir, UID),
            entry("bp-link", EntryKind::Symlink, UID),
            entry(&format!("bp-{dead}-5"), EntryKind::Symlink, UID),
            entry(&format!("bp-{dead}-6"), EntryKind::File, UID),
            entry("bp-theirs", EntryKind::Dir, 0),
            entry("bp-notes.txt", EntryKind::File, UID),
        ]);
        c.markers = BTreeMap::from([
            (live.clone(), Ok(MarkerState::Live)),
            (dead.clone(), Ok(MarkerState::Dead)),
        ]);
        let p = c.plan();
        assert_eq!(planned(&p), vec![format!("bp-{dead}-4").as_str()]);
        assert_eq!(
            p.dirs[0].why,
            Removal::DeadPool {
                instance: dead.clone()
            }
        );
        assert_eq!(p.markers.len(), 1);
        assert_eq!(p.markers[0].name, marker_name("bp-", &dead));
        assert_eq!(
            reason(&p, &format!("bp-{live}-1")),
            Some(SkipReason::LivePool {
                instance: live.clone()
            })
        );
        assert!(matches!(
            reason(&p, &marker_name("bp-", &live)),
            Some(SkipReason::LivePool { .. })
        ));
        assert_eq!(reason(&p, "bp-link"), Some(SkipReason::Symlink));
        assert_eq!(
            reason(&p, &format!("bp-{dead}-5")),
            Some(SkipReason::Symlink)
        );
        assert_eq!(
            reason(&p, &format!("bp-{dead}-6")),
            Some(SkipReason::NotADirectory)
        );
        assert_eq!(
            reason(&p, "bp-theirs"),
            Some(SkipReason::ForeignOwner { uid: 0 })
        );
        assert_eq!(
            reason(&p, "bp-notes.txt"),
            Some(SkipReason::UnrecognisedName)
        );
        assert_eq!(reason(&p, &format!("bp-{own}-1")), Some(SkipReason::Ours));
        assert_eq!(p.skipped.len() + p.dirs.len() + p.markers.len(), 10);
    }

    #[test]
    fn a_name_that_is_neither_ours_nor_legacy_is_never_removed() {
        // The defect: everything with the prefix that did not parse was removed.
        let mut c = Case::new(vec![
            entry("bp-legacy-uuid", EntryKind::Dir, UID),
            entry("bp-000000000abc", EntryKind::Dir, UID),
            entry("bp-000000000abc-x", EntryKind::Dir, UID),
            entry(&format!("bp-{UUID}-1"), EntryKind::Dir, UID),
        ]);
        c.legacy.clear();
        let p = c.plan();
        assert!(p.dirs.is_empty(), "{p:?}");
        assert!(p
            .skipped
            .iter()
            .all(|s| s.reason == SkipReason::UnrecognisedName));
        assert_eq!(p.skipped.len(), 4);
    }

    #[test]
    fn a_session_whose_marker_was_not_listed_stays_unless_a_probe_says_dead() {
        // A readdir racing with a starting pool can return its directory and miss its
        // marker: the directory must not be taken for a dead pool's.
        let other = instance_from(7);
        let dir = format!("bp-{other}-1");
        let mut c = Case::new(vec![entry(&dir, EntryKind::Dir, UID)]);
        assert_eq!(
            to_probe("bp-", &c.legacy, &c.own, UID, &c.entries).instances,
            BTreeSet::from([other.clone()]),
            "the executor re-checks the unlisted marker"
        );
        // Not probed: kept.
        assert!(c.plan().dirs.is_empty());
        assert!(matches!(
            reason(&c.plan(), &dir),
            Some(SkipReason::ProbeFailed { .. })
        ));
        // The re-check finds it held: kept.
        c.markers.insert(other.clone(), Ok(MarkerState::Live));
        assert!(c.plan().dirs.is_empty());
        assert_eq!(
            reason(&c.plan(), &dir),
            Some(SkipReason::LivePool {
                instance: other.clone()
            })
        );
        // The re-check fails: kept.
        c.markers.insert(other.clone(), Err("EIO".into()));
        assert!(c.plan().dirs.is_empty());
        // The re-check finds it free or absent: the pool is gone, its directory goes.
        c.markers.insert(other.clone(), Ok(MarkerState::Dead));
        assert_eq!(planned(&c.plan()), vec![dir.as_str()]);
        assert!(c.plan().markers.is_empty(), "no listed marker to remove");
    }

    #[test]
    fn a_marker_that_is_not_a_regular_file_of_ours_makes_its_instance_unverifiable() {
        let inst = instance_from(9);
        for (kind, uid) in [
            (EntryKind::Symlink, UID),
            (EntryKind::Dir, UID),
            (EntryKind::File, 0),
        ] {
            let mut c = Case::new(vec![
                entry(&marker_name("bp-", &inst), kind, uid),
                entry(&format!("bp-{inst}-1"), EntryKind::Dir, UID),
            ]);
            // Even if a probe (through another path) claimed it dead.
            c.markers.insert(inst.clone(), Ok(MarkerState::Dead));
            let p = c.plan();
            assert!(p.dirs.is_empty() && p.markers.is_empty(), "{kind:?} {uid}");
            assert_eq!(
                reason(&p, &format!("bp-{inst}-1")),
                Some(SkipReason::UnverifiableMarker {
                    instance: inst.clone()
                })
            );
        }
    }

    fn probe(age_hours: u64, layout: Option<ProfileLayout>) -> Result<ProfileProbe, String> {
        Ok(ProfileProbe {
            age: HOUR * age_hours as u32,
            layout,
        })
    }

    #[test]
    fn a_legacy_directory_goes_only_if_it_is_an_old_enough_chrome_profile() {
        let names: Vec<String> = (0..6).map(|i| format!("bp-{}{i}", &UUID[..35])).collect();
        let mut c = Case::new(
            names
                .iter()
                .map(|n| entry(n, EntryKind::Dir, UID))
                .collect(),
        );
        c.profiles = BTreeMap::from([
            (names[0].clone(), probe(2, Some(ProfileLayout::Root))),
            (names[1].clone(), probe(2, Some(ProfileLayout::Subdir))),
            (names[2].clone(), probe(2, None)),
            (names[3].clone(), probe(0, Some(ProfileLayout::Root))),
            (names[4].clone(), Err("ELOOP".into())),
            // names[5]: not probed
        ]);
        let p = c.plan();
        assert_eq!(planned(&p), vec![names[0].as_str(), names[1].as_str()]);
        assert_eq!(
            p.dirs[1].why,
            Removal::Legacy {
                pattern: LegacyPattern::uuid("bp-"),
                layout: ProfileLayout::Subdir,
                age: HOUR * 2
            }
        );
        assert_eq!(reason(&p, &names[2]), Some(SkipReason::NotAProfile));
        assert_eq!(
            reason(&p, &names[3]),
            Some(SkipReason::TooRecent {
                age: Duration::ZERO,
                min_age: HOUR
            })
        );
        assert!(matches!(
            reason(&p, &names[4]),
            Some(SkipReason::ProfileProbeFailed { .. })
        ));
        assert!(matches!(
            reason(&p, &names[5]),
            Some(SkipReason::ProfileProbeFailed { .. })
        ));
        // Exactly the minimum age is old enough.
        c.profiles
            .insert(names[3].clone(), probe(1, Some(ProfileLayout::Root)));
        assert!(planned(&c.plan()).contains(&names[3].as_str()));
        // The same names without a configured pattern are not ours.
        c.legacy.clear();
        assert!(c.plan().dirs.is_empty());
    }

    #[test]
    fn a_legacy_name_that_is_a_file_or_symlink_or_foreign_stays() {
        let n = format!("bp-{UUID}");
        for (kind, uid, want) in [
            (EntryKind::File, UID, SkipReason::NotADirectory),
            (EntryKind::Symlink, UID, SkipReason::Symlink),
            (EntryKind::Dir, 0, SkipReason::ForeignOwner { uid: 0 }),
        ] {
            let mut c = Case::new(vec![entry(&n, kind, uid)]);
            c.profiles
                .insert(n.clone(), probe(9, Some(ProfileLayout::Root)));
            assert!(
                to_probe("bp-", &c.legacy, &c.own, UID, &c.entries)
                    .legacy
                    .is_empty(),
                "{kind:?}: not even probed"
            );
            let p = c.plan();
            assert!(p.dirs.is_empty());
            assert_eq!(reason(&p, &n), Some(want));
        }
    }

    #[test]
    fn is_clean_means_nothing_removed_killed_or_failed() {
        let mut r = SweepReport::default();
        assert!(r.is_clean());
        r.skipped.push(Skipped {
            path: "/tmp/bp-x".into(),
            reason: SkipReason::Symlink,
        });
        assert!(r.is_clean(), "skipping is not cleaning");
        let removed = SweepReport {
            removed: vec!["/tmp/bp-x".into()],
            ..SweepReport::default()
        };
        assert!(!removed.is_clean());
        let killed = SweepReport {
            killed: vec![Orphan {
                pid: 1,
                dir: "/tmp/bp-x".into(),
                proof: "p".into(),
            }],
            ..SweepReport::default()
        };
        assert!(!killed.is_clean());
        let failed = SweepReport {
            failed: vec![(
                "/tmp/bp-x".into(),
                BackendError::new("remove", BackendErrorKind::Busy, "busy"),
            )],
            ..SweepReport::default()
        };
        assert!(!failed.is_clean());
    }

    #[test]
    fn every_skip_reason_says_what_and_why() {
        let cases = [
            (SkipReason::Symlink, "symlink"),
            (SkipReason::ForeignOwner { uid: 65534 }, "uid 65534"),
            (
                SkipReason::LivePool {
                    instance: "0000000a11ce".into(),
                },
                "live pool 0000000a11ce",
            ),
            (
                SkipReason::UnverifiableMarker {
                    instance: "00000000beef".into(),
                },
                "marker of pool 00000000beef",
            ),
            (SkipReason::NotADirectory, "not a directory"),
            (SkipReason::Ours, "our own"),
            (
                SkipReason::ProbeFailed {
                    error: "EIO".into(),
                },
                "marker probe failed: EIO",
            ),
            (SkipReason::UnrecognisedName, "legacy pattern"),
            (SkipReason::NotAProfile, "no Chrome profile"),
            (
                SkipReason::TooRecent {
                    age: Duration::from_secs(59),
                    min_age: Duration::from_secs(3600),
                },
                "changed 59s ago, less than legacy_min_age (3600s)",
            ),
            (
                SkipReason::ProfileProbeFailed {
                    error: "ELOOP".into(),
                },
                "could not examine legacy directory: ELOOP",
            ),
        ];
        let mut seen = BTreeSet::new();
        for (r, want) in cases {
            let s = r.to_string();
            assert!(s.contains(want), "{r:?} displays {s:?}");
            assert!(seen.insert(s), "two reasons display alike");
        }
    }
}
