//! The delivery files (deploy/, gitops/, Dockerfile) checked with real tools: every
//! kustomization builds with `kubectl kustomize` and applies with `kubectl apply
//! --server-side` to `serin sandbox`; every Flagger resource passes `serin validate`;
//! the GitOps repository hangs together (paths, dependsOn, references between
//! objects); the RBAC stays least-privilege and covers every API call `serin operator`
//! makes in a canary's life (seen through a recording proxy); the Helm charts only use
//! values they define (Helm is not packaged for Debian: a scan stands in for
//! `helm template`); the Grafana dashboard only queries metrics that exist; the flags
//! in the manifests are ones the binary knows.

#[path = "../../metrics/tests/support/prometheus.rs"]
mod prometheus;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const KUBECTL: &str = "/usr/bin/kubectl";
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/serin sits two levels below the repository root")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs a command to completion or kills it after `timeout` (then panics).
fn run_bounded(program: &str, args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    // Drain both pipes on threads so a large output cannot block the child.
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{program} {args:?} did not finish within {timeout:?}");
            }
            Err(e) => panic!("waiting for {program}: {e}"),
        }
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// Every file under `dir` (recursively) whose name satisfies `keep`, sorted.
fn files_under(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if keep(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Helm templates are Go templates, not YAML.
fn is_plain_manifest(path: &Path) -> bool {
    is_yaml(path) && !path.components().any(|c| c.as_os_str() == "templates")
}

fn yaml_documents(text: &str, origin: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .unwrap_or_else(|e| panic!("{origin} is not valid YAML: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn kind_of(doc: &Value) -> (&str, &str) {
    (
        doc["apiVersion"].as_str().unwrap_or(""),
        doc["kind"].as_str().unwrap_or(""),
    )
}

fn name_of(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("")
}

fn kustomization_dirs() -> Vec<PathBuf> {
    let root = repo_root();
    let mut dirs: Vec<PathBuf> = ["deploy", "gitops"]
        .iter()
        .flat_map(|top| {
            files_under(&root.join(top), &|p| {
                p.file_name().is_some_and(|n| n == "kustomization.yaml")
            })
        })
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs
}

fn kustomize(dir: &Path) -> Vec<Value> {
    let dir_arg = dir.to_str().expect("utf-8 path");
    let out = run_bounded(KUBECTL, &["kustomize", dir_arg], COMMAND_TIMEOUT);
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        rel(dir),
        out.stderr
    );
    yaml_documents(&out.stdout, &format!("kubectl kustomize {}", rel(dir)))
}

#[test]
fn every_kustomization_builds_with_kubectl() {
    let dirs = kustomization_dirs();
    // deploy: crds, grafana, kustomize/{base,istio,kubernetes,loadtester,prometheus};
    // gitops: apps (+3), istio/system, istio/gateway.
    assert!(
        dirs.len() >= 13,
        "expected every kustomization, found {dirs:?}"
    );
    for dir in &dirs {
        let objects = kustomize(dir);
        assert!(!objects.is_empty(), "{} builds to nothing", rel(dir));
        for obj in &objects {
            let (api, kind) = kind_of(obj);
            assert!(
                !api.is_empty() && !kind.is_empty() && !name_of(obj).is_empty(),
                "{}: object without apiVersion, kind or name: {obj}",
                rel(dir)
            );
        }
    }
}

#[test]
fn operator_variants_set_the_mesh_provider_and_run_as_non_root() {
    let root = repo_root();
    for (variant, namespace, mesh) in [
        ("istio", "istio-system", "istio"),
        ("kubernetes", "serin-system", "kubernetes"),
    ] {
        let objects = kustomize(&root.join("deploy/kustomize").join(variant));
        let deployment = objects
            .iter()
            .find(|o| kind_of(o).1 == "Deployment" && name_of(o) == "serin")
            .unwrap_or_else(|| panic!("{variant}: no serin Deployment"));
        assert_eq!(deployment["metadata"]["namespace"], namespace);
        let pod = &deployment["spec"]["template"]["spec"];
        let args: Vec<&str> = pod["containers"][0]["args"]
            .as_array()
            .expect("operator args")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(args.first(), Some(&"operator"), "{variant}: {args:?}");
        assert!(
            args.contains(&format!("--mesh-provider={mesh}").as_str()),
            "{variant}: {args:?}"
        );
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{variant}");
        assert_eq!(
            pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
            true
        );
        // The ServiceAccount the binding names is the one the pod runs as, in the
        // namespace it runs in.
        for binding in objects
            .iter()
            .filter(|o| matches!(kind_of(o).1, "ClusterRoleBinding" | "RoleBinding"))
            .filter(|o| name_of(o).starts_with("serin") && !name_of(o).contains("prometheus"))
        {
            let subject = &binding["subjects"][0];
            assert_eq!(subject["name"], pod["serviceAccountName"], "{variant}");
            assert_eq!(subject["namespace"], namespace, "{variant}: {binding}");
        }
    }
}

#[test]
fn load_tester_answers_on_the_name_webhooks_call() {
    let root = repo_root();
    for dir in ["deploy/kustomize/loadtester", "gitops/apps/loadtester"] {
        let objects = kustomize(&root.join(dir));
        let service = objects
            .iter()
            .find(|o| kind_of(o).1 == "Service")
            .unwrap_or_else(|| panic!("{dir}: no Service"));
        assert_eq!(name_of(service), "flagger-loadtester", "{dir}");
        assert_eq!(service["spec"]["ports"][0]["port"], 80, "{dir}");
        let deployment = objects
            .iter()
            .find(|o| kind_of(o).1 == "Deployment")
            .unwrap_or_else(|| panic!("{dir}: no Deployment"));
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        // Service targetPort "http" must be the container's 8080, where
        // `serin loadtester --port=8080` listens.
        assert_eq!(container["ports"][0]["name"], "http");
        assert_eq!(container["ports"][0]["containerPort"], 8080);
        let args: Vec<&str> = container["args"]
            .as_array()
            .expect("loadtester args")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(args[..2], ["loadtester", "--port=8080"], "{dir}");
        let selector = &service["spec"]["selector"];
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        for (k, v) in selector.as_object().expect("selector") {
            assert_eq!(&labels[k], v, "{dir}: service selects no pod");
        }
    }
}

/// Every file in deploy/ and gitops/ that holds a flagger.app resource.
fn files_with_flagger_resources() -> Vec<PathBuf> {
    let root = repo_root();
    ["deploy", "gitops"]
        .iter()
        .flat_map(|top| files_under(&root.join(top), &is_plain_manifest))
        .filter(|p| {
            yaml_documents(&read(p), &rel(p))
                .iter()
                .any(|d| kind_of(d).0.starts_with("flagger.app/"))
        })
        .collect()
}

fn serin_validate(file: &Path) -> Output {
    run_bounded(
        env!("CARGO_BIN_EXE_serin"),
        &["validate", "-f", file.to_str().expect("utf-8 path")],
        COMMAND_TIMEOUT,
    )
}

#[test]
fn every_flagger_resource_passes_serin_validate() {
    let files = files_with_flagger_resources();
    let names: Vec<String> = files.iter().map(|p| rel(p)).collect();
    for expected in [
        "gitops/apps/backend/canary.yaml",
        "gitops/apps/frontend/canary.yaml",
        "gitops/istio/gateway/serin-metrics.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not found in {names:?}"
        );
    }
    for file in &files {
        let out = serin_validate(file);
        assert_eq!(
            out.status.code(),
            Some(0),
            "serin validate -f {} rejected it:\n{}{}",
            rel(file),
            out.stdout,
            out.stderr
        );
    }

    // The same check must be able to fail: the backend canary without its target.
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = dir.path().join("canary.yaml");
    let original = read(&repo_root().join("gitops/apps/backend/canary.yaml"));
    let without_target: String = {
        let mut skip = false;
        original
            .lines()
            .filter(|line| {
                if line.starts_with("  targetRef:") {
                    skip = true;
                    return false;
                }
                if skip && line.starts_with("    ") {
                    return false;
                }
                skip = false;
                true
            })
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert!(!without_target.contains("targetRef"));
    std::fs::write(&broken, without_target).expect("write temp canary");
    let out = serin_validate(&broken);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a Canary without targetRef must be reported (exit 1):\n{}{}",
        out.stdout,
        out.stderr
    );
}

/// The Flux Kustomizations of clusters/my-cluster, by name.
fn flux_kustomizations() -> BTreeMap<String, Value> {
    let dir = repo_root().join("gitops/clusters/my-cluster");
    files_under(&dir, &is_yaml)
        .iter()
        .flat_map(|p| yaml_documents(&read(p), &rel(p)))
        .filter(|d| {
            let (api, kind) = kind_of(d);
            api.starts_with("kustomize.toolkit.fluxcd.io/") && kind == "Kustomization"
        })
        .map(|d| (name_of(&d).to_string(), d))
        .collect()
}

#[test]
fn flux_installs_istio_before_the_apps() {
    let gitops = repo_root().join("gitops");
    let ks = flux_kustomizations();
    let names: BTreeSet<&str> = ks.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["apps", "istio-gateway", "istio-system"])
    );
    for (name, k) in &ks {
        let path = k["spec"]["path"].as_str().expect("spec.path");
        let dir = gitops.join(path.trim_start_matches("./"));
        assert!(
            dir.join("kustomization.yaml").is_file(),
            "{name}: path {path} has no kustomization.yaml"
        );
        assert_eq!(k["spec"]["sourceRef"]["name"], "flux-system", "{name}");
        for dep in k["spec"]["dependsOn"].as_array().into_iter().flatten() {
            let dep = dep["name"].as_str().unwrap_or("");
            assert!(names.contains(dep), "{name} depends on unknown {dep}");
        }
    }
    let depends = |name: &str| -> BTreeSet<String> {
        ks[name]["spec"]["dependsOn"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["name"].as_str().map(str::to_string))
            .collect()
    };
    assert!(depends("apps").contains("istio-system"));
    assert!(depends("istio-gateway").contains("istio-system"));

    // The ConfigMaps that post-build substitution reads exist, and every ${var} without
    // a default in the substituted paths is defined by one of them.
    let configmaps: BTreeMap<String, Value> =
        files_under(&gitops.join("clusters/my-cluster"), &is_yaml)
            .iter()
            .flat_map(|p| yaml_documents(&read(p), &rel(p)))
            .filter(|d| kind_of(d).1 == "ConfigMap")
            .map(|d| (name_of(&d).to_string(), d))
            .collect();
    for (name, k) in &ks {
        let mut vars = BTreeSet::new();
        for source in k["spec"]["postBuild"]["substituteFrom"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let cm = source["name"].as_str().unwrap_or("");
            let data = configmaps
                .get(cm)
                .unwrap_or_else(|| panic!("{name} substitutes from missing ConfigMap {cm}"));
            vars.extend(data["data"].as_object().expect("data").keys().cloned());
        }
        let path = k["spec"]["path"].as_str().expect("spec.path");
        for file in files_under(&gitops.join(path.trim_start_matches("./")), &is_yaml) {
            let text = read(&file);
            for var in text.split("${").skip(1) {
                let var = var.split('}').next().unwrap_or("");
                if var.contains(":=") {
                    continue;
                }
                assert!(
                    vars.contains(var),
                    "{}: ${{{var}}} is not set by {name}'s substituteFrom",
                    rel(&file)
                );
            }
        }
    }
}

