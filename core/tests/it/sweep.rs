//! The startup sweep on the real filesystem (a temporary root) with the in-crate fake
//! launcher: what it removes, what it leaves and why, and the marker protocol.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use browserpool::sweep::{instance_from, marker_name, session_dir_name, SkipReason};
use browserpool::testing::FakeLauncher;
use browserpool::{
    BackendError, DirEntryInfo, Filesystem, LegacyPattern, MarkerLock, MarkerState, OsFilesystem,
    Pool, PoolConfig, ProfileLayout, ProfileProbe, SessionId,
};

const UUID: &str = "550e8400-e29b-41d4-a716-446655440000";

fn cfg(root: &Path) -> PoolConfig {
    PoolConfig::default()
        .with_max_browsers(2)
        .with_root(root.to_owned())
        .with_prefix("bpx-")
        .with_legacy(vec![LegacyPattern::uuid("bpx-")])
}

use crate::common::pool;

/// Set the modification time of `path` itself (not following a symlink) to `ago` before
/// now.
fn backdate(path: &Path, ago: Duration) {
    let t = SystemTime::now() - ago;
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let ts = rustix::fs::Timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: d.subsec_nanos() as _,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Make `dir` a Chrome profile (`Local State` and `Default/`), everything `ago` old.
fn old_profile(dir: &Path, ago: Duration) {
    std::fs::create_dir_all(dir.join("Default")).unwrap();
    std::fs::write(dir.join("Local State"), b"{}").unwrap();
    backdate(&dir.join("Default"), ago);
    backdate(&dir.join("Local State"), ago);
    backdate(dir, ago);
}

const TWO_HOURS: Duration = Duration::from_secs(7200);

fn reason(report: &browserpool::SweepReport, p: &Path) -> Option<SkipReason> {
    report
        .skipped
        .iter()
        .find(|s| s.path == p)
        .map(|s| s.reason.clone())
}

#[tokio::test]
async fn startup_sweep_removes_a_dead_pools_leftovers_and_refuses_the_rest() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("precious"), b"keep").unwrap();
    old_profile(outside.path(), TWO_HOURS);

    // A live pool on the same host, with a session.
    let (live, _ll) = pool(cfg(r)).await;
    let live_session = live.acquire().await.unwrap();
    let live_dir = live.session_dir(live_session.id());

    // A crashed pool: its marker exists but nobody holds its lock; one dir with an orphan.
    let dead = instance_from(0xdead);
    std::fs::write(r.join(marker_name("bpx-", &dead)), b"").unwrap();
    let dead_dir = r.join(session_dir_name("bpx-", &dead, SessionId(7)));
    std::fs::create_dir_all(dead_dir.join("profile/Default")).unwrap();
    // Legacy directories (as chromelambda-<uuid>): one an old profile (removed), one an
    // old profile in profile/ (removed), one recent (kept: a legacy server may still
    // run), one without a profile (kept), one whose profile/ is a symlink to a profile
    // outside (kept: never followed).
    let legacy = |c: char| r.join(format!("bpx-{}{c}", &UUID[..35]));
    let (old_root, old_sub, recent, empty, linked) = (
        legacy('1'),
        legacy('2'),
        legacy('3'),
        legacy('4'),
        legacy('5'),
    );
    old_profile(&old_root, TWO_HOURS);
    std::fs::create_dir(&old_sub).unwrap();
    std::fs::create_dir(old_sub.join("profile")).unwrap();
    symlink("somehost-4242", old_sub.join("profile/SingletonLock")).unwrap();
    backdate(&old_sub.join("profile/SingletonLock"), TWO_HOURS);
    backdate(&old_sub.join("profile"), TWO_HOURS);
    backdate(&old_sub, TWO_HOURS);
    old_profile(&recent, Duration::ZERO);
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("notes"), b"x").unwrap();
    backdate(&empty, TWO_HOURS);
    std::fs::create_dir(&linked).unwrap();
    symlink(outside.path(), linked.join("profile")).unwrap();
    backdate(&linked, TWO_HOURS);
    // Names with our prefix that are neither ours nor legacy.
    let notes = r.join("bpx-notes");
    std::fs::create_dir(&notes).unwrap();
    old_profile(&notes, TWO_HOURS);
    let not_uuid = r.join(format!("bpx-{UUID}-x"));
    old_profile(&not_uuid, TWO_HOURS);
    // A symlink with our prefix, and one with a legacy name, pointing at something
    // precious.
    symlink(outside.path(), r.join("bpx-link")).unwrap();
    let legacy_link = legacy('6');
    symlink(outside.path(), &legacy_link).unwrap();
    // Another user's directory with our prefix (we run as root in CI; skip the chown
    // part if we cannot chown, but then the entry is ours).
    let foreign = legacy('7');
    old_profile(&foreign, TWO_HOURS);
    let can_chown = std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).is_ok();

    let launcher = FakeLauncher::new();
    for (dir, pid) in [(&dead_dir, 4242), (&old_root, 4343)] {
        launcher.add_orphans(
            dir,
            vec![browserpool::Orphan {
                pid,
                dir: dir.clone(),
                proof: "test proof".into(),
            }],
        );
    }
    let second = Pool::new(cfg(r), launcher.clone()).await.unwrap();
    let report = second.sweep_report().clone();

    for gone in [&dead_dir, &old_root, &old_sub] {
        assert!(!gone.exists(), "{gone:?} {report:#?}");
        assert!(report.removed.contains(gone), "{gone:?}");
    }
    assert!(!r.join(marker_name("bpx-", &dead)).exists());
    let mut killed: Vec<u32> = launcher.killed_orphans().iter().map(|o| o.pid).collect();
    killed.sort();
    assert_eq!(killed, vec![4242, 4343]);
    assert_eq!(second.stats().swept_processes, 2);

    assert!(
        live_dir.exists(),
        "a live pool's directory is never touched"
    );
    assert!(live.session(live_session.id()).is_ok());
    for kept in [&recent, &empty, &linked, &notes, &not_uuid] {
        assert!(kept.exists(), "{kept:?}");
    }
    assert!(r.join("bpx-link").symlink_metadata().is_ok());
    assert!(legacy_link.symlink_metadata().is_ok());
    assert!(
        outside.path().join("precious").exists(),
        "symlink not followed"
    );
    assert!(matches!(
        reason(&report, &live_dir),
        Some(SkipReason::LivePool { .. })
    ));
    assert!(matches!(
        reason(&report, &recent),
        Some(SkipReason::TooRecent { .. })
    ));
    assert_eq!(reason(&report, &empty), Some(SkipReason::NotAProfile));
    assert_eq!(reason(&report, &linked), Some(SkipReason::NotAProfile));
    assert_eq!(reason(&report, &notes), Some(SkipReason::UnrecognisedName));
    assert_eq!(
        reason(&report, &not_uuid),
        Some(SkipReason::UnrecognisedName)
    );
    assert_eq!(
        reason(&report, &r.join("bpx-link")),
        Some(SkipReason::Symlink)
    );
    assert_eq!(reason(&report, &legacy_link), Some(SkipReason::Symlink));
    if can_chown {
        assert!(foreign.exists());
        assert_eq!(
            reason(&report, &foreign),
            Some(SkipReason::ForeignOwner { uid: 65534 })
        );
    }
    assert!(report.failed.is_empty(), "{report:#?}");
    drop(second);
    drop(live);
    assert!(
        !live_dir.exists(),
        "and the live pool cleans its own on drop"
    );
}

