//! The real kubectl (/usr/bin/kubectl) against the sandbox served over HTTP on loopback.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::json;
use serin_sandbox::{Sandbox, SandboxOptions, ServeHandle};

const KUBECTL: &str = "/usr/bin/kubectl";

struct Cluster {
    sandbox: Sandbox,
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

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

impl Cluster {
    async fn start() -> Self {
        let sandbox = Sandbox::new(SandboxOptions {
            rollout_delay: Duration::from_millis(200),
            ..Default::default()
        });
        let server = sandbox.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        sandbox
            .write_kubeconfig(&dir.path().join("kubeconfig"), server.addr())
            .unwrap();
        Self {
            sandbox,
            server: Some(server),
            dir,
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(KUBECTL);
        cmd.args(args)
            .arg(format!(
                "--cache-dir={}",
                self.dir.path().join("cache").display()
            ))
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Output {
        let child = self.command(args).spawn().expect("kubectl runs");
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

    /// Runs kubectl and expects success; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.ok,
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        );
        assert!(
            out.stderr.trim().is_empty(),
            "kubectl {args:?} complained: {}",
            out.stderr
        );
        out.stdout
    }

    async fn setup_podinfo(&self) {
        let crds = repo("deploy/crds/crds.yaml");
        let out = self.ok(&["apply", "-f", crds.to_str().unwrap()]).await;
        assert!(
            out.contains(
                "customresourcedefinition.apiextensions.k8s.io/canaries.flagger.app created"
            ),
            "{out}"
        );
        assert_eq!(
            self.ok(&["create", "ns", "test"]).await.trim(),
            "namespace/test created"
        );
        let out = self
            .ok(&["apply", "-f", data("podinfo.yaml").to_str().unwrap()])
            .await;
        assert!(out.contains("deployment.apps/podinfo created"), "{out}");
        assert!(
            out.contains("horizontalpodautoscaler.autoscaling/podinfo created"),
            "{out}"
        );
        let canary = repo("tests/fixtures/seeds/istio-guide/podinfo-canary.yaml");
        let out = self.ok(&["apply", "-f", canary.to_str().unwrap()]).await;
        assert_eq!(out.trim(), "canary.flagger.app/podinfo created");
    }

    fn canaries(&self) -> Api<DynamicObject> {
        let ar = ApiResource {
            group: "flagger.app".into(),
            version: "v1beta1".into(),
            api_version: "flagger.app/v1beta1".into(),
            kind: "Canary".into(),
            plural: "canaries".into(),
        };
        Api::namespaced_with(self.sandbox.client(), "test", &ar)
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_crds_and_seed_manifests_and_sets_images() {
    let c = Cluster::start().await;
    c.setup_podinfo().await;
    assert_eq!(
        c.ok(&[
            "-n",
            "test",
            "get",
            "deploy",
            "podinfo",
            "-o",
            "jsonpath={.metadata.generation}"
        ])
        .await,
        "1"
    );
    let out = c
        .ok(&[
            "-n",
            "test",
            "set",
            "image",
            "deployment/podinfo",
            "podinfod=ghcr.io/stefanprodan/podinfo:6.0.1",
        ])
        .await;
    assert_eq!(out.trim(), "deployment.apps/podinfo image updated");
    let out = c
        .ok(&["-n", "test", "get", "deploy", "podinfo", "-o",
            "jsonpath={.metadata.generation} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}"])
        .await;
    assert_eq!(out, "2 ghcr.io/stefanprodan/podinfo:6.0.1 9898");

    // set env (strategic merge on env by name) and scale (scale subresource).
    c.ok(&[
        "-n",
        "test",
        "set",
        "env",
        "deployment/podinfo",
        "PODINFO_UI_MESSAGE=hello",
    ])
    .await;
    let env = c
        .ok(&[
            "-n",
            "test",
            "get",
            "deploy",
            "podinfo",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env[*].name}",
        ])
        .await;
    assert_eq!(env, "PODINFO_UI_COLOR PODINFO_UI_MESSAGE");
    assert_eq!(
        c.ok(&["-n", "test", "scale", "deployment/podinfo", "--replicas=3"])
            .await
            .trim(),
        "deployment.apps/podinfo scaled"
    );
    // The simulated controller makes the rollout finish.
    let out = c
        .ok(&[
            "-n",
            "test",
            "rollout",
            "status",
            "deployment/podinfo",
            "--timeout=30s",
        ])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let out = c.ok(&["-n", "test", "get", "deploy", "podinfo"]).await;
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..4], ["podinfo", "3/3", "3", "3"], "{out}");

