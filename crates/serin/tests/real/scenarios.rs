//! The seed walkthrough and its faults on the real control plane.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::live::{Rates, telemetry};
use crate::support::*;

const MINUTE: Duration = Duration::from_secs(60);

/// The seed guide's podinfo Deployment and HPA (the HPA controller is real), for an
/// app called `name`.
fn app(name: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels:
    app: {name}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
        - name: podinfod
          image: ghcr.io/stefanprodan/podinfo:6.0.0
          ports:
            - name: http
              containerPort: 9898
          command: [./podinfo, --port=9898]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {name}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {name}
  minReplicas: 2
  maxReplicas: 4
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: 99
"
    )
}

/// The seed guide's Canary, on a short clock (3s steps to 30%) and without the
/// in-cluster load tester webhooks (nothing here resolves cluster DNS).
const PODINFO_CANARY: &str = "apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  progressDeadlineSeconds: 60
  autoscalerRef:
    apiVersion: autoscaling/v2
    kind: HorizontalPodAutoscaler
    name: podinfo
  service:
    port: 9898
    targetPort: 9898
    gateways:
      - istio-system/public-gateway
    hosts:
      - app.example.com
    trafficPolicy:
      tls:
        mode: DISABLE
    retries:
      attempts: 3
      perTryTimeout: 1s
      retryOn: gateway-error,connect-failure,refused-stream
  analysis:
    interval: 3s
    threshold: 2
    maxWeight: 30
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 10s
      - name: request-duration
        thresholdRange:
          max: 500
        interval: 10s
";

/// `wanted` appear in `lines` in this order (others may come between).
fn assert_in_order(lines: &[String], wanted: &[String]) {
    let mut at = 0;
    for w in wanted {
        match lines[at..].iter().position(|l| l == w) {
            Some(i) => at += i + 1,
            None => panic!("{w:?} not found in order in:\n{}", lines.join("\n")),
        }
    }
}

/// `kubectl set image`, as the seed guide releases a new version.
pub(crate) fn set_image(ns: &str, deployment: &str, tag: &str) {
    kubectl(&[
        "-n",
        ns,
        "set",
        "image",
        &format!("deployment/{deployment}"),
        &format!("podinfod=ghcr.io/stefanprodan/podinfo:{tag}"),
    ])
    .expect_ok("set image");
}

