//! Controller behaviours beyond the engine: the concurrency limit, suspend, and
//! deletion with revertOnDeletion behind a finalizer.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serin_api::Canary;
use serin_api::canary::CanaryPhase;
use serin_simulate::{Options, Simulation, TimedEvent};

fn canary(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: {name}
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {name}
  service:
    port: 9898
{extra}
  analysis:
    interval: 1m
    threshold: 2
    maxWeight: 20
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 1m
"
    )
}

fn healthy() -> Options {
    Options {
        metrics: BTreeMap::from([("request-success-rate".to_string(), 99.9)]),
        ..Default::default()
    }
}

async fn start(yaml: &str, options: Options) -> Simulation {
    let docs = serin_api::load::parse_documents("controller.yaml", yaml).expect("parses");
    Simulation::start(docs, options).await.expect("starts")
}

fn lines(events: &[TimedEvent]) -> String {
    events
        .iter()
        .map(|e| e.line())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(start_paused = true)]
async fn analyses_beyond_the_limit_wait_queued() {
    let yaml = ["alpha", "bravo", "charlie"]
        .map(|n| canary(n, ""))
        .join("---\n");
    let mut sim = start(
        &yaml,
        Options {
            max_concurrent_canaries: Some(1),
            ..healthy()
        },
    )
    .await;
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized");
    sim.new_revision().await.expect("new revisions");
    let api: Api<Canary> = Api::namespaced(sim.client.clone(), "test");
    let mut most = 0;
    for _ in 0..3600 {
        sim.tick(Duration::from_secs(1)).await;
        let list = api.list(&Default::default()).await.expect("list");
        let running = list
            .items
            .iter()
            .filter(|c| c.status_or_default().phase.is_running())
            .count();
        most = most.max(running);
        let done = list.items.iter().all(|c| {
            c.status_or_default().phase == CanaryPhase::Succeeded
                && c.status_or_default().last_promoted_spec
                    == c.status_or_default().last_applied_spec
        });
        if done && most > 0 {
            break;
        }
    }
    let events = sim.events();
    assert_eq!(most, 1, "one analysis at a time\n{}", lines(&events));
    let queued: Vec<&TimedEvent> = events
        .iter()
        .filter(|e| e.message.contains("is queued"))
        .collect();
    assert!(
        queued.len() >= 2,
        "the others were told they are queued\n{}",
        lines(&events)
    );
    assert!(
        queued[0]
            .message
            .ends_with("is queued, waiting for a free analysis slot (--max-concurrent-canaries 1)"),
        "{}",
        queued[0].message
    );
    for name in ["alpha", "bravo", "charlie"] {
        let done = format!("Promotion completed! Scaling down {name}.test");
        assert!(
            events.iter().any(|e| e.message == done),
            "{name} was promoted in the end\n{}",
            lines(&events)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_suspended_canary_waits_until_resumed() {
    let mut sim = start(&canary("podinfo", ""), healthy()).await;
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized");
    let api: Api<Canary> = Api::namespaced(sim.client.clone(), "test");
    let suspend = |on: bool| serde_json::json!({"spec": {"suspend": on}});
    api.patch(
        "podinfo",
        &PatchParams::default(),
        &Patch::Merge(&suspend(true)),
    )
    .await
    .expect("suspended");
    sim.new_revision().await.expect("new revision");
    sim.tick(Duration::from_secs(300)).await;
    let c = api.get("podinfo").await.expect("canary");
    assert_eq!(c.status_or_default().phase, CanaryPhase::Initialized);
    assert!(
        !sim.events()
            .iter()
            .any(|e| e.message.starts_with("New revision detected")),
        "nothing happens while suspended"
    );
    api.patch(
        "podinfo",
        &PatchParams::default(),
        &Patch::Merge(&suspend(false)),
    )
    .await
    .expect("resumed");
    sim.wait_until("Succeeded", &mut |_| {}, |c| {
        c.status_or_default().phase == CanaryPhase::Succeeded
    })
    .await
    .expect("promoted after resuming");
}

#[tokio::test(start_paused = true)]
async fn deletion_with_revert_on_deletion_restores_the_target() {
    let mut sim = start(&canary("podinfo", "  revertOnDeletion: true"), healthy()).await;
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized");
    let deployments: Api<Deployment> = Api::namespaced(sim.client.clone(), "test");
    let scaled = deployments.get("podinfo").await.expect("target");
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(0), "initialized");
    let api: Api<Canary> = Api::namespaced(sim.client.clone(), "test");
    let c = api.get("podinfo").await.expect("canary");
    assert!(
        c.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"finalizer.flagger.app".to_string()),
        "the finalizer is set"
    );
    api.delete("podinfo", &DeleteParams::default())
        .await
        .expect("deleted");
    let mut gone = false;
    for _ in 0..120 {
        sim.tick(Duration::from_secs(1)).await;
        if api.get_opt("podinfo").await.expect("get").is_none() {
            gone = true;
            break;
        }
    }
    let events = sim.events();
    assert!(gone, "the deletion finished\n{}", lines(&events));
    let target = deployments.get("podinfo").await.expect("target kept");
    assert!(
        target.spec.and_then(|s| s.replicas).unwrap_or(0) > 0,
        "the target runs again"
    );
    assert!(
        events.iter().any(|e| e.phase == CanaryPhase::Terminated),
        "{}",
        lines(&events)
    );
    for want in [
        "Terminating canary podinfo.test",
        "Terminated canary podinfo.test",
    ] {
        assert!(
            events.iter().any(|e| e.message == want),
            "Flagger's text {want:?}\n{}",
            lines(&events)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn turning_revert_on_deletion_off_removes_the_finalizer() {
    let mut sim = start(&canary("podinfo", "  revertOnDeletion: true"), healthy()).await;
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized");
    let api: Api<Canary> = Api::namespaced(sim.client.clone(), "test");
    let has_finalizer = |c: Canary| {
        c.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"finalizer.flagger.app".to_string())
    };
    assert!(has_finalizer(api.get("podinfo").await.expect("canary")));
    api.patch(
        "podinfo",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"revertOnDeletion": false}})),
    )
    .await
    .expect("turned off");
    let mut removed = false;
    for _ in 0..120 {
        sim.tick(Duration::from_secs(1)).await;
        if !has_finalizer(api.get("podinfo").await.expect("canary")) {
            removed = true;
            break;
        }
    }
    assert!(
        removed,
        "the finalizer goes with revertOnDeletion\n{}",
        lines(&sim.events())
    );
}