    // Client-side apply of the same file again: strategic merge patch restores the image.
    let out = c
        .ok(&["apply", "-f", data("podinfo.yaml").to_str().unwrap()])
        .await;
    assert!(out.contains("deployment.apps/podinfo configured"), "{out}");
    let img = c
        .ok(&[
            "-n",
            "test",
            "get",
            "deploy",
            "podinfo",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(img, "ghcr.io/stefanprodan/podinfo:6.0.0");

    // Unknown fields of a custom resource: kubectl's default strict validation rejects them
    // (seed 004 misspells two fields), --validate=warn prunes them with a warning.
    let typos = repo("tests/fixtures/seeds/blog-ciwei/podinfo-canary.yaml");
    c.ok(&["-n", "test", "delete", "canary", "podinfo"]).await;
    let out = c.run(&["apply", "-f", typos.to_str().unwrap()]).await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("strict decoding error: unknown field \"spec.autoscalerRef.apiVerseersion\", unknown field \"spec.progressDeadlineSes\""),
        "{}",
        out.stderr
    );
    let out = c
        .run(&["apply", "--validate=warn", "-f", typos.to_str().unwrap()])
        .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("Warning: unknown field \"spec.progressDeadlineSes\""),
        "{}",
        out.stderr
    );
    let spec = c
        .ok(&[
            "-n",
            "test",
            "get",
            "canary",
            "podinfo",
            "-o",
            "jsonpath={.spec}",
        ])
        .await;
    assert!(!spec.contains("progressDeadlineSes"), "pruned: {spec}");
    c.ok(&["-n", "test", "delete", "canary", "podinfo"]).await;