fn image(ns: &str, deployment: &str) -> String {
    must_get(ns, &format!("deployment/{deployment}"))["spec"]["template"]["spec"]["containers"]
        [0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Per HTTP route of a VirtualService: (destination host, weight).
type Routes = Vec<Vec<(String, i64)>>;

/// Every version of every VirtualService in a namespace, from a watch: each HTTP
/// route's weights must sum to 100 at every version the API server stored.
struct RouteLog {
    proc: Tied,
    file: std::path::PathBuf,
}

impl RouteLog {
    fn start(ns: &str) -> RouteLog {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let file = cluster().dir.path().join(format!(
            "routes-{ns}-{}.txt",
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let mut cmd = tied_to_this_process(Path::new(KUBECTL));
        cmd.env("KUBECONFIG", &cluster().kubeconfig)
            // JSON, not jsonpath: kubectl's watch prints a jsonpath with `range` for the
            // first object only.
            .args(["-n", ns, "get", "virtualservices", "--watch", "-o", "json"])
            .env("TIED_STDOUT", &file)
            .stderr(std::process::Stdio::null());
        RouteLog {
            proc: Tied::spawn(cmd),
            file,
        }
    }

    /// (name@resourceVersion, per HTTP route: [(host, weight)]) of every version seen.
    fn versions(&self) -> Vec<(String, Routes)> {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        serde_json::Deserializer::from_str(&text)
            .into_iter::<Value>()
            .map_while(Result::ok)
            .map(|vs| {
                let id = format!(
                    "{}@{}",
                    vs["metadata"]["name"].as_str().unwrap_or(""),
                    vs["metadata"]["resourceVersion"].as_str().unwrap_or("")
                );
                let routes = vs["spec"]["http"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        r["route"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|d| {
                                (
                                    d["destination"]["host"].as_str().unwrap_or("").to_string(),
                                    // A destination without a weight takes all traffic.
                                    d["weight"].as_i64().unwrap_or(100),
                                )
                            })
                            .collect()
                    })
                    .collect();
                (id, routes)
            })
            .collect()
    }

    /// Asserts the invariant on every version; returns the canary weights seen, in order.
    fn check(&self, canary_host: &str) -> Vec<i64> {
        let versions = self.versions();
        assert!(!versions.is_empty(), "the watch saw no VirtualService");
        let mut weights = Vec::new();
        for (rv, routes) in &versions {
            for route in routes {
                let sum: i64 = route.iter().map(|(_, w)| w).sum();
                assert_eq!(sum, 100, "weights of {rv} sum to {sum}: {route:?}");
            }
            if let Some(first) = routes.first()
                && let Some((_, w)) = first.iter().find(|(h, _)| h == canary_host)
                && weights.last() != Some(w)
            {
                weights.push(*w);
            }
        }
        weights
    }
}

impl Drop for RouteLog {
    fn drop(&mut self) {
        self.proc.stop();
    }
}

fn owned_by_canary(obj: &Value, canary: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| {
            refs.iter().any(|r| {
                r["kind"] == "Canary"
                    && r["name"] == canary
                    && r["apiVersion"] == "flagger.app/v1beta1"
                    && r["controller"] == true
            })
        })
}

fn condition(obj: &Value, type_: &str) -> Option<(String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find_map(|c| {
            (c["type"] == type_).then(|| {
                (
                    c["status"].as_str().unwrap_or("").to_string(),
                    c["reason"].as_str().unwrap_or("").to_string(),
                )
            })
        })
}

/// Pods of a label selector that are not being deleted.
fn live_pods(ns: &str, selector: &str) -> usize {
    let v: Value = serde_json::from_str(
        &kubectl(&["-n", ns, "get", "pods", "-l", selector, "-o", "json"]).expect_ok("pods"),
    )
    .expect("json");
    v["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .count()
        })
        .unwrap_or(0)
}

fn start_podinfo(prefix: &str) -> (Namespace, EventLog, RouteLog, Operator) {
    let ns = Namespace::new(prefix);
    let events = EventLog::start(&ns.name);
    let routes = RouteLog::start(&ns.name);
    telemetry().set(&ns.name, "podinfo", Rates::healthy());
    apply(&ns.name, &app("podinfo"));
    apply(&ns.name, PODINFO_CANARY);
    let op = Operator::start(&ns.name, &[]);
    (ns, events, routes, op)
}

#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn seed_canary_initializes_promotes_and_rolls_back_on_live_metrics() {
    let _shared = shared();
    let (ns, events, routes, op) = start_podinfo("podinfo");
    let n = ns.name.as_str();
    wait_phase(n, "podinfo", "Initialized", MINUTE, &op);

    // The guide's eight generated objects, each owned by the Canary.
    for what in [
        "deployment/podinfo-primary",
        "horizontalpodautoscaler/podinfo-primary",
        "service/podinfo",
        "service/podinfo-canary",
        "service/podinfo-primary",
        "destinationrule/podinfo-canary",
        "destinationrule/podinfo-primary",
        "virtualservice/podinfo",
    ] {
        let obj = must_get(n, what);
        assert!(
            owned_by_canary(&obj, "podinfo"),
            "{what} is owned by the Canary: {}",
            obj["metadata"]["ownerReferences"]
        );
    }
    // The target is scaled to zero and its pods are gone (the real ReplicaSet
    // controller deleted them); the primary is Available with the HPA's two replicas.
    assert_eq!(must_get(n, "deployment/podinfo")["spec"]["replicas"], 0);
    wait_for("the target's pods to go", MINUTE, || {
        (live_pods(n, "app=podinfo") == 0).then_some(())
    });
    wait_for("podinfo-primary Available with 2 replicas", MINUTE, || {
        let p = must_get(n, "deployment/podinfo-primary");
        (condition(&p, "Available").is_some_and(|(s, _)| s == "True")
            && p["status"]["availableReplicas"] == 2)
            .then_some(())
    });
    assert_eq!(live_pods(n, "app=podinfo-primary"), 2);
    kubectl(&[
        "-n",
        n,
        "wait",
        "--for=condition=promoted",
        "canary/podinfo",
        "--timeout=30s",
    ])
    .expect_ok("kubectl wait --for=condition=promoted");

    // A new version is promoted step by step on passing live metrics.
    set_image(n, "podinfo", "6.0.1");
    wait_phase(n, "podinfo", "Succeeded", 2 * MINUTE, &op);
    let id = format!("podinfo.{n}");
    assert_in_order(
        &events.messages(),
        &[
            format!("Initialization done! {id}"),
            format!("New revision detected! Scaling up {id}"),
            format!("Starting canary analysis for {id}"),
            format!("Advance {id} canary weight 10"),
            format!("Advance {id} canary weight 20"),
            format!("Advance {id} canary weight 30"),
            format!("Copying {id} template spec to podinfo-primary.{n}"),
            "Routing all traffic to primary".to_string(),
            format!("Promotion completed! Scaling down {id}"),
        ],
    );
    assert_eq!(
        image(n, "podinfo-primary"),
        "ghcr.io/stefanprodan/podinfo:6.0.1"
    );
    assert_eq!(must_get(n, "deployment/podinfo")["spec"]["replicas"], 0);
    let host = "podinfo-canary";
    let seen = routes.check(host);
    for w in [10, 20, 30] {
        assert!(seen.contains(&w), "canary weight {w} was routed: {seen:?}");
    }
    assert_eq!(
        seen.last(),
        Some(&0),
        "all traffic back on the primary: {seen:?}"
    );

    // A faulty version: the live success rate is 50%, two failed checks roll it back.
    telemetry().set(n, "podinfo", Rates::failing());
    set_image(n, "podinfo", "6.0.2");
    wait_phase(n, "podinfo", "Failed", 2 * MINUTE, &op);
    let messages = events.messages();
    assert!(
        messages
            .iter()
            .any(|m| m == &format!("Halt {id} advancement success rate 50.00% < 99%")),
        "a halt names the live success rate: {messages:#?}"
    );
    assert_in_order(
        &messages,
        &[
            format!("Promotion completed! Scaling down {id}"),
            format!("New revision detected! Scaling up {id}"),
            format!("Rolling back {id} failed checks threshold reached 2"),
            format!("Canary failed! Scaling down {id}"),
        ],
    );
    assert_eq!(
        image(n, "podinfo-primary"),
        "ghcr.io/stefanprodan/podinfo:6.0.1"
    );
    let seen = routes.check(host);
    assert_eq!(
        seen.last(),
        Some(&0),
        "rolled back to the primary: {seen:?}"
    );
    wait_for("the faulty canary's pods to go", MINUTE, || {
        (live_pods(n, "app=podinfo") == 0).then_some(())
    });
    let c = must_get(n, "canary/podinfo");
    assert_eq!(c["status"]["canaryWeight"], 0);
    assert_eq!(condition(&c, "Promoted").map(|c| c.0), Some("False".into()));
}

