//! `/metrics` in the Prometheus text format (0.0.4), rendered with `prometheus-client`.
//!
//! Two parts: what the server observes as it goes (latency histograms, connection and
//! message counters) lives in a persistent registry; what the pool knows (sessions by
//! state, ends by reason, processes, memory, queue, sweep) is read at scrape time into a
//! per-scrape registry, so the figures are never stale and never double-counted.

use std::time::Duration;

use browserpool::{PoolMemory, PoolStats, SweepReport};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

type Labels = [(&'static str, &'static str); 1];

/// The server's own instruments.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) acquire: Family<Labels, Histogram>,
    pub(crate) teardown: Histogram,
    pub(crate) ws_accepted: Counter,
    pub(crate) ws_refused: Family<Labels, Counter>,
    pub(crate) cdp_messages: Family<Labels, Counter>,
}

fn latency() -> Histogram {
    // 1 ms .. ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("browserpool");
        let acquire =
            Family::<Labels, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        registry.register_with_unit(
            "acquire_duration",
            "Time to hand out a new session (queueing, eviction and launch included), by outcome",
            Unit::Seconds,
            acquire.clone(),
        );
        let teardown = latency();
        registry.register_with_unit(
            "teardown_duration",
            "Time from a client's destroy (DELETE or Browser.close) until the session's processes are gone and its directory removed",
            Unit::Seconds,
            teardown.clone(),
        );
        let ws_accepted = Counter::default();
        registry.register(
            "ws_connections_accepted",
            "CDP WebSocket connections accepted",
            ws_accepted.clone(),
        );
        let ws_refused = Family::<Labels, Counter>::default();
        registry.register(
            "ws_connections_refused",
            "CDP WebSocket connections refused, by reason",
            ws_refused.clone(),
        );
        let cdp_messages = Family::<Labels, Counter>::default();
        registry.register(
            "cdp_messages",
            "CDP messages proxied, by direction (client = to the browser, browser = to the client)",
            cdp_messages.clone(),
        );
        Metrics {
            registry,
            acquire,
            teardown,
            ws_accepted,
            ws_refused,
            cdp_messages,
        }
    }

    pub(crate) fn observe_acquire(&self, ok: bool, d: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.acquire
            .get_or_create(&[("outcome", outcome)])
            .observe(d.as_secs_f64());
    }

    pub(crate) fn refuse(&self, reason: &'static str) {
        self.ws_refused.get_or_create(&[("reason", reason)]).inc();
    }
}

/// What the pool and server know at scrape time.
pub(crate) struct Scrape<'a> {
    pub stats: &'a PoolStats,
    pub memory: &'a PoolMemory,
    pub sweep: &'a SweepReport,
    pub max_browsers: usize,
    pub ws_open: usize,
    pub draining: bool,
    pub ready: bool,
}

