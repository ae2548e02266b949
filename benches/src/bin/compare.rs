//! `compare`: browserpool, the naive design, moka and the floor side by side.
//!
//! ```text
//! cargo run --release -p browserpool-benches --bin compare -- [--json] [--quick] [--check]
//! ```
//!
//! Prints one row per operation and size: median nanoseconds per operation for each
//! implementation and the ratios `naive/ours` and `moka/ours`. Progress goes to stderr.
//! With `--check`, the rows are held to the speed targets
//! ([`browserpool_benches::targets`]): the verdict goes to stderr, with every row that
//! missed a target, and the exit status is 1 if any did.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use browserpool_benches::compare::{run, table, Options};
use browserpool_benches::targets::{check, TARGETS};
use clap::Parser;

/// Measure browserpool's hot paths beside a naive design and moka, interleaving rounds.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Print a JSON array of rows instead of a table.
    #[arg(long)]
    json: bool,
    /// A smoke run for CI (small sizes, 2 short rounds).
    #[arg(long)]
    quick: bool,
    /// Interleaved rounds (samples per cell); default 7 (2 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Measured time per sample in microseconds; default 2000 (200 with --quick).
    #[arg(long)]
    sample_us: Option<u64>,
    /// Hold the rows to the speed targets; exit with status 1 if one is missed.
    #[arg(long)]
    check: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut opts = if args.quick {
        Options::quick()
    } else {
        Options::full()
    };
    if let Some(r) = args.rounds {
        opts.rounds = r.max(1);
    }
    if let Some(us) = args.sample_us {
        opts.target = Duration::from_micros(us.max(1));
    }
    let start = Instant::now();
    let rows = match run(&opts, &mut |line| {
        eprintln!("[{:5.1}s] {line}", start.elapsed().as_secs_f64())
    }) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("compare failed: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&rows) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("compare failed: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", table(&rows));
    }
    eprintln!("total {:.1} s", start.elapsed().as_secs_f64());
    if args.check {
        let verdict = check(&rows, &opts.sizes, TARGETS);
        eprint!("{verdict}");
        if !verdict.passed() {
            eprintln!("compare --check: {} target miss(es)", verdict.misses.len());
            return std::process::ExitCode::FAILURE;
        }
        eprintln!("compare --check: every target met");
    }
    std::process::ExitCode::SUCCESS
}
