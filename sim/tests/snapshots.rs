#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Pinned traces of a few short runs: any behaviour change shows up as a reviewed diff.
//! In CI (`CI=true`) insta fails on a changed or missing snapshot and writes nothing;
//! locally, review changes with `cargo insta review`.

use browserpool_sim::engine::{run, Mode, RunOptions};
use browserpool_sim::scenario::Scenario;

fn trace(toml: &str, seed: u64, mode: Mode) -> String {
    let sc = Scenario::from_toml("snapshot", toml).unwrap();
    let out = run(
        &sc,
        seed,
        RunOptions {
            mode,
            full_trace: true,
            sabotage: Default::default(),
        },
    )
    .unwrap();
    let mut s = out.trace.join("\n");
    s.push_str(&format!(
        "\n--- report\n{}",
        serde_json::to_string_pretty(&out.report).unwrap()
    ));
    s
}

const CLIENT_MIX: &str = r#"
name = "client-mix"
duration_hours = 2.0
quiet_hours = 1.0
[managed]
max_browsers = 3
[unmanaged]
max_browsers = 3
idle_timeout_secs = 0
capacity_policy = "reject"
sweep_on_start = false
release_grace_secs = -1
[workload]
sessions_per_day = 300
daily_cycle = 0.0
ops_min = 1
ops_max = 3
destroy = 1
crash = 1
disconnect = 1
forget = 1
[faults]
swarm = false
[host]
neighbours = true
"#;

const SERVER_CRASH: &str = r#"
name = "server-crash"
duration_hours = 3.0
quiet_hours = 1.0
[managed]
max_browsers = 3
legacy = [{ prefix = "chromelambda-", shape = "uuid" }]
[unmanaged]
max_browsers = 3
idle_timeout_secs = 0
capacity_policy = "reject"
sweep_on_start = false
release_grace_secs = -1
[workload]
sessions_per_day = 60
daily_cycle = 0.0
ops_min = 2
ops_max = 4
think_secs_min = 60
think_secs_max = 600
[faults]
swarm = false
server_crash_per_day = 24.0
crash_during_sweep = 0.5
launch_hang = 0.1
kill_slow = 0.3
kill_escalation = 0.3
restart_delay_secs_max = 60
[host]
legacy_leftovers = 1
"#;

#[test]
fn client_mix_managed() {
    insta::assert_snapshot!(trace(CLIENT_MIX, 1, Mode::Managed));
}

#[test]
fn client_mix_unmanaged() {
    insta::assert_snapshot!(trace(CLIENT_MIX, 1, Mode::Unmanaged));
}

#[test]
fn server_crash_and_sweep_managed() {
    insta::assert_snapshot!(trace(SERVER_CRASH, 2, Mode::Managed));
}