#[test]
fn gitops_apps_refer_to_objects_that_exist() {
    let root = repo_root();
    let apps = kustomize(&root.join("gitops/apps"));
    let gateway = kustomize(&root.join("gitops/istio/gateway"));
    let has = |objects: &[Value], kind: &str, ns: &str, name: &str| {
        objects.iter().any(|o| {
            kind_of(o).1 == kind
                && name_of(o) == name
                && o["metadata"]["namespace"].as_str() == Some(ns)
        })
    };
    let namespace = apps
        .iter()
        .find(|o| kind_of(o).1 == "Namespace" && name_of(o) == "prod")
        .expect("namespace prod");
    assert_eq!(
        namespace["metadata"]["labels"]["istio-injection"],
        "enabled"
    );

    let canaries: Vec<&Value> = apps
        .iter()
        .filter(|o| kind_of(o) == ("flagger.app/v1beta1", "Canary"))
        .collect();
    let names: BTreeSet<&str> = canaries.iter().map(|c| name_of(c)).collect();
    assert_eq!(names, BTreeSet::from(["backend", "frontend"]));
    for canary in &canaries {
        let ns = canary["metadata"]["namespace"].as_str().expect("namespace");
        let spec = &canary["spec"];
        let target = spec["targetRef"]["name"].as_str().expect("targetRef");
        assert!(has(&apps, "Deployment", ns, target), "{target}");
        let hpa = spec["autoscalerRef"]["name"]
            .as_str()
            .expect("autoscalerRef");
        assert!(has(&apps, "HorizontalPodAutoscaler", ns, hpa), "{hpa}");
        let hpa_obj = apps
            .iter()
            .find(|o| kind_of(o).1 == "HorizontalPodAutoscaler" && name_of(o) == hpa)
            .expect("hpa");
        assert_eq!(hpa_obj["spec"]["scaleTargetRef"]["name"], target);
        for metric in spec["analysis"]["metrics"].as_array().expect("metrics") {
            let t = &metric["templateRef"];
            let (tns, tname) = (
                t["namespace"].as_str().unwrap_or(ns),
                t["name"].as_str().expect("templateRef.name"),
            );
            assert!(
                has(&gateway, "MetricTemplate", tns, tname),
                "{}: MetricTemplate {tns}/{tname} is not in istio/gateway",
                name_of(canary)
            );
        }
        for hook in spec["analysis"]["webhooks"].as_array().expect("webhooks") {
            let url = hook["url"].as_str().expect("url");
            let host = url
                .trim_start_matches("http://")
                .split(['/', ':'])
                .next()
                .unwrap_or("");
            let (svc, svc_ns) = host.split_once('.').expect("service.namespace host");
            assert!(
                has(&apps, "Service", svc_ns, svc),
                "webhook {url}: no Service {svc_ns}/{svc} in apps/"
            );
        }
    }
    let frontend = canaries
        .iter()
        .find(|c| name_of(c) == "frontend")
        .expect("frontend");
    let matches = frontend["spec"]["analysis"]["match"].to_string();
    assert!(matches.contains("Firefox") && matches.contains("type=insider"));
    let backend = canaries
        .iter()
        .find(|c| name_of(c) == "backend")
        .expect("backend");
    let analysis = &backend["spec"]["analysis"];
    assert_eq!(
        (
            analysis["stepWeight"].as_u64(),
            analysis["maxWeight"].as_u64()
        ),
        (Some(5), Some(50))
    );
    let hooks: Vec<(&str, &str)> = analysis["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap_or(""),
                h["type"].as_str().unwrap_or("rollout"),
            )
        })
        .collect();
    assert_eq!(
        hooks,
        [
            ("conformance-test", "pre-rollout"),
            ("load-test", "rollout")
        ]
    );
}

/// One RBAC rule flattened: (apiGroup, resource, verb).
type Grant = (String, String, String);