    // Server-side apply.
    let out = c
        .ok(&[
            "apply",
            "--server-side",
            "-f",
            data("podinfo.yaml").to_str().unwrap(),
        ])
        .await;
    assert!(
        out.contains("deployment.apps/podinfo serverside-applied"),
        "{out}"
    );
    let out = c
        .ok(&[
            "apply",
            "--server-side",
            "-f",
            repo("tests/fixtures/seeds/istio-guide/podinfo-canary.yaml")
                .to_str()
                .unwrap(),
        ])
        .await;
    assert!(
        out.contains("canary.flagger.app/podinfo serverside-applied"),
        "{out}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_canary_columns_events_and_waits_for_promotion() {
    let c = Cluster::start().await;
    c.setup_podinfo().await;
    let canaries = c.canaries();
    canaries
        .patch_status(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Progressing", "canaryWeight": 10, "failedChecks": 0,
                "iterations": 0, "lastTransitionTime": "2026-11-22T04:30:00Z",
                "conditions": [{"type": "Promoted", "status": "Unknown", "reason": "Progressing",
                    "message": "New revision detected, progressing canary analysis.",
                    "lastUpdateTime": "2026-11-22T04:30:00Z", "lastTransitionTime": "2026-11-22T04:30:00Z"}]}})),
        )
        .await
        .unwrap();

    let out = c.ok(&["get", "canaries", "--all-namespaces"]).await;
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "STATUS",
            "WEIGHT",
            "LASTTRANSITIONTIME"
        ],
        "{out}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        row,
        [
            "test",
            "podinfo",
            "Progressing",
            "10",
            "2026-11-22T04:30:00Z"
        ],
        "{out}"
    );
    let wide = c.ok(&["-n", "test", "get", "canaries", "-o", "wide"]).await;
    assert!(
        wide.lines().next().unwrap().contains("FAILEDCHECKS"),
        "{wide}"
    );

    // Events through both APIs: kube-rs' recorder writes events.k8s.io/v1, others core/v1.
    let canary = canaries.get("podinfo").await.unwrap();
    let reference = ObjectReference {
        api_version: Some("flagger.app/v1beta1".into()),
        kind: Some("Canary".into()),
        name: canary.metadata.name.clone(),
        namespace: Some("test".into()),
        uid: canary.metadata.uid.clone(),
        resource_version: canary.metadata.resource_version.clone(),
        field_path: None,
    };
    let recorder = Recorder::new(
        c.sandbox.client(),
        Reporter {
            controller: "serin".into(),
            instance: None,
        },
    );
    recorder
        .publish(
            &Event {
                type_: EventType::Normal,
                reason: "Synced".into(),
                note: Some("New revision detected! Scaling up podinfo.test".into()),
                action: "Progressing".into(),
                secondary: None,
            },
            &reference,
        )
        .await
        .unwrap();
    let core_events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(c.sandbox.client(), "test");
    core_events
        .create(&PostParams::default(), &serde_json::from_value(json!({
            "metadata": {"name": "podinfo.advance", "namespace": "test"},
            "involvedObject": {"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo",
                "namespace": "test", "uid": canary.metadata.uid},
            "reason": "Synced", "message": "Advance podinfo.test canary weight 10", "type": "Normal",
            "source": {"component": "flagger"}, "count": 1,
            "firstTimestamp": "2026-11-22T04:31:00Z", "lastTimestamp": "2026-11-22T04:31:00Z"})).unwrap())
        .await
        .unwrap();
    let out = c.ok(&["-n", "test", "describe", "canary/podinfo"]).await;
    let events = out
        .split("Events:")
        .nth(1)
        .unwrap_or_else(|| panic!("no events section:\n{out}"));
    assert!(
        events.contains("New revision detected! Scaling up podinfo.test"),
        "{out}"
    );
    assert!(
        events.contains("Advance podinfo.test canary weight 10"),
        "{out}"
    );
    assert!(events.contains("serin"), "{out}");
    assert!(
        out.contains("Phase:") && out.contains("Progressing"),
        "{out}"
    );

    // kubectl wait: times out while the condition is not True, returns once it is.
    let early = c
        .run(&[
            "-n",
            "test",
            "wait",
            "canary/podinfo",
            "--for=condition=promoted",
            "--timeout=1s",
        ])
        .await;
    assert!(
        !early.ok,
        "wait must not return before promotion: {}",
        early.stdout
    );
    let waiting = c
        .command(&[
            "-n",
            "test",
            "wait",
            "canary/podinfo",
            "--for=condition=promoted",
            "--timeout=60s",
        ])
        .spawn()
        .unwrap();
    canaries
        .patch_status(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Succeeded", "canaryWeight": 0,
                "conditions": [{"type": "Promoted", "status": "True", "reason": "Succeeded",
                    "message": "Canary analysis completed successfully, promotion finished.",
                    "lastUpdateTime": "2026-11-22T04:40:00Z", "lastTransitionTime": "2026-11-22T04:40:00Z"}]}})),
        )
        .await
        .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(60), waiting.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&done.stdout).trim(),
        "canary.flagger.app/podinfo condition met"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_removes_owned_objects() {
    let c = Cluster::start().await;
    c.setup_podinfo().await;
    let canary = c.canaries().get("podinfo").await.unwrap();
    let owner = json!([{"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo",
        "uid": canary.metadata.uid, "controller": true, "blockOwnerDeletion": true}]);
    let deployments: Api<Deployment> = Api::namespaced(c.sandbox.client(), "test");
    deployments
        .create(&PostParams::default(), &serde_json::from_value(json!({
            "metadata": {"name": "podinfo-primary", "ownerReferences": owner},
            "spec": {"selector": {"matchLabels": {"app": "podinfo-primary"}},
                "template": {"metadata": {"labels": {"app": "podinfo-primary"}},
                    "spec": {"containers": [{"name": "podinfod", "image": "ghcr.io/stefanprodan/podinfo:6.0.0"}]}}}})).unwrap())
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(c.sandbox.client(), "test");
    for name in ["podinfo", "podinfo-canary", "podinfo-primary"] {
        services
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                "metadata": {"name": name, "ownerReferences": owner},
                "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 9898}]}}))
                .unwrap(),
            )
            .await
            .unwrap();
    }
    let out = c.ok(&["-n", "test", "get", "svc"]).await;
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.lines().next().unwrap().contains("CLUSTER-IP"), "{out}");

    let out = c
        .ok(&["-n", "test", "delete", "canary", "podinfo", "--timeout=30s"])
        .await;
    assert_eq!(out.trim(), "canary.flagger.app \"podinfo\" deleted");
    let out = c
        .run(&["-n", "test", "get", "deploy", "podinfo-primary"])
        .await;
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains("deployments.apps \"podinfo-primary\" not found"),
        "{}",
        out.stderr
    );
    let out = c.ok(&["-n", "test", "get", "svc", "-o", "name"]).await;
    assert_eq!(out.trim(), "", "owned services are gone");
    // The user's own deployment has no owner and stays.
    c.ok(&["-n", "test", "get", "deploy", "podinfo"]).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_commands_work_through_protobuf_bodies() {
    let c = Cluster::start().await;
    assert_eq!(
        c.ok(&["create", "ns", "test"]).await.trim(),
        "namespace/test created"
    );
    c.ok(&[
        "-n",
        "test",
        "create",
        "configmap",
        "cfg",
        "--from-literal=color=blue",
    ])
    .await;
    c.ok(&[
        "-n",
        "test",
        "create",
        "secret",
        "generic",
        "token",
        "--from-literal=key=s3cret",
    ])
    .await;
    let out = c
        .ok(&[
            "-n",
            "test",
            "create",
            "deployment",
            "web",
            "--image=ghcr.io/stefanprodan/podinfo:6.0.0",
            "--port=9898",
            "--replicas=2",
        ])
        .await;
    assert_eq!(out.trim(), "deployment.apps/web created");
    assert_eq!(
        c.ok(&[
            "-n",
            "test",
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--target-port=9898"
        ])
        .await
        .trim(),
        "service/web exposed"
    );
    let out = c
        .ok(&["-n", "test", "get", "cm/cfg", "secret/token", "deploy/web", "svc/web", "-o",
            "jsonpath={.items[0].data.color} {.items[1].data.key} {.items[2].spec.replicas} {.items[2].spec.selector.matchLabels.app} {.items[2].spec.template.spec.containers[0].ports[0].containerPort} {.items[3].spec.ports[0].port} {.items[3].spec.ports[0].targetPort} {.items[3].spec.selector.app}"])
        .await;
    assert_eq!(out, "blue czNjcmV0 2 web 9898 80 9898 web");
    let out = c
        .ok(&[
            "-n",
            "test",
            "rollout",
            "status",
            "deployment/web",
            "--timeout=30s",
        ])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");

    // serin's own install manifests (CRDs, namespace, RBAC, service accounts, deployments).
    let out = c
        .ok(&[
            "apply",
            "-k",
            repo("deploy/kustomize/kubernetes").to_str().unwrap(),
        ])
        .await;
    assert!(
        out.contains("clusterrole.rbac.authorization.k8s.io/"),
        "{out}"
    );
    assert!(
        out.contains("rolebinding.rbac.authorization.k8s.io/"),
        "{out}"
    );
    assert!(out.contains("serviceaccount/"), "{out}");
    assert!(out.contains("deployment.apps/"), "{out}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_client_reads_the_written_kubeconfig_and_works_over_http() {
    let c = Cluster::start().await;
    let kubeconfig = kube::config::Kubeconfig::read_from(c.dir.path().join("kubeconfig")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let names: Vec<String> = namespaces
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"default".to_string()), "{names:?}");
    // A watch over HTTP sees a write made in process.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, "default");
    let rv = c.sandbox.resource_version().to_string();
    let mut stream = futures::StreamExt::boxed(
        cms.watch(&kube::api::WatchParams::default().timeout(30), &rv)
            .await
            .unwrap(),
    );
    let local: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(c.sandbox.client(), "default");
    local
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "over-http"}})).unwrap(),
        )
        .await
        .unwrap();
    let ev = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut stream),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert!(
        matches!(ev, kube::api::WatchEvent::Added(cm) if cm.metadata.name.as_deref() == Some("over-http"))
    );
    c.stop().await;
}
