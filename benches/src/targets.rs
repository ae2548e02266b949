//! The speed targets `compare --check` holds the rows to (issue 11, and the issue 5
//! targets it does not tighten), and the verdict on a set of rows.
//!
//! A target applies to some rows and states a bound on each of them; a row that breaks
//! the bound is a [`Miss`]. A target that names a row the run should have produced (for
//! example evict at n = 100 000 when n = 100 000 was measured) and does not find it is
//! a miss too, so that a fixture silently dropped cannot pass. Targets whose rows need a
//! size the run did not measure are reported as skipped.

use std::fmt;

use crate::compare::Row;

/// One target: where it applies and what it requires.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// What it says, as the issue words it.
    pub name: &'static str,
    /// The rows it applies to.
    pub applies: fn(&Row) -> bool,
    /// The bound on one row: `Err(why)` when the row misses it.
    pub bound: fn(&Row) -> Result<(), String>,
    /// Rows (op, n, k) that must exist whenever their `n` was measured.
    pub required: &'static [(&'static str, usize, Option<usize>)],
}

/// A target a row missed.
#[derive(Clone, Debug, PartialEq)]
pub struct Miss {
    /// The target's name.
    pub target: &'static str,
    /// The row that missed it (`None` when a required row is absent).
    pub row: Option<Row>,
    /// Why, with the figures.
    pub why: String,
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MISSED {}: {}", self.target, self.why)?;
        if let Some(r) = &self.row {
            write!(f, "\n  row: {}", row_line(r))?;
        }
        Ok(())
    }
}

/// The verdict on a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    /// Targets checked against at least one row, with how many rows each.
    pub checked: Vec<(&'static str, usize)>,
    /// Targets with no row in this run (sizes not measured).
    pub skipped: Vec<&'static str>,
    /// Every miss.
    pub misses: Vec<Miss>,
}

impl Verdict {
    /// Whether every checked target was met.
    pub fn passed(&self) -> bool {
        self.misses.is_empty()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, rows) in &self.checked {
            let missed = self.misses.iter().filter(|m| m.target == *name).count();
            let mark = if missed == 0 { "met   " } else { "MISSED" };
            writeln!(f, "{mark} {name} ({rows} rows, {missed} missed)")?;
        }
        for name in &self.skipped {
            writeln!(f, "skip   {name} (no row measured)")?;
        }
        for m in &self.misses {
            writeln!(f, "{m}")?;
        }
        Ok(())
    }
}

fn row_line(r: &Row) -> String {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v}"));
    format!(
        "op {} n {} k {} ours {} ns, naive {}, moka {}, floor {}, naive/ours {}, moka/ours {}",
        r.op,
        r.n,
        r.k.map_or_else(|| "-".to_owned(), |k| k.to_string()),
        r.ours_ns,
        opt(r.naive_ns),
        opt(r.moka_ns),
        opt(r.floor_ns),
        opt(r.naive_over_ours),
        opt(r.moka_over_ours),
    )
}

fn is_touch(r: &Row) -> bool {
    r.op.starts_with("touch_")
}

