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