#[tokio::test]
async fn without_a_legacy_pattern_nothing_but_our_own_names_is_removed() {
    // The defect: every directory whose name started with the prefix and did not parse
    // was removed (with a `tmp` prefix: every Python tempfile directory of this user).
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let names = [
        format!("bpx-{UUID}"),
        "bpx-legacy-0000".to_owned(),
        "bpx-000000000abc".to_owned(),
        "bpx-000000000ABC-1".to_owned(),
        "bpx-1".to_owned(),
    ];
    for n in &names {
        old_profile(&r.join(n), TWO_HOURS);
    }
    let (p, _l) = pool(cfg(r).with_legacy(Vec::new())).await;
    let report = p.sweep_report();
    assert!(report.removed.is_empty(), "{report:#?}");
    for n in &names {
        assert!(r.join(n).exists(), "{n}");
        assert_eq!(
            reason(report, &r.join(n)),
            Some(SkipReason::UnrecognisedName)
        );
    }
}

#[tokio::test]
async fn the_sweep_sums_up_in_the_log_only_when_it_cleaned_something() {
    // An operator reading the log after a restart sees one line saying what the sweep
    // cleaned, and no such line from every clean start.
    let (_guard, logs) = crate::common::capture(tracing::Level::INFO);
    let clean_root = tempfile::tempdir().unwrap();
    let (p, _l) = pool(cfg(clean_root.path())).await;
    assert!(p.sweep_report().is_clean());
    p.shutdown().await;
    let text = crate::common::captured(&logs);
    assert!(!text.contains("startup sweep done"), "{text}");

    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    old_profile(&r.join(format!("bpx-{UUID}")), TWO_HOURS);
    let (p, _l) = pool(cfg(r)).await;
    assert_eq!(
        p.sweep_report().removed,
        vec![r.join(format!("bpx-{UUID}"))]
    );
    p.shutdown().await;
    let text = crate::common::captured(&logs);
    let done: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("startup sweep done"))
        .collect();
    assert_eq!(done.len(), 1, "{text}");
    assert!(done[0].contains("removed=1"), "{text}");
}