/// A chat service that keeps what it is sent.
#[derive(Clone, Default)]
struct Inbox(std::sync::Arc<std::sync::Mutex<Vec<serin_notify::Message>>>);

impl serin_notify::Notifier for Inbox {
    fn service(&self) -> serin_notify::Service {
        serin_notify::Service::Slack
    }

    fn post<'a>(
        &'a self,
        message: &'a serin_notify::Message,
    ) -> serin_notify::BoxFuture<'a, Result<serin_notify::Delivery, serin_notify::NotifyError>>
    {
        self.0.lock().unwrap().push(message.clone());
        Box::pin(async {
            Ok(serin_notify::Delivery {
                status: 200,
                body: "ok".into(),
            })
        })
    }
}

#[tokio::test(start_paused = true)]
async fn alerts_and_event_webhooks_follow_the_rollout() {
    let yaml = canary("podinfo", "").replace(
        "    metrics:",
        "    webhooks:
      - name: audit
        type: event
        url: http://audit.test/
    metrics:",
    );
    let mut sim = start(&yaml, healthy()).await;
    let inbox = Inbox::default();
    sim.set_alerts(serin_notify::Dispatcher::new(
        vec![Box::new(inbox.clone())],
        std::sync::Arc::new(serin_notify::InMemoryLookup::new()),
        serin_notify::AlertMetrics::new(),
        Duration::from_secs(5),
    ));
    let outcome = sim.run(&mut |_| {}).await.expect("rollout");
    assert_eq!(outcome.phase(), CanaryPhase::Succeeded);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let texts: Vec<String> = inbox
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.text.clone())
        .collect();
    for want in [
        "New Deployment detected, initialization completed.",
        "New revision detected, progressing canary analysis.",
        "Canary analysis completed successfully, promotion finished.",
    ] {
        assert!(
            texts.iter().any(|t| t == want),
            "alert {want:?} in {texts:#?}"
        );
    }
    let audit: Vec<_> = sim
        .checks
        .calls()
        .into_iter()
        .filter(|c| c.webhook == "audit")
        .collect();
    assert!(
        audit
            .iter()
            .any(|c| c.metadata.get("eventMessage").map(String::as_str)
                == Some("Promotion completed! Scaling down podinfo.test")
                && c.metadata.get("eventType").map(String::as_str) == Some("Normal")),
        "event webhooks receive every event: {audit:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn repeated_events_are_one_kubernetes_event_with_a_count() {
    let mut sim = start(
        &canary("podinfo", ""),
        Options {
            metrics: BTreeMap::from([("request-success-rate".to_string(), 69.17)]),
            ..Default::default()
        },
    )
    .await;
    let outcome = sim.run(&mut |_| {}).await.expect("rollout");
    assert_eq!(outcome.phase(), CanaryPhase::Failed);
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(sim.client.clone(), "test");
    let list = events.list(&Default::default()).await.expect("events");
    let halt = list
        .items
        .iter()
        .find(|e| {
            e.message.as_deref() == Some("Halt podinfo.test advancement success rate 69.17% < 99%")
        })
        .expect("the halt event");
    assert_eq!(halt.count, Some(2), "threshold 2: two halts, one object");
    assert_eq!(halt.reason.as_deref(), Some("Synced"));
    assert_eq!(halt.type_.as_deref(), Some("Warning"));
    assert_eq!(
        halt.involved_object.kind.as_deref(),
        Some("Canary"),
        "recorded on the Canary"
    );
    let failed = list
        .items
        .iter()
        .find(|e| e.message.as_deref() == Some("Canary failed! Scaling down podinfo.test"))
        .expect("the failure event");
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
}