/// The seeds' A/B frontend: Firefox users and insider cookies on the canary for a
/// number of iterations, checked by a MetricTemplate in another namespace.
#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn ab_frontend_canary_routes_matching_users_for_its_iterations() {
    let _shared = shared();
    let ns = Namespace::new("frontend");
    let templates = Namespace::new("templates");
    let n = ns.name.as_str();
    let events = EventLog::start(n);
    let routes = RouteLog::start(n);
    telemetry().set(n, "frontend", Rates::healthy());
    apply(
        &templates.name,
        &format!(
            "apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: error-rate
spec:
  provider:
    type: prometheus
    address: {}
  query: |
    100 - sum(rate(istio_requests_total{{reporter=\"destination\",destination_workload_namespace=\"{{{{ namespace }}}}\",destination_workload=\"{{{{ target }}}}\",response_code!~\"5.*\"}}[{{{{ interval }}}}]))
    / sum(rate(istio_requests_total{{reporter=\"destination\",destination_workload_namespace=\"{{{{ namespace }}}}\",destination_workload=\"{{{{ target }}}}\"}}[{{{{ interval }}}}])) * 100
",
            telemetry().prometheus_url()
        ),
    );
    apply(n, &app("frontend"));
    apply(
        n,
        &format!(
            "apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: frontend
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: frontend
  autoscalerRef:
    apiVersion: autoscaling/v2
    kind: HorizontalPodAutoscaler
    name: frontend
  service:
    port: 9898
    gateways:
      - istio-system/public-gateway
    hosts:
      - \"*\"
  analysis:
    interval: 2s
    threshold: 10
    iterations: 3
    match:
      - headers:
          user-agent:
            regex: \".*Firefox.*\"
      - headers:
          cookie:
            regex: \"^(.*?;)?(type=insider)(;.*)?$\"
    metrics:
      - name: error-rate
        templateRef:
          name: error-rate
          namespace: {}
        thresholdRange:
          max: 1
        interval: 10s
",
            templates.name
        ),
    );
    let op = Operator::start(n, &[]);
    wait_phase(n, "frontend", "Initialized", MINUTE, &op);
    set_image(n, "frontend", "6.0.1");
    // While the analysis runs, the VirtualService sends matching users to the canary
    // and everyone else to the primary.
    let to = |route: &Value, host: &str| {
        route["route"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["destination"]["host"] == host)
            .map(|d| d["weight"].as_i64().unwrap_or(100))
            .sum::<i64>()
    };
    let vs = wait_for("the A/B routes", MINUTE, || {
        let vs = must_get(n, "virtualservice/frontend");
        let http = vs["spec"]["http"].as_array()?.clone();
        (http.len() == 2 && to(&http[0], "frontend-canary") == 100).then_some(vs)
    });
    // One route for the matching users (either condition), all of it to the canary,
    // then everyone else on the primary.
    let http = vs["spec"]["http"].as_array().unwrap();
    let matches = http[0]["match"].as_array().expect("match conditions");
    assert!(
        matches
            .iter()
            .any(|m| m["headers"]["user-agent"]["regex"] == ".*Firefox.*"),
        "{vs}"
    );
    assert!(
        matches
            .iter()
            .any(|m| m["headers"]["cookie"]["regex"] == "^(.*?;)?(type=insider)(;.*)?$"),
        "{vs}"
    );
    assert_eq!(to(&http[0], "frontend-canary"), 100, "{vs}");
    assert!(http[1]["match"].is_null(), "{vs}");
    assert_eq!(to(&http[1], "frontend-primary"), 100, "{vs}");
    wait_phase(n, "frontend", "Succeeded", 2 * MINUTE, &op);
    let id = format!("frontend.{n}");
    assert_in_order(
        &events.messages(),
        &[
            format!("New revision detected! Scaling up {id}"),
            format!("Advance {id} canary iteration 1/3"),
            format!("Advance {id} canary iteration 2/3"),
            format!("Advance {id} canary iteration 3/3"),
            format!("Promotion completed! Scaling down {id}"),
        ],
    );
    routes.check("frontend-canary");
    assert_eq!(
        image(n, "frontend-primary"),
        "ghcr.io/stefanprodan/podinfo:6.0.1"
    );
    // After promotion everyone is on the primary, the matching users too.
    let vs = must_get(n, "virtualservice/frontend");
    for route in vs["spec"]["http"].as_array().unwrap() {
        assert_eq!(to(route, "frontend-primary"), 100, "{vs}");
        assert_eq!(to(route, "frontend-canary"), 0, "{vs}");
    }
    drop(templates);
}

/// The EndpointSlices the real endpointslice controller made for a Service: the names
/// of the pods behind it.
fn service_pods(ns: &str, service: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(
        &kubectl(&[
            "-n",
            ns,
            "get",
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={service}"),
            "-o",
            "json",
        ])
        .expect_ok("endpointslices"),
    )
    .expect("json");
    let mut pods: Vec<String> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] == true)
        .filter_map(|e| e["targetRef"]["name"].as_str().map(String::from))
        .collect();
    pods.sort();
    pods
}

/// The app's own Service, as a user has it before putting the app under a Canary.
const APEX_SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: podinfo
spec:
  selector:
    app: podinfo
  ports:
    - name: http
      port: 9898
      targetPort: 9898
";

/// Blue/green with the kubernetes provider, where the app's Service already exists
/// and selects `app: podinfo` (the usual way a running app is put under a Canary):
/// the apex Service must keep serving from ready pods, the primary's, throughout.
#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn blue_green_with_an_existing_apex_service_keeps_it_serving() {
    let _shared = shared();
    let ns = Namespace::new("bluegreen");
    let n = ns.name.as_str();
    let events = EventLog::start(n);
    apply(n, &app("podinfo"));
    apply(n, APEX_SERVICE);
    wait_for(
        "the existing Service to have the app's pods",
        MINUTE,
        || (service_pods(n, "podinfo").len() == 2).then_some(()),
    );
    apply(
        n,
        "apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
spec:
  provider: kubernetes
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
  analysis:
    interval: 2s
    threshold: 2
    iterations: 2
",
    );
    let op = Operator::start(n, &["--mesh-provider", "kubernetes"]);
    wait_phase(n, "podinfo", "Initialized", MINUTE, &op);
    let apex = must_get(n, "service/podinfo");
    assert_eq!(
        apex["spec"]["selector"],
        serde_json::json!({"app": "podinfo-primary"}),
        "the apex Service selects the primary"
    );
    wait_for(
        "the apex Service to serve from the primary's pods",
        MINUTE,
        || {
            let pods = service_pods(n, "podinfo");
            (pods.len() == 2 && pods.iter().all(|p| p.starts_with("podinfo-primary-")))
                .then_some(())
        },
    );
    set_image(n, "podinfo", "6.0.1");
    wait_phase(n, "podinfo", "Succeeded", 2 * MINUTE, &op);
    let id = format!("podinfo.{n}");
    assert_in_order(
        &events.messages(),
        &[
            format!("New revision detected! Scaling up {id}"),
            format!("Advance {id} canary iteration 1/2"),
            format!("Advance {id} canary iteration 2/2"),
            format!("Promotion completed! Scaling down {id}"),
        ],
    );
    assert_eq!(
        image(n, "podinfo-primary"),
        "ghcr.io/stefanprodan/podinfo:6.0.1"
    );
    wait_for(
        "the apex Service back on the primary's pods",
        MINUTE,
        || {
            let pods = service_pods(n, "podinfo");
            (!pods.is_empty() && pods.iter().all(|p| p.starts_with("podinfo-primary-")))
                .then_some(())
        },
    );
}

const CONFIGURED: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: podinfo-config
data:
  color: blue
---
apiVersion: v1
kind: Secret
metadata:
  name: podinfo-secret
stringData:
  token: first
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
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
          envFrom:
            - configMapRef:
                name: podinfo-config
          volumeMounts:
            - name: secret
              mountPath: /etc/secret
      volumes:
        - name: secret
          secret:
            secretName: podinfo-secret
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
spec:
  provider: kubernetes
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
  analysis:
    interval: 2s
    threshold: 2
    iterations: 1
";

/// A ConfigMap change and then a Secret change each start a rollout, and the
/// primary's copies carry the new data after promotion.
#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn config_map_and_secret_changes_each_start_a_rollout() {
    let _shared = shared();
    let ns = Namespace::new("configs");
    let n = ns.name.as_str();
    let events = EventLog::start(n);
    apply(n, CONFIGURED);
    let op = Operator::start(n, &["--mesh-provider", "kubernetes"]);
    wait_phase(n, "podinfo", "Initialized", MINUTE, &op);
    assert_eq!(
        must_get(n, "configmap/podinfo-config-primary")["data"]["color"],
        "blue"
    );
    let primary = must_get(n, "deployment/podinfo-primary");
    let spec = &primary["spec"]["template"]["spec"];
    assert_eq!(
        spec["containers"][0]["envFrom"][0]["configMapRef"]["name"],
        "podinfo-config-primary"
    );
    assert_eq!(
        spec["volumes"][0]["secret"]["secretName"],
        "podinfo-secret-primary"
    );

    kubectl(&[
        "-n",
        n,
        "patch",
        "configmap/podinfo-config",
        "--type=merge",
        "-p",
        r#"{"data":{"color":"green"}}"#,
    ])
    .expect_ok("edit the ConfigMap");
    wait_for("a rollout of the ConfigMap change", MINUTE, || {
        (phase(n, "podinfo") == "Progressing").then_some(())
    });
    wait_phase(n, "podinfo", "Succeeded", MINUTE, &op);
    assert_eq!(
        must_get(n, "configmap/podinfo-config-primary")["data"]["color"],
        "green"
    );

    kubectl(&[
        "-n",
        n,
        "patch",
        "secret/podinfo-secret",
        "--type=merge",
        "-p",
        r#"{"stringData":{"token":"second"}}"#,
    ])
    .expect_ok("edit the Secret");
    wait_for("a rollout of the Secret change", MINUTE, || {
        (phase(n, "podinfo") == "Progressing").then_some(())
    });
    wait_phase(n, "podinfo", "Succeeded", MINUTE, &op);
    let copy = must_get(n, "secret/podinfo-secret-primary");
    assert_eq!(copy["data"]["token"], "c2Vjb25k", "base64 of \"second\"");
    let id = format!("podinfo.{n}");
    let revisions = events
        .messages()
        .iter()
        .filter(|m| **m == format!("New revision detected! Scaling up {id}"))
        .count();
    assert_eq!(revisions, 2, "one per rollout: {:?}", events.lines());
    let count = kubectl(&[
        "-n",
        n,
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=Canary,reason=Synced",
        "-o",
        "json",
    ])
    .expect_ok("events");
    let v: Value = serde_json::from_str(&count).unwrap();
    let new_revision = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["message"] == format!("New revision detected! Scaling up {id}"))
        .expect("the new revision event");
    assert_eq!(new_revision["count"], 2, "two rollouts: {new_revision}");
}

/// revertOnDeletion: deleting the Canary gives the app back to the target (scaled up,
/// the apex Service on its pods); without it, the real garbage collector removes
/// everything the Canary generated.
#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn deletion_reverts_with_revert_on_deletion_and_cascades_without() {
    let _shared = shared();
    let ns = Namespace::new("deletion");
    let n = ns.name.as_str();
    apply(n, &app("podinfo"));
    apply(n, &app("other"));
    // The app's own Service, there before the Canary: the one revertOnDeletion gives
    // back to the target (a Service the Canary generated goes with it, as in Flagger).
    apply(n, APEX_SERVICE);
    let canary = |name: &str, revert: bool| {
        format!(
            "apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: {name}
spec:
  provider: kubernetes
  revertOnDeletion: {revert}
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {name}
  autoscalerRef:
    apiVersion: autoscaling/v2
    kind: HorizontalPodAutoscaler
    name: {name}
  service:
    port: 9898
  analysis:
    interval: 2s
    threshold: 2
    iterations: 1
"
        )
    };
    apply(n, &canary("podinfo", true));
    apply(n, &canary("other", false));
    let op = Operator::start(n, &["--mesh-provider", "kubernetes"]);
    wait_phase(n, "podinfo", "Initialized", MINUTE, &op);
    wait_phase(n, "other", "Initialized", MINUTE, &op);
    let c = must_get(n, "canary/podinfo");
    assert_eq!(
        c["metadata"]["finalizers"],
        serde_json::json!(["finalizer.flagger.app"])
    );

    kubectl(&["-n", n, "delete", "canary/podinfo", "--timeout=60s"])
        .expect_ok("delete with revertOnDeletion");
    wait_for("the target scaled back up with ready pods", MINUTE, || {
        let d = must_get(n, "deployment/podinfo");
        (d["spec"]["replicas"].as_i64().unwrap_or(0) > 0 && d["status"]["readyReplicas"] == 2)
            .then_some(())
    });
    wait_for("the apex Service on the target's pods", MINUTE, || {
        let pods = service_pods(n, "podinfo");
        (pods.len() == 2 && pods.iter().all(|p| !p.starts_with("podinfo-primary-"))).then_some(())
    });
    wait_for("podinfo-primary removed", MINUTE, || {
        get(n, "deployment/podinfo-primary").is_none().then_some(())
    });

    kubectl(&["-n", n, "delete", "canary/other", "--timeout=60s"]).expect_ok("delete");
    for what in [
        "deployment/other-primary",
        "service/other",
        "service/other-canary",
        "service/other-primary",
        "horizontalpodautoscaler/other-primary",
    ] {
        wait_for(&format!("{what} collected"), MINUTE, || {
            get(n, what).is_none().then_some(())
        });
    }
    wait_for("the primary's pods collected", MINUTE, || {
        (live_pods(n, "app=other-primary") == 0).then_some(())
    });
    assert!(
        get(n, "deployment/other").is_some(),
        "the target itself stays"
    );
}

/// A canary of 5 steps of 3s, for the faults below.
fn long_canary() -> String {
    PODINFO_CANARY.replace("maxWeight: 30", "maxWeight: 50")
}

fn canary_weight(ns: &str) -> i64 {
    get(ns, "canary/podinfo")
        .and_then(|c| c["status"]["canaryWeight"].as_i64())
        .unwrap_or(0)
}

fn new_version(ns: &str) {
    set_image(ns, "podinfo", "6.0.1");
}

/// The long canary and its app in `ns`, an operator for it, initialized, then a new
/// version rolled out up to canary weight `weight`.
fn long_rollout_at(ns: &str, weight: i64) -> Operator {
    telemetry().set(ns, "podinfo", Rates::healthy());
    apply(ns, &app("podinfo"));
    apply(ns, &long_canary());
    let op = Operator::start(ns, &[]);
    wait_phase(ns, "podinfo", "Initialized", MINUTE, &op);
    new_version(ns);
    wait_for(&format!("canary weight {weight}"), MINUTE, || {
        (canary_weight(ns) >= weight).then_some(())
    });
    op
}

/// Whatever stopped, the rollout ends as it would have: promoted, the new version on
/// the primary, no rollback.
fn assert_promoted_cleanly(ns: &str) {
    assert_eq!(
        image(ns, "podinfo-primary"),
        "ghcr.io/stefanprodan/podinfo:6.0.1"
    );
    let messages = canary_events(ns, "podinfo");
    assert!(
        !messages.iter().any(|m| m.starts_with("Rolling back")),
        "{messages:#?}"
    );
    assert_eq!(must_get(ns, "deployment/podinfo")["spec"]["replicas"], 0);
}

#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn operator_killed_mid_rollout_resumes_where_it_was() {
    let _shared = shared();
    let ns = Namespace::new("sigkill");
    let n = ns.name.as_str();
    let routes = RouteLog::start(n);
    let mut op = long_rollout_at(n, 20);
    op.proc.signal("KILL");
    wait_for("the operator to die", MINUTE, || {
        (!op.proc.alive()).then_some(())
    });
    let at_kill = canary_weight(n);
    let op = Operator::start(n, &[]);
    wait_phase(n, "podinfo", "Succeeded", 2 * MINUTE, &op);
    assert_promoted_cleanly(n);
    let seen = routes.check("podinfo-canary");
    // The weights only went up from where the killed operator left them: no restart
    // of the analysis from 0 (a 0 before promotion would mean a reset).
    let before_promotion: Vec<i64> = seen
        .iter()
        .copied()
        .skip_while(|w| *w == 0)
        .take_while(|w| *w != 0)
        .collect();
    assert!(
        before_promotion.windows(2).all(|w| w[0] < w[1]),
        "weights rose monotonically across the kill (at kill: {at_kill}): {seen:?}"
    );
    assert_eq!(before_promotion.last(), Some(&50), "{seen:?}");
}