#[tokio::test]
async fn a_directory_whose_processes_could_not_be_killed_stays() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let dead_dir = r.join(session_dir_name(
        "bpx-",
        &instance_from(0xdead),
        SessionId(1),
    ));
    std::fs::create_dir(&dead_dir).unwrap();
    let old = r.join(format!("bpx-{UUID}"));
    old_profile(&old, TWO_HOURS);
    let launcher = FakeLauncher::new();
    for dir in [&dead_dir, &old] {
        launcher.add_orphans(
            dir,
            vec![browserpool::Orphan {
                pid: 77,
                dir: dir.clone(),
                proof: "test proof".into(),
            }],
        );
    }
    launcher.fail_orphan_kills(true);
    let p = Pool::new(cfg(r), launcher.clone()).await.unwrap();
    let report = p.sweep_report();
    assert!(dead_dir.exists() && old.exists(), "{report:#?}");
    let failed: Vec<&PathBuf> = report.failed.iter().map(|(p, _)| p).collect();
    assert_eq!(failed, vec![&dead_dir, &old]);
    assert!(report.removed.is_empty());
}

#[tokio::test]
async fn a_restart_after_a_crash_sweeps_what_the_crashed_pool_left() {
    let root = tempfile::tempdir().unwrap();
    let (first, _l) = pool(cfg(root.path())).await;
    let s = first.acquire().await.unwrap();
    let dir = first.session_dir(s.id());
    // A real crash runs no destructors.
    std::mem::forget(first);
    // Its marker lock is still held by this process (the "crashed" pool's file handle
    // leaked with it), so it still counts as live.
    let (second, _l2) = pool(cfg(root.path())).await;
    assert!(
        dir.exists(),
        "a pool whose lock is still held is live: not swept"
    );
    drop(second);
    // Now the "crashed process" is gone: the kernel would release its lock. We cannot
    // kill our own process, so replace the marker with a fresh, unlocked file.
    let marker = root
        .path()
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "lock"))
        .unwrap();
    std::fs::remove_file(&marker).unwrap();
    std::fs::write(&marker, b"").unwrap();
    let (third, _l3) = pool(cfg(root.path())).await;
    assert!(!dir.exists(), "swept after the owner died");
    assert!(third.sweep_report().removed.contains(&dir));
    assert!(!marker.exists(), "and its dead marker");
}

// ------------------------------------------------------------ the marker protocol

/// The host filesystem, except that listings miss every marker: what a `readdir` racing
/// with a starting pool may return (the marker was made before its directory, but the
/// listing returned the directory and not the marker).
struct MissesMarkers(OsFilesystem);

