//! `browserpool-sim`: replay a scenario with both pools side by side, or sweep seeds.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use browserpool_sim::batch::run_batch_on;
use browserpool_sim::engine::{replay_command_on, run, run_pair_on, Mode, RunOptions, Shell};
use browserpool_sim::plot::plot;
use browserpool_sim::report::{table, ReplayJson, Runs};
use browserpool_sim::scenario::{Scenario, PRESETS};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "browserpool-sim",
    about = "Deterministic simulation of browserpool against the old unmanaged pool"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one seed of a scenario with both pools and compare them.
    Replay {
        /// A preset (kristof5, steady, burst, crashy-server, hung-kill, full-disk) or a
        /// scenario TOML file.
        scenario: String,
        /// The seed (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Override the simulated duration, hours (the quiet phase is kept).
        #[arg(long)]
        hours: Option<f64>,
        /// Print the stable JSON report instead of the table.
        #[arg(long)]
        json: bool,
        /// Write an SVG plot of live processes and RSS over the simulated days (PSS and
        /// the budget instead of RSS when the managed pool has a memory budget).
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Write the managed pool's full event trace to this file.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Which shell carries out the machine's decisions: `machine` (the engine drives
        /// the Lifecycle itself; fast) or `pool` (the production async Pool on a paused
        /// tokio runtime).
        #[arg(long, default_value = "machine")]
        shell: Shell,
    },
    /// Run many seeds of the managed pool on all cores and list failing seeds.
    Sweep {
        /// Seed range, `A..B` (B excluded).
        #[arg(long, default_value = "0..200")]
        seeds: String,
        /// A preset or a scenario file (default: every preset).
        #[arg(long)]
        scenario: Option<String>,
        /// Override the simulated duration, hours.
        #[arg(long)]
        hours: Option<f64>,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Which shell: `machine` or `pool` (see `replay --help`).
        #[arg(long, default_value = "machine")]
        shell: Shell,
    },
}

fn load(name: &str, hours: Option<f64>) -> Result<Scenario, String> {
    let mut sc = Scenario::load(name).map_err(|e| e.to_string())?;
    if let Some(h) = hours {
        sc.duration_hours = h;
    }
    Ok(sc)
}

