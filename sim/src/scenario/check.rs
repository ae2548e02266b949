//! What [`Scenario::validate`] checks: every number the engine turns into a time, a
//! count or a probability, so that no scenario file can make a run panic, hang on an
//! absurd value or silently mean something else.

use std::path::PathBuf;

use super::{Faults, Host, PoolSpec, Scenario, Workload};

/// Ten years: longer than any replay needs, short enough that times in milliseconds
/// never overflow.
const MAX_HOURS: f64 = 87_600.0;
const MAX_SECS: f64 = MAX_HOURS * 3600.0;
/// The resolution of pool times.
const MIN_SECS: f64 = 0.001;
/// Linux's largest `pid_max`.
const MAX_PIDS: u32 = 4_194_304;

struct Check(Result<(), String>);

impl Check {
    fn fail(&mut self, msg: String) {
        if self.0.is_ok() {
            self.0 = Err(msg);
        }
    }

    /// `field` is a finite number in `lo..=hi`.
    fn range(&mut self, field: &str, v: f64, lo: f64, hi: f64) {
        if !(v.is_finite() && (lo..=hi).contains(&v)) {
            self.fail(format!(
                "{field} = {v} is out of range: use a number from {lo} to {hi}"
            ));
        }
    }

    fn secs(&mut self, field: &str, v: f64) {
        self.range(field, v, 0.0, MAX_SECS);
    }

    fn probability(&mut self, field: &str, v: f64) {
        self.range(field, v, 0.0, 1.0);
    }

    fn ordered<T: PartialOrd + std::fmt::Display>(&mut self, min: (&str, T), max: (&str, T)) {
        if min.1 > max.1 {
            self.fail(format!(
                "{} = {} is larger than {} = {}: the minimum must not exceed the maximum",
                min.0, min.1, max.0, max.1
            ));
        }
    }
}

fn pool(c: &mut Check, side: &str, p: &PoolSpec, host: &Host) {
    let f = |name: &str| format!("[{side}] {name}");
    // (key, value, whether 0 means "none" rather than being refused)
    for (name, v, zero_is_none) in [
        ("idle_timeout_secs", p.idle_timeout_secs, true),
        ("reap_interval_secs", p.reap_interval_secs, false),
        ("tick_secs", p.tick_secs, false),
        ("acquire_timeout_secs", p.acquire_timeout_secs, false),
        ("max_lifetime_secs", p.max_lifetime_secs, true),
        ("launch_timeout_secs", p.launch_timeout_secs, false),
        ("kill_grace_secs", p.kill_grace_secs, true),
        ("kill_timeout_secs", p.kill_timeout_secs, false),
        ("legacy_min_age_secs", p.legacy_min_age_secs, false),
        ("spare_max_age_secs", p.spare_max_age_secs, false),
        ("memory_interval_secs", p.memory_interval_secs, false),
    ] {
        c.secs(&f(name), v);
        // Times are kept in whole milliseconds: a positive value below 1 ms would
        // silently become 0.
        if v < MIN_SECS && (v > 0.0 || !zero_is_none) {
            let zero = if zero_is_none { "0 (none) or " } else { "" };
            c.fail(format!(
                "{} = {v} is below 1 ms: use {zero}at least {MIN_SECS}",
                f(name)
            ));
        }
    }
    c.ordered(
        (&f("tick_secs"), p.tick_secs),
        (&f("reap_interval_secs"), p.reap_interval_secs),
    );
    c.range(
        &f("release_grace_secs"),
        p.release_grace_secs,
        -1.0,
        MAX_SECS,
    );
    c.range(&f("max_browsers"), p.max_browsers as f64, 1.0, 100_000.0);
    c.range(&f("kill_attempts"), f64::from(p.kill_attempts), 1.0, 1000.0);
    c.range(&f("spares"), p.spares as f64, 0.0, 100_000.0);
    for (name, v) in [
        ("memory_budget_mib", p.memory_budget_mib),
        ("max_session_memory_mib", p.max_session_memory_mib),
    ] {
        c.range(&f(name), v as f64, 0.0, 1_073_741_824.0);
    }
    if c.0.is_ok() {
        let config = p.to_config(PathBuf::from(&host.root), &host.prefix);
        if let Err(e) = config.validate() {
            c.fail(format!("[{side}]: {e}"));
        }
    }
}