#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn two_replicas_act_as_one_and_the_survivor_takes_over() {
    let _shared = shared();
    let ns = Namespace::new("leader");
    let n = ns.name.as_str();
    let routes = RouteLog::start(n);
    telemetry().set(n, "podinfo", Rates::healthy());
    apply(n, &app("podinfo"));
    apply(n, &long_canary());
    let elect = [
        "--leader-elect",
        "--leader-election-namespace",
        OPERATOR_NAMESPACE,
    ];
    let mut a = Operator::start(n, &elect);
    let mut b = Operator::start(n, &elect);
    let holder = || {
        get(OPERATOR_NAMESPACE, "lease/serin-leader")
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
            .unwrap_or_default()
    };
    let pid_of = |h: &str| h.rsplit('_').next().and_then(|p| p.parse::<u32>().ok());
    let leader = wait_for("a leader", MINUTE, || {
        let h = holder();
        let pid = pid_of(&h)?;
        (pid == a.proc.pid || pid == b.proc.pid).then_some(pid)
    });
    wait_phase(n, "podinfo", "Initialized", MINUTE, &a);
    new_version(n);
    wait_for("canary weight 20", MINUTE, || {
        (canary_weight(n) >= 20).then_some(())
    });
    let (dead, survivor) = if leader == a.proc.pid {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    dead.proc.signal("KILL");
    wait_for("the leader to die", MINUTE, || {
        (!dead.proc.alive()).then_some(())
    });
    let survivor_pid = survivor.proc.pid;
    wait_for("the survivor to hold the lease", MINUTE, || {
        (pid_of(&holder()) == Some(survivor_pid)).then_some(())
    });
    wait_phase(n, "podinfo", "Succeeded", 2 * MINUTE, survivor);
    assert_promoted_cleanly(n);
    let seen = routes.check("podinfo-canary");
    assert!(seen.contains(&50), "{seen:?}");
    // Only the leader ever acted: the follower's log says it waited.
    assert!(
        survivor.logs().contains("waiting for leadership"),
        "{}",
        tail(&survivor.logs(), 20)
    );
}