/// Every target, in the order they are reported.
pub const TARGETS: &[Target] = &[
    Target {
        name: "evict at n = 100 000 <= 300 ns",
        applies: |r| r.op == "evict" && r.n == 100_000,
        bound: |r| at_most(r.ours_ns, 300.0, "ns"),
        required: &[("evict", 100_000, None)],
    },
    Target {
        name: "reap <= 150 ns per expired session, every n and k",
        applies: |r| r.op == "reap_tick" && r.k.is_some_and(|k| k > 0),
        bound: |r| {
            let k = r.k.unwrap_or(1).max(1) as f64;
            at_most(r.ours_ns / k, 150.0, "ns per expired session")
        },
        required: &[],
    },
    Target {
        name: "touch round-robin <= 2x the floor, every n",
        applies: |r| r.op == "touch_round_robin",
        bound: |r| match r.floor_ns {
            Some(floor) if floor > 0.0 => at_most(r.ours_ns / floor, 2.0, "x the floor"),
            _ => Err("no floor measured".into()),
        },
        required: &[],
    },
    Target {
        name: "ours <= naive on every row at n = 100 and n = 1 000",
        applies: |r| (r.n == 100 || r.n == 1_000) && r.naive_ns.is_some(),
        bound: |r| match r.naive_ns {
            Some(naive) => at_most(r.ours_ns, naive, "ns (naive's time)"),
            None => Ok(()),
        },
        required: &[],
    },
    Target {
        name: "naive/ours >= 100x where it was (reap k <= 1 at n >= 10 000, evict at 100 000)",
        applies: |r| {
            (r.op == "reap_tick" && r.k.is_some_and(|k| k <= 1) && r.n >= 10_000)
                || (r.op == "evict" && r.n == 100_000)
        },
        bound: |r| match r.naive_over_ours {
            Some(x) => at_least(x, 100.0, "x"),
            None => Err("no naive figure".into()),
        },
        required: &[
            ("reap_tick", 10_000, Some(0)),
            ("reap_tick", 10_000, Some(1)),
            ("reap_tick", 100_000, Some(0)),
            ("reap_tick", 100_000, Some(1)),
        ],
    },
    Target {
        name: "moka/ours > 1x on every row",
        applies: |r| r.moka_over_ours.is_some(),
        bound: |r| match r.moka_over_ours {
            Some(x) if x > 1.0 => Ok(()),
            Some(x) => Err(format!("{x}x, not above 1x")),
            None => Ok(()),
        },
        required: &[],
    },
    Target {
        name: "touch, same session, <= 5 ns (issue 5)",
        applies: |r| r.op == "touch_same",
        bound: |r| at_most(r.ours_ns, 5.0, "ns"),
        required: &[],
    },
    Target {
        name: "reap with nothing expired <= 100 ns (issue 5)",
        applies: |r| r.op == "reap_tick" && r.k == Some(0),
        bound: |r| at_most(r.ours_ns, 100.0, "ns"),
        required: &[],
    },
    Target {
        name: "moka/ours >= 10x for touch at n = 100 000 (issue 5)",
        applies: |r| is_touch(r) && r.n == 100_000,
        bound: |r| match r.moka_over_ours {
            Some(x) => at_least(x, 10.0, "x"),
            None => Err("no moka figure".into()),
        },
        required: &[],
    },
];

fn at_most(v: f64, max: f64, unit: &str) -> Result<(), String> {
    if v <= max {
        Ok(())
    } else {
        Err(format!("{v:.2} {unit}, above {max:.2}"))
    }
}

fn at_least(v: f64, min: f64, unit: &str) -> Result<(), String> {
    if v >= min {
        Ok(())
    } else {
        Err(format!("{v:.2}{unit}, below {min:.2}{unit}"))
    }
}