#[tokio::test(start_paused = true)]
async fn a_slow_canary_does_not_delay_another() {
    let slow = canary("slow", "").replace(
        "    metrics:",
        "    webhooks:
      - name: slow-load-test
        url: http://flagger-loadtester.test/
        timeout: 60s
    metrics:",
    );
    let yaml = [slow, canary("fast", "")].join("---\n");
    let mut sim = start(&yaml, healthy()).await;
    sim.checks
        .set_webhook_delay("slow-load-test", Duration::from_secs(50));
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized");
    sim.new_revision().await.expect("new revisions");
    sim.wait_until("both Succeeded", &mut |_| {}, |c| {
        c.status_or_default().phase == CanaryPhase::Succeeded
    })
    .await
    .expect("both promoted");
    let events = sim.events();
    let at = |m: &str| {
        events
            .iter()
            .find(|e| e.message == m)
            .map(|e| e.elapsed)
            .unwrap_or_else(|| panic!("no {m:?}\n{}", lines(&events)))
    };
    let start = at("Advance fast.test canary weight 10");
    let end = at("Promotion completed! Scaling down fast.test");
    let slow10 = at("Advance slow.test canary weight 10");
    let slow20 = at("Advance slow.test canary weight 20");
    assert!(
        (slow20 - slow10).as_secs() >= 100,
        "slow really is slow\n{}",
        lines(&events)
    );
    assert_eq!(
        (end - start).as_secs(),
        4 * 60,
        "fast keeps its one-minute steps while slow waits on its webhook\n{}",
        lines(&events)
    );
}

/// A live app put under a Canary: its Service and VirtualService serve the target
/// until the primary is ready, then move to the primary, and for every provider.
#[tokio::test(start_paused = true)]
async fn onboarding_a_live_service_waits_for_the_primary() {
    for provider in ["istio", "kubernetes"] {
        let live = "---
apiVersion: v1
kind: Service
metadata:
  name: podinfo
  namespace: test
spec:
  selector:
    app: podinfo
  ports:
    - name: http
      port: 9898
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: podinfo
  namespace: test
spec:
  hosts: [podinfo]
  http:
    - route:
        - destination:
            host: podinfo
";
        let yaml = canary("podinfo", &format!("  provider: {provider}")) + live;
        let mut sim = start(&yaml, healthy()).await;
        sim.sandbox
            .set_never_ready("test", "Deployment", "podinfo-primary", true);
        let services: Api<k8s_openapi::api::core::v1::Service> =
            Api::namespaced(sim.client.clone(), "test");
        let routes: Api<serin_api::istio::VirtualService> =
            Api::namespaced(sim.client.clone(), "test");
        let original =
            serde_json::to_value(&routes.get("podinfo").await.expect("vs").spec).expect("json");
        let selector = |s: k8s_openapi::api::core::v1::Service| {
            s.spec.and_then(|s| s.selector).unwrap_or_default()["app"].clone()
        };
        for _ in 0..180 {
            sim.tick(Duration::from_secs(1)).await;
            let apex = services.get("podinfo").await.expect("apex");
            assert_eq!(
                selector(apex),
                "podinfo",
                "{provider}: the apex serves the target while the primary is not ready\n{}",
                lines(&sim.events())
            );
            let vs = routes.get("podinfo").await.expect("vs");
            assert_eq!(
                serde_json::to_value(&vs.spec).expect("json"),
                original,
                "{provider}: the VirtualService is not touched yet"
            );
        }
        let events = sim.events();
        assert!(
            events.iter().any(|e| e
                .message
                .starts_with("Waiting for podinfo-primary.test rollout")),
            "{provider}: says what it waits for\n{}",
            lines(&events)
        );
        let target: Api<Deployment> = Api::namespaced(sim.client.clone(), "test");
        assert!(
            target
                .get("podinfo")
                .await
                .expect("target")
                .spec
                .and_then(|s| s.replicas)
                .unwrap_or(1)
                > 0,
            "{provider}: the target keeps running"
        );
        sim.sandbox
            .set_never_ready("test", "Deployment", "podinfo-primary", false);
        sim.wait_initialized(&mut |_| {})
            .await
            .expect("initialized");
        assert_eq!(
            selector(services.get("podinfo").await.expect("apex")),
            "podinfo-primary",
            "{provider}: then the apex selects the primary"
        );
        if provider == "istio" {
            let vs = routes.get("podinfo").await.expect("vs");
            assert!(
                serde_json::to_string(&vs.spec)
                    .expect("json")
                    .contains("podinfo-primary"),
                "then the VirtualService routes to the primary"
            );
        }
    }
}