#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn api_server_restart_mid_rollout_loses_nothing() {
    // The API server is the cluster's: no other test runs while it restarts.
    let _alone = alone();
    let dir = std::env::var("SERIN_REAL_CLUSTER_DIR")
        .expect("SERIN_REAL_CLUSTER_DIR (scripts/test.sh sets it)");
    let ns = Namespace::new("restart");
    let n = ns.name.as_str();
    let routes = RouteLog::start(n);
    let op = long_rollout_at(n, 20);
    let pid = std::fs::read_to_string(Path::new(&dir).join("kube-apiserver.pid"))
        .expect("the API server's pid file");
    let pid = pid.trim();
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", pid])
            .status()
            .expect("kill")
            .success()
    );
    let killed = Instant::now();
    // The supervisor starts it again on the same etcd data.
    wait_for("the API server to answer again", 2 * MINUTE, || {
        let out = run_bounded(
            std::process::Command::new(KUBECTL)
                .env("KUBECONFIG", &cluster().kubeconfig)
                .args(["get", "--raw", "/readyz", "--request-timeout=2s"]),
            Duration::from_secs(10),
        );
        (out.ok()
            && std::fs::read_to_string(Path::new(&dir).join("kube-apiserver.pid"))
                .is_ok_and(|p| p.trim() != pid))
        .then_some(())
    });
    eprintln!("API server back after {:?}", killed.elapsed());
    let after = RouteLog::start(n);
    // A Canary created after the restart is seen: the watches resumed (or listed again).
    apply(n, &app("second"));
    apply(
        n,
        &long_canary()
            .replace("podinfo", "second")
            .replace("app.example.com", "second.example.com"),
    );
    wait_phase(n, "second", "Initialized", 2 * MINUTE, &op);
    wait_phase(n, "podinfo", "Succeeded", 2 * MINUTE, &op);
    assert_promoted_cleanly(n);
    routes.check("podinfo-canary");
    let seen = after.check("podinfo-canary");
    assert_eq!(seen.last(), Some(&0), "{seen:?}");
    assert!(op.logs().contains("canary"), "the operator kept running");
}