#[async_trait]
impl Filesystem for MissesMarkers {
    fn current_uid(&self) -> u32 {
        self.0.current_uid()
    }
    async fn create_dir(&self, path: &Path) -> Result<(), BackendError> {
        self.0.create_dir(path).await
    }
    async fn list_prefixed(
        &self,
        root: &Path,
        prefix: &str,
    ) -> Result<Vec<DirEntryInfo>, BackendError> {
        let mut v = self.0.list_prefixed(root, prefix).await?;
        v.retain(|e| !e.name.ends_with(".lock"));
        Ok(v)
    }
    async fn remove_dir_all(&self, path: &Path) -> Result<(), BackendError> {
        self.0.remove_dir_all(path).await
    }
    fn remove_dir_all_sync(&self, path: &Path) -> Result<(), BackendError> {
        self.0.remove_dir_all_sync(path)
    }
    async fn remove_dead_marker(&self, path: &Path) -> Result<bool, BackendError> {
        self.0.remove_dead_marker(path).await
    }
    async fn lock_marker(&self, path: &Path) -> Result<MarkerLock, BackendError> {
        self.0.lock_marker(path).await
    }
    async fn probe_marker(&self, path: &Path) -> Result<MarkerState, BackendError> {
        self.0.probe_marker(path).await
    }
    async fn probe_profile(&self, path: &Path) -> Result<ProfileProbe, BackendError> {
        self.0.probe_profile(path).await
    }
}

#[tokio::test]
async fn a_listing_that_misses_a_live_pools_marker_does_not_get_its_sessions_swept() {
    let root = tempfile::tempdir().unwrap();
    let (live, _l) = pool(cfg(root.path())).await;
    let lease = live.acquire().await.unwrap();
    let dir = live.session_dir(lease.id());
    let second = Pool::builder(cfg(root.path()), FakeLauncher::new())
        .filesystem(Arc::new(MissesMarkers(OsFilesystem::new())))
        .build()
        .await
        .unwrap();
    assert!(dir.exists(), "{:#?}", second.sweep_report());
    assert!(matches!(
        reason(second.sweep_report(), &dir),
        Some(SkipReason::LivePool { .. })
    ));
    assert!(live.session(lease.id()).is_ok());
    // And once that pool is gone (its marker absent), the same listing may sweep its
    // leftover: the re-check found nobody.
    std::fs::create_dir(root.path().join(session_dir_name(
        "bpx-",
        &instance_from(0xdead),
        SessionId(3),
    )))
    .unwrap();
    let third = Pool::builder(cfg(root.path()), FakeLauncher::new())
        .filesystem(Arc::new(MissesMarkers(OsFilesystem::new())))
        .build()
        .await
        .unwrap();
    assert_eq!(third.sweep_report().removed.len(), 1);
    assert!(dir.exists());
}

fn flock_file(path: &Path, op: rustix::fs::FlockOperation) -> std::fs::File {
    let f = std::fs::File::open(path).unwrap();
    rustix::fs::flock(&f, op).unwrap();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_a_marker_waits_out_a_probe_instead_of_failing() {
    // A probe (or a sweeper removing a dead marker) holds the lock for an instant; a
    // pool creating that marker at the same instant must not fail to start.
    let root = tempfile::tempdir().unwrap();
    let marker = root
        .path()
        .join(marker_name("bpx-", &instance_from(0xbeef)));
    std::fs::write(&marker, b"").unwrap();
    for op in [
        rustix::fs::FlockOperation::LockShared,
        rustix::fs::FlockOperation::LockExclusive,
    ] {
        let held = flock_file(&marker, op);
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
        });
        let lock = OsFilesystem::new().lock_marker(&marker).await;
        release.join().unwrap();
        let lock = lock.unwrap_or_else(|e| panic!("{op:?}: {e}"));
        assert_eq!(
            OsFilesystem::new().probe_marker(&marker).await.unwrap(),
            MarkerState::Live
        );
        drop(lock);
    }
    // A holder that stays (another live pool with the same instance id) is refused,
    // with an error that says so.
    let held = flock_file(&marker, rustix::fs::FlockOperation::LockExclusive);
    let err = OsFilesystem::new().lock_marker(&marker).await.unwrap_err();
    assert!(err.to_string().contains("another live pool"), "{err}");
    drop(held);
}