fn gauge(v: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    g
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

impl Metrics {
    /// The whole exposition.
    pub(crate) fn render(&self, s: &Scrape<'_>) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry)?;
        let mut r = Registry::with_prefix("browserpool");
        let st = s.stats;

        let by_state = Family::<Labels, Gauge>::default();
        let idle = st.live.saturating_sub(st.busy);
        for (state, n) in [
            ("launching", st.launching),
            ("idle", idle),
            ("busy", st.busy),
            ("stopping", st.stopping),
            ("removing", st.removing),
        ] {
            by_state.get_or_create(&[("state", state)]).set(n as i64);
        }
        r.register("sessions", "Sessions by state", by_state);
        r.register(
            "max_browsers",
            "Configured bound on live browser process trees",
            gauge(s.max_browsers as u64),
        );
        r.register(
            "queue_length",
            "Requests waiting for a browser slot",
            gauge(st.waiting as u64),
        );

        let t = &st.totals;
        r.register(
            "sessions_created",
            "Browsers launched successfully",
            counter(t.created),
        );
        let ended = Family::<Labels, Counter>::default();
        for (reason, n) in [
            ("destroyed", t.destroyed),
            ("idle", t.reaped),
            ("evicted", t.evicted),
            ("retired", t.retired),
            ("crashed", t.crashed),
            ("owner_released", t.owner_released),
            ("shutdown", t.shutdown),
            ("abandoned", t.abandoned),
            ("memory", t.memory),
            ("launch_failed", t.launch_failed),
        ] {
            ended.get_or_create(&[("reason", reason)]).inc_by(n);
        }
        r.register("sessions_ended", "Sessions ended, by reason", ended);
        let refused = Family::<Labels, Counter>::default();
        refused
            .get_or_create(&[("cause", "rejected")])
            .inc_by(t.rejected);
        refused
            .get_or_create(&[("cause", "wait_timeout")])
            .inc_by(t.wait_timeouts);
        r.register(
            "acquire_refused",
            "Session requests the pool refused, by cause",
            refused,
        );
        r.register(
            "acquire_refused_memory",
            "Session requests refused or timed out because of memory_budget (also counted in acquire_refused)",
            counter(t.memory_blocked),
        );
        r.register(
            "memory_over_budget_with_one_session",
            "Sampling rounds that found the pool over memory_budget with one session left (never evicted for the budget)",
            counter(t.over_budget_with_one_session),
        );
        r.register_with_unit(
            "memory_accounted",
            "PSS the memory budget is compared with: last sampled PSS of live sessions plus the estimate for unmeasured launches",
            Unit::Bytes,
            gauge(st.memory_projected),
        );
        if let Some(budget) = st.memory_budget {
            r.register_with_unit(
                "memory_budget",
                "The configured memory_budget (summed PSS)",
                Unit::Bytes,
                gauge(budget),
            );
        }
        r.register(
            "kill_escalations",
            "Kills that had to be escalated or repeated",
            counter(t.kill_escalations),
        );
        r.register(
            "kill_stuck",
            "Kills still alive after every forced attempt (retried forever)",
            counter(t.kill_stuck),
        );
        r.register(
            "dir_remove_failures",
            "Teardowns whose first directory removal failed (retried in the background)",
            counter(t.remove_failures),
        );
        r.register(
            "drop_recovered",
            "Sessions recovered by the Drop safety net",
            counter(st.drop_recovered),
        );

        r.register(
            "chromium_processes",
            "Live browser processes across all sessions",
            gauge(u64::from(s.memory.total.processes)),
        );
        r.register_with_unit(
            "pss",
            "Proportional set size summed over all sessions' process trees",
            Unit::Bytes,
            gauge(s.memory.total.pss_bytes),
        );
        r.register_with_unit(
            "rss",
            "Resident set size summed over all sessions' process trees (shared pages counted per process)",
            Unit::Bytes,
            gauge(s.memory.total.rss_bytes),
        );

        r.register(
            "sweep_removed_entries",
            "Leftover directories and markers removed by startup sweeps",
            counter(st.swept),
        );
        r.register(
            "sweep_killed_processes",
            "Orphaned browser processes killed by startup sweeps",
            counter(st.swept_processes),
        );
        r.register(
            "sweep_skipped_entries",
            "Entries the startup sweep left alone (another user's, a live pool's, a symlink...)",
            gauge(s.sweep.skipped.len() as u64),
        );
        r.register(
            "sweep_failed_entries",
            "Entries the startup sweep could not clean (the next start retries)",
            gauge(s.sweep.failed.len() as u64),
        );

        r.register(
            "ws_connections",
            "CDP WebSocket connections open now",
            gauge(s.ws_open as u64),
        );
        r.register(
            "draining",
            "1 while the server drains before shutdown",
            gauge(u64::from(s.draining)),
        );
        r.register(
            "ready",
            "1 while /readyz answers 200",
            gauge(u64::from(s.ready)),
        );
        prometheus_text::encode(&mut out, &r)?;
        Ok(out)
    }
}