fn grants(rules: &Value) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in rules.as_array().expect("rules") {
        let strings = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .unwrap_or_else(|| panic!("rule without {key}: {rule}"))
                .iter()
                .map(|v| v.as_str().expect("string").to_string())
                .collect()
        };
        for g in strings("apiGroups") {
            for r in strings("resources") {
                for v in strings("verbs") {
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

/// The operator's permissions as written in deploy/kustomize/base/rbac.yaml:
/// (cluster-wide grants, grants in its own namespace).
fn operator_rbac_rules() -> (BTreeSet<Grant>, BTreeSet<Grant>) {
    let path = repo_root().join("deploy/kustomize/base/rbac.yaml");
    let docs = yaml_documents(&read(&path), &rel(&path));
    let rules_of = |kind: &str| {
        let role = docs
            .iter()
            .find(|d| kind_of(d).1 == kind)
            .unwrap_or_else(|| panic!("no {kind} in rbac.yaml"));
        grants(&role["rules"])
    };
    (rules_of("ClusterRole"), rules_of("Role"))
}

fn expand(group: &str, resources: &[&str], verbs: &[&str]) -> Vec<Grant> {
    let mut out = Vec::new();
    for r in resources {
        for v in verbs {
            out.push((group.to_string(), r.to_string(), v.to_string()));
        }
    }
    out
}

#[test]
fn operator_rbac_is_least_privilege_verb_by_verb() {
    const MANAGE: &[&str] = &[
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    const READ: &[&str] = &["get", "list", "watch"];
    let mut expected: BTreeSet<Grant> = BTreeSet::new();
    expected.extend(expand(
        "flagger.app",
        &["canaries"],
        &["get", "list", "watch", "update", "patch"],
    ));
    expected.extend(expand(
        "flagger.app",
        &["canaries/status"],
        &["get", "update", "patch"],
    ));
    expected.extend(expand("flagger.app", &["canaries/finalizers"], &["update"]));
    expected.extend(expand(
        "flagger.app",
        &["metrictemplates", "alertproviders"],
        READ,
    ));
    expected.extend(expand("apps", &["deployments", "daemonsets"], MANAGE));
    expected.extend(expand("", &["services", "configmaps", "secrets"], MANAGE));
    expected.extend(expand("autoscaling", &["horizontalpodautoscalers"], MANAGE));
    expected.extend(expand(
        "networking.istio.io",
        &["virtualservices", "destinationrules"],
        MANAGE,
    ));
    expected.extend(expand("gateway.networking.k8s.io", &["httproutes"], MANAGE));
    // A repeated event is read for its count, then patched.
    expected.extend(expand("", &["events"], &["create", "get", "patch"]));
    expected.extend(expand("events.k8s.io", &["events"], &["create", "patch"]));

    let (cluster, namespaced) = operator_rbac_rules();
    for (g, r, v) in cluster.iter().chain(&namespaced) {
        assert!(
            !g.contains('*') && !r.contains('*') && !v.contains('*'),
            "wildcard grant ({g}, {r}, {v})"
        );
    }
    let extra: Vec<_> = cluster.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&cluster).collect();
    assert!(extra.is_empty(), "grants nobody asked for: {extra:?}");
    assert!(missing.is_empty(), "grants the operator needs: {missing:?}");
    // Leader election: a Lease in its own namespace, never cluster-wide.
    assert_eq!(
        namespaced,
        expand(
            "coordination.k8s.io",
            &["leases"],
            &["get", "create", "update", "patch"]
        )
        .into_iter()
        .collect()
    );
    assert!(!cluster.iter().any(|(g, _, _)| g == "coordination.k8s.io"));
}

/// The YAML between `rules:` and the next `---` of a chart template, where the rules
/// themselves carry no template actions.
fn chart_rules(template: &str, kind: &str) -> Value {
    let doc = template
        .split("\n---")
        .find(|d| d.contains(&format!("\nkind: {kind}\n")))
        .unwrap_or_else(|| panic!("no {kind} in chart rbac template"));
    let rules = doc
        .split_once("\nrules:\n")
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("{kind} without rules"));
    let rules: String = rules
        .lines()
        .take_while(|l| !l.starts_with("{{"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!rules.contains("{{"), "templated rules in {kind}");
    serde_saphyr::from_str(&rules).expect("chart rules parse")
}

#[test]
fn helm_chart_rbac_equals_the_kustomize_rbac() {
    let template = read(&repo_root().join("deploy/charts/serin/templates/rbac.yaml"));
    let (cluster, namespaced) = operator_rbac_rules();
    for (kind, kustomize) in [("ClusterRole", cluster), ("Role", namespaced)] {
        let chart = grants(&chart_rules(&template, kind));
        let only_chart: Vec<_> = chart.difference(&kustomize).collect();
        let only_kustomize: Vec<_> = kustomize.difference(&chart).collect();
        assert!(
            only_chart.is_empty() && only_kustomize.is_empty(),
            "{kind}: only in the chart {only_chart:?}, only in kustomize {only_kustomize:?}"
        );
    }
}

/// Keys present in a values tree, as dotted paths (maps only; lists are leaves).
fn value_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(map) = v.as_object() {
        for (k, child) in map {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            out.insert(path.clone());
            value_paths(child, &path, out);
        }
    }
}

/// `.Values.a.b.c` references in a template.
fn values_references(template: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for (i, _) in template.match_indices(".Values.") {
        let rest = &template[i + ".Values.".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        let path = path.trim_end_matches('.').to_string();
        if !path.is_empty() {
            refs.insert(path);
        }
    }
    refs
}

fn quoted_after<'a>(text: &'a str, keyword: &str) -> BTreeSet<&'a str> {
    text.match_indices(keyword)
        .filter_map(|(i, _)| {
            let rest = text[i + keyword.len()..].trim_start().strip_prefix('"')?;
            rest.split('"').next()
        })
        .collect()
}

#[test]
fn helm_charts_use_only_values_they_define() {
    // `helm` is not packaged for Debian (apt-cache policy helm: nothing), so this
    // scan stands in for `helm lint` / `helm template`.
    let charts = repo_root().join("deploy/charts");
    for chart in ["serin", "loadtester"] {
        let dir = charts.join(chart);
        let meta: Value =
            serde_saphyr::from_str(&read(&dir.join("Chart.yaml"))).expect("Chart.yaml");
        assert_eq!(meta["apiVersion"], "v2", "{chart}");
        assert_eq!(meta["name"], chart);
        for key in ["version", "appVersion"] {
            assert!(
                meta[key].as_str().is_some_and(|v| !v.is_empty()),
                "{chart}: {key}"
            );
        }
        let values: Value =
            serde_saphyr::from_str(&read(&dir.join("values.yaml"))).expect("values.yaml");
        let mut defined = BTreeSet::new();
        value_paths(&values, "", &mut defined);

        let templates = files_under(&dir.join("templates"), &|_| true);
        assert!(templates.len() >= 3, "{chart}: {templates:?}");
        let all: String = templates
            .iter()
            .map(|p| read(p))
            .collect::<Vec<_>>()
            .join("\n");
        // And the other way: every value does something (it, or a map above it that a
        // template hands to toYaml, is referenced).
        let referenced = values_references(&all);
        for path in &defined {
            let prefix = format!("{path}.");
            if defined.iter().any(|d| d.starts_with(&prefix)) {
                continue; // a map: its leaves are checked
            }
            let mut covered = false;
            let mut p = path.as_str();
            loop {
                if referenced.contains(p) {
                    covered = true;
                    break;
                }
                match p.rfind('.') {
                    Some(i) => p = &p[..i],
                    None => break,
                }
            }
            assert!(covered, "{chart}: value {path} is used by no template");
        }
        let defines = quoted_after(&all, "define ");
        for used in quoted_after(&all, "include ").union(&quoted_after(&all, "template ")) {
            assert!(defines.contains(used), "{chart}: {used} is not defined");
        }
        for template in &templates {
            let text = read(template);
            for path in values_references(&text) {
                assert!(
                    defined.contains(&path),
                    "{}: .Values.{path} is not in values.yaml",
                    rel(template)
                );
            }
            assert_eq!(
                text.matches("{{").count(),
                text.matches("}}").count(),
                "{}: unbalanced template delimiters",
                rel(template)
            );
            let actions: Vec<&str> = text
                .split("{{")
                .skip(1)
                .map(|a| a.trim_start_matches('-').trim_start())
                .collect();
            let opened = actions
                .iter()
                .filter(|a| {
                    ["if ", "range ", "with ", "define "]
                        .iter()
                        .any(|k| a.starts_with(k))
                })
                .count();
            let closed = actions.iter().filter(|a| a.starts_with("end")).count();
            assert_eq!(
                opened,
                closed,
                "{}: if/range/with/define without end",
                rel(template)
            );
        }
    }

    // The values users look for when they come from Flagger's chart.
    let values: Value =
        serde_saphyr::from_str(&read(&charts.join("serin/values.yaml"))).expect("values.yaml");
    let mut defined = BTreeSet::new();
    value_paths(&values, "", &mut defined);
    for key in [
        "image.repository",
        "image.tag",
        "meshProvider",
        "metricsServer",
        "prometheus.install",
        "slack.url",
        "slack.channel",
        "slack.user",
        "msteams.url",
        "replicas",
        "leaderElection.enabled",
        "resources",
        "podMonitor.enabled",
        "podAnnotations.prometheus.io/scrape",
        "serviceAccount.create",
        "serviceAccount.name",
        "rbac.create",
    ] {
        assert!(defined.contains(key), "serin chart: no value {key}");
    }
    // Leader election turns itself on with more than one replica.
    assert_eq!(values["leaderElection"]["enabled"], "auto");
    let helpers = read(&charts.join("serin/templates/_helpers.tpl"));
    assert!(helpers.contains("gt (int .Values.replicas) 1"));
}

#[test]
fn helm_chart_ships_the_generated_crds() {
    let root = repo_root();
    let generated = root.join("deploy/crds/crds.yaml");
    assert!(
        generated.is_file(),
        "deploy/crds/crds.yaml is missing: generate it with `serin crds > deploy/crds/crds.yaml`"
    );
    let copy = root.join("deploy/charts/serin/crds/crds.yaml");
    assert!(
        copy.is_file() && read(&copy) == read(&generated),
        "deploy/charts/serin/crds/crds.yaml is stale: cp deploy/crds/crds.yaml deploy/charts/serin/crds/"
    );
}

/// Flags passed to `serin <sub>` in deploy/ and gitops/ manifests and chart templates.
fn flags_used(subcommand: &str) -> BTreeSet<String> {
    let root = repo_root();
    let mut flags = BTreeSet::new();
    for file in ["deploy", "gitops"]
        .iter()
        .flat_map(|top| files_under(&root.join(top), &is_yaml))
    {
        let text = read(&file);
        let mut in_args = false;
        for line in text.lines() {
            let t = line.trim();
            if t == format!("- {subcommand}") {
                in_args = true;
                continue;
            }
            if in_args {
                // `- --name=value`, or a chart's quoted form
                // `- {{ printf "--name=%s" . | quote }}`.
                let arg = t
                    .strip_prefix("- --")
                    .or_else(|| t.strip_prefix("- {{ printf \"--"));
                if let Some(arg) = arg {
                    let name = arg.split(['=', ' ', '"']).next().unwrap_or("");
                    flags.insert(format!("--{name}"));
                } else if !(t.starts_with("{{") || t.starts_with('#') || t.starts_with("- --")) {
                    in_args = false;
                }
            }
        }
    }
    flags
}

#[test]
fn manifests_pass_only_flags_the_binary_knows() {
    for (sub, at_least) in [
        (
            "operator",
            &[
                "--mesh-provider",
                "--metrics-server",
                "--leader-elect",
                "--slack-channel",
            ][..],
        ),
        (
            "loadtester",
            &["--port", "--enable-bash", "--allow-cmd", "--timeout"][..],
        ),
    ] {
        let used = flags_used(sub);
        // Webhook URLs and tokens are secrets: they travel in env vars from Secrets.
        for secret in ["--slack-url", "--msteams-url", "--token"] {
            assert!(
                !used.contains(secret),
                "{sub}: {secret} passed as an argument"
            );
        }
        for flag in at_least {
            assert!(
                used.contains(*flag),
                "{sub}: {flag} not found in manifests ({used:?})"
            );
        }
        let help = run_bounded(
            env!("CARGO_BIN_EXE_serin"),
            &[sub, "--help"],
            COMMAND_TIMEOUT,
        );
        assert!(help.status.success(), "serin {sub} --help: {}", help.stderr);
        let known = long_options(&help.stdout);
        // The flags the manifests must pass are ones the binary lists: a help text
        // without them (or without any options) fails here.
        for flag in at_least {
            assert!(
                known.contains(*flag),
                "`serin {sub} --help` does not list {flag}:\n{}",
                help.stdout
            );
        }
        for flag in &used {
            assert!(
                known.contains(flag),
                "the manifests pass {flag} to `serin {sub}`, which does not know it:\n{}",
                help.stdout
            );
        }
    }
}

/// The long options (`--name`) a clap help text lists.
fn long_options(help: &str) -> BTreeSet<String> {
    help.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.split(['=', '[', '<'])
                .next()
                .unwrap_or(w)
                .trim_end_matches(['.', ')'])
                .to_string()
        })
        .collect()
}

