//! `serin validate` as a user runs it: on the seed manifests, on broken ones, on
//! unreadable files and on standard input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn serin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_serin"))
}

fn validate(files: &[&Path]) -> Output {
    let mut cmd = serin();
    cmd.arg("validate");
    for f in files {
        cmd.arg("-f").arg(f);
    }
    cmd.output().expect("serin runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn seed_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/seeds");
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("fixtures exist") {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
                && !path.to_string_lossy().ends_with(".fragment.yaml")
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn write_temp(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_seed_manifest_validates_without_errors() {
    let files = seed_files();
    assert!(
        files.len() >= 5,
        "expected the seed fixtures, found {files:?}"
    );
    let mut canaries = 0;
    for file in &files {
        let out = validate(&[file]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{}:\n{text}", file.display());
        assert!(!text.contains(": error: "), "{}:\n{text}", file.display());
        canaries += std::fs::read_to_string(file)
            .unwrap()
            .matches("kind: Canary")
            .count();
    }
    assert!(
        canaries >= 3,
        "the seeds hold several canaries, found {canaries}"
    );
}

#[test]
fn the_blog_post_typos_are_warnings() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/seeds/blog-ciwei/podinfo-canary.yaml");
    let out = validate(&[&file]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("Canary/test/podinfo: spec.progressDeadlineSes: warning: unknown field, did you mean progressDeadlineSeconds?"),
        "{text}"
    );
    assert!(
        text.contains(
            "spec.autoscalerRef.apiVerseersion: warning: unknown field, did you mean apiVersion?"
        ),
        "{text}"
    );
}

const CANARY: &str = "apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
";

#[test]
fn a_broken_manifest_exits_1_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_temp(dir.path(), "good.yaml", CANARY);
    let bad = write_temp(
        dir.path(),
        "bad.yaml",
        &CANARY.replace("stepWeight: 10", "stepWeight: 60"),
    );
    let out = validate(&[&good, &bad]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let expected = format!(
        "{}: Canary/test/podinfo: spec.analysis.stepWeight: error: 60 is above maxWeight 50",
        bad.display()
    );
    assert!(text.lines().any(|l| l == expected), "{text}");
    assert!(!text.contains(&good.display().to_string()), "{text}");
    assert!(
        text.ends_with("2 documents in 2 files: 2 checked, 1 error, 0 warnings\n"),
        "{text}"
    );
}

#[test]
fn unknown_fields_warn_and_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_temp(
        dir.path(),
        "typo.yaml",
        &CANARY.replace("  service:", "  progressDeadlineSes: 60\n  service:"),
    );
    let out = validate(&[&file]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("spec.progressDeadlineSes: warning: unknown field, did you mean progressDeadlineSeconds?"),
        "{text}"
    );
}

#[test]
fn an_unparseable_file_exits_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_temp(
        dir.path(),
        "broken.yaml",
        &format!("{CANARY}---\nkind: [unclosed\n"),
    );
    let out = validate(&[&file]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with(&format!("{}:", file.display())), "{err}");
    let line: usize = err
        .split(':')
        .nth(1)
        .unwrap()
        .parse()
        .expect("a line number");
    assert!(line >= 19, "the error is in the second document: {err}");

    let missing = dir.path().join("nope.yaml");
    let out = validate(&[&missing]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.yaml"));
}

#[test]
fn standard_input_is_read_with_dash() {
    let mut child = serin()
        .args(["validate", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            CANARY
                .replace("kind: Deployment", "kind: StatefulSet")
                .as_bytes(),
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "-: Canary/test/podinfo: spec.targetRef.kind: error: unsupported target kind"
        ),
        "{text}"
    );
}

/// `n` weighted Canaries; every tenth has stepWeight above maxWeight, every seventh a
/// misspelt field, a third are A/B tests with a header regex.
fn many_canaries(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let step = if i % 10 == 0 { 80 } else { 10 };
        let extra = if i % 7 == 0 {
            "stepWieght"
        } else {
            "stepWeightPromotion"
        };
        let mode = if i % 3 == 1 {
            format!(
                "    iterations: 10\n    match:\n    - headers:\n        x-canary:\n          regex: \"^(insider|beta-{i})$\"\n"
            )
        } else {
            format!("    maxWeight: 50\n    stepWeight: {step}\n    {extra}: 20\n")
        };
        out.push_str(&format!(
            "---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: app-{i}
  namespace: team-{ns}
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: app-{i}
  service:
    port: 9898
    hosts:
    - app-{i}.example.com
  analysis:
    interval: 1m
    threshold: 5
{mode}    metrics:
    - name: request-success-rate
      thresholdRange:
        min: 99
      interval: 1m
    - name: request-duration
      thresholdRange:
        max: 500
      interval: 30s
    webhooks:
    - name: acceptance-test
      type: pre-rollout
      url: http://flagger-loadtester.test/
      timeout: 30s
      metadata:
        type: bash
        cmd: \"curl -sd test http://app-{i}-canary.team-{ns}:9898/token\"
    - name: load-test
      url: http://flagger-loadtester.test/
      timeout: 5s
      metadata:
        cmd: \"hey -z 1m -q 10 -c 2 http://app-{i}-canary.team-{ns}:9898/\"
",
            ns = i % 50
        ));
    }
    out
}

/// Runs a command to its end; its output and its peak resident memory in KiB (from
/// the kernel's accounting of that one child, `wait4`).
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, which std's Child does not know of"
)]
fn run_with_peak_memory(cmd: &mut Command) -> (i32, String, i64) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("serin runs");
    let mut pipe = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut pipe, &mut s).unwrap();
        s
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not waited for yet; both pointers are valid.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, reader.join().unwrap(), usage.ru_maxrss)
}