/// The Gateway API router on the real API server with the Gateway API's own CRDs (from
/// the sigs.k8s.io/gateway-api module): every HTTPRoute serin writes through a
/// promotion must pass the CRD's schema and CEL rules, as the operator's account.
#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn gateway_api_canary_is_promoted_through_httproutes_the_real_crds_accept() {
    let _shared = shared();
    let crds = std::env::var("SERIN_GATEWAY_API_CRDS")
        .expect("SERIN_GATEWAY_API_CRDS (scripts/test.sh sets it)");
    kubectl(&["apply", "--server-side", "-f", &crds]).expect_ok("Gateway API CRDs apply");
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/httproutes.gateway.networking.k8s.io",
    ])
    .expect_ok("HTTPRoute CRD established");
    let ns = Namespace::new("gateway");
    let n = ns.name.as_str();
    let events = EventLog::start(n);
    apply(n, &app("podinfo"));
    apply(
        n,
        "apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
spec:
  provider: gatewayapi:v1
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
    hosts:
      - app.example.com
    gatewayRefs:
      - name: public-gateway
        namespace: istio-ingress
  analysis:
    interval: 2s
    threshold: 2
    maxWeight: 30
    stepWeight: 10
",
    );
    let op = Operator::start(n, &[]);
    wait_phase(n, "podinfo", "Initialized", MINUTE, &op);
    let weights = |route: &Value| -> Vec<(String, i64)> {
        route["spec"]["rules"][0]["backendRefs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                (
                    b["name"].as_str().unwrap_or("").to_string(),
                    b["weight"].as_i64().unwrap_or(1),
                )
            })
            .collect()
    };
    let route = must_get(n, "httproute/podinfo");
    assert_eq!(
        weights(&route),
        vec![
            ("podinfo-primary".to_string(), 100),
            ("podinfo-canary".to_string(), 0)
        ],
        "{route}"
    );
    assert_eq!(
        route["spec"]["hostnames"],
        serde_json::json!(["app.example.com"])
    );
    set_image(n, "podinfo", "6.0.1");
    wait_phase(n, "podinfo", "Succeeded", 2 * MINUTE, &op);
    let id = format!("podinfo.{n}");
    assert_in_order(
        &events.messages(),
        &[
            format!("Advance {id} canary weight 10"),
            format!("Advance {id} canary weight 20"),
            format!("Advance {id} canary weight 30"),
            format!("Promotion completed! Scaling down {id}"),
        ],
    );
    let route = must_get(n, "httproute/podinfo");
    assert_eq!(
        weights(&route),
        vec![
            ("podinfo-primary".to_string(), 100),
            ("podinfo-canary".to_string(), 0)
        ],
        "{route}"
    );
    assert!(
        !op.logs().contains("\"level\":\"error\""),
        "{}",
        tail(&op.logs(), 20)
    );
}