#[test]
fn long_options_are_read_from_clap_help() {
    let help = "Options:\n      --port <PORT>  Port [default: 8080]\n      --enable-bash  Allow bash\n  -h, --help     Print help\n";
    assert_eq!(
        long_options(help),
        BTreeSet::from([
            "--port".to_string(),
            "--enable-bash".into(),
            "--help".into()
        ])
    );
}

/// Metric names a PromQL expression selects (functions, keywords, label names,
/// strings, durations and numbers left out).
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Drop string literals, then label matchers, range selectors and grouping lists.
    let mut s = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None => s.push(c),
        }
    }
    let strip = |s: &str, open: char, close: char| -> String {
        let mut out = String::new();
        let mut depth = 0;
        for c in s.chars() {
            if c == open {
                depth += 1;
            } else if c == close && depth > 0 {
                depth -= 1;
            } else if depth == 0 {
                out.push(c);
            }
        }
        out
    };
    let s = strip(&strip(&s, '{', '}'), '[', ']');
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Aggregations may put `by (..)` before their parentheses: `sum by (le) (..)`.
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    let chars: Vec<char> = s.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let starts_ident = (c.is_ascii_alphabetic() || c == '_' || c == ':')
            && (i == 0
                || !(chars[i - 1].is_ascii_alphanumeric()
                    || chars[i - 1] == '.'
                    || chars[i - 1] == '$'));
        if !starts_ident {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
        {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut j = i;
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        let call = j < chars.len() && chars[j] == '(';
        if GROUPING.contains(&word.as_str()) {
            if call {
                // Skip the label list.
                while j < chars.len() && chars[j] != ')' {
                    j += 1;
                }
                i = j + 1;
            }
            continue;
        }
        if !call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
            names.insert(word);
        }
    }
    names
}

/// Grafana variable queries: `label_values(selector, label)` selects `selector`.
fn variable_query_metrics(query: &str) -> BTreeSet<String> {
    if let Some(inner) = query.trim().strip_prefix("label_values(") {
        let inner = inner.trim_end().trim_end_matches(')');
        return match inner.rsplit_once(',') {
            Some((selector, _label)) => metric_names(selector),
            None => BTreeSet::new(), // label_values(label): no metric
        };
    }
    metric_names(query)
}

