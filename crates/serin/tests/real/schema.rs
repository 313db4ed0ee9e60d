//! The Canary CRD's apply-time checks (deploy/crds: bounds, duration patterns, the
//! webhook type enum, CEL rules) on the real API server: kubectl refuses each bad Canary
//! naming the field, with the words the sandbox uses for the same Canary; the seeds' and
//! Flagger's own e2e Canaries are accepted by both.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use serin_api::load::parse_documents;

use crate::support::*;

/// `serin sandbox` in process, served on loopback, with deploy/crds applied: kubectl's
/// words against it are compared with the real API server's.
struct Sandbox {
    _rt: tokio::runtime::Runtime,
    _sandbox: serin_sandbox::Sandbox,
    _server: serin_sandbox::ServeHandle,
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn start(namespace: &str) -> Sandbox {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sandbox = serin_sandbox::Sandbox::new(Default::default());
        let server = rt
            .block_on(sandbox.serve("127.0.0.1:0".parse().unwrap()))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        sandbox
            .write_kubeconfig(&dir.path().join("kubeconfig"), server.addr())
            .unwrap();
        let s = Sandbox {
            _rt: rt,
            _sandbox: sandbox,
            _server: server,
            dir,
        };
        let crds = repo_root().join("deploy/crds/crds.yaml");
        s.kubectl(&["apply", "-f", crds.to_str().unwrap()])
            .expect_ok("deploy/crds applies to the sandbox");
        s.kubectl(&["create", "namespace", namespace])
            .expect_ok("sandbox namespace");
        s
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        kubectl_with(&self.kubeconfig(), args)
    }
}

fn good_canary(name: &str) -> Value {
    let text = std::fs::read_to_string(
        repo_root().join("tests/fixtures/seeds/istio-guide/podinfo-canary.yaml"),
    )
    .unwrap();
    let mut c = parse_documents("seed", &text).unwrap().remove(0).value;
    c["metadata"] = json!({"name": name});
    c
}

fn analysis(c: &mut Value) -> &mut Value {
    &mut c["spec"]["analysis"]
}

/// The bad Canaries of the brief: name, the change to the seed's Canary, and the text
/// the error must hold (field and reason).
fn bad_canaries() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, change: &dyn Fn(&mut Value), expect: Vec<&'static str>| {
        let mut c = good_canary(name);
        change(&mut c);
        out.push((name, c, expect));
    };
    add(
        "max-weight-1000",
        &|c| analysis(c)["maxWeight"] = json!(1000),
        vec![
            "spec.analysis.maxWeight: Invalid value: 1000",
            "less than or equal to 100",
        ],
    );
    add(
        "step-weight-300",
        &|c| analysis(c)["stepWeight"] = json!(300),
        vec![
            "spec.analysis.stepWeight: Invalid value: 300",
            "stepWeight must not be above maxWeight",
        ],
    );
    add(
        "step-weight-above-max",
        &|c| analysis(c)["stepWeight"] = json!(60),
        vec!["spec.analysis.stepWeight: Invalid value: stepWeight must not be above maxWeight"],
    );
    add(
        "step-weight-negative",
        &|c| analysis(c)["stepWeight"] = json!(-10),
        vec![
            "spec.analysis.stepWeight: Invalid value: -10",
            "greater than or equal to 0",
        ],
    );
    add(
        "interval-abc",
        &|c| analysis(c)["interval"] = json!("abc"),
        vec![
            "spec.analysis.interval: Invalid value: \"abc\"",
            "should match",
        ],
    );
    add(
        "webhook-type-unknown",
        &|c| analysis(c)["webhooks"][0]["type"] = json!("pre-rolout"),
        vec!["spec.analysis.webhooks[0].type: Unsupported value: \"pre-rolout\""],
    );
    add(
        "threshold-range-min-above-max",
        &|c| analysis(c)["metrics"][0]["thresholdRange"] = json!({"min": 99, "max": 1}),
        vec!["spec.analysis.metrics[0].thresholdRange: Invalid value: min must not be above max"],
    );
    add(
        "step-weights-not-increasing",
        &|c| {
            let a = analysis(c).as_object_mut().unwrap();
            a.remove("stepWeight");
            a.insert("stepWeights".into(), json!([10, 20, 20, 5]));
        },
        vec!["spec.analysis.stepWeights: Invalid value: stepWeights must increase"],
    );
    add(
        "step-weight-string",
        &|c| analysis(c)["stepWeight"] = json!("ten"),
        vec![
            "spec.analysis.stepWeight: Invalid value: \"string\"",
            "must be of type integer",
        ],
    );
    add(
        "old-api-max-weight",
        &|c| {
            c["apiVersion"] = json!("flagger.app/v1alpha3");
            let spec = c["spec"].as_object_mut().unwrap();
            let mut a = spec.remove("analysis").unwrap();
            a["maxWeight"] = json!(101);
            spec.insert("canaryAnalysis".into(), a);
        },
        vec!["spec.canaryAnalysis.maxWeight: Invalid value: 101"],
    );
    out
}

