//! The binary refuses invalid settings with exit status 2 and a message naming the flag,
//! whether the value came from a flag, an environment variable or the `--config` file.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_browserpool-server"));
    cmd.args(args).env_remove("BROWSERPOOL_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn refused(args: &[&str], env: &[(&str, &str)], flag: &str) {
    let (code, stderr) = run(args, env);
    assert_eq!(code, 2, "{args:?} {env:?}: {stderr}");
    assert!(
        stderr.contains(flag),
        "{args:?} {env:?}: expected {flag} in: {stderr}"
    );
}

#[test]
fn invalid_flags_exit_2_naming_the_flag() {
    refused(&["--idle-timeout", "5 parsecs"], &[], "--idle-timeout");
    refused(&["--max-browsers", "0"], &[], "--max-browsers");
    refused(&["--max-browsers", "many"], &[], "--max-browsers");
    refused(&["--reap-interval", "0ms"], &[], "--reap-interval");
    refused(&["--capacity-policy", "yolo"], &[], "--capacity-policy");
    refused(&["--listen", "0.0.0.0:9222"], &[], "--listen");
    refused(&["--token", "short"], &[], "--token");
    refused(&["--log-format", "xml"], &[], "--log-format");
    refused(&["--root", "relative"], &[], "--root");
    refused(&["--chromium", "/nonexistent/chromium"], &[], "--chromium");
}

#[test]
fn invalid_environment_values_exit_2_naming_the_flag() {
    refused(
        &[],
        &[("BROWSERPOOL_IDLE_TIMEOUT", "soonish")],
        "--idle-timeout",
    );
    refused(&[], &[("BROWSERPOOL_MAX_BROWSERS", "0")], "--max-browsers");
    refused(
        &[],
        &[("BROWSERPOOL_RELEASE_GRACE", "-1s")],
        "--release-grace",
    );
}

#[test]
fn invalid_config_files_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    let p = path.to_str().unwrap();
    std::fs::write(&path, "drain-timeout = \"later\"\n").unwrap();
    refused(&["--config", p], &[], "--drain-timeout");
    std::fs::write(&path, "max-browsers = 0\n").unwrap();
    refused(&["--config", p], &[], "--max-browsers");
    std::fs::write(&path, "no-such-key = 1\n").unwrap();
    refused(&["--config", p], &[], "no-such-key");
    refused(&["--config", "/nonexistent/server.toml"], &[], "--config");
}

#[test]
fn help_lists_every_flag_of_the_issue() {
    let out = Command::new(env!("CARGO_BIN_EXE_browserpool-server"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--public-url",
        "--root",
        "--prefix",
        "--max-browsers",
        "--capacity-policy",
        "--queue",
        "--idle-timeout",
        "--reap-interval",
        "--memory-budget",
        "--max-session-memory",
        "--memory-interval",
        "--release-grace",
        "--max-lifetime",
        "--max-uses",
        "--launch-timeout",
        "--kill-timeout",
        "--chromium",
        "--chromium-arg",
        "--token",
        "--drain-timeout",
        "--log-format",
        "--config",
        "--insecure-listen-any",
        "BROWSERPOOL_IDLE_TIMEOUT",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}