/// Hold `rows` (measured at `sizes`) to `targets`.
pub fn check(rows: &[Row], sizes: &[usize], targets: &[Target]) -> Verdict {
    let mut v = Verdict::default();
    for t in targets {
        let mut n = 0;
        for r in rows.iter().filter(|r| (t.applies)(r)) {
            n += 1;
            if let Err(why) = (t.bound)(r) {
                v.misses.push(Miss {
                    target: t.name,
                    row: Some(r.clone()),
                    why,
                });
            }
        }
        for &(op, size, k) in t.required {
            let measured = sizes.contains(&size);
            let found = rows.iter().any(|r| r.op == op && r.n == size && r.k == k);
            if measured && !found {
                n += 1;
                v.misses.push(Miss {
                    target: t.name,
                    row: None,
                    why: format!(
                        "no {op} row for n = {size}, k = {k:?}, though n = {size} was measured"
                    ),
                });
            }
        }
        if n == 0 {
            v.skipped.push(t.name);
        } else {
            v.checked.push((t.name, n));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn row(op: &str, n: usize, k: Option<usize>, ours: f64, naive: Option<f64>) -> Row {
        let moka = Some(ours * 30.0);
        Row {
            op: op.into(),
            n,
            k,
            ours_ns: ours,
            naive_ns: naive,
            moka_ns: moka,
            floor_ns: op.starts_with("touch_").then_some(ours * 0.8),
            naive_over_ours: naive.map(|v| v / ours),
            moka_over_ours: moka.map(|v| v / ours),
        }
    }

    /// A run that meets every target, at the sizes compare measures.
    fn good() -> Vec<Row> {
        let mut rows = Vec::new();
        for n in crate::COMPARE_SIZES {
            let scan = n as f64; // the naive design scans everything
            rows.push(row("touch_same", n, None, 0.6, Some(20.0)));
            rows.push(row("touch_round_robin", n, None, 1.0, Some(20.0)));
            rows.push(row("touch_two_threads", n, None, 0.7, Some(20.0)));
            rows.push(row("reap_tick", n, Some(0), 4.0, Some(3.0 * scan)));
            rows.push(row("reap_tick", n, Some(1), 90.0, Some(3.0 * scan + 100.0)));
            rows.push(row(
                "reap_tick",
                n,
                Some(100),
                9_000.0,
                Some(3.0 * scan + 9_000.0),
            ));
            rows.push(row("evict", n, None, 250.0, Some(3.0 * scan + 300.0)));
            rows.push(Row {
                naive_ns: None,
                moka_ns: None,
                naive_over_ours: None,
                moka_over_ours: None,
                ..row("pool_cycle", n, None, 4_000.0, None)
            });
        }
        rows
    }

    fn verdict(rows: &[Row]) -> Verdict {
        check(rows, &crate::COMPARE_SIZES, TARGETS)
    }

    #[test]
    fn a_run_that_meets_every_target_passes() {
        let v = verdict(&good());
        assert!(v.passed(), "{v}");
        assert!(v.skipped.is_empty(), "{v}");
        assert_eq!(v.checked.len(), TARGETS.len());
        // The reap target looks at every k > 0 row of every size.
        let reap = v
            .checked
            .iter()
            .find(|(n, _)| n.starts_with("reap <="))
            .unwrap();
        assert_eq!(reap.1, 2 * crate::COMPARE_SIZES.len());
    }

    #[test]
    fn a_slow_eviction_fails_and_names_its_row() {
        let mut rows = good();
        let r = rows
            .iter_mut()
            .find(|r| r.op == "evict" && r.n == 100_000)
            .unwrap();
        r.ours_ns = 301.0;
        let v = verdict(&rows);
        assert!(!v.passed());
        assert_eq!(v.misses.len(), 1, "{v}");
        let m = &v.misses[0];
        assert_eq!(m.target, "evict at n = 100 000 <= 300 ns");
        assert_eq!(
            m.row.as_ref().map(|r| (r.op.as_str(), r.n)),
            Some(("evict", 100_000))
        );
        let text = v.to_string();
        assert!(text.contains("MISSED evict at n = 100 000"), "{text}");
        assert!(text.contains("row: op evict n 100000"), "{text}");
    }

    #[test]
    fn each_bound_fires_on_its_own_row() {
        type Break = fn(&mut Row);
        let cases: [(&str, usize, Option<usize>, Break, &str); 6] = [
            (
                "reap_tick",
                10_000,
                Some(100),
                |r| r.ours_ns = 15_001.0,
                "reap <= 150",
            ),
            (
                "touch_round_robin",
                100_000,
                None,
                |r| r.floor_ns = Some(0.4),
                "touch round-robin",
            ),
            (
                "evict",
                100,
                None,
                |r| r.naive_ns = Some(200.0),
                "ours <= naive",
            ),
            (
                "reap_tick",
                100_000,
                Some(1),
                |r| r.naive_over_ours = Some(99.0),
                "naive/ours >= 100x",
            ),
            (
                "evict",
                1_000,
                None,
                |r| r.moka_over_ours = Some(1.0),
                "moka/ours > 1x",
            ),
            (
                "reap_tick",
                1_000,
                Some(0),
                |r| r.ours_ns = 101.0,
                "reap with nothing expired",
            ),
        ];
        for (op, n, k, break_it, target) in cases {
            let mut rows = good();
            let r = rows
                .iter_mut()
                .find(|r| r.op == op && r.n == n && r.k == k)
                .unwrap();
            break_it(r);
            let v = verdict(&rows);
            assert_eq!(v.misses.len(), 1, "{op} {n} {k:?}: {v}");
            assert!(v.misses[0].target.starts_with(target), "{op} {n}: {v}");
        }
    }

    #[test]
    fn a_missing_required_row_fails_but_an_unmeasured_size_is_skipped() {
        let rows: Vec<Row> = good()
            .into_iter()
            .filter(|r| !(r.op == "evict" && r.n == 100_000))
            .collect();
        let v = verdict(&rows);
        assert_eq!(v.misses.len(), 1, "{v}");
        assert!(v.misses[0].row.is_none());
        assert!(
            v.misses[0].why.contains("no evict row for n = 100000"),
            "{v}"
        );

        // A quick run (n = 100 and 1 000 only) checks what it has and skips the rest.
        let quick: Vec<Row> = good().into_iter().filter(|r| r.n <= 1_000).collect();
        let v = check(&quick, &[100, 1_000], TARGETS);
        assert!(v.passed(), "{v}");
        assert!(v.skipped.contains(&"evict at n = 100 000 <= 300 ns"), "{v}");
    }
}