#[test]
fn promql_metric_name_extraction() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, destination_workload) (rate(istio_request_duration_milliseconds_bucket{reporter="destination",a=~"$x|y"}[1m]))) / on(job) group_left(x) flagger_canary_weight offset 5m > bool 1e3"#,
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "flagger_canary_weight".to_string(),
            "istio_request_duration_milliseconds_bucket".to_string()
        ])
    );
    assert_eq!(
        variable_query_metrics(
            r#"label_values(istio_requests_total{ns="$namespace"}, destination_workload)"#
        ),
        BTreeSet::from(["istio_requests_total".to_string()])
    );
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "expr" {
                    if let Some(s) = child.as_str() {
                        out.push(s.to_string());
                    }
                } else {
                    collect_exprs(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}

/// Istio's metrics and serin's own (Flagger's names, SPEC.md "Alerts, logs, metrics").
const KNOWN_METRICS: &[&str] = &[
    "istio_requests_total",
    "istio_request_duration_milliseconds_bucket",
    "flagger_canary_status",
    "flagger_canary_weight",
    "flagger_canary_total",
    "flagger_canary_duration_seconds_bucket",
    "flagger_canary_duration_seconds_sum",
    "flagger_canary_duration_seconds_count",
    "flagger_canary_metric_analysis",
    "flagger_canary_successes_total",
    "flagger_canary_failures_total",
    "flagger_info",
];

#[test]
fn grafana_dashboard_queries_only_metrics_that_exist() {
    let path = repo_root().join("deploy/grafana/istio-canary.json");
    let dashboard: Value = serde_json::from_str(&read(&path)).expect("dashboard is JSON");
    // The seed's URL: /d/flagger-istio/istio-canary?var-namespace=..&var-primary=..&var-canary=..
    assert_eq!(dashboard["uid"], "flagger-istio");
    assert_eq!(dashboard["title"], "Istio Canary");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let var_names: BTreeSet<&str> = variables
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for v in ["namespace", "primary", "canary"] {
        assert!(var_names.contains(v), "no variable {v}");
    }

    let panels = dashboard["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    for panel in panels {
        let mut own = Vec::new();
        collect_exprs(&panel["targets"], &mut own);
        assert!(!own.is_empty(), "panel {} queries nothing", panel["title"]);
        exprs.extend(own);
    }
    let mut used = BTreeSet::new();
    for expr in &exprs {
        used.extend(metric_names(expr));
    }
    for var in variables {
        let query = var["query"]["query"]
            .as_str()
            .or(var["definition"].as_str());
        if var["type"] == "query" {
            used.extend(variable_query_metrics(query.expect("variable query")));
        }
    }
    for name in &used {
        assert!(
            KNOWN_METRICS.contains(&name.as_str()),
            "unknown metric {name}"
        );
    }
    for name in [
        "istio_requests_total",
        "istio_request_duration_milliseconds_bucket",
        "flagger_canary_weight",
        "flagger_canary_status",
    ] {
        assert!(used.contains(name), "the dashboard does not show {name}");
    }
    // Primary against canary: the Istio panels select both workloads.
    assert!(
        exprs
            .iter()
            .filter(|e| e.contains("istio_"))
            .any(|e| e.contains(r#"destination_workload=~"$primary|$canary""#))
    );
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for t in [
        "Request volume",
        "Success rate",
        "Request duration",
        "Traffic weight",
        "Canary status",
    ] {
        assert!(titles.contains(&t), "no panel {t}: {titles:?}");
    }
}

#[test]
fn metric_templates_query_istio_metrics_that_exist() {
    let path = repo_root().join("gitops/istio/gateway/serin-metrics.yaml");
    let templates = yaml_documents(&read(&path), &rel(&path));
    assert_eq!(templates.len(), 2);
    for t in &templates {
        let query = t["spec"]["query"].as_str().expect("query");
        // {{ interval }} sits in a range selector and the others in strings; drop them.
        let plain = query.replace("{{", "\"").replace("}}", "\"");
        let names = metric_names(&plain);
        assert!(!names.is_empty(), "{}: no metric", name_of(t));
        for n in &names {
            assert!(
                n.starts_with("istio_") && KNOWN_METRICS.contains(&n.as_str()),
                "{n}"
            );
        }
        // Same Prometheus as the chart installs (prometheus.install in istio/system).
        assert_eq!(
            t["spec"]["provider"]["address"],
            "http://serin-prometheus.istio-system:9090"
        );
    }
}

#[test]
fn dockerfile_runtime_is_distroless_and_non_root() {
    let text = read(&repo_root().join("Dockerfile"));
    let stages: Vec<&str> = text.split("\nFROM ").skip(1).collect();
    assert!(stages.len() >= 2, "multi-stage build");
    let last = stages.last().expect("final stage");
    assert!(
        last.starts_with("gcr.io/distroless/") || last.starts_with("scratch"),
        "final stage: {}",
        last.lines().next().unwrap_or("")
    );
    for stage in &stages[1..] {
        let user = stage
            .lines()
            .filter_map(|l| l.strip_prefix("USER "))
            .next_back()
            .unwrap_or_else(|| {
                panic!("stage without USER: {}", stage.lines().next().unwrap_or(""))
            });
        assert!(
            !user.starts_with("root") && !user.starts_with("0"),
            "runs as {user}"
        );
        assert!(stage.contains("ENTRYPOINT [\"/usr/local/bin/serin\"]"));
    }
    assert!(text.contains("cargo build --release --locked -p serin"));
}

/// `serin sandbox` on a free loopback port, stopped when dropped.
struct SandboxProcess {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl SandboxProcess {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        let mut child = Command::new(env!("CARGO_BIN_EXE_serin"))
            .args(["sandbox", "--port", "0", "--kubeconfig"])
            .arg(&kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("serin sandbox starts");
        // It prints `export KUBECONFIG=...` once it serves and the file is written.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("export KUBECONFIG=") {
                    let _ = tx.send(());
                }
            }
        });
        let mut sandbox = Self { child, dir };
        if rx.recv_timeout(COMMAND_TIMEOUT).is_err() {
            let _ = sandbox.child.kill();
            panic!("serin sandbox did not start within {COMMAND_TIMEOUT:?}");
        }
        sandbox
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        let kubeconfig = self.dir.path().join("kubeconfig");
        let cache = format!("--cache-dir={}", self.dir.path().join("cache").display());
        let mut all = vec!["--kubeconfig", kubeconfig.to_str().expect("utf-8 path")];
        all.push(&cache);
        all.extend_from_slice(args);
        run_bounded(KUBECTL, &all, COMMAND_TIMEOUT)
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}{}",
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// (apiVersion, kind) of everything the sandbox serves now.
    fn served(&self) -> BTreeSet<(String, String)> {
        self.kubectl_ok(&["api-resources", "--no-headers"])
            .lines()
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                // NAME [SHORTNAMES] APIVERSION NAMESPACED KIND
                (cols.len() >= 4).then(|| {
                    let n = cols.len();
                    (cols[n - 3].to_string(), cols[n - 1].to_string())
                })
            })
            .collect()
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stand-ins for Flux's CRDs (schemas left open), so the sandbox serves its kinds.
fn flux_crds() -> String {
    [
        ("kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations"),
        ("source.toolkit.fluxcd.io", "v1", "GitRepository", "gitrepositories"),
        ("source.toolkit.fluxcd.io", "v1", "HelmRepository", "helmrepositories"),
        ("helm.toolkit.fluxcd.io", "v2", "HelmRelease", "helmreleases"),
    ]
    .iter()
    .map(|(group, version, kind, plural)| {
        serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.{group}")},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
                "versions": [{
                    "name": version, "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
                }]
            }
        })
        .to_string()
    })
    .collect::<Vec<_>>()
    .join("\n---\n")
}

