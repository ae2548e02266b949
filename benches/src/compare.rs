//! The side-by-side measurement behind the `compare` binary.
//!
//! Every implementation of every row is a *cell*. Cells are calibrated once (how many
//! operations make one sample of about `target` measured time), then measured in
//! interleaved rounds: in each round every row samples ours, naive, moka and the floor in
//! turn, so that machine drift (frequency scaling, a noisy neighbour) hits all of them
//! alike. A row reports the median over rounds of each cell's nanoseconds per operation.
//! Touch samples are preceded by one unmeasured pass over all sessions (see
//! `warm_touches`), so they measure a warm steady state as criterion does.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::floor::Floor;
use crate::moka_cache::{MokaEvict, MokaReap, MokaTouch};
use crate::naive::{NaiveEvict, NaiveReap, NaiveTouch};
use crate::ours::{FixtureError, OursEvict, OursPool, OursReap};
use crate::touch::{run_touches, Pattern, Touch};
use crate::{time_reaps, EXPIRED};

/// What to measure and how long.
#[derive(Clone, Debug)]
pub struct Options {
    /// Session counts.
    pub sizes: Vec<usize>,
    /// Interleaved rounds (samples per cell).
    pub rounds: usize,
    /// Measured time aimed at per sample.
    pub target: Duration,
    /// moka's time-to-idle in the reap rows with `k > 0` (real time per sample).
    pub moka_tti: Duration,
}

impl Options {
    /// The full run: every size of [`crate::COMPARE_SIZES`], 7 rounds of about 2 ms per
    /// sample.
    pub fn full() -> Self {
        Options {
            sizes: crate::COMPARE_SIZES.to_vec(),
            rounds: 7,
            target: Duration::from_millis(2),
            moka_tti: crate::moka_cache::REAP_TTI,
        }
    }

    /// A smoke run for CI: small sizes, 2 rounds, short samples.
    pub fn quick() -> Self {
        Options {
            sizes: vec![100, 1_000],
            rounds: 2,
            target: Duration::from_micros(200),
            moka_tti: Duration::from_millis(200),
        }
    }
}

/// One row of the comparison. Times are median nanoseconds per operation.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    /// The operation (`touch_same`, `touch_round_robin`, `touch_two_threads`,
    /// `reap_tick`, `evict`, `pool_cycle`).
    pub op: String,
    /// Sessions held.
    pub n: usize,
    /// Expired sessions per tick (`reap_tick` only).
    pub k: Option<usize>,
    /// browserpool.
    pub ours_ns: f64,
    /// The naive baseline, where it does the same job.
    pub naive_ns: Option<f64>,
    /// The moka baseline, where it does the same job.
    pub moka_ns: Option<f64>,
    /// A bare relaxed atomic store with the same access pattern (touch rows only).
    pub floor_ns: Option<f64>,
    /// `naive_ns / ours_ns`.
    pub naive_over_ours: Option<f64>,
    /// `moka_ns / ours_ns`.
    pub moka_over_ours: Option<f64>,
}

type Sample<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

struct Cell<'a> {
    f: Sample<'a>,
    max_iters: u64,
    iters: u64,
    samples: Vec<f64>,
}

impl<'a> Cell<'a> {
    fn new(max_iters: u64, f: impl FnMut(u64) -> Duration + 'a) -> Self {
        Cell {
            f: Box::new(f),
            max_iters,
            iters: 1,
            samples: Vec::new(),
        }
    }

    fn calibrate(&mut self, target: Duration) {
        let mut iters = 1u64;
        loop {
            let d = (self.f)(iters).max(Duration::from_nanos(1));
            if d >= target / 2 || iters >= self.max_iters {
                break;
            }
            let scale = (target.as_secs_f64() / d.as_secs_f64()).clamp(2.0, 100.0);
            iters = ((iters as f64 * scale) as u64).min(self.max_iters);
        }
        self.iters = iters;
    }

    fn sample(&mut self) {
        let d = (self.f)(self.iters);
        self.samples.push(d.as_nanos() as f64 / self.iters as f64);
    }

    fn median(&self) -> f64 {
        let mut v = self.samples.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            l if l % 2 == 1 => v[l / 2],
            l => (v[l / 2 - 1] + v[l / 2]) / 2.0,
        }
    }
}

