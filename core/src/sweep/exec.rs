//! Carrying a sweep out: list, probe, [`plan()`], then kill proven orphans and remove.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::plan::{plan, to_probe, PlanInput, Removal, SkipReason, Skipped, SweepReport};
use super::{marker_name, parse_name};
use crate::backend::{DirEntryInfo, Filesystem, ProcessLauncher};
use crate::config::PoolConfig;
use crate::error::{BackendError, PoolError};

/// List the root under the pool's prefix and every legacy pattern's prefix, merged by
/// name (sorted).
async fn list(config: &PoolConfig, fs: &dyn Filesystem) -> Result<Vec<DirEntryInfo>, PoolError> {
    let mut prefixes: BTreeSet<&str> = BTreeSet::from([config.prefix.as_str()]);
    prefixes.extend(config.legacy.iter().map(|p| p.prefix.as_str()));
    let mut by_name = BTreeMap::new();
    for p in prefixes {
        for e in fs
            .list_prefixed(&config.root, p)
            .await
            .map_err(PoolError::Sweep)?
        {
            by_name.entry(e.name.clone()).or_insert(e);
        }
    }
    Ok(by_name.into_values().collect())
}

/// Kill the processes the launcher proves to be in `dir`. An error if the search or any
/// kill failed: then the directory must stay.
async fn kill_proven<L: ProcessLauncher>(
    launcher: &L,
    dir: &Path,
    report: &mut SweepReport,
) -> Result<(), BackendError> {
    let mut first_error = None;
    for o in launcher.find_orphans(dir).await? {
        match launcher.kill_orphan(&o).await {
            Ok(true) => {
                tracing::warn!(dir = %dir.display(), pid = o.pid, proof = %o.proof,
                    "startup sweep killed an orphaned browser process");
                report.killed.push(o);
            }
            Ok(false) => {
                tracing::info!(pid = o.pid, "orphan's proof no longer holds; not killed")
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Run the startup sweep of [`crate::sweep`]: list, probe the markers of every instance
/// named in the listing and the legacy candidates, [`plan()`], then for each planned
/// directory kill the launcher's proven processes and remove it, and finally remove the
/// markers of dead pools whose directories are all gone.
///
/// Fails only if the root cannot be listed; everything else that goes wrong is in
/// [`SweepReport::failed`] (and retried by the next start).
pub async fn startup_sweep<L: ProcessLauncher>(
    config: &PoolConfig,
    own_instance: &str,
    launcher: &L,
    fs: &dyn Filesystem,
) -> Result<SweepReport, PoolError> {
    let entries = list(config, fs).await?;
    let our_uid = fs.current_uid();
    // Probes come after the listing (the marker protocol depends on that order).
    let todo = to_probe(
        &config.prefix,
        &config.legacy,
        own_instance,
        our_uid,
        &entries,
    );
    let mut markers = BTreeMap::new();
    for instance in todo.instances {
        let path = config.root.join(marker_name(&config.prefix, &instance));
        let state = fs.probe_marker(&path).await.map_err(|e| e.to_string());
        markers.insert(instance, state);
    }
    let mut profiles = BTreeMap::new();
    for e in &todo.legacy {
        let probe = fs.probe_profile(&e.path).await.map_err(|e| e.to_string());
        profiles.insert(e.name.clone(), probe);
    }
    let plan = plan(&PlanInput {
        prefix: &config.prefix,
        legacy: &config.legacy,
        legacy_min_age: config.legacy_min_age,
        own_instance,
        our_uid,
        entries: &entries,
        markers: &markers,
        profiles: &profiles,
    });
    let mut report = SweepReport {
        skipped: plan
            .skipped
            .into_iter()
            .filter(|s| s.reason != SkipReason::Ours)
            .collect(),
        ..SweepReport::default()
    };
    let mut unfinished: BTreeSet<String> = BTreeSet::new();
    for d in &plan.dirs {
        let path = &d.entry.path;
        let result = match kill_proven(launcher, path, &mut report).await {
            // Never remove a directory whose processes may still be running.
            Err(e) => Err(e),
            Ok(()) => fs.remove_dir_all(path).await,
        };
        match result {
            Ok(()) => {
                if let Removal::Legacy {
                    pattern,
                    layout,
                    age,
                } = &d.why
                {
                    tracing::info!(dir = %path.display(), %pattern, ?layout, age_secs = age.as_secs(),
                        "startup sweep removed a legacy directory");
                }
                report.removed.push(path.clone());
            }
            Err(e) => {
                if let Removal::DeadPool { instance } = &d.why {
                    unfinished.insert(instance.clone());
                }
                report.failed.push((path.clone(), e));
            }
        }
    }
    for m in &plan.markers {
        let instance = parse_name(&config.prefix, &m.name);
        let instance = instance.instance().unwrap_or_default();
        if unfinished.contains(instance) {
            continue; // its directories come first; the next start retries both
        }
        match fs.remove_dead_marker(&m.path).await {
            Ok(true) => report.removed.push(m.path.clone()),
            Ok(false) => report.skipped.push(Skipped {
                path: m.path.clone(),
                reason: SkipReason::LivePool {
                    instance: instance.to_owned(),
                },
            }),
            Err(e) => report.failed.push((m.path.clone(), e)),
        }
    }
    for s in &report.skipped {
        tracing::info!(path = %s.path.display(), reason = %s.reason, "startup sweep skipped");
    }
    for (p, e) in &report.failed {
        tracing::error!(path = %p.display(), error = %e, "startup sweep could not clean; the next start retries");
    }
    if !report.is_clean() {
        tracing::info!(
            removed = report.removed.len(),
            killed = report.killed.len(),
            skipped = report.skipped.len(),
            failed = report.failed.len(),
            "startup sweep done"
        );
    }
    Ok(report)
}