/// The sandbox has no RBAC API yet; these kinds are skipped (and named) until it does.
const RBAC_KINDS: &[&str] = &["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];

#[test]
fn every_manifest_applies_server_side_to_the_sandbox() {
    let root = repo_root();
    // In the order a cluster gets them: Flux's for gitops/, then the install paths.
    // (directory, namespace for the objects that name none)
    let order: &[(&str, Option<&str>)] = &[
        ("gitops/istio/system", None),
        ("gitops/istio/gateway", None),
        ("gitops/apps", None),
        ("gitops/apps/loadtester", None),
        ("gitops/apps/backend", None),
        ("gitops/apps/frontend", None),
        ("deploy/crds", None),
        ("deploy/kustomize/base", None),
        ("deploy/kustomize/istio", None),
        ("deploy/kustomize/kubernetes", None),
        ("deploy/kustomize/prometheus", None),
        ("deploy/kustomize/loadtester", Some("test")),
        ("deploy/grafana", Some("istio-system")),
    ];
    let listed: BTreeSet<String> = order.iter().map(|(d, _)| d.to_string()).collect();
    let all: BTreeSet<String> = kustomization_dirs().iter().map(|d| rel(d)).collect();
    assert_eq!(
        listed, all,
        "a kustomization is missing from the apply order"
    );

    let sandbox = SandboxProcess::start();
    let tmp = tempfile::tempdir().expect("temp dir");
    let flux = tmp.path().join("flux-crds.yaml");
    std::fs::write(&flux, flux_crds()).expect("write flux CRDs");
    let crds = root.join("deploy/crds/crds.yaml");
    for file in [&flux, &crds] {
        sandbox.kubectl_ok(&[
            "apply",
            "--server-side",
            "-f",
            file.to_str().expect("utf-8"),
        ]);
    }
    // Namespaces that exist before these manifests: Istio's own, and the one the load
    // tester guide creates by hand; serin-system is created by the kubernetes variant.
    for ns in ["istio-system", "test", "serin-system"] {
        let out = sandbox.kubectl(&["create", "namespace", ns]);
        assert!(
            out.status.success() || out.stderr.contains("AlreadyExists"),
            "{}",
            out.stderr
        );
    }

    let mut skipped = BTreeSet::new();
    for (dir, namespace) in order {
        let served = sandbox.served();
        let objects: Vec<Value> = kustomize(&root.join(dir))
            .into_iter()
            .filter(|o| {
                let (api, kind) = kind_of(o);
                if served.contains(&(api.to_string(), kind.to_string())) {
                    return true;
                }
                assert!(
                    RBAC_KINDS.contains(&kind),
                    "{dir}: the sandbox does not serve {api} {kind}"
                );
                skipped.insert(format!("{kind}/{}", name_of(o)));
                false
            })
            .collect();
        assert!(!objects.is_empty(), "{dir}: nothing to apply");
        let file = tmp.path().join(dir.replace('/', "_") + ".yaml");
        let text: Vec<String> = objects.iter().map(Value::to_string).collect();
        std::fs::write(&file, text.join("\n---\n")).expect("write manifests");
        let file = file.to_str().expect("utf-8");
        for round in ["first", "second"] {
            let mut args = vec!["apply", "--server-side", "-f", file];
            if let Some(ns) = namespace {
                args.extend(["-n", ns]);
            }
            let out = sandbox.kubectl_ok(&args);
            let applied = out
                .lines()
                .filter(|l| l.ends_with(" serverside-applied"))
                .count();
            assert_eq!(
                applied,
                objects.len(),
                "{dir} ({round} apply): {} objects, kubectl said:\n{out}",
                objects.len()
            );
        }
    }
    eprintln!("not applied (the sandbox has no RBAC API): {skipped:?}");

    // What Flux would leave in the cluster, as the walkthrough reads it.
    let step = sandbox.kubectl_ok(&[
        "-n",
        "prod",
        "get",
        "canary",
        "backend",
        "-o",
        "jsonpath={.spec.analysis.stepWeight}",
    ]);
    assert_eq!(step, "5");
    let port = sandbox.kubectl_ok(&[
        "-n",
        "test",
        "get",
        "service",
        "flagger-loadtester",
        "-o",
        "jsonpath={.spec.ports[0].port}",
    ]);
    assert_eq!(port, "80");
    let templates =
        sandbox.kubectl_ok(&["-n", "istio-system", "get", "metrictemplates", "-o", "name"]);
    assert_eq!(
        templates.lines().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "metrictemplate.flagger.app/error-rate",
            "metrictemplate.flagger.app/latency"
        ])
    );
}

/// An HTTP/1.1 proxy on 127.0.0.1 in front of the sandbox that records every API
/// request as the RBAC grant it needs: (apiGroup, resource[/subresource], verb).
struct RecordingProxy {
    addr: std::net::SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<BTreeSet<ScopedGrant>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The grant a request needs, from its method and path (None for discovery and
/// other non-resource URLs, which every authenticated client may read).
fn grant_for(method: &str, target: &str) -> Option<Grant> {
    scoped_grant_for(method, target).map(|(_, g)| g)
}

/// The namespace a request is made in (None for cluster-wide requests) and the grant
/// it needs.
fn scoped_grant_for(method: &str, target: &str) -> Option<(Option<String>, Grant)> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail),
        other => (None, other),
    };
    let (resource, name, sub) = match rest {
        [] => return None,
        [r] => (*r, None, None),
        [r, n] => (*r, Some(*n), None),
        [r, n, s, ..] => (*r, Some(*n), Some(*s)),
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    let resource = match sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource.to_string(),
    };
    Some((namespace, (group.to_string(), resource, verb.to_string())))
}

/// A grant seen in a namespace (None: cluster-wide).
type ScopedGrant = (Option<String>, Grant);