/// The error lines kubectl printed, without the deprecation warning of v1alpha3.
fn error_text(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with("Warning: "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn kubectl_refuses_each_bad_canary_naming_the_field_as_the_sandbox_does() {
    let _shared = shared();
    let ns = Namespace::new("schema");
    let sandbox = Sandbox::start(&ns.name);
    // The seed's Canary, and one with null fields (absent to the rules: a Helm value
    // left empty renders as null), apply to both.
    let mut nulls = good_canary("nulls");
    analysis(&mut nulls)["maxWeight"] = Value::Null;
    analysis(&mut nulls)["metrics"][0]["thresholdRange"]["max"] = Value::Null;
    for good in [good_canary("good"), nulls] {
        let body = serde_json::to_string(&good).unwrap();
        for k in [&cluster().kubeconfig, &sandbox.kubeconfig()] {
            kubectl_stdin_with(k, &["-n", &ns.name, "apply", "-f", "-"], &body)
                .expect_ok("the seed's Canary applies");
        }
    }
    let mut differences = Vec::new();
    for (name, canary, expect) in bad_canaries() {
        let body = serde_json::to_string(&canary).unwrap();
        let args = ["-n", ns.name.as_str(), "apply", "-f", "-"];
        let real = kubectl_stdin(&args, &body);
        assert!(!real.ok(), "{name}: the API server accepted it");
        let real_text = error_text(&real.stderr);
        println!("{name}, kube-apiserver:\n{real_text}");
        assert!(
            real_text.starts_with(&format!("The Canary \"{name}\" is invalid: ")),
            "{name}: {real_text}"
        );
        for e in &expect {
            assert!(real_text.contains(e), "{name}: no {e:?} in\n{real_text}");
        }
        let sb = kubectl_stdin_with(&sandbox.kubeconfig(), &args, &body);
        assert!(!sb.ok(), "{name}: the sandbox accepted it");
        let sb_text = error_text(&sb.stderr);
        if sb_text != real_text {
            differences.push(format!(
                "{name}:\n  kube-apiserver: {real_text}\n  sandbox:        {sb_text}"
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "the sandbox's words differ from kube-apiserver's:\n{}",
        differences.join("\n")
    );
}

/// Flagger's Go module (its e2e tests are in test/): SERIN_FLAGGER_MODULE as
/// scripts/peers.sh sets it, else the module tests/flagger pins, from the module cache.
fn flagger_module() -> PathBuf {
    if let Ok(dir) = std::env::var("SERIN_FLAGGER_MODULE") {
        return PathBuf::from(dir);
    }
    let out = run_bounded(
        Command::new("go")
            .args(["mod", "download", "-json", "github.com/fluxcd/flagger"])
            .current_dir(repo_root().join("tests/flagger")),
        Duration::from_secs(300),
    );
    let v: Value = serde_json::from_str(&out.stdout).expect("go mod download -json");
    PathBuf::from(v["Dir"].as_str().expect("the module's Dir"))
}

/// The Canaries of Flagger's e2e scripts (test/*/*.sh): the `kind: Canary` documents of
/// their `<<EOF` here-documents.
fn flagger_e2e_canaries(module: &Path) -> Vec<(String, Value)> {
    let mut scripts = Vec::new();
    let mut dirs = vec![module.join("test")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "sh") {
                scripts.push(p);
            }
        }
    }
    scripts.sort();
    let mut out = Vec::new();
    for script in scripts {
        let text = std::fs::read_to_string(&script).unwrap();
        let mut lines = text.lines().enumerate();
        while let Some((start, line)) = lines.next() {
            if !(line.contains("<<EOF") || line.contains("<< EOF") || line.contains("<<'EOF'")) {
                continue;
            }
            let body: Vec<&str> = lines
                .by_ref()
                .map(|(_, l)| l)
                .take_while(|l| l.trim() != "EOF")
                .collect();
            let source = format!("{}:{}", script.display(), start + 1);
            let Ok(docs) = parse_documents(&source, &body.join("\n")) else {
                continue;
            };
            for d in docs {
                if d.kind() == "Canary" && d.api_version().starts_with("flagger.app/") {
                    out.push((format!("{source}+{}", d.line), d.value));
                }
            }
        }
    }
    out
}

/// The complete Canaries of the seeds (tests/fixtures) and of gitops/.
fn shipped_canaries() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut dirs = vec![
        repo_root().join("tests/fixtures"),
        repo_root().join("gitops"),
    ];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.to_string_lossy().into_owned();
            if p.is_dir() {
                dirs.push(p);
            } else if name.ends_with(".yaml") && !name.ends_with(".fragment.yaml") {
                let text = std::fs::read_to_string(&p).unwrap();
                for d in parse_documents(&name, &text).unwrap_or_default() {
                    if d.kind() == "Canary" && d.api_version().starts_with("flagger.app/") {
                        out.push((format!("{name}:{}", d.line), d.value));
                    }
                }
            }
        }
    }
    out
}

