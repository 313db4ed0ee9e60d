//! The Canary CRD's apply-time checks (bounds, patterns, the webhook type enum, CEL rules)
//! as a user meets them: real kubectl against the sandbox, which enforces the CRD's schema
//! as kube-apiserver does. A bad Canary is refused naming the field and the reason; every
//! Canary the repository ships (fixtures from the seeds, gitops/, the demo) still applies;
//! and `serin validate` finds an error at the same field for every spec the CRD refuses.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use serin_api::load::{Document, parse_documents};
use serin_api::validate::{Severity, validate_document};
use serin_sandbox::{Sandbox, SandboxOptions, ServeHandle};

const KUBECTL: &str = "/usr/bin/kubectl";

struct Cluster {
    _sandbox: Sandbox,
    server: Option<ServeHandle>,
    dir: tempfile::TempDir,
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

impl Cluster {
    async fn start() -> Self {
        let sandbox = Sandbox::new(SandboxOptions::default());
        let server = sandbox.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        sandbox
            .write_kubeconfig(&dir.path().join("kubeconfig"), server.addr())
            .unwrap();
        let c = Self {
            _sandbox: sandbox,
            server: Some(server),
            dir,
        };
        let crds = repo("deploy/crds/crds.yaml");
        let out = c.run(&["apply", "-f", crds.to_str().unwrap()]).await;
        assert!(out.ok, "the CRDs apply: {}", out.stderr);
        c
    }