#[test]
fn a_large_stream_is_checked_in_bounded_memory_and_reported_in_input_order() {
    // 6,000 Canaries, 5.8 MB of YAML. Read whole, their parsed values took about 90 MiB
    // here; read one batch at a time, about 31 MiB (this debug build's own pages
    // included), whatever the size of the stream.
    let n = 6000;
    let dir = tempfile::tempdir().unwrap();
    let text = many_canaries(n);
    assert!(text.len() > 5_500_000, "{} bytes", text.len());
    let file = write_temp(dir.path(), "many.yaml", &text);
    let (code, out, peak_kib) =
        run_with_peak_memory(serin().args(["validate", "-f", file.to_str().unwrap()]));
    assert_eq!(code, 1, "{}", out.lines().last().unwrap_or_default());
    let weighted = (0..n).filter(|i| i % 3 != 1);
    let errors = weighted.clone().filter(|i| i % 10 == 0).count();
    let warnings = weighted.filter(|i| i % 7 == 0).count();
    assert_eq!(
        out.lines().last().unwrap(),
        format!("{n} documents in 1 file: {n} checked, {errors} errors, {warnings} warnings")
    );
    // Every finding, in the order of the input, across batches and workers.
    let order: Vec<usize> = out
        .lines()
        .filter(|l| l.contains(": error: "))
        .map(|l| {
            let name = l.split(": ").nth(1).unwrap().rsplit('/').next().unwrap();
            name.strip_prefix("app-").unwrap().parse().unwrap()
        })
        .collect();
    let expected: Vec<usize> = (0..n).filter(|i| i % 3 != 1 && i % 10 == 0).collect();
    assert_eq!(order, expected);
    assert!(
        peak_kib < 64 * 1024,
        "serin validate peaked at {} MiB on {} MB of input",
        peak_kib / 1024,
        text.len() / 1_000_000
    );
}

#[test]
fn crds_prints_three_definitions() {
    let out = serin().arg("crds").output().unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("  name: "))
        .collect();
    assert_eq!(
        names,
        [
            "canaries.flagger.app",
            "metrictemplates.flagger.app",
            "alertproviders.flagger.app"
        ]
    );
}