fn workload(c: &mut Check, w: &Workload) {
    c.range("[workload] sessions_per_day", w.sessions_per_day, 0.0, 1e6);
    c.probability("[workload] daily_cycle", w.daily_cycle);
    c.range(
        "[workload] burst_every_hours",
        w.burst_every_hours,
        0.0,
        MAX_HOURS,
    );
    c.range(
        "[workload] burst_size",
        f64::from(w.burst_size),
        0.0,
        100_000.0,
    );
    c.range("[workload] ops_max", f64::from(w.ops_max), 0.0, 1e6);
    c.ordered(
        ("[workload] ops_min", w.ops_min),
        ("[workload] ops_max", w.ops_max),
    );
    for (lo, hi, a, b) in [
        ("op_secs_min", "op_secs_max", w.op_secs_min, w.op_secs_max),
        (
            "think_secs_min",
            "think_secs_max",
            w.think_secs_min,
            w.think_secs_max,
        ),
        (
            "long_op_secs_min",
            "long_op_secs_max",
            w.long_op_secs_min,
            w.long_op_secs_max,
        ),
    ] {
        let (lo, hi) = (format!("[workload] {lo}"), format!("[workload] {hi}"));
        c.secs(&lo, a);
        c.secs(&hi, b);
        c.ordered((&lo, a), (&hi, b));
    }
    c.probability("[workload] long_op_probability", w.long_op_probability);
    let weights = [
        ("destroy", w.destroy),
        ("crash", w.crash),
        ("disconnect", w.disconnect),
        ("forget", w.forget),
    ];
    for (name, v) in weights {
        c.range(&format!("[workload] {name}"), v, 0.0, 1e9);
    }
    if c.0.is_ok() && weights.iter().map(|(_, v)| v).sum::<f64>() <= 0.0 {
        c.fail("[workload] destroy, crash, disconnect and forget are all 0: give at least one a positive weight".into());
    }
}

fn faults(c: &mut Check, f: &Faults) {
    for (name, v) in [
        ("launch_fail", f.launch_fail),
        ("launch_hang", f.launch_hang),
        ("kill_escalation", f.kill_escalation),
        ("kill_slow", f.kill_slow),
        ("create_fail", f.create_fail),
        ("remove_fail", f.remove_fail),
        ("crash_during_sweep", f.crash_during_sweep),
    ] {
        c.probability(&format!("[faults] {name}"), v);
    }
    c.range(
        "[faults] browser_crash_per_day",
        f.browser_crash_per_day,
        0.0,
        1e4,
    );
    c.range(
        "[faults] server_crash_per_day",
        f.server_crash_per_day,
        0.0,
        1e4,
    );
    c.secs("[faults] restart_delay_secs_max", f.restart_delay_secs_max);
}

fn host(c: &mut Check, h: &Host) {
    if !h.root.starts_with('/') {
        c.fail(format!(
            "[host] root = {:?} is not an absolute path",
            h.root
        ));
    }
    c.range(
        "[host] pid_space",
        f64::from(h.pid_space),
        64.0,
        f64::from(MAX_PIDS),
    );
    c.range(
        "[host] legacy_leftovers",
        f64::from(h.legacy_leftovers),
        0.0,
        10_000.0,
    );
    c.range(
        "[host] legacy_age_hours",
        h.legacy_age_hours,
        0.0,
        MAX_HOURS,
    );
    for (name, v) in [
        ("rss_base_mib", h.rss_base_mib),
        ("rss_per_day_mib", h.rss_per_day_mib),
        ("rss_per_op_kib", h.rss_per_op_kib),
    ] {
        c.range(&format!("[host] {name}"), v as f64, 0.0, 1_048_576.0);
    }
    c.range("[host] pss_percent", h.pss_percent as f64, 1.0, 100.0);
}

pub(super) fn scenario(sc: &Scenario) -> Result<(), String> {
    let mut c = Check(Ok(()));
    c.range("duration_hours", sc.duration_hours, 0.0, MAX_HOURS);
    c.range("quiet_hours", sc.quiet_hours, 0.0, MAX_HOURS);
    c.ordered(
        ("quiet_hours", sc.quiet_hours),
        ("duration_hours", sc.duration_hours),
    );
    host(&mut c, &sc.host);
    pool(&mut c, "managed", &sc.managed, &sc.host);
    pool(&mut c, "unmanaged", &sc.unmanaged, &sc.host);
    workload(&mut c, &sc.workload);
    faults(&mut c, &sc.faults);
    c.0
}