impl RecordingProxy {
    fn start(upstream: std::net::SocketAddr) -> Self {
        use std::io::{BufRead, BufReader, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        use std::sync::{Arc, Mutex, atomic::AtomicBool};

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let seen: Arc<Mutex<BTreeSet<ScopedGrant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Err(_) => break,
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let seen = seen2.clone();
                // Responses flow back untouched.
                if let (Ok(mut from), Ok(mut to)) = (server.try_clone(), client.try_clone()) {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                // Requests are read one by one: head, then Content-Length bytes.
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(client);
                    let mut server = server;
                    loop {
                        let mut head = Vec::new();
                        loop {
                            let mut line = Vec::new();
                            match reader.read_until(b'\n', &mut line) {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                            let end = line == b"\r\n" || line == b"\n";
                            head.extend_from_slice(&line);
                            if end {
                                break;
                            }
                        }
                        let text = String::from_utf8_lossy(&head).to_string();
                        let mut lines = text.lines();
                        let mut first = lines.next().unwrap_or("").split_whitespace();
                        let (method, target) =
                            (first.next().unwrap_or(""), first.next().unwrap_or(""));
                        let mut length = 0usize;
                        for h in lines {
                            if let Some((k, v)) = h.split_once(':') {
                                let k = k.trim().to_ascii_lowercase();
                                if k == "content-length" {
                                    length = v.trim().parse().unwrap_or(0);
                                }
                                if k == "transfer-encoding" {
                                    // Not expected from kube-rs; record it so the test fails loudly.
                                    seen.lock().expect("lock").insert((
                                        None,
                                        ("?".into(), "chunked request".into(), "?".into()),
                                    ));
                                }
                            }
                        }
                        if let Some(g) = scoped_grant_for(method, target) {
                            seen.lock().expect("lock").insert(g);
                        }
                        let mut body = vec![0u8; length];
                        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
                            return;
                        }
                        if server.write_all(&head).is_err() || server.write_all(&body).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, seen, stop }
    }

    fn seen(&self) -> BTreeSet<Grant> {
        self.scoped().into_iter().map(|(_, g)| g).collect()
    }

    /// Every grant seen, with the namespace it was used in.
    fn scoped(&self) -> BTreeSet<ScopedGrant> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn request_paths_map_to_rbac_grants() {
    let g = |a: &str, b: &str, c: &str| Some((a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(
        grant_for(
            "GET",
            "/apis/flagger.app/v1beta1/canaries?watch=true&resourceVersion=1"
        ),
        g("flagger.app", "canaries", "watch")
    );
    assert_eq!(
        grant_for("GET", "/apis/flagger.app/v1beta1/namespaces/test/canaries"),
        g("flagger.app", "canaries", "list")
    );
    assert_eq!(
        grant_for(
            "PATCH",
            "/apis/flagger.app/v1beta1/namespaces/test/canaries/podinfo/status"
        ),
        g("flagger.app", "canaries/status", "patch")
    );
    assert_eq!(
        grant_for("POST", "/api/v1/namespaces/test/events"),
        g("", "events", "create")
    );
    assert_eq!(
        grant_for(
            "PUT",
            "/apis/apps/v1/namespaces/test/deployments/podinfo/scale"
        ),
        g("apps", "deployments/scale", "update")
    );
    assert_eq!(
        grant_for("DELETE", "/api/v1/namespaces/test/services/podinfo-canary"),
        g("", "services", "delete")
    );
    assert_eq!(
        grant_for("GET", "/api/v1/namespaces/test"),
        g("", "namespaces", "get")
    );
    assert_eq!(
        grant_for(
            "GET",
            "/apis/coordination.k8s.io/v1/namespaces/serin/leases/serin"
        ),
        g("coordination.k8s.io", "leases", "get")
    );
    assert_eq!(
        scoped_grant_for(
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/serin/leases/serin"
        ),
        Some((
            Some("serin".to_string()),
            g("coordination.k8s.io", "leases", "update").expect("grant")
        ))
    );
    assert_eq!(
        scoped_grant_for("GET", "/apis/flagger.app/v1beta1/canaries?watch=true"),
        Some((None, g("flagger.app", "canaries", "watch").expect("grant")))
    );
    assert_eq!(grant_for("GET", "/apis"), None);
    assert_eq!(grant_for("GET", "/version"), None);
}

impl SandboxProcess {
    /// The sandbox's address, from the kubeconfig it wrote.
    fn addr(&self) -> std::net::SocketAddr {
        let kubeconfig = read(&self.dir.path().join("kubeconfig"));
        let server = kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix("server:"))
            .expect("server in kubeconfig")
            .trim()
            .trim_matches('"')
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        server.parse().expect("host:port")
    }

    /// A kubeconfig like the sandbox's, pointing at `addr` instead.
    fn kubeconfig_via(&self, addr: std::net::SocketAddr, path: &Path) {
        let original = read(&self.dir.path().join("kubeconfig"));
        let rewritten = original.replace(&self.addr().to_string(), &addr.to_string());
        assert_ne!(original, rewritten);
        std::fs::write(path, rewritten).expect("write kubeconfig");
    }
}

#[test]
fn recording_proxy_sees_kubectl_requests() {
    let sandbox = SandboxProcess::start();
    let proxy = RecordingProxy::start(sandbox.addr());
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    sandbox.kubeconfig_via(proxy.addr, &kubeconfig);
    let cache = format!("--cache-dir={}", dir.path().join("cache").display());
    let kubectl = |args: &[&str]| {
        let mut all = vec!["--kubeconfig", kubeconfig.to_str().expect("utf-8"), &cache];
        all.extend_from_slice(args);
        let out = run_bounded(KUBECTL, &all, COMMAND_TIMEOUT);
        assert!(out.status.success(), "kubectl {args:?}: {}", out.stderr);
    };
    kubectl(&["create", "namespace", "rbac"]);
    kubectl(&[
        "-n",
        "rbac",
        "create",
        "configmap",
        "one",
        "--from-literal=a=b",
    ]);
    kubectl(&["-n", "rbac", "get", "configmaps"]);
    kubectl(&["-n", "rbac", "delete", "configmap", "one"]);
    let seen = proxy.seen();
    let g = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    for grant in [
        g("", "namespaces", "create"),
        g("", "configmaps", "create"),
        g("", "configmaps", "list"),
        g("", "configmaps", "delete"),
    ] {
        assert!(seen.contains(&grant), "{grant:?} not in {seen:?}");
    }
    assert!(!seen.iter().any(|(g, _, _)| g == "?"), "{seen:?}");
}

const RBAC_SCENARIO: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: test
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: podinfo-config
  namespace: test
data:
  color: blue
---
apiVersion: v1
kind: Secret
metadata:
  name: podinfo-token
  namespace: test
stringData:
  token: s3cr3t
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: test
spec:
  replicas: 1
  selector:
    matchLabels:
      app: podinfo
  template:
    metadata:
      labels:
        app: podinfo
    spec:
      containers:
        - name: podinfod
          image: ghcr.io/stefanprodan/podinfo:6.0.0
          ports:
            - containerPort: 9898
          env:
            - name: TOKEN
              valueFrom:
                secretKeyRef:
                  name: podinfo-token
                  key: token
          volumeMounts:
            - name: config
              mountPath: /etc/podinfo
      volumes:
        - name: config
          configMap:
            name: podinfo-config
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: podinfo
  namespace: test
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  minReplicas: 1
  maxReplicas: 3
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: 90
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  autoscalerRef:
    apiVersion: autoscaling/v2
    kind: HorizontalPodAutoscaler
    name: podinfo
  service:
    port: 9898
  revertOnDeletion: true
  analysis:
    interval: 1s
    threshold: 2
    maxWeight: 20
    stepWeight: 10
    metrics:
      - name: error-rate
        templateRef:
          name: error-rate
          namespace: istio-system
        thresholdRange:
          max: 5
        interval: 1m
    alerts:
      - name: on-call
        severity: info
        providerRef:
          name: on-call
          namespace: istio-system
---
apiVersion: v1
kind: Namespace
metadata:
  name: istio-system
---
apiVersion: v1
kind: Secret
metadata:
  name: prom-auth
  namespace: istio-system
stringData:
  username: flagger
  password: serin-test-password
---
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: error-rate
  namespace: istio-system
spec:
  provider:
    type: prometheus
    address: PROMETHEUS_URL
    secretRef:
      name: prom-auth
  query: vector(1)
---
apiVersion: v1
kind: Secret
metadata:
  name: on-call-url
  namespace: istio-system
stringData:
  address: http://127.0.0.1:9/slack
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata:
  name: on-call
  namespace: istio-system
spec:
  type: slack
  channel: rollouts
  secretRef:
    name: on-call-url
"#;

/// bcrypt hash of "serin-test-password" (cost 4), as in the metrics tests.
const PROMETHEUS_PASSWORD_HASH: &str =
    "$2b$04$2MsVeUXnQh8/D2GjHT4vc.1lFFBu76blqVGIBl/wyJ6xT.WJA6jmm";

/// Polls `kubectl get` until its output satisfies `done` (at most 60 s, 300 tries).
fn wait_until(sandbox: &SandboxProcess, what: &str, args: &[&str], done: impl Fn(&Output) -> bool) {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    for _ in 0..300 {
        let out = sandbox.kubectl(args);
        if done(&out) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {}{}",
            out.stdout,
            out.stderr
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("gave up waiting for {what}");
}

#[test]
fn operator_rbac_covers_every_call_the_operator_makes() {
    // A real Prometheus behind basic auth answers the MetricTemplate's query.
    let web = format!("basic_auth_users:\n  flagger: '{PROMETHEUS_PASSWORD_HASH}'\n");
    let prometheus = prometheus::Prometheus::start_with(
        &prometheus::Traffic::istio(),
        Some(&web),
        Some(("flagger", "serin-test-password")),
    );
    let sandbox = SandboxProcess::start();
    let proxy = RecordingProxy::start(sandbox.addr());
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = dir.path().join("scenario.yaml");
    std::fs::write(
        &manifests,
        RBAC_SCENARIO.replace("PROMETHEUS_URL", &prometheus.url()),
    )
    .expect("write scenario");
    let crds = repo_root().join("deploy/crds/crds.yaml");
    sandbox.kubectl_ok(&[
        "apply",
        "--server-side",
        "-f",
        crds.to_str().expect("utf-8"),
    ]);
    sandbox.kubectl_ok(&["apply", "-f", manifests.to_str().expect("utf-8")]);

    // Only the operator goes through the proxy.
    let kubeconfig = dir.path().join("operator.kubeconfig");
    sandbox.kubeconfig_via(proxy.addr, &kubeconfig);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
        .to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_serin"))
        .args(["operator", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["--port", &port, "--metrics-server", &prometheus.url()])
        .args(["--leader-elect", "--leader-election-namespace", "default"])
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serin operator starts");
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _operator = Stop(child);

    let phase = [
        "-n",
        "test",
        "get",
        "canary",
        "podinfo",
        "-o",
        "jsonpath={.status.phase}",
    ];
    wait_until(&sandbox, "Initialized", &phase, |o| {
        o.stdout == "Initialized"
    });
    // A new revision analysed step by step (weights written, the template, its
    // Secret and the AlertProvider read at each check) and promoted...
    sandbox.kubectl_ok(&[
        "-n",
        "test",
        "set",
        "image",
        "deployment/podinfo",
        "podinfod=ghcr.io/stefanprodan/podinfo:6.0.1",
    ]);
    wait_until(&sandbox, "Succeeded after 6.0.1", &phase, |o| {
        o.stdout == "Succeeded"
    });
    wait_until(
        &sandbox,
        "the promoted image on the primary",
        &[
            "-n",
            "test",
            "get",
            "deployment",
            "podinfo-primary",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
        |o| o.stdout.ends_with(":6.0.1"),
    );
    // ...then one whose metric fails: rolled back.
    sandbox.kubectl_ok(&[
        "-n",
        "istio-system",
        "patch",
        "metrictemplate",
        "error-rate",
        "--type=merge",
        "-p",
        r#"{"spec":{"query":"vector(50)"}}"#,
    ]);
    sandbox.kubectl_ok(&[
        "-n",
        "test",
        "set",
        "image",
        "deployment/podinfo",
        "podinfod=ghcr.io/stefanprodan/podinfo:6.0.2",
    ]);
    wait_until(&sandbox, "Failed after 6.0.2", &phase, |o| {
        o.stdout == "Failed"
    });
    let events = sandbox.kubectl_ok(&[
        "-n",
        "test",
        "get",
        "events",
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ]);
    for want in [
        "Advance podinfo.test canary weight 20",
        "Promotion completed! Scaling down podinfo.test",
        "Rolling back podinfo.test failed checks threshold reached 2",
    ] {
        assert!(
            events.lines().any(|l| l == want),
            "{want:?} not among the events:\n{events}"
        );
    }
    // revertOnDeletion: the operator restores the target and removes its finalizer.
    sandbox.kubectl_ok(&["-n", "test", "delete", "canary", "podinfo", "--wait=false"]);
    wait_until(
        &sandbox,
        "the canary to be gone",
        &["-n", "test", "get", "canaries", "-o", "name"],
        |o| o.status.success() && o.stdout.trim().is_empty(),
    );

    let (cluster, namespaced) = operator_rbac_rules();
    let seen = proxy.seen();
    let g = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    // The whole life was seen: the analysis wrote routes and read the template,
    // its Secret and the AlertProvider; leader election used its Lease.
    for call in [
        g("flagger.app", "canaries", "watch"),
        g("networking.istio.io", "virtualservices", "update"),
        g("flagger.app", "metrictemplates", "get"),
        g("", "secrets", "get"),
        g("flagger.app", "alertproviders", "get"),
        g("coordination.k8s.io", "leases", "get"),
    ] {
        assert!(seen.contains(&call), "{call:?} was never made: {seen:?}");
    }
    // The Role only grants in the operator's own namespace (here `default`, its
    // --leader-election-namespace): a call it covers elsewhere is not allowed.
    let scoped = proxy.scoped();
    let uncovered: Vec<&ScopedGrant> = scoped
        .iter()
        .filter(|(ns, g)| {
            let allowed =
                cluster.contains(g) || (ns.as_deref() == Some("default") && namespaced.contains(g));
            !allowed
        })
        .collect();
    assert!(
        uncovered.is_empty(),
        "the operator made calls its RBAC (deploy/kustomize/base/rbac.yaml) does not allow: {uncovered:?}\nall calls: {scoped:?}"
    );
    let leases: Vec<&ScopedGrant> = scoped
        .iter()
        .filter(|(_, (group, _, _))| group == "coordination.k8s.io")
        .collect();
    assert!(
        leases
            .iter()
            .all(|(ns, _)| ns.as_deref() == Some("default")),
        "Lease calls outside the operator's namespace: {leases:?}"
    );
    eprintln!("operator calls, all allowed: {seen:?}");
}

/// `serin simulate` of an app in gitops/apps with the metric values given; its lines.
fn rehearse(app: &str, metrics: &[&str]) -> Vec<String> {
    let root = repo_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let built = dir.path().join(format!("{app}.yaml"));
    let objects: Vec<String> = kustomize(&root.join("gitops/apps").join(app))
        .iter()
        .map(Value::to_string)
        .collect();
    std::fs::write(&built, objects.join("\n---\n")).expect("write app");
    let templates = root.join("gitops/istio/gateway/serin-metrics.yaml");
    let mut args = vec![
        "simulate",
        "-f",
        built.to_str().expect("utf-8"),
        "-f",
        templates.to_str().expect("utf-8"),
    ];
    for m in metrics {
        args.extend(["--metric", m]);
    }
    let out = run_bounded(env!("CARGO_BIN_EXE_serin"), &args, COMMAND_TIMEOUT);
    assert!(
        out.status.code().is_some(),
        "serin simulate was killed: {}",
        out.stderr
    );
    out.stdout.lines().map(str::to_string).collect()
}

/// Whether `wanted` appear in `lines` in this order (as line endings).
fn in_order(lines: &[String], wanted: &[String]) -> bool {
    let mut it = lines.iter();
    wanted.iter().all(|w| it.any(|l| l.ends_with(w.as_str())))
}

#[test]
fn walkthrough_steps_rehearse_as_the_readme_says() {
    // 3. Canary release of the backend: 5% steps up to 50%, then promotion.
    let lines = rehearse("backend", &["error-rate=0.5", "latency=120"]);
    let mut wanted = vec![
        "New revision detected! Scaling up backend.prod".to_string(),
        "Starting canary analysis for backend.prod".into(),
        "Pre-rollout check conformance-test passed".into(),
    ];
    wanted.extend((1..=10).map(|i| format!("Advance backend.prod canary weight {}", i * 5)));
    wanted.push("Copying backend.prod template spec to backend-primary.prod".into());
    wanted.push("Promotion completed! Scaling down backend.prod".into());
    assert!(in_order(&lines, &wanted), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("canary weight 55")));
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("result: Succeeded")),
        "{lines:#?}"
    );

    // 4. A/B test of the frontend: ten iterations, then promotion.
    let lines = rehearse("frontend", &["error-rate=0", "latency=100"]);
    let mut wanted: Vec<String> = (1..=10)
        .map(|i| format!("Advance frontend.prod canary iteration {i}/10"))
        .collect();
    wanted.push("Promotion completed! Scaling down frontend.prod".into());
    assert!(in_order(&lines, &wanted), "{lines:#?}");
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("result: Succeeded")),
        "{lines:#?}"
    );

    // 5. Rollback: errors and latency past the thresholds, ten times.
    let lines = rehearse("frontend", &["error-rate=31", "latency=2000"]);
    let wanted = [
        "Halt frontend.prod advancement error-rate 31.00 > 1".to_string(),
        "Rolling back frontend.prod failed checks threshold reached 10".into(),
        "Canary failed! Scaling down frontend.prod".into(),
    ];
    assert!(in_order(&lines, &wanted), "{lines:#?}");
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("result: Failed")),
        "{lines:#?}"
    );
}

