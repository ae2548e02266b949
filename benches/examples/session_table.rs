//! How much of a reap's per-session cost is the session-table lookup, and what an
//! id-indexed slab would save.
//!
//! `Lifecycle` keeps `FxHashMap<SessionId, Session>` with 176-byte entries. This looks up
//! `k = 100` ids per "tick" in a table of `n` such entries and reads one field of each,
//! either as the ids of one generation (consecutive ids, as in the `reap_tick` fixture)
//! or as random ids, in the hash map and in a `Vec` indexed by id. Between ticks a
//! 64 MiB buffer is swept to push the table out of the caches, as the rest of a server
//! would. Median of 15 ticks, nanoseconds per looked-up session.
//!
//! ```text
//! cargo run --release -p browserpool-benches --example session_table -- 100000
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use rustc_hash::FxHashMap;

/// Stand-in for the machine's 176-byte `Session`.
#[derive(Clone, Copy)]
struct Session {
    hot: u64,
    _cold: [u64; 21],
}

fn flush(buf: &mut [u64]) {
    for (i, x) in buf.iter_mut().enumerate().step_by(8) {
        *x = x.wrapping_add(i as u64);
    }
    black_box(&buf);
}

fn measure(name: &str, ticks: &[Vec<u64>], buf: &mut [u64], mut f: impl FnMut(u64) -> u64) {
    let mut v: Vec<f64> = ticks
        .iter()
        .map(|ids| {
            flush(buf);
            let start = Instant::now();
            let mut acc = 0u64;
            for &id in ids {
                acc = acc.wrapping_add(f(id));
            }
            black_box(acc);
            start.elapsed().as_nanos() as f64 / ids.len() as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    println!("{name:45} {:7.1} ns/session", v[v.len() / 2]);
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(100_000, |s| s.parse().expect("n must be a number"));
    let k = 100u64;
    let s = Session {
        hot: 1,
        _cold: [0; 21],
    };
    let mut map: FxHashMap<u64, Session> = FxHashMap::default();
    let mut slab: Vec<Option<Session>> = Vec::with_capacity(n as usize);
    for id in 0..n {
        map.insert(id, Session { hot: id, ..s });
        slab.push(Some(Session { hot: id, ..s }));
    }
    let mut buf = vec![0u64; 8 << 20];
    // A deterministic spread of start points and random ids (SplitMix64).
    let mut x = 0x1234_5678u64;
    let mut next = move || {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let consecutive: Vec<Vec<u64>> = (0..15)
        .map(|_| {
            let start = next() % (n - k);
            (start..start + k).collect()
        })
        .collect();
    let random: Vec<Vec<u64>> = (0..15)
        .map(|_| (0..k).map(|_| next() % n).collect())
        .collect();
    println!("n = {n}, k = {k} lookups per tick, caches flushed between ticks");
    measure(
        "FxHashMap, one generation (consecutive ids)",
        &consecutive,
        &mut buf,
        |id| map.get(&id).map_or(0, |s| s.hot),
    );
    measure(
        "Vec slab, one generation (consecutive ids)",
        &consecutive,
        &mut buf,
        |id| slab[id as usize].map_or(0, |s| s.hot),
    );
    measure("FxHashMap, random ids", &random, &mut buf, |id| {
        map.get(&id).map_or(0, |s| s.hot)
    });
    measure("Vec slab, random ids", &random, &mut buf, |id| {
        slab[id as usize].map_or(0, |s| s.hot)
    });
}