/// `--event-webhook`: the events of a canary without an event webhook of its own
/// reach the global one, named `events` as in Flagger.
#[tokio::test(start_paused = true)]
async fn the_global_event_webhook_receives_every_event() {
    let mut options = healthy();
    options.controller.event_webhook = Some("http://events.test/".into());
    let mut sim = start(&canary("podinfo", ""), options).await;
    let outcome = sim.run(&mut |_| {}).await.expect("rollout");
    assert_eq!(outcome.phase(), CanaryPhase::Succeeded);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events: Vec<String> = sim
        .checks
        .calls()
        .into_iter()
        .filter(|c| c.webhook == "events")
        .filter_map(|c| c.metadata.get("eventMessage").cloned())
        .collect();
    for want in [
        "Initialization done! podinfo.test",
        "New revision detected! Scaling up podinfo.test",
        "Promotion completed! Scaling down podinfo.test",
    ] {
        assert!(events.iter().any(|e| e == want), "{want:?} in {events:#?}");
    }
    let start = sim.clock.now().timestamp_millis() - 24 * 3600 * 1000;
    for call in sim.checks.calls().iter().filter(|c| c.webhook == "events") {
        let ts: i64 = call.metadata["timestamp"].parse().expect("milliseconds");
        assert!(
            ts > start && ts <= sim.clock.now().timestamp_millis(),
            "{ts}"
        );
    }
}

/// `--no-cross-namespace-refs`: a MetricTemplate of another namespace stops the
/// canary with Flagger's message, before anything is made.
#[tokio::test(start_paused = true)]
async fn cross_namespace_references_can_be_refused() {
    let yaml = canary("podinfo", "").replace(
        "    metrics:\n",
        "    metrics:
      - name: error-rate
        templateRef:
          name: error-rate
          namespace: istio-system
        thresholdRange:
          max: 1
",
    );
    let mut options = healthy();
    options.controller.no_cross_namespace_refs = true;
    options.controller.event_webhook = Some("http://events.test/".into());
    let mut sim = start(&yaml, options).await;
    sim.tick(Duration::from_secs(120)).await;
    assert!(
        sim.checks.calls().iter().any(|c| c.webhook == "events"
            && c.metadata.get("eventType").map(String::as_str) == Some("Warning")
            && c.metadata
                .get("eventMessage")
                .is_some_and(|m| m.contains("cross-namespace"))),
        "the warning of a run that could not go on reaches the event webhook too"
    );
    let events = sim.events();
    assert!(
        events.iter().any(|e| e.type_ == serin_engine::EventType::Warning
            && e.message
                == "can't access metric template error-rate.istio-system, cross-namespace references are blocked"),
        "{}",
        lines(&events)
    );
    let deployments: Api<Deployment> = Api::namespaced(sim.client.clone(), "test");
    assert!(
        deployments
            .get_opt("podinfo-primary")
            .await
            .expect("get")
            .is_none(),
        "nothing is made for a refused canary"
    );
}