fn parse_range(s: &str) -> Result<std::ops::Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("--seeds {s:?}: expected A..B, e.g. 0..200"))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|e| format!("--seeds start {a:?}: {e}"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|e| format!("--seeds end {b:?}: {e}"))?;
    if b <= a {
        return Err(format!("--seeds {s:?}: the range is empty"));
    }
    Ok(a..b)
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<ExitCode, String> {
    match Cli::parse().cmd {
        Cmd::Replay {
            scenario,
            seed,
            hours,
            json,
            plot: plot_path,
            trace,
            shell,
        } => {
            let sc = load(&scenario, hours)?;
            let seed = seed.unwrap_or(sc.seed);
            let out = run_pair_on(&sc, seed, shell).map_err(|e| e.to_string())?;
            let wall_ms = out.wall.as_secs_f64() * 1000.0;
            let sim_s = out.managed.simulated_ms as f64 / 1000.0;
            if let Some(p) = &plot_path {
                let title = format!("{} seed {seed}: unmanaged vs managed", sc.name);
                let budget = out.managed.report.memory_budget_bytes;
                plot(
                    p,
                    &title,
                    &out.unmanaged.samples,
                    &out.managed.samples,
                    budget,
                )
                .map_err(|e| e.to_string())?;
            }
            if let Some(p) = &trace {
                let full = run(
                    &sc,
                    seed,
                    RunOptions {
                        full_trace: true,
                        ..RunOptions::new(Mode::Managed).on(shell)
                    },
                )
                .map_err(|e| e.to_string())?;
                std::fs::write(p, full.trace.join("\n") + "\n")
                    .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            }
            let failed = !out.managed.report.oracle_violations.is_empty();
            if json {
                let j = ReplayJson {
                    scenario: sc.name.clone(),
                    seed,
                    simulated_seconds: sim_s,
                    wall_ms,
                    runs: Runs {
                        unmanaged: out.unmanaged.report.clone(),
                        managed: out.managed.report.clone(),
                    },
                };
                println!(
                    "{}",
                    serde_json::to_string_pretty(&j).map_err(|e| e.to_string())?
                );
            } else {
                let days = sim_s / 86_400.0;
                println!(
                    "scenario {} seed {seed}: {:.0} h simulated ({days:.2} days), both pools, {} shell",
                    sc.name,
                    sim_s / 3600.0,
                    shell.label()
                );
                println!();
                print!(
                    "{}",
                    table(
                        (&out.unmanaged.report, &out.unmanaged.extras),
                        (&out.managed.report, &out.managed.extras)
                    )
                );
                println!();
                for (name, r) in [("unmanaged", &out.unmanaged), ("managed", &out.managed)] {
                    for v in &r.report.oracle_violations {
                        println!(
                            "{name}: oracle {} x{} (first at event {}, {:.2} h): {}",
                            v.oracle,
                            v.count,
                            v.event_index,
                            v.sim_ms as f64 / 3.6e6,
                            v.message
                        );
                    }
                }
                if failed {
                    println!("\nmanaged: last events before the first violation:");
                    for l in &out.managed.failure_context {
                        println!("  {l}");
                    }
                    println!(
                        "\nreplay with: {}",
                        replay_command_on(&scenario, seed, hours, shell)
                    );
                }
                println!(
                    "\nwall time {wall_ms:.1} ms for both pools ({} + {} events)\nspeed: {days:.2} simulated days per pool, both pools in {wall_ms:.1} ms: simulated/wall ratio {:.1e}",
                    out.unmanaged.extras.events,
                    out.managed.extras.events,
                    sim_s * 1000.0 / wall_ms.max(1e-9),
                );
                if let Some(p) = &plot_path {
                    println!("plot written to {}", p.display());
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Sweep {
            seeds,
            scenario,
            hours,
            threads,
            shell,
        } => {
            let range = parse_range(&seeds)?;
            let names: Vec<String> = match scenario {
                Some(s) => vec![s],
                None => PRESETS.iter().map(|s| s.to_string()).collect(),
            };
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let total = (range.end - range.start) * names.len() as u64;
            let bar = ProgressBar::new(total);
            if !std::io::stderr().is_terminal() {
                bar.set_draw_target(ProgressDrawTarget::hidden());
            }
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} seeds {per_sec} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let start = std::time::Instant::now();
            let mut failures = 0;
            let mut runs = 0;
            let mut coverage = browserpool_sim::engine::Coverage::default();
            let mut lines = Vec::new();
            for name in &names {
                let sc = load(name, hours)?;
                bar.set_message(name.clone());
                let out = run_batch_on(&sc, range.clone(), threads, shell, &|| bar.inc(1))
                    .map_err(|e| e.to_string())?;
                runs += out.runs;
                coverage.add(&out.coverage);
                for f in &out.failures {
                    failures += 1;
                    let v = &f.violations[0];
                    lines.push(format!(
                        "FAIL {name} seed {}: {} at event {}: {}\n     last events:\n       {}\n     replay: {}",
                        f.seed,
                        v.oracle,
                        v.event_index,
                        v.message,
                        f.context.join("\n       "),
                        replay_command_on(name, f.seed, hours, shell)
                    ));
                }
            }
            bar.finish_and_clear();
            let wall = start.elapsed().as_secs_f64();
            for l in &lines {
                println!("{l}");
            }
            let missing = coverage.missing();
            println!(
                "{runs} seeds ({}) on the {} shell, {failures} failing, {:.1} s wall, {:.1} seeds/s on {threads} threads",
                names.join(", "),
                shell.label(),
                wall,
                runs as f64 / wall.max(1e-9)
            );
            println!(
                "coverage: idle reaps {}, evictions {}, kill escalations {}, sweep orphan kills {}, crashes during sweep {}, owner releases {}, spare hand-outs {}",
                coverage.idle_reaps,
                coverage.evictions,
                coverage.kill_escalations,
                coverage.sweep_orphans_killed,
                coverage.crashes_during_sweep,
                coverage.owner_releases,
                coverage.spare_handouts
            );
            if !missing.is_empty() {
                println!("coverage FAILED: never happened: {}", missing.join(", "));
            }
            Ok(if failures == 0 && missing.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
