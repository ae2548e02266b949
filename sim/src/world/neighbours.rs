//! What a host holds before the pool under test first starts: neighbours the pool must
//! never touch, and an old server's leftovers it should clean.
//!
//! Neighbours are recorded as [`Owner::Neighbour`], so any kill or removal of one is a
//! `foreign-touch` violation. None of them allocates a PID beyond the live second pool
//! (its server and two trees), so adding a neighbour does not shift the PIDs of a run.

use std::path::Path;
use std::time::Duration;

use browserpool::sweep::marker_name;
use browserpool::EntryKind;

use super::{KillBehaviour, Owner, World};

/// The instance id of the live second pool.
pub const SECOND_POOL: &str = "0000000a11ce";

/// A UUID for the `k`-th legacy leftover (deterministic, canonical form).
pub fn legacy_uuid(k: u32) -> String {
    format!("1e9ac7{:02x}-0000-4000-8000-{:012x}", k % 256, k)
}

/// A month, long before any minimum age.
const LONG_AGO: Duration = Duration::from_secs(30 * 86_400);

/// Place the neighbours under `root` with our `prefix`:
/// - another user's directory (`<prefix>other-user`);
/// - a symlink (`<prefix>link`);
/// - a live second pool of the same user ([`SECOND_POOL`]: its server holds its
///   marker, two directories with two live browser trees);
/// - a directory of ours whose name is neither a session of ours nor a legacy shape
///   (`<prefix>notes`), an old Chrome profile: only its name protects it;
/// - a recent Chrome profile with a legacy name, written by an old server that is
///   still running (a rolling deploy): only its age protects it;
/// - an old directory with a legacy name that is not a Chrome profile: only its
///   contents protect it.
pub fn place_neighbours(w: &mut World, root: &Path, prefix: &str) {
    let uid = w.config().uid;
    w.place(
        &root.join(format!("{prefix}other-user")),
        EntryKind::Dir,
        uid + 1,
        Owner::Neighbour,
    );
    w.place(
        &root.join(format!("{prefix}link")),
        EntryKind::Symlink,
        uid,
        Owner::Neighbour,
    );
    if let Some(holder) = w.spawn_unrelated("browserpool-server (second pool)") {
        let marker = root.join(marker_name(prefix, SECOND_POOL));
        let _ = w.lock_marker(&marker, holder, Owner::Neighbour);
        for n in 1..=2 {
            let dir = root.join(format!("{prefix}{SECOND_POOL}-{n}"));
            w.place(&dir, EntryKind::Dir, uid, Owner::Neighbour);
            let _ = w.spawn_tree(&dir, Owner::Neighbour, 12, KillBehaviour::default());
        }
    }
    let notes = root.join(format!("{prefix}notes"));
    w.place(&notes, EntryKind::Dir, uid, Owner::Neighbour);
    w.mark_profile(&notes);
    w.backdate(&notes, LONG_AGO);
    let in_use = root.join(format!("{prefix}0a11ce00-0000-4000-8000-000000000001"));
    w.place(&in_use, EntryKind::Dir, uid, Owner::Neighbour);
    w.mark_profile(&in_use);
    w.keep_written(&in_use);
    let not_profile = root.join(format!("{prefix}0a11ce00-0000-4000-8000-000000000002"));
    w.place(&not_profile, EntryKind::Dir, uid, Owner::Neighbour);
    w.backdate(&not_profile, LONG_AGO);
}

/// Place `count` leftovers of an old server under `root`: `<prefix><uuid>` Chrome
/// profiles ([`legacy_uuid`]) last changed `age` ago, whose `SingletonLock`s name PIDs
/// from `stale_pids` (round robin), which now belong to unrelated processes.
pub fn place_legacy(
    w: &mut World,
    root: &Path,
    prefix: &str,
    count: u32,
    age: Duration,
    stale_pids: &[u32],
) {
    let uid = w.config().uid;
    for k in 0..count {
        let dir = root.join(format!("{prefix}{}", legacy_uuid(k)));
        w.place(&dir, EntryKind::Dir, uid, Owner::Legacy);
        w.mark_profile(&dir);
        if let Some(p) = stale_pids.get(k as usize % stale_pids.len().max(1)) {
            w.set_singleton(&dir, *p);
        }
        w.backdate(&dir, age);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use browserpool::LegacyPattern;

    #[test]
    fn legacy_names_match_the_uuid_pattern_and_neighbour_names_are_distinct() {
        let p = LegacyPattern::uuid("chromelambda-");
        for k in [0, 1, 255, 256, 70_000] {
            assert!(
                p.matches(&format!("chromelambda-{}", legacy_uuid(k))),
                "{k}"
            );
        }
        assert_ne!(legacy_uuid(1), legacy_uuid(257));
    }
}