#[tokio::test]
async fn markers_are_probed_and_removed_only_as_regular_files_under_their_lock() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let fs = OsFilesystem::new();
    let m = |n: u64| r.join(marker_name("bpx-", &instance_from(n)));
    // Missing: dead, and nothing to remove.
    assert_eq!(fs.probe_marker(&m(1)).await.unwrap(), MarkerState::Dead);
    assert!(fs.remove_dead_marker(&m(1)).await.unwrap());
    // Held by a live pool: live, and left alone.
    let lock = fs.lock_marker(&m(2)).await.unwrap();
    assert_eq!(fs.probe_marker(&m(2)).await.unwrap(), MarkerState::Live);
    assert!(!fs.remove_dead_marker(&m(2)).await.unwrap());
    assert!(m(2).exists());
    drop(lock);
    // Free: dead, removed.
    assert_eq!(fs.probe_marker(&m(2)).await.unwrap(), MarkerState::Dead);
    assert!(fs.remove_dead_marker(&m(2)).await.unwrap());
    assert!(!m(2).exists());
    // A symlink, a directory or a fifo at a marker's path is not a marker: an error,
    // never followed, never removed, and the fifo does not hang the probe.
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("target.lock");
    std::fs::write(&target, b"").unwrap();
    symlink(&target, m(3)).unwrap();
    std::fs::create_dir(m(4)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        m(5),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    for n in [3, 4, 5] {
        assert!(fs.probe_marker(&m(n)).await.is_err(), "{n}");
        assert!(fs.remove_dead_marker(&m(n)).await.is_err(), "{n}");
        assert!(fs.lock_marker(&m(n)).await.is_err(), "{n}");
        assert!(m(n).symlink_metadata().is_ok(), "{n} still there");
    }
    assert!(target.exists());
}

#[tokio::test]
async fn profile_probes_find_both_layouts_never_follow_symlinks_and_measure_age() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let fs = OsFilesystem::new();
    let hour = Duration::from_secs(3600);

    let at_root = r.join("a");
    old_profile(&at_root, TWO_HOURS);
    let p = fs.probe_profile(&at_root).await.unwrap();
    assert_eq!(p.layout, Some(ProfileLayout::Root));
    assert!(p.age >= TWO_HOURS - Duration::from_secs(60) && p.age < TWO_HOURS + hour);

    // Each marker alone is enough, in profile/ too; the newest time counts.
    for (i, make) in ["SingletonLock", "Local State", "Default"]
        .iter()
        .enumerate()
    {
        let d = r.join(format!("sub{i}"));
        let prof = d.join("profile");
        std::fs::create_dir_all(&prof).unwrap();
        let entry = prof.join(make);
        match *make {
            "SingletonLock" => symlink("host-1", &entry).unwrap(),
            "Local State" => std::fs::write(&entry, b"{}").unwrap(),
            _ => std::fs::create_dir(&entry).unwrap(),
        }
        backdate(&prof, TWO_HOURS);
        backdate(&d, TWO_HOURS);
        // The entry itself is recent: the directory is recent.
        let p = fs.probe_profile(&d).await.unwrap();
        assert_eq!(p.layout, Some(ProfileLayout::Subdir), "{make}");
        assert!(p.age < hour, "{make}: {:?}", p.age);
        backdate(&entry, TWO_HOURS);
        let p = fs.probe_profile(&d).await.unwrap();
        assert!(p.age > hour, "{make}: {:?}", p.age);
    }

    // Wrong kinds do not count: `Local State` a directory, `Default` a file or a symlink
    // to a directory.
    let wrong = r.join("wrong");
    std::fs::create_dir_all(wrong.join("Local State")).unwrap();
    std::fs::write(wrong.join("Default"), b"").unwrap();
    assert_eq!(fs.probe_profile(&wrong).await.unwrap().layout, None);
    let wrong2 = r.join("wrong2");
    std::fs::create_dir(&wrong2).unwrap();
    symlink(&at_root, wrong2.join("Default")).unwrap();
    symlink(&at_root, wrong2.join("profile")).unwrap();
    assert_eq!(fs.probe_profile(&wrong2).await.unwrap().layout, None);

    // The path itself must be a real directory.
    let link = r.join("link");
    symlink(&at_root, &link).unwrap();
    assert!(fs.probe_profile(&link).await.is_err());
    std::fs::write(r.join("file"), b"").unwrap();
    assert!(fs.probe_profile(&r.join("file")).await.is_err());
    assert!(fs.probe_profile(&r.join("missing")).await.is_err());

    // A time in the future is age zero.
    let future = r.join("future");
    old_profile(&future, Duration::ZERO);
    let t = SystemTime::now() + TWO_HOURS;
    std::fs::File::open(&future)
        .unwrap()
        .set_modified(t)
        .unwrap();
    assert_eq!(fs.probe_profile(&future).await.unwrap().age, Duration::ZERO);
}