/// `serin ARGS -n NS --by tester` as the cluster's admin. The command returns once
/// the operator gave its verdict; how long that took is printed.
fn ask(ns: &str, args: &[&str]) -> Output {
    let asked = Instant::now();
    let out = run_bounded(
        std::process::Command::new(env!("CARGO_BIN_EXE_serin"))
            .args(args)
            .args(["-n", ns, "--by", "tester"])
            .env("KUBECONFIG", &cluster().kubeconfig),
        MINUTE,
    );
    println!(
        "serin {}: verdict after {:?} ({})",
        args.join(" "),
        asked.elapsed(),
        out.stdout.lines().next().unwrap_or(out.stderr.trim())
    );
    out
}

/// `kubectl serin ARGS`: the same binary linked as kubectl-serin, found by kubectl's
/// plugin lookup on PATH.
fn plugin(args: &[&str]) -> Output {
    let bin = cluster().dir.path().join("plugin-bin");
    if !bin.join("kubectl-serin").exists() {
        std::fs::create_dir_all(&bin).expect("plugin dir");
        let _ = std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_serin"), bin.join("kubectl-serin"));
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run_bounded(
        std::process::Command::new(KUBECTL)
            .arg("serin")
            .args(args)
            .env("PATH", path)
            .env("KUBECONFIG", &cluster().kubeconfig),
        MINUTE,
    )
}

fn wait_event(events: &EventLog, what: &str, f: impl Fn(&str) -> bool) -> String {
    wait_for(what, MINUTE, || {
        events.messages().into_iter().find(|m| f(m))
    })
}

#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn serin_cli_pauses_resumes_aborts_retries_and_promotes_a_live_rollout() {
    let _shared = shared();
    let ns = Namespace::new("manual");
    let n = ns.name.as_str();
    let events = EventLog::start(n);
    let op = long_rollout_at(n, 10);

    // pause: the command returns once serin acted (from its watch), the event names
    // who asked and why.
    let out = ask(n, &["pause", "podinfo", "--reason", "checking latency"]);
    assert!(out.ok(), "pause: {}{}", out.stdout, out.stderr);
    let paused = wait_event(&events, "the Paused event", |m| {
        m.starts_with(&format!("Paused podinfo.{n} at canary weight "))
            && m.ends_with(", requested by tester: checking latency")
    });
    let at: i64 = paused
        .trim_start_matches(&format!("Paused podinfo.{n} at canary weight "))
        .split(',')
        .next()
        .and_then(|w| w.parse().ok())
        .expect("the weight in the Paused event");
    let out = run_bounded(
        std::process::Command::new(env!("CARGO_BIN_EXE_serin"))
            .args(["status", "podinfo", "-n", n])
            .env("KUBECONFIG", &cluster().kubeconfig),
        MINUTE,
    );
    assert!(
        out.stdout.contains("PAUSED since"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let out = plugin(&["status", "-A"]);
    println!("$ kubectl serin status -A\n{}", out.stdout);
    assert!(
        out.ok() && out.stdout.contains(&format!("{n}/podinfo  Progressing")),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(canary_weight(n), at, "the weight is held while paused");

    // resume: the analysis goes on from the weight it was paused at.
    let out = ask(n, &["resume", "podinfo"]);
    assert!(out.ok(), "resume: {}{}", out.stdout, out.stderr);
    wait_for("the weight to move on", MINUTE, || {
        (canary_weight(n) > at).then_some(())
    });

    // abort: rolled back now, the primary untouched.
    let asked = Instant::now();
    let out = ask(n, &["abort", "podinfo", "--reason", "bad latency"]);
    assert!(out.ok(), "abort: {}{}", out.stdout, out.stderr);
    wait_phase(n, "podinfo", "Failed", MINUTE, &op);
    println!("abort: Failed {:?} after the request", asked.elapsed());
    wait_event(&events, "the rollback event", |m| {
        m == format!("Rolling back podinfo.{n} abort requested by tester: bad latency")
    });
    assert_eq!(canary_weight(n), 0);
    assert_eq!(
        image(n, "podinfo-primary"),
        "ghcr.io/stefanprodan/podinfo:6.0.0"
    );

    // A request that does not fit the phase is refused and changes nothing.
    let out = ask(n, &["promote", "podinfo"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("promote refused: no rollout is under way (phase Failed)"),
        "{}",
        out.stderr
    );
    assert_eq!(phase(n, "podinfo"), "Failed");

    // retry the failed revision, then promote it at once through the promotion path.
    let out = ask(n, &["retry", "podinfo"]);
    assert!(out.ok(), "retry: {}{}", out.stdout, out.stderr);
    wait_phase(n, "podinfo", "Progressing", MINUTE, &op);
    let out = ask(n, &["promote", "podinfo", "--reason", "hotfix"]);
    assert!(out.ok(), "promote: {}{}", out.stdout, out.stderr);
    wait_phase(n, "podinfo", "Succeeded", 2 * MINUTE, &op);
    wait_event(&events, "the promotion event", |m| {
        m == format!(
            "Promotion of podinfo.{n} requested by tester: hotfix: skipping the remaining analysis"
        )
    });
    assert_promoted_cleanly_after_rollback(n);
}

/// Promoted after an earlier rollback: the new version on the primary, the target
/// scaled to zero.
fn assert_promoted_cleanly_after_rollback(ns: &str) {
    assert_eq!(
        image(ns, "podinfo-primary"),
        "ghcr.io/stefanprodan/podinfo:6.0.1"
    );
    assert_eq!(must_get(ns, "deployment/podinfo")["spec"]["replicas"], 0);
}

/// The 2019 seeds' Canary names `autoscalerRef.apiVersion: autoscaling/v2beta1`, a
/// version the real API server (like every current Kubernetes) no longer serves: the
/// seed's v2beta1 HPA itself is refused by `kubectl apply`, and serin, which uses
/// HPAs through autoscaling/v2 as Flagger does, still makes the primary's HPA.
#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn an_autoscaler_ref_naming_v2beta1_still_gets_the_primary_hpa() {
    let _shared = shared();
    let ns = Namespace::new("hpa-v2beta1");
    let n = ns.name.as_str();
    let seed_hpa = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/seeds/blog-ciwei/podinfo-hpa.yaml"),
    )
    .expect("the seed's HPA")
    .replace("namespace: test", &format!("namespace: {n}"));
    let refused = kubectl_stdin(&["-n", n, "apply", "-f", "-"], &seed_hpa);
    assert!(!refused.ok(), "{}", refused.stdout);
    assert!(
        refused.stderr.contains("autoscaling/v2beta1"),
        "{}",
        refused.stderr
    );
    telemetry().set(n, "podinfo", Rates::healthy());
    apply(n, &app("podinfo"));
    let canary = PODINFO_CANARY.replace(
        "apiVersion: autoscaling/v2\n    kind: HorizontalPodAutoscaler",
        "apiVersion: autoscaling/v2beta1\n    kind: HorizontalPodAutoscaler",
    );
    assert!(canary.contains("autoscaling/v2beta1"));
    apply(n, &canary);
    let op = Operator::start(n, &[]);
    wait_phase(n, "podinfo", "Initialized", MINUTE, &op);
    let hpa = must_get(n, "horizontalpodautoscaler.v2.autoscaling/podinfo-primary");
    assert!(owned_by_canary(&hpa, "podinfo"), "{hpa}");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "podinfo-primary");
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        99
    );
    assert_eq!(
        must_get(n, "deployment/podinfo-primary")["spec"]["replicas"],
        2
    );
}
