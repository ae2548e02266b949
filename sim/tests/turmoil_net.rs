//! Network faults with turmoil: the RPC server embedding the real async pool, under
//! client crashes, hangs (hold), partitions, dropped connections, launch failures and
//! server crashes (with and without destructors), one simulated hour per seed.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use browserpool::{EndReason, Filesystem, Pool, PoolConfig, SessionError};
use browserpool_sim::net::backend::{MemFs, NetLauncher};
use browserpool_sim::net::scenario::{run, run_world, FaultKinds, NetReport, NetScenario};

fn scenario(seed: u64) -> NetScenario {
    let mut s = NetScenario::new(seed);
    // Vary the load: 3 clients rarely fill the 4 slots (idle reaps), 6 always do (LRU).
    s.clients = 3 + (seed % 4) as usize;
    s
}

fn assert_clean(r: &NetReport) {
    assert!(
        r.violations.is_empty(),
        "seed {} on the {} backend broke invariants (replay: NetScenario::new({}) with clients = {}, see sim/tests/turmoil_net.rs):\n{:#?}\n{r:#?}",
        r.seed,
        r.backend,
        r.seed,
        3 + r.seed % 4,
        r.violations
    );
    assert!(
        r.simulated >= Duration::from_secs(3600),
        "{:?}",
        r.simulated
    );
    assert!(r.converged_after.is_some());
}

/// Eight seeds, faults chosen per seed (swarm), each one simulated hour plus
/// convergence, on the fake backend; every invariant holds, and across the batch every
/// fault kind and every recovery path was exercised at least once.
#[test]
fn seeds_keep_every_invariant() {
    check_batch(run, 1..=8);
}

/// The same on the simulated world (PIDs reused, process trees, marker locks held by a
/// server process, an oracle for anything touched that is not ours), other seeds.
#[test]
fn seeds_keep_every_invariant_on_the_simulated_world() {
    check_batch(run_world, 11..=18);
}

fn check_batch(run: fn(&NetScenario) -> NetReport, seeds: std::ops::RangeInclusive<u64>) {
    let started = Instant::now();
    let mut reports = Vec::new();
    for seed in seeds {
        let r = run(&scenario(seed));
        eprintln!(
            "{} seed {seed}: faults {:?}, injected {:?}, disconnects {:?}, requests {} ({} unanswered during faults), created {}, evicted {}, reaped {}, owner_released {}, sweep killed {}, peak {} browsers, converged {:?} after chaos, trace {:016x}",
            r.backend,
            r.faults.unwrap(),
            r.injected,
            r.disconnects,
            r.requests,
            r.unanswered,
            r.totals.created,
            r.totals.evicted,
            r.totals.reaped,
            r.totals.owner_released,
            r.sweep_killed,
            r.peak_alive,
            r.converged_after,
            r.trace_hash,
        );
        assert_clean(&r);
        reports.push(r);
    }
    eprintln!("{} seeds in {:?} wall", reports.len(), started.elapsed());
    let sum = |f: &dyn Fn(&NetReport) -> u64| reports.iter().map(f).sum::<u64>();
    let injected = |k: &str| sum(&|r| r.injected.get(k).copied().unwrap_or(0));
    let disconnects = |k: &str| sum(&|r| r.disconnects.get(k).copied().unwrap_or(0));
    for kind in [
        "partition",
        "hold",
        "client_crash",
        "server_crash_hard",
        "server_crash_soft",
        "launch_failure",
    ] {
        assert!(injected(kind) > 0, "no {kind} injected in the batch");
    }
    assert!(
        disconnects("keepalive_timeout") > 0,
        "no silent peer detected"
    );
    assert!(disconnects("eof") > 0, "no clean disconnect");
    assert!(sum(&|r| r.totals.owner_released) > 0, "no owner release");
    assert!(sum(&|r| r.totals.evicted) > 0, "no LRU eviction");
    assert!(sum(&|r| r.totals.reaped) > 0, "no idle reap");
    assert!(sum(&|r| r.sweep_killed) > 0, "no orphan killed by a sweep");
    assert!(sum(&|r| r.totals.launch_failed) > 0, "no failed launch");
    assert!(sum(&|r| r.requests) > 1000);
}

/// Every fault kind on at once, on two more seeds, on both backends.
#[test]
fn all_faults_at_once() {
    for (seed, run) in [
        (101, run as fn(&NetScenario) -> NetReport),
        (202, run_world),
    ] {
        let mut s = scenario(seed);
        s.faults = Some(FaultKinds::ALL);
        let r = run(&s);
        assert_clean(&r);
        assert!(r.injected.get("server_crash_hard").copied().unwrap_or(0) > 0);
        assert!(r.sweep_killed > 0 || r.sweep_removed > 0, "{r:#?}");
    }
}

