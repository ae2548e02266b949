//! Building a pool: a fresh instance id, and the startup sweep of what a crashed
//! predecessor left under the root.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::{Filesystem, ProcessLauncher};
use crate::config::PoolConfig;
use crate::error::PoolError;
use crate::sweep::{self, SweepReport};

pub(super) fn fresh_instance() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mix = (u64::from(std::process::id()) << 32)
        ^ nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // One SplitMix64 step, so that close inputs give unrelated ids.
    let mut state = mix;
    sweep::instance_from(crate::rng::splitmix64(&mut state))
}

/// Run the startup sweep: list, probe markers, plan, then kill proven orphans and remove.
pub async fn startup_sweep<L: ProcessLauncher>(
    config: &PoolConfig,
    own_instance: &str,
    launcher: &L,
    fs: &dyn Filesystem,
) -> Result<SweepReport, PoolError> {
    let entries = fs
        .list_prefixed(&config.root, &config.prefix)
        .await
        .map_err(PoolError::Sweep)?;
    let mut markers = BTreeMap::new();
    for e in &entries {
        if let sweep::ParsedName::Marker { instance } = sweep::parse_name(&config.prefix, &e.name) {
            if e.kind == crate::backend::EntryKind::File && instance != own_instance {
                let st = fs.probe_marker(&e.path).await.map_err(|e| e.to_string());
                markers.insert(instance, st);
            }
        }
    }
    let plan = sweep::plan(
        &config.prefix,
        own_instance,
        fs.current_uid(),
        &entries,
        &markers,
    );
    let mut report = SweepReport {
        skipped: plan
            .skipped
            .into_iter()
            .filter(|s| s.reason != sweep::SkipReason::Ours)
            .collect(),
        ..SweepReport::default()
    };
    for d in &plan.dirs {
        match launcher.find_orphans(&d.path).await {
            Ok(orphans) => {
                for o in orphans {
                    match launcher.kill_orphan(&o).await {
                        Ok(true) => {
                            tracing::warn!(dir = %d.path.display(), pid = o.pid, proof = %o.proof,
                                "startup sweep killed an orphaned browser process");
                            report.killed.push(o);
                        }
                        Ok(false) => {
                            tracing::info!(
                                pid = o.pid,
                                "orphan's proof no longer holds; not killed"
                            )
                        }
                        Err(e) => report.failed.push((d.path.clone(), e)),
                    }
                }
            }
            Err(e) => {
                report.failed.push((d.path.clone(), e));
                continue; // never remove a directory whose processes we could not check
            }
        }
        match fs.remove_dir_all(&d.path).await {
            Ok(()) => report.removed.push(d.path.clone()),
            Err(e) => report.failed.push((d.path.clone(), e)),
        }
    }
    for m in &plan.markers {
        match fs.remove_file(&m.path).await {
            Ok(()) => report.removed.push(m.path.clone()),
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