#[test]
fn render_creates_the_objects_the_readme_lists() {
    let dir = tempfile::tempdir().expect("temp dir");
    for app in ["backend", "frontend"] {
        let objects: Vec<String> = kustomize(&repo_root().join("gitops/apps").join(app))
            .iter()
            .map(Value::to_string)
            .collect();
        let built = dir.path().join(format!("{app}.yaml"));
        std::fs::write(&built, objects.join("\n---\n")).expect("write app");
        let out = run_bounded(
            env!("CARGO_BIN_EXE_serin"),
            &["render", "-f", built.to_str().expect("utf-8")],
            COMMAND_TIMEOUT,
        );
        assert!(out.status.success(), "serin render: {}", out.stderr);
        let rendered: BTreeSet<String> = yaml_documents(&out.stdout, "serin render")
            .iter()
            .map(|o| format!("{}/{}", kind_of(o).1, name_of(o)))
            .collect();
        let expected: BTreeSet<String> = [
            format!("Deployment/{app}-primary"),
            format!("HorizontalPodAutoscaler/{app}-primary"),
            format!("Service/{app}"),
            format!("Service/{app}-canary"),
            format!("Service/{app}-primary"),
            format!("DestinationRule/{app}-canary"),
            format!("DestinationRule/{app}-primary"),
            format!("VirtualService/{app}"),
        ]
        .into();
        assert_eq!(rendered, expected, "gitops/README.md lists these for {app}");
    }
}