/// `--selector-labels` and `--enable-config-tracking=false` reach the operator.
#[tokio::test(start_paused = true)]
async fn label_and_config_tracking_flags_reach_the_operator() {
    let target = "---
apiVersion: v1
kind: ConfigMap
metadata:
  name: podinfo-config
  namespace: test
data:
  color: blue
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
      component: podinfo
  template:
    metadata:
      labels:
        component: podinfo
    spec:
      containers:
        - name: podinfo
          image: ghcr.io/stefanprodan/podinfo:6.0.0
          envFrom:
            - configMapRef:
                name: podinfo-config
";
    let mut options = healthy();
    options.controller.labels.selector_labels = vec!["component".into()];
    options.controller.config_tracking = false;
    let mut sim = start(&(canary("podinfo", "") + target), options).await;
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized with the component label");
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(sim.client.clone(), "test");
    let apex = services.get("podinfo").await.expect("apex");
    assert_eq!(
        apex.spec.and_then(|s| s.selector).unwrap_or_default()["component"],
        "podinfo-primary"
    );
    let configs: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(sim.client.clone(), "test");
    assert!(
        configs
            .get_opt("podinfo-config-primary")
            .await
            .expect("get")
            .is_none(),
        "no primary copy without config tracking"
    );
}

const DAEMONSET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: test
spec:
  selector:
    matchLabels:
      app: agent
  template:
    metadata:
      labels:
        app: agent
    spec:
      nodeSelector:
        disk: ssd
      containers:
        - name: agent
          image: ghcr.io/example/agent:1.0.0
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: agent
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: DaemonSet
    name: agent
  service:
    port: 9898
  analysis:
    interval: 1m
    threshold: 2
    maxWeight: 20
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 1m
";

fn image_and_nodes(
    ds: &k8s_openapi::api::apps::v1::DaemonSet,
) -> (String, BTreeMap<String, String>) {
    let pod = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod spec");
    (
        pod.containers[0].image.clone().unwrap_or_default(),
        pod.node_selector.unwrap_or_default(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_daemonset_target_is_promoted_then_rolled_back() {
    use k8s_openapi::api::apps::v1::DaemonSet;
    let mut sim = start(DAEMONSET, healthy()).await;
    let outcome = sim.run(&mut |_| {}).await.expect("first rollout");
    let events = sim.events();
    assert_eq!(
        outcome.phase(),
        CanaryPhase::Succeeded,
        "{}",
        lines(&events)
    );
    let msgs: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    for want in [
        "Initialization done! agent.test",
        "New revision detected! Scaling up agent.test",
        "Advance agent.test canary weight 10",
        "Advance agent.test canary weight 20",
        "Copying agent.test template spec to agent-primary.test",
        "Promotion completed! Scaling down agent.test",
    ] {
        assert!(msgs.contains(&want), "{want:?}\n{}", lines(&events));
    }
    let api: Api<DaemonSet> = Api::namespaced(sim.client.clone(), "test");
    let scaled_down = BTreeMap::from([
        ("disk".to_string(), "ssd".to_string()),
        ("flagger.app/scale-to-zero".to_string(), "true".to_string()),
    ]);
    let user_nodes = BTreeMap::from([("disk".to_string(), "ssd".to_string())]);
    let target = image_and_nodes(&api.get("agent").await.expect("target"));
    let promoted = target.0.clone();
    assert_ne!(
        promoted, "ghcr.io/example/agent:1.0.0",
        "a new revision was made"
    );
    assert_eq!(target.1, scaled_down, "the target is off every node again");
    let primary = image_and_nodes(&api.get("agent-primary").await.expect("primary"));
    assert_eq!(
        primary,
        (promoted.clone(), user_nodes.clone()),
        "the primary runs the new image on the user's nodes, without the scale-down selector"
    );

    // A failing revision: the primary keeps the promoted image, the target is
    // scaled down again, the traffic is back on the primary.
    sim.checks.set_metric("request-success-rate", 50.0);
    let outcome = sim.rollout(&mut |_| {}).await.expect("second rollout");
    let events = sim.events();
    assert_eq!(outcome.phase(), CanaryPhase::Failed, "{}", lines(&events));
    assert!(
        events
            .iter()
            .any(|e| e.message == "Rolling back agent.test failed checks threshold reached 2"),
        "{}",
        lines(&events)
    );
    let target = image_and_nodes(&api.get("agent").await.expect("target"));
    assert_ne!(target.0, promoted, "the failed revision is on the target");
    assert_eq!(target.1, scaled_down);
    let primary = image_and_nodes(&api.get("agent-primary").await.expect("primary"));
    assert_eq!(primary, (promoted, user_nodes), "the primary is unchanged");
    let c = sim.canary(&sim.canaries[0].clone()).await.expect("canary");
    assert_eq!(c.status_or_default().canary_weight, 0);
}