    async fn run(&self, args: &[&str]) -> Output {
        let child = tokio::process::Command::new(KUBECTL)
            .args(args)
            .arg(format!(
                "--cache-dir={}",
                self.dir.path().join("cache").display()
            ))
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("kubectl runs");
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .unwrap();
        Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `kubectl apply -f` of one object, written to a file of its own.
    async fn apply(&self, obj: &Value, extra: &[&str]) -> Output {
        let name = obj["metadata"]["name"].as_str().unwrap_or("obj");
        let path = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(obj).unwrap()).unwrap();
        let mut args = vec!["apply", "-f", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.run(&args).await
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// The seeds' Canary (Flagger's Istio guide), as a JSON object named `name`.
fn good_canary(name: &str) -> Value {
    let text =
        std::fs::read_to_string(repo("tests/fixtures/seeds/istio-guide/podinfo-canary.yaml"))
            .unwrap();
    let mut c = parse_documents("seed", &text).unwrap().remove(0).value;
    c["metadata"] = json!({"name": name, "namespace": "test"});
    c
}

/// One bad Canary: what is changed in the good one, and what kubectl must print.
struct Bad {
    name: &'static str,
    change: fn(&mut Value),
    /// Lines kubectl prints after `The Canary "NAME" is invalid: `.
    expect: &'static [&'static str],
    /// Where `serin validate` must find an error.
    validate_path: &'static str,
}

fn analysis(c: &mut Value) -> &mut Value {
    &mut c["spec"]["analysis"]
}

const BAD: &[Bad] = &[
    // Refused before the CRD had bounds too, but kubectl printed only `The Canary
    // "stepweight-string" is invalid`: the 422 had no details.causes.
    Bad {
        name: "step-weight-string",
        change: |c| analysis(c)["stepWeight"] = json!("ten"),
        expect: &[
            "spec.analysis.stepWeight: Invalid value: \"string\": spec.analysis.stepWeight in body must be of type integer: \"string\"",
        ],
        validate_path: "spec.analysis.stepWeight",
    },
    Bad {
        name: "max-weight-1000",
        change: |c| analysis(c)["maxWeight"] = json!(1000),
        expect: &[
            "spec.analysis.maxWeight: Invalid value: 1000: spec.analysis.maxWeight in body should be less than or equal to 100",
        ],
        validate_path: "spec.analysis.maxWeight",
    },
    Bad {
        name: "step-weight-300",
        change: |c| analysis(c)["stepWeight"] = json!(300),
        expect: &[
            "spec.analysis.stepWeight: Invalid value: 300: spec.analysis.stepWeight in body should be less than or equal to 100",
            "spec.analysis.stepWeight: Invalid value: stepWeight must not be above maxWeight",
        ],
        validate_path: "spec.analysis.stepWeight",
    },
    Bad {
        name: "step-weight-above-max",
        change: |c| analysis(c)["stepWeight"] = json!(60),
        expect: &[
            "spec.analysis.stepWeight: Invalid value: stepWeight must not be above maxWeight",
        ],
        validate_path: "spec.analysis.stepWeight",
    },
    Bad {
        name: "step-weight-negative",
        change: |c| analysis(c)["stepWeight"] = json!(-10),
        expect: &[
            "spec.analysis.stepWeight: Invalid value: -10: spec.analysis.stepWeight in body should be greater than or equal to 0",
        ],
        validate_path: "spec.analysis.stepWeight",
    },
    Bad {
        name: "interval-abc",
        change: |c| analysis(c)["interval"] = json!("abc"),
        expect: &[
            "spec.analysis.interval: Invalid value: \"abc\": spec.analysis.interval in body should match '^(0|",
        ],
        validate_path: "spec.analysis.interval",
    },
    Bad {
        name: "webhook-type-unknown",
        change: |c| analysis(c)["webhooks"][0]["type"] = json!("pre-rolout"),
        expect: &[
            "spec.analysis.webhooks[0].type: Unsupported value: \"pre-rolout\": supported values: \"\", \"confirm-rollout\", \"pre-rollout\", \"rollout\", \"confirm-traffic-increase\", \"confirm-promotion\", \"post-rollout\", \"rollback\", \"event\"",
        ],
        validate_path: "spec.analysis.webhooks[0].type",
    },
    Bad {
        name: "threshold-range-min-above-max",
        change: |c| analysis(c)["metrics"][0]["thresholdRange"] = json!({"min": 99, "max": 1}),
        expect: &[
            "spec.analysis.metrics[0].thresholdRange: Invalid value: min must not be above max",
        ],
        validate_path: "spec.analysis.metrics[0].thresholdRange",
    },
    Bad {
        name: "step-weights-decrease",
        change: |c| {
            let a = analysis(c).as_object_mut().unwrap();
            a.remove("stepWeight");
            a.insert("stepWeights".into(), json!([10, 5, 20]));
        },
        expect: &[
            "spec.analysis.stepWeights: Invalid value: stepWeights must increase: each weight above the one before",
        ],
        validate_path: "spec.analysis.stepWeights[1]",
    },
    Bad {
        name: "step-weights-repeat",
        change: |c| {
            let a = analysis(c).as_object_mut().unwrap();
            a.remove("stepWeight");
            a.insert("stepWeights".into(), json!([10, 20, 20, 40]));
        },
        expect: &[
            "spec.analysis.stepWeights: Invalid value: stepWeights must increase: each weight above the one before",
        ],
        validate_path: "spec.analysis.stepWeights[2]",
    },
    Bad {
        name: "threshold-negative",
        change: |c| analysis(c)["threshold"] = json!(-1),
        expect: &[
            "spec.analysis.threshold: Invalid value: -1: spec.analysis.threshold in body should be greater than or equal to 0",
        ],
        validate_path: "spec.analysis.threshold",
    },
    Bad {
        name: "webhook-timeout-bad",
        change: |c| analysis(c)["webhooks"][0]["timeout"] = json!("30 seconds"),
        expect: &[
            "spec.analysis.webhooks[0].timeout: Invalid value: \"30 seconds\": spec.analysis.webhooks[0].timeout in body should match",
        ],
        validate_path: "spec.analysis.webhooks[0].timeout",
    },
    Bad {
        name: "old-api-max-weight",
        change: |c| {
            c["apiVersion"] = json!("flagger.app/v1alpha3");
            let spec = c["spec"].as_object_mut().unwrap();
            let mut a = spec.remove("analysis").unwrap();
            a["maxWeight"] = json!(101);
            spec.insert("canaryAnalysis".into(), a);
        },
        expect: &[
            "spec.canaryAnalysis.maxWeight: Invalid value: 101: spec.canaryAnalysis.maxWeight in body should be less than or equal to 100",
        ],
        // serin validate reads the old block as `analysis` (and says so in a warning).
        validate_path: "spec.analysis.maxWeight",
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_of_a_bad_canary_names_the_field_and_the_reason() {
    let c = Cluster::start().await;
    assert!(c.run(&["create", "ns", "test"]).await.ok);
    let good = good_canary("good");
    let out = c.apply(&good, &[]).await;
    assert!(out.ok, "the seed's Canary applies: {}", out.stderr);
    // A null field is absent to the rules (a Helm value left empty renders as null).
    let mut nulls = good_canary("nulls");
    analysis(&mut nulls)["maxWeight"] = Value::Null;
    analysis(&mut nulls)["metrics"][0]["thresholdRange"]["max"] = Value::Null;
    let out = c.apply(&nulls, &[]).await;
    assert!(out.ok, "a Canary with null fields applies: {}", out.stderr);

    let mut several = good_canary("several");
    analysis(&mut several)["maxWeight"] = json!(1000);
    analysis(&mut several)["interval"] = json!("1 minute");

    for bad in BAD {
        let mut obj = good_canary(bad.name);
        (bad.change)(&mut obj);
        let out = c.apply(&obj, &[]).await;
        assert!(!out.ok, "{}: kubectl accepted it: {}", bad.name, out.stdout);
        let head = format!("The Canary \"{}\" is invalid: ", bad.name);
        assert!(
            out.stderr.lines().any(|l| l.starts_with(&head)),
            "{}: {}",
            bad.name,
            out.stderr
        );
        for line in bad.expect {
            assert!(
                out.stderr.contains(line),
                "{}: kubectl printed\n{}\nwithout\n{line}",
                bad.name,
                out.stderr
            );
        }
        let get = c.run(&["-n", "test", "get", "canary", bad.name]).await;
        assert!(!get.ok, "{}: the refused Canary exists", bad.name);

        // `serin validate` agrees: an error at the field the CRD names.
        let doc = Document {
            source: bad.name.into(),
            line: 1,
            value: obj,
        };
        let findings = validate_document(&doc);
        assert!(
            findings
                .iter()
                .any(|f| f.severity == Severity::Error && f.path == bad.validate_path),
            "{}: serin validate has no error at {}: {findings:?}",
            bad.name,
            bad.validate_path
        );
    }

    // Several errors: kubectl lists each.
    let out = c.apply(&several, &[]).await;
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains("* spec.analysis.maxWeight: Invalid value: 1000")
            && out
                .stderr
                .contains("* spec.analysis.interval: Invalid value: \"1 minute\""),
        "{}",
        out.stderr
    );
    c.stop().await;
}

/// Every Canary document of the YAML files under `dir` (recursively), fragments left out.
fn canaries_under(dir: &Path, out: &mut Vec<(String, Value)>) {
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.to_string_lossy().into_owned();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if !(name.ends_with(".yaml") || name.ends_with(".yml"))
                || name.ends_with(".fragment.yaml")
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let Ok(docs) = parse_documents(&name, &text) else {
                continue;
            };
            for d in docs {
                if d.kind() == "Canary" && d.api_version().starts_with("flagger.app/") {
                    out.push((format!("{name}:{}", d.line), d.value));
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_canary_the_repository_ships_still_applies() {
    let mut canaries = Vec::new();
    for dir in [
        "tests/fixtures",
        "gitops",
        "deploy",
        "crates/simulate/src/demo",
    ] {
        canaries_under(&repo(dir), &mut canaries);
    }
    canaries_under(&repo("crates/metrics/tests/fixtures"), &mut canaries);
    assert!(canaries.len() >= 10, "found only {canaries:?}");
    let c = Cluster::start().await;
    for (i, (source, mut obj)) in canaries.into_iter().enumerate() {
        let ns = format!("ns{i}");
        assert!(c.run(&["create", "ns", &ns]).await.ok);
        obj["metadata"]["namespace"] = json!(ns);
        // The seeds keep their typos (unknown fields, which kubectl's default strict
        // field validation refuses, with or without the CRD's rules): warn only.
        let out = c.apply(&obj, &["--validate=warn"]).await;
        assert!(out.ok, "{source} is refused:\n{}", out.stderr);
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_whose_default_breaks_its_own_bounds_is_refused_as_kube_apiserver_does() {
    // As the real API server refused deploy/crds when service.port had `minimum: 1`
    // beside its schema default 0.
    let text = std::fs::read_to_string(repo("deploy/crds/crds.yaml")).unwrap();
    let mut crd = parse_documents("crds", &text).unwrap().remove(0).value;
    assert_eq!(crd["metadata"]["name"], "canaries.flagger.app");
    for v in crd["spec"]["versions"].as_array_mut().unwrap() {
        let port = &mut v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["service"]
            ["properties"]["port"];
        assert_eq!(port["default"], json!(0));
        port["minimum"] = json!(1);
    }
    crd["metadata"]["name"] = json!("canaries.flagger.app");
    let c = Cluster::start().await;
    let out = c.apply(&crd, &[]).await;
    assert!(!out.ok, "{}", out.stdout);
    // kube-apiserver's words, as the real tier saw them.
    assert_eq!(
        out.stderr.trim(),
        "The CustomResourceDefinition \"canaries.flagger.app\" is invalid: \
         spec.validation.openAPIV3Schema.properties[spec].properties[service].properties[port].default: \
         Invalid value: 0:  in body should be greater than or equal to 1"
    );
    c.stop().await;
}