struct RowCells<'a> {
    op: String,
    n: usize,
    k: Option<usize>,
    ours: Cell<'a>,
    naive: Option<Cell<'a>>,
    moka: Option<Cell<'a>>,
    floor: Option<Cell<'a>>,
}

impl<'a> RowCells<'a> {
    fn cells(&mut self) -> Vec<&mut Cell<'a>> {
        std::iter::once(&mut self.ours)
            .chain(self.naive.as_mut())
            .chain(self.moka.as_mut())
            .chain(self.floor.as_mut())
            .collect()
    }
}

/// Build every fixture, calibrate, measure `opts.rounds` interleaved rounds and return
/// the rows (touch rows, then reap ticks, evictions and pool cycles, each by `n`).
/// `progress` receives a line per phase.
pub fn run(opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<Vec<Row>, FixtureError> {
    let mut rows: Vec<RowCells<'_>> = Vec::new();
    // moka's reap ticks need real waiting: at most one sample per round.
    let moka_wrong: Rc<RefCell<Vec<String>>> = Rc::default();
    for &n in &opts.sizes {
        let t = Instant::now();
        let pool = Rc::new(OursPool::new(n)?);
        let naive_t = Rc::new(NaiveTouch::new(n));
        let moka_t = Rc::new(MokaTouch::new(n));
        let floor = Rc::new(Floor::new(n));
        for pattern in Pattern::ALL {
            let (p, nt, mt, fl) = (pool.clone(), naive_t.clone(), moka_t.clone(), floor.clone());
            rows.push(RowCells {
                op: format!("touch_{}", pattern.name()),
                n,
                k: None,
                ours: Cell::new(u64::MAX, move |it| warm_touches(&*p, pattern, it)),
                naive: Some(Cell::new(u64::MAX, move |it| {
                    warm_touches(&*nt, pattern, it)
                })),
                moka: Some(Cell::new(u64::MAX, move |it| {
                    warm_touches(&*mt, pattern, it)
                })),
                floor: Some(Cell::new(u64::MAX, move |it| {
                    warm_touches(&*fl, pattern, it)
                })),
            });
        }
        for k in EXPIRED {
            if k > n {
                continue;
            }
            let mut ours = OursReap::new(n, k)?;
            let mut naive = NaiveReap::new(n, k);
            let mut moka = MokaReap::new(n, k, opts.moka_tti);
            let wrong = moka_wrong.clone();
            rows.push(RowCells {
                op: "reap_tick".into(),
                n,
                k: Some(k),
                ours: Cell::new(u64::MAX, move |it| time_reaps(&mut ours, k, it)),
                naive: Some(Cell::new(u64::MAX, move |it| time_reaps(&mut naive, k, it))),
                moka: Some(Cell::new(if k == 0 { u64::MAX } else { 1 }, move |it| {
                    let (d, expired) = moka.time_reaps(it);
                    if expired != k as u64 * it {
                        wrong
                            .borrow_mut()
                            .push(format!("n = {n}, k = {k}: {expired} expired in {it} ticks"));
                    }
                    d
                })),
                floor: None,
            });
        }
        let mut ours = OursEvict::new(n)?;
        let mut naive = NaiveEvict::new(n);
        let mut moka = MokaEvict::new(n);
        rows.push(RowCells {
            op: "evict".into(),
            n,
            k: None,
            ours: Cell::new(u64::MAX, move |it| {
                crate::ours::time_evictions(&mut ours, it)
            }),
            naive: Some(Cell::new(u64::MAX, move |it| {
                crate::naive::time_evictions(&mut naive, it)
            })),
            moka: Some(Cell::new(u64::MAX, move |it| moka.time_evictions(it))),
            floor: None,
        });
        let p = pool.clone();
        rows.push(RowCells {
            op: "pool_cycle".into(),
            n,
            k: None,
            ours: Cell::new(u64::MAX, move |it| match p.time_cycles(it) {
                Ok(d) => d,
                // A failed cycle is a bench bug; do not report a number for it.
                Err(e) => panic!("pool cycle failed: {e}"),
            }),
            naive: None,
            moka: None,
            floor: None,
        });
        progress(&format!(
            "built fixtures for n = {n} in {:.1} s",
            t.elapsed().as_secs_f64()
        ));
    }
    let t = Instant::now();
    for row in &mut rows {
        for cell in row.cells() {
            cell.calibrate(opts.target);
        }
    }
    progress(&format!("calibrated in {:.1} s", t.elapsed().as_secs_f64()));
    for r in 0..opts.rounds {
        let t = Instant::now();
        for row in &mut rows {
            for cell in row.cells() {
                cell.sample();
            }
        }
        progress(&format!(
            "round {}/{} in {:.1} s",
            r + 1,
            opts.rounds,
            t.elapsed().as_secs_f64()
        ));
    }
    for w in moka_wrong.borrow().iter() {
        progress(&format!(
            "warning: a moka reap sample expired a wrong count ({w})"
        ));
    }
    let out = rows
        .iter()
        .map(|r| {
            let ours = r.ours.median();
            let naive = r.naive.as_ref().map(Cell::median);
            let moka = r.moka.as_ref().map(Cell::median);
            Row {
                op: r.op.clone(),
                n: r.n,
                k: r.k,
                ours_ns: round2(ours),
                naive_ns: naive.map(round2),
                moka_ns: moka.map(round2),
                floor_ns: r.floor.as_ref().map(|c| round2(c.median())),
                naive_over_ours: naive.map(|v| round2(v / ours)),
                moka_over_ours: moka.map(|v| round2(v / ours)),
            }
        })
        .collect();
    Ok(out)
}

/// One unmeasured pass over every session, then `iters` measured touches: the other
/// cells of the round have just evicted this fixture from the caches, and a sample
/// should measure touching, not the first pass's misses (criterion's warm-up does the
/// same for the criterion benches).
fn warm_touches<T: Touch>(t: &T, pattern: Pattern, iters: u64) -> Duration {
    run_touches(t, Pattern::RoundRobin, t.len() as u64);
    run_touches(t, pattern, iters)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The rows as a human-readable table (Markdown).
pub fn table(rows: &[Row]) -> String {
    fn opt(v: Option<f64>) -> String {
        v.map_or_else(|| "-".into(), fmt_ns)
    }
    fn ratio(v: Option<f64>) -> String {
        v.map_or_else(|| "-".into(), |r| format!("{r:.1}x"))
    }
    let mut s = String::from(
        "| op | n | k | ours ns | naive ns | moka ns | floor ns | naive/ours | moka/ours |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.op,
            r.n,
            r.k.map_or_else(|| "-".into(), |k| k.to_string()),
            fmt_ns(r.ours_ns),
            opt(r.naive_ns),
            opt(r.moka_ns),
            opt(r.floor_ns),
            ratio(r.naive_over_ours),
            ratio(r.moka_over_ours),
        ));
    }
    s
}

