#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Scenario files: every preset loads, and bad input is an error naming the problem,
//! never a panic and never a silent default.

use browserpool_sim::scenario::{PolicyName, PoolSpec, Scenario, PRESETS};
use proptest::prelude::*;

fn err(toml: &str) -> String {
    match Scenario::from_toml("t", toml) {
        Ok(sc) => panic!("accepted: {toml}\n{sc:#?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_preset_and_extra_file_loads() {
    for p in PRESETS {
        Scenario::preset(p).unwrap();
    }
    let extra = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/extra");
    for e in std::fs::read_dir(extra).unwrap() {
        let p = e.unwrap().path();
        Scenario::load(p.to_str().unwrap()).unwrap();
    }
    Scenario::from_toml("empty", "").unwrap();
}

#[test]
fn an_unknown_capacity_policy_is_an_error_naming_the_field_and_the_choices() {
    // The defect: any unknown string silently meant evict_lru.
    for section in ["managed", "unmanaged"] {
        let e = err(&format!("[{section}]\ncapacity_policy = \"evict\"\n"));
        for want in [
            "capacity_policy",
            "\"evict\"",
            "evict_lru",
            "reject",
            "wait",
        ] {
            assert!(e.contains(want), "{section}: {want} not in {e}");
        }
    }
    let sc = Scenario::from_toml("t", "[managed]\ncapacity_policy = \"wait\"\n").unwrap();
    assert_eq!(sc.managed.capacity_policy, PolicyName::Wait);
}

#[test]
fn a_partial_unmanaged_section_keeps_the_old_behaviour_for_the_rest() {
    // The defect: omitted [unmanaged] fields took the managed pool's defaults (a reaper,
    // EvictLru, a sweep, owner release), so the "old pool" was not the old pool.
    let sc = Scenario::from_toml("t", "[unmanaged]\nmax_browsers = 4\n").unwrap();
    assert_eq!(sc.unmanaged, PoolSpec::unmanaged(4));
    assert_eq!(sc.unmanaged.idle_timeout_secs, 0.0);
    assert_eq!(sc.unmanaged.capacity_policy, PolicyName::Reject);
    assert!(!sc.unmanaged.sweep_on_start);
    assert_eq!(sc.unmanaged.release_grace_secs, -1.0);
    // Given fields win; [managed] is unaffected.
    let sc = Scenario::from_toml(
        "t",
        "[unmanaged]\nidle_timeout_secs = 60\ncapacity_policy = \"evict_lru\"\n",
    )
    .unwrap();
    assert_eq!(sc.unmanaged.idle_timeout_secs, 60.0);
    assert_eq!(sc.unmanaged.capacity_policy, PolicyName::EvictLru);
    assert!(!sc.unmanaged.sweep_on_start);
    assert_eq!(sc.managed, PoolSpec::default());
    // Without the section at all: the old behaviour too.
    assert_eq!(
        Scenario::from_toml("t", "").unwrap().unmanaged,
        PoolSpec::unmanaged(PoolSpec::default().max_browsers)
    );
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    for (toml, key) in [
        ("nmae = \"x\"\n", "nmae"),
        ("[managed]\nidle_timeout = 5\n", "idle_timeout"),
        ("[unmanaged]\nsweep = false\n", "sweep"),
        ("[workload]\nsessions = 3\n", "sessions"),
        ("[faults]\nlaunch_failure = 0.1\n", "launch_failure"),
        ("[host]\nlegacy = 2\n", "legacy"),
        ("[hosts]\n", "hosts"),
        (
            "[managed]\nlegacy = [{ prefix = \"chromelambda-\", shape = \"uuid\", x = 1 }]\n",
            "x",
        ),
    ] {
        let e = err(toml);
        assert!(e.contains(&format!("`{key}`")), "{key} not named in {e}");
    }
}

#[test]
fn out_of_range_values_are_errors_naming_the_field() {
    for (toml, field) in [
        ("duration_hours = -1.0\n", "duration_hours"),
        ("duration_hours = nan\n", "duration_hours"),
        ("duration_hours = inf\n", "duration_hours"),
        ("quiet_hours = 30.0\nduration_hours = 24.0\n", "quiet_hours"),
        (
            "[managed]\nidle_timeout_secs = -5\n",
            "[managed] idle_timeout_secs",
        ),
        ("[managed]\nmax_browsers = 0\n", "[managed] max_browsers"),
        (
            "[unmanaged]\nrelease_grace_secs = inf\n",
            "[unmanaged] release_grace_secs",
        ),
        ("[managed]\nlegacy_min_age_secs = 0\n", "legacy_min_age"),
        (
            "[managed]\nlegacy = [{ prefix = \"tmp\", shape = \"uuid\" }]\n",
            "legacy[0].prefix",
        ),
        (
            "[managed]\nlegacy = [{ prefix = \"chromelambda-\", shape = \"guid\" }]\n",
            "shape",
        ),
        (
            "[workload]\nops_min = 9\nops_max = 3\n",
            "[workload] ops_min",
        ),
        (
            "[workload]\nop_secs_min = 9\nop_secs_max = 3\n",
            "[workload] op_secs_min",
        ),
        ("[workload]\ndaily_cycle = 1.5\n", "[workload] daily_cycle"),
        (
            "[workload]\ndestroy = 0\ncrash = 0\ndisconnect = 0\nforget = 0\n",
            "destroy, crash, disconnect and forget",
        ),
        ("[faults]\nlaunch_fail = 2.0\n", "[faults] launch_fail"),
        (
            "[faults]\nrestart_delay_secs_max = inf\n",
            "[faults] restart_delay_secs_max",
        ),
        ("[host]\nprefix = \"tmp\"\n", "prefix"),
        ("[host]\nroot = \"tmp\"\n", "[host] root"),
        ("[host]\npid_space = 4294967295\n", "[host] pid_space"),
        ("[managed]\nmax_browsers = \"many\"\n", "max_browsers"),
    ] {
        let e = err(toml);
        assert!(e.contains(field), "{field} not named in {e}");
    }
}

fn preset_lines() -> Vec<String> {
    PRESETS
        .iter()
        .map(|p| {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scenarios")
                .join(format!("{p}.toml"));
            std::fs::read_to_string(path).unwrap()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = Scenario::from_toml("fuzz", &text);
    }

    #[test]
    fn arbitrary_toml_like_text_never_panics(
        text in "(\\[(managed|unmanaged|workload|faults|host)\\]\n)?([a-z_]{1,20} = (-?[0-9]{1,12}(\\.[0-9]{1,4})?|nan|inf|-inf|\"[a-z_ -]{0,12}\"|true|\\[\\]|\\{\\})\n){0,6}"
    ) {
        if let Ok(sc) = Scenario::from_toml("fuzz", &text) {
            // Whatever loads is valid, so the engine may run it.
            prop_assert!(sc.validate().is_ok());
        }
    }

    #[test]
    fn a_preset_with_one_value_replaced_loads_valid_or_names_the_key(
        which in 0..PRESETS.len(),
        line in any::<prop::sample::Index>(),
        value in prop_oneof![
            Just("nan".to_owned()),
            Just("-inf".to_owned()),
            Just("\"junk\"".to_owned()),
            Just("[]".to_owned()),
            any::<i64>().prop_map(|v| v.to_string()),
            any::<f64>().prop_map(|v| format!("{v:?}")),
        ],
    ) {
        let text = &preset_lines()[which];
        let lines: Vec<&str> = text.lines().collect();
        let assignments: Vec<usize> = (0..lines.len())
            .filter(|i| lines[*i].contains(" = ") && !lines[*i].trim_start().starts_with('#'))
            .collect();
        let i = assignments[line.index(assignments.len())];
        let key = lines[i].split(" = ").next().unwrap_or_default().trim().to_owned();
        let mut changed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        changed[i] = format!("{key} = {value}");
        match Scenario::from_toml("mutant", &changed.join("\n")) {
            Ok(sc) => prop_assert!(sc.validate().is_ok()),
            Err(e) => {
                let e = e.to_string();
                prop_assert!(e.contains(&key), "{} not named in {}", key, e);
            }
        }
    }
}
