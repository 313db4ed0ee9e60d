//! `serin simulate` on the seed's podinfo canary: the printed events and result.

use std::path::PathBuf;
use std::process::Command;

fn seed_canary() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/seeds/istio-guide/podinfo-canary.yaml")
}

fn simulate(extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_serin"))
        .arg("simulate")
        .arg("-f")
        .arg(seed_canary())
        .args(extra)
        .output()
        .expect("serin runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn healthy_metrics_promote_with_timed_events() {
    let (ok, stdout) = simulate(&[
        "--metric",
        "request-success-rate=99.5",
        "--metric",
        "request-duration=250",
    ]);
    assert!(ok, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    // Each line is `MM:SS Type message`; the steps are one analysis interval apart.
    let at = |message: &str| -> u64 {
        let line = lines
            .iter()
            .find(|l| l.ends_with(message))
            .unwrap_or_else(|| panic!("no {message:?} in\n{stdout}"));
        seconds(line)
    };
    let detected = at("Normal New revision detected! Scaling up podinfo.test");
    let step10 = at("Normal Advance podinfo.test canary weight 10");
    let step50 = at("Normal Advance podinfo.test canary weight 50");
    let done = at("Normal Promotion completed! Scaling down podinfo.test");
    assert!(detected < 5, "the new revision is seen at once\n{stdout}");
    assert_eq!(step10 - detected, 60, "{stdout}");
    assert_eq!(step50 - step10, 4 * 60, "{stdout}");
    assert_eq!(done - step50, 3 * 60, "copy, route back, finish\n{stdout}");
    let finished = &lines[lines.len() - 2][..5];
    assert_eq!(
        lines.last().copied(),
        Some(format!("result: Succeeded after {finished}").as_str())
    );
}

fn seconds(line: &str) -> u64 {
    let (m, s) = line[..5].split_once(':').expect("MM:SS");
    m.parse::<u64>().expect("minutes") * 60 + s.parse::<u64>().expect("seconds")
}

#[test]
fn low_success_rate_rolls_back_at_the_threshold() {
    let (ok, stdout) = simulate(&[
        "--metric",
        "request-success-rate=69.17",
        "--metric",
        "request-duration=250",
    ]);
    assert!(!ok, "a failed canary exits non-zero\n{stdout}");
    let halts = stdout
        .lines()
        .filter(|l| l.ends_with("Warning Halt podinfo.test advancement success rate 69.17% < 99%"))
        .count();
    assert_eq!(halts, 5, "{stdout}");
    assert!(stdout.contains("Warning Rolling back podinfo.test failed checks threshold reached 5"));
    assert!(stdout.contains("Warning Canary failed! Scaling down podinfo.test"));
    let lines: Vec<&str> = stdout.lines().collect();
    let rollback = lines[lines.len() - 2];
    assert!(rollback.ends_with("Warning Canary failed! Scaling down podinfo.test"));
    assert_eq!(
        lines[lines.len() - 1],
        format!("result: Failed after {}", &rollback[..5])
    );
}

#[test]
fn json_format_and_a_missing_metric_value() {
    let (ok, stdout) = simulate(&["--metric", "request-success-rate=99.9", "--format", "json"]);
    assert!(!ok);
    let objects: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert!(objects.iter().any(|o| {
        o["message"]
            .as_str()
            .is_some_and(|m| m.contains("request-duration has no simulated value"))
    }));
    let last = objects.last().expect("a result object");
    assert_eq!(last["result"], "Failed");
}

#[test]
fn bad_arguments_are_clear_errors() {
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_serin"))
            .arg("simulate")
            .arg("-f")
            .arg(seed_canary())
            .args(extra)
            .output()
            .expect("serin runs")
    };
    // Each refusal names the argument and why, and no simulation runs.
    for (args, message) in [
        (
            &["--metric", "request-success-rate=lots"][..],
            "--metric request-success-rate=lots: lots is not a number",
        ),
        (
            &["--metric", "request-success-rate"][..],
            "--metric request-success-rate: expected NAME=VALUE",
        ),
        (
            &["--metric", "request-success-rate=inf"][..],
            "--metric request-success-rate=inf: the value must be a finite number",
        ),
        (
            &["--webhook", "acceptance-test=maybe"][..],
            "--webhook acceptance-test=maybe: expected NAME=pass or NAME=fail",
        ),
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{args:?}: nothing simulated, yet: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_serin"))
        .args(["simulate", "-f", "/nonexistent/canary.yaml"])
        .output()
        .expect("serin runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/canary.yaml"));
}

#[test]
fn every_spelling_of_the_file_flag_runs_the_same_rollout() {
    // `--filename` is what validate, render, query, alert and kubectl spell; `-f` and the
    // old `--file` keep working.
    let run = |flag: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_serin"))
            .args(["simulate", flag])
            .arg(seed_canary())
            .args(["--metric", "request-success-rate=99.5"])
            .args(["--metric", "request-duration=250"])
            .output()
            .expect("serin runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "simulate {flag}: {stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let short = run("-f");
    assert!(short.contains("Promotion completed"), "{short}");
    assert_eq!(run("--filename"), short);
    assert_eq!(run("--file"), short);
}