#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn the_seeds_and_flaggers_e2e_canaries_pass_the_crd_on_the_api_server_and_the_sandbox() {
    let _shared = shared();
    let ns = Namespace::new("schema-ok");
    let sandbox = Sandbox::start(&ns.name);
    // Knative's Canaries have no `service` block, which serin's CRD requires (serin has
    // no Knative routing; README's feature table): refused before these rules too.
    let (knative, e2e): (Vec<_>, Vec<_>) = flagger_e2e_canaries(&flagger_module())
        .into_iter()
        .partition(|(_, c)| c["spec"]["provider"] == "knative");
    assert!(
        e2e.len() >= 30,
        "found {} of Flagger's e2e Canaries",
        e2e.len()
    );
    assert_eq!(knative.len(), 2, "{knative:?}");
    let shipped = shipped_canaries();
    assert!(shipped.len() >= 7, "found {} seed Canaries", shipped.len());
    println!(
        "{} Flagger e2e Canaries, {} from the seeds and gitops/",
        e2e.len(),
        shipped.len()
    );
    // One kubectl call for all (each object is still checked on its own), each renamed
    // after its place in the list so that an error names its source.
    let all: Vec<(String, Value)> = e2e.into_iter().chain(shipped).collect();
    let items: Vec<Value> = all
        .iter()
        .enumerate()
        .map(|(i, (_, c))| {
            let mut c = c.clone();
            c["metadata"] = json!({"name": format!("canary-{i}"), "namespace": ns.name});
            c
        })
        .collect();
    let body = serde_json::to_string(&json!({"apiVersion": "v1", "kind": "List", "items": items}))
        .unwrap();
    // Server-side dry run: every check of a write (schema, CEL rules), nothing stored.
    // The seeds keep their typos (unknown fields): warnings, not errors.
    let args = ["apply", "--dry-run=server", "--validate=warn", "-f", "-"];
    let sources = |stderr: &str| -> String {
        let mut named = stderr.to_string();
        for (i, (source, _)) in all.iter().enumerate().rev() {
            named = named.replace(
                &format!("\"canary-{i}\""),
                &format!("\"canary-{i}\" ({source})"),
            );
        }
        named
    };
    let real = kubectl_stdin(&args, &body);
    assert!(
        real.ok(),
        "the API server refuses:\n{}",
        sources(&real.stderr)
    );
    assert_eq!(real.stdout.lines().count(), all.len(), "{}", real.stdout);
    let sb = kubectl_stdin_with(&sandbox.kubeconfig(), &args, &body);
    assert!(sb.ok(), "the sandbox refuses:\n{}", sources(&sb.stderr));
    assert_eq!(sb.stdout.lines().count(), all.len(), "{}", sb.stdout);
}