fn fmt_ns(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn median_of_samples() {
        let mut c = Cell::new(1, |_| Duration::from_nanos(1));
        c.samples = vec![5.0, 1.0, 3.0];
        assert_eq!(c.median(), 3.0);
        c.samples.push(7.0);
        assert_eq!(c.median(), 4.0);
    }

    #[test]
    fn calibration_respects_max_iters() {
        let mut c = Cell::new(1, |_| Duration::from_nanos(10));
        c.calibrate(Duration::from_millis(1));
        assert_eq!(c.iters, 1);
        let mut c = Cell::new(u64::MAX, |it| Duration::from_nanos(10 * it));
        c.calibrate(Duration::from_micros(100));
        assert!(c.iters >= 5_000, "{}", c.iters);
    }

    #[test]
    fn quick_run_produces_every_row() {
        let opts = Options {
            sizes: vec![100],
            rounds: 1,
            target: Duration::from_micros(50),
            moka_tti: Duration::from_millis(200),
        };
        let rows = run(&opts, &mut |_| {}).unwrap();
        let ops: Vec<(&str, Option<usize>)> = rows.iter().map(|r| (r.op.as_str(), r.k)).collect();
        assert_eq!(
            ops,
            vec![
                ("touch_same", None),
                ("touch_round_robin", None),
                ("touch_two_threads", None),
                ("reap_tick", Some(0)),
                ("reap_tick", Some(1)),
                ("reap_tick", Some(100)),
                ("evict", None),
                ("pool_cycle", None),
            ]
        );
        for r in &rows {
            assert!(r.ours_ns > 0.0, "{r:?}");
            assert_eq!(r.floor_ns.is_some(), r.op.starts_with("touch"));
        }
        let json = serde_json::to_value(&rows).unwrap();
        assert!(json[0].get("naive_over_ours").is_some());
        assert!(table(&rows).contains("| reap_tick | 100 | 100 |"));
    }
}
