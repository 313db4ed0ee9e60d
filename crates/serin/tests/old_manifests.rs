//! The 2019 seeds' manifests as one file each, as their readers keep them: the
//! HorizontalPodAutoscaler is `autoscaling/v2beta1` (Flagger 0.x's
//! artifacts/canaries/hpa.yaml, shown by seed 004 and applied by seed 001, whose
//! Canary's `autoscalerRef` names that version). No current Kubernetes serves
//! v2beta1; `serin validate`, `render` and `simulate` read the HPA as
//! `autoscaling/v2`, as the API server converts it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use serin_api::load::parse_documents;

fn seed(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/seeds")
        .join(rel)
}

/// The fixtures joined into one multi-document file.
fn whole_file(dir: &Path, name: &str, parts: &[&str]) -> PathBuf {
    let text = parts
        .iter()
        .map(|p| std::fs::read_to_string(seed(p)).expect("fixture"))
        .collect::<Vec<_>>()
        .join("---\n");
    assert!(text.contains("apiVersion: autoscaling/v2beta1"));
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// Seed 004's four manifests (namespace, Deployment, v2beta1 HPA, Canary).
fn seed_004(dir: &Path) -> PathBuf {
    whole_file(
        dir,
        "seed-004.yaml",
        &[
            "blog-ciwei/test-namespace.yaml",
            "blog-ciwei/podinfo-deployment.yaml",
            "blog-ciwei/podinfo-hpa.yaml",
            "blog-ciwei/podinfo-canary.yaml",
        ],
    )
}

/// Seed 001's Canary (`autoscalerRef.apiVersion: autoscaling/v2beta1`) with the HPA
/// and a podinfo Deployment of the same Flagger release.
fn seed_001(dir: &Path) -> PathBuf {
    whole_file(
        dir,
        "seed-001.yaml",
        &[
            "blog-ciwei/podinfo-deployment.yaml",
            "blog-ciwei/podinfo-hpa.yaml",
            "blog-gke/podinfo-canary.yaml",
        ],
    )
}

fn serin(args: &[&str], file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_serin"))
        .arg(args[0])
        .arg("-f")
        .arg(file)
        .args(&args[1..])
        .output()
        .expect("serin runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn validate_reads_the_v2beta1_hpa_as_v2_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    for file in [seed_004(dir.path()), seed_001(dir.path())] {
        let out = serin(&["validate"], &file);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
        let at = format!("{}: HorizontalPodAutoscaler/test/podinfo: ", file.display());
        for line in [
            format!(
                "{at}apiVersion: warning: deprecated, autoscaling/v2beta1 is read as autoscaling/v2: \
                 Kubernetes no longer serves autoscaling/v2beta1 (removed in 1.25)"
            ),
            format!(
                "{at}spec.metrics[0].resource: warning: deprecated, read as autoscaling/v2: \
                 target {{\"type\":\"Utilization\",\"averageUtilization\":99}}"
            ),
        ] {
            assert!(
                stdout.lines().any(|l| l == line),
                "no line {line:?} in\n{stdout}"
            );
        }
        assert!(stdout.contains(", 0 errors, "), "{stdout}");
    }
}

fn objects(o: &Output) -> Vec<Value> {
    parse_documents("stdout", &text(&o.stdout))
        .expect("a YAML stream")
        .into_iter()
        .map(|d| d.value)
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {objects:#?}"))
}

#[test]
fn render_makes_the_primary_hpa_in_autoscaling_v2() {
    let dir = tempfile::tempdir().unwrap();
    for file in [seed_004(dir.path()), seed_001(dir.path())] {
        let out = serin(&["render"], &file);
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            text(&out.stderr)
        );
        let objects = objects(&out);
        let hpa = find(&objects, "HorizontalPodAutoscaler", "podinfo-primary");
        assert_eq!(hpa["apiVersion"], "autoscaling/v2", "{hpa:#}");
        assert_eq!(
            hpa["spec"]["scaleTargetRef"],
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo-primary"})
        );
        assert_eq!(hpa["spec"]["minReplicas"], 2);
        assert_eq!(hpa["spec"]["maxReplicas"], 4);
        assert_eq!(
            hpa["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 99}}}])
        );
        // The primary starts at the HPA's minimum.
        let primary = find(&objects, "Deployment", "podinfo-primary");
        assert_eq!(primary["spec"]["replicas"], 2, "{primary:#}");
    }
}

#[test]
fn simulate_runs_the_whole_file_with_its_own_hpa() {
    let dir = tempfile::tempdir().unwrap();
    for file in [seed_004(dir.path()), seed_001(dir.path())] {
        let out = serin(
            &[
                "simulate",
                "--metric",
                "request-success-rate=99.5",
                "--metric",
                "request-duration=250",
            ],
            &file,
        );
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{}: {stdout}{stderr}", file.display());
        assert!(
            stdout
                .lines()
                .last()
                .unwrap_or_default()
                .starts_with("result: Succeeded"),
            "{stdout}"
        );
        assert!(
            !stderr.contains("stand-in horizontalpodautoscaler"),
            "the file's HPA is used: {stderr}"
        );
    }
}