/// The same seed gives the same run: same requests at the same simulated times with the
/// same outcomes, same counters.
#[test]
fn same_seed_same_run() {
    for (seed, run) in [(3, run as fn(&NetScenario) -> NetReport), (16, run_world)] {
        let a = run(&scenario(seed));
        let b = run(&scenario(seed));
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}

/// The invariants are not vacuous: a server that never calls `release_owner` is caught
/// (sessions of disconnected clients outlive their release deadline).
#[test]
fn server_that_forgets_release_is_caught() {
    let mut s = scenario(5);
    s.faults = Some(FaultKinds::ALL);
    s.server.release_on_disconnect = false;
    let r = run(&s);
    assert!(
        r.violations
            .iter()
            .any(|v| v.contains("disconnected client")),
        "{:#?}",
        r.violations
    );
}

/// A server without a keepalive never notices a partitioned client (no FIN, no RST
/// ever arrives, and segments lost in the partition keep a later FIN from being read):
/// its half-open connections never close, and convergence says so.
#[test]
fn server_without_keepalive_is_caught() {
    let mut s = scenario(4);
    s.faults = Some(FaultKinds {
        partition: true,
        hold: false,
        client_crash: false,
        server_crash: false,
        launch_failures: false,
    });
    s.server.keepalive = Duration::from_secs(24 * 3600);
    let r = run(&s);
    assert!(
        r.violations
            .iter()
            .any(|v| v.contains("server connections still open [(")),
        "{:#?}",
        r.violations
    );
}

/// A restarted server whose pool skips the startup sweep leaves the crashed
/// incarnation's browsers and directories behind, and the sweep invariant says so.
#[test]
fn restart_without_sweep_is_caught() {
    for run in [run as fn(&NetScenario) -> NetReport, run_world] {
        let mut s = scenario(6);
        s.faults = Some(FaultKinds::ALL);
        s.pool.sweep_on_start = false;
        let r = run(&s);
        assert!(
            r.violations
                .iter()
                .any(|v| v.contains("sweep") || v.contains("max_browsers")),
            "{}: {:#?}",
            r.backend,
            r.violations
        );
    }
}

/// The pool's default `TokioClock` follows turmoil's simulated time inside a host: an
/// idle session is reaped between `idle_timeout` and `idle_timeout + reap_interval +
/// tick` of simulated time, and the whole minute costs no wall time.
#[test]
fn tokio_clock_follows_turmoil_time() {
    let mut sim = turmoil::Builder::new()
        .epoch(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        .rng_seed(9)
        .tick_duration(Duration::from_millis(100))
        .simulation_duration(Duration::from_secs(600))
        .build();
    // A listener host so the simulation has a network peer; the pool runs in the client.
    sim.host("idle", || async {
        let _l = turmoil::net::TcpListener::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 1)).await?;
        std::future::pending::<()>().await;
        Ok(())
    });
    sim.client("driver", async {
        let config = PoolConfig::default()
            .with_max_browsers(2)
            .with_idle_timeout(Some(Duration::from_secs(60)))
            .with_reap_interval(Duration::from_secs(10))
            .with_tick(Duration::from_secs(1))
            .with_root(PathBuf::from("/sim/tmp"));
        let fs: Arc<dyn Filesystem> = Arc::new(MemFs::new());
        let pool = Pool::builder(config, NetLauncher::new())
            .filesystem(fs)
            .instance("00000000000a")
            .build()
            .await?;
        let lease = pool.acquire().await?;
        let start = turmoil::sim_elapsed().unwrap();
        while !lease.is_ended() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = turmoil::sim_elapsed().unwrap() - start;
        assert!(
            took >= Duration::from_secs(60) && took <= Duration::from_secs(72),
            "reaped after {took:?}"
        );
        assert!(matches!(
            lease.check(),
            Err(SessionError::Ended {
                reason: EndReason::IdleReaped { .. },
                ..
            })
        ));
        assert!(pool.launcher().alive().is_empty());
        Ok(())
    });
    let wall = Instant::now();
    sim.run().unwrap();
    assert!(sim.elapsed() >= Duration::from_secs(60));
    eprintln!("{:?} simulated in {:?} wall", sim.elapsed(), wall.elapsed());
}
