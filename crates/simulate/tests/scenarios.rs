//! `simulate` scenarios: the real controller and engine on the in-process sandbox, on
//! virtual time, table-driven from the seeds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serin_api::canary::CanaryPhase;
use serin_simulate::{Options, Outcome, Simulation, TimedEvent};

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/seeds")
        .join(path)
}

fn healthy() -> BTreeMap<String, f64> {
    BTreeMap::from([
        ("request-success-rate".to_string(), 99.5),
        ("request-duration".to_string(), 250.0),
    ])
}

async fn simulate(files: &[PathBuf], options: Options) -> (Outcome, Vec<TimedEvent>) {
    let docs = serin_api::load::read_files(files).expect("fixtures load");
    let mut sim = Simulation::start(docs, options)
        .await
        .expect("simulation starts");
    let outcome = sim.run(&mut |_| {}).await.expect("rollout ends");
    (outcome, sim.events())
}

fn messages(events: &[TimedEvent]) -> Vec<String> {
    events.iter().map(|e| e.message.clone()).collect()
}

/// Asserts that `expected` appear in `events` in this order (others may come between).
fn assert_in_order(events: &[TimedEvent], expected: &[&str]) {
    let msgs = messages(events);
    let mut at = 0;
    for want in expected {
        match msgs[at..].iter().position(|m| m == want) {
            Some(i) => at += i + 1,
            None => panic!("missing (in order) {want:?}\nevents:\n{}", lines(events)),
        }
    }
}

fn lines(events: &[TimedEvent]) -> String {
    events
        .iter()
        .map(|e| e.line())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(start_paused = true)]
async fn seed_podinfo_canary_is_promoted_step_by_step() {
    let (outcome, events) = simulate(
        &[fixture("istio-guide/podinfo-canary.yaml")],
        Options {
            metrics: healthy(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        outcome.phase(),
        CanaryPhase::Succeeded,
        "{}",
        lines(&events)
    );
    assert_in_order(
        &events,
        &[
            "Initialization done! podinfo.test",
            "New revision detected! Scaling up podinfo.test",
            "Starting canary analysis for podinfo.test",
            "Pre-rollout check acceptance-test passed",
            "Advance podinfo.test canary weight 10",
            "Advance podinfo.test canary weight 20",
            "Advance podinfo.test canary weight 30",
            "Advance podinfo.test canary weight 40",
            "Advance podinfo.test canary weight 50",
            "Copying podinfo.test template spec to podinfo-primary.test",
            "Routing all traffic to primary",
            "Promotion completed! Scaling down podinfo.test",
        ],
    );
}

/// A podinfo canary in namespace test with the given `analysis` block (YAML, indented
/// by four spaces) and extra spec lines (indented by two).
fn canary_yaml(spec_extra: &str, analysis: &str) -> String {
    format!(
        "apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  progressDeadlineSeconds: 60
  service:
    port: 9898
{spec_extra}
  analysis:
    interval: 1m
    threshold: 5
{analysis}
"
    )
}

const METRICS: &str = "    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 1m
      - name: request-duration
        thresholdRange:
          max: 500
        interval: 30s";

async fn start(yaml: &str, options: Options) -> Simulation {
    let docs = serin_api::load::parse_documents("scenario.yaml", yaml).expect("scenario parses");
    Simulation::start(docs, options)
        .await
        .expect("simulation starts")
}

async fn run_yaml(yaml: &str, options: Options) -> (Outcome, Vec<TimedEvent>) {
    let mut sim = start(yaml, options).await;
    let outcome = sim.run(&mut |_| {}).await.expect("rollout ends");
    (outcome, sim.events())
}

struct Scenario {
    name: &'static str,
    spec_extra: &'static str,
    analysis: String,
    metrics: BTreeMap<String, f64>,
    webhooks: &'static [(&'static str, bool)],
    never_ready: bool,
    expect_phase: CanaryPhase,
    expect_events: Vec<String>,
    /// Messages that must not appear.
    absent: Vec<String>,
    /// The highest canary weight any event may show.
    max_weight: Option<i32>,
}

fn scenario(name: &'static str) -> Scenario {
    Scenario {
        name,
        spec_extra: "",
        analysis: String::new(),
        metrics: healthy(),
        webhooks: &[],
        never_ready: false,
        expect_phase: CanaryPhase::Succeeded,
        expect_events: Vec::new(),
        absent: Vec::new(),
        max_weight: None,
    }
}

fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn iterations(n: i32) -> Vec<String> {
    (1..=n)
        .map(|i| format!("Advance podinfo.test canary iteration {i}/{n}"))
        .collect()
}

fn scenarios() -> Vec<Scenario> {
    let load_test = "    webhooks:
      - name: load-test
        url: http://flagger-loadtester.test/
        timeout: 5s
        metadata:
          cmd: \"hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/\"";
    vec![
        Scenario {
            analysis: format!(
                "    iterations: 10
    match:
      - headers:
          user-agent:
            regex: \".*Firefox.*\"
      - headers:
          cookie:
            regex: \"^(.*?;)?(type=insider)(;.*)?$\"
{METRICS}"
            ),
            expect_events: [
                strs(&["New revision detected! Scaling up podinfo.test"]),
                iterations(10),
                strs(&[
                    "Copying podinfo.test template spec to podinfo-primary.test",
                    "Promotion completed! Scaling down podinfo.test",
                ]),
            ]
            .concat(),
            ..scenario("A/B testing with iterations")
        },
        Scenario {
            spec_extra: "  provider: kubernetes",
            analysis: format!("    iterations: 5\n{METRICS}"),
            expect_events: [
                strs(&["Starting canary analysis for podinfo.test"]),
                iterations(5),
                strs(&[
                    "Copying podinfo.test template spec to podinfo-primary.test",
                    "Promotion completed! Scaling down podinfo.test",
                ]),
            ]
            .concat(),
            max_weight: Some(0),
            ..scenario("blue/green with the kubernetes provider")
        },
        Scenario {
            analysis: format!(
                "    iterations: 4\n    mirror: true\n    mirrorWeight: 100\n{METRICS}"
            ),
            expect_events: [
                iterations(4),
                strs(&[
                    "Stop traffic mirroring and route all traffic to canary",
                    "Copying podinfo.test template spec to podinfo-primary.test",
                    "Promotion completed! Scaling down podinfo.test",
                ]),
            ]
            .concat(),
            ..scenario("blue/green with traffic mirroring")
        },
        Scenario {
            analysis: format!("    stepWeights: [1, 10, 25, 50]\n{METRICS}"),
            expect_events: strs(&[
                "Advance podinfo.test canary weight 1",
                "Advance podinfo.test canary weight 10",
                "Advance podinfo.test canary weight 25",
                "Advance podinfo.test canary weight 50",
                "Promotion completed! Scaling down podinfo.test",
            ]),
            ..scenario("stepWeights")
        },
        Scenario {
            analysis: format!(
                "    maxWeight: 50\n    stepWeight: 25\n    stepWeightPromotion: 25\n{METRICS}"
            ),
            expect_events: strs(&[
                "Advance podinfo.test canary weight 25",
                "Advance podinfo.test canary weight 50",
                "Copying podinfo.test template spec to podinfo-primary.test",
                "Advance podinfo.test primary weight 75",
                "Advance podinfo.test primary weight 100",
                "Promotion completed! Scaling down podinfo.test",
            ]),
            ..scenario("stepWeightPromotion")
        },
        Scenario {
            spec_extra: "  skipAnalysis: true",
            analysis: format!("    maxWeight: 50\n    stepWeight: 10\n{METRICS}"),
            metrics: BTreeMap::new(),
            expect_events: strs(&[
                "New revision detected! Scaling up podinfo.test",
                "Copying podinfo.test template spec to podinfo-primary.test",
                "Promotion completed! Canary analysis was skipped for podinfo.test",
            ]),
            absent: strs(&["Advance podinfo.test canary weight 10"]),
            max_weight: Some(0),
            ..scenario("skipAnalysis")
        },
        Scenario {
            analysis: format!("    maxWeight: 50\n    stepWeight: 10\n{METRICS}\n{load_test}"),
            webhooks: &[("load-test", false)],
            expect_phase: CanaryPhase::Failed,
            expect_events: strs(&[
                "Starting canary analysis for podinfo.test",
                "Advance podinfo.test canary weight 10",
                "Halt podinfo.test advancement external check load-test failed 500 simulated failure (--webhook set to fail)",
                "Rolling back podinfo.test failed checks threshold reached 5",
                "Canary failed! Scaling down podinfo.test",
            ]),
            absent: strs(&["Advance podinfo.test canary weight 20"]),
            ..scenario("a failing rollout webhook")
        },
    ]
}

#[tokio::test(start_paused = true)]
async fn strategies_gates_and_failures() {
    for s in scenarios() {
        let yaml = canary_yaml(s.spec_extra, &s.analysis);
        let (outcome, events) = run_yaml(
            &yaml,
            Options {
                metrics: s.metrics.clone(),
                webhooks: s
                    .webhooks
                    .iter()
                    .map(|(n, p)| (n.to_string(), *p))
                    .collect(),
                never_ready: s.never_ready,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            outcome.phase(),
            s.expect_phase,
            "{}:\n{}",
            s.name,
            lines(&events)
        );
        let expected: Vec<&str> = s.expect_events.iter().map(String::as_str).collect();
        let msgs = messages(&events);
        let mut at = 0;
        for want in &expected {
            match msgs[at..].iter().position(|m| m == want) {
                Some(i) => at += i + 1,
                None => panic!(
                    "{}: missing (in order) {want:?}\n{}",
                    s.name,
                    lines(&events)
                ),
            }
        }
        if let Some(max) = s.max_weight {
            let highest = events.iter().map(|e| e.canary_weight).max();
            assert_eq!(highest, Some(max), "{}:\n{}", s.name, lines(&events));
        }
        for gone in &s.absent {
            assert!(
                !msgs.contains(gone),
                "{}: unexpected {gone:?}\n{}",
                s.name,
                lines(&events)
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_never_ready_canary_is_rolled_back_at_the_progress_deadline() {
    let yaml = canary_yaml(
        "",
        &format!("    maxWeight: 50\n    stepWeight: 10\n{METRICS}"),
    );
    let (outcome, events) = run_yaml(
        &yaml,
        Options {
            metrics: healthy(),
            never_ready: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(outcome.phase(), CanaryPhase::Failed, "{}", lines(&events));
    let at = |prefix: &str| {
        events
            .iter()
            .find(|e| e.message.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?}\n{}", lines(&events)))
    };
    let detected = at("New revision detected! Scaling up podinfo.test");
    let rollback = at("Rolling back podinfo.test progress deadline exceeded ");
    assert!(
        rollback.message.contains("podinfo.test") && rollback.message.contains("progress"),
        "the reason names the Deployment: {}",
        rollback.message
    );
    // progressDeadlineSeconds is 60 and the interval 1m: the rollback comes at the
    // first run past the deadline, not before it and not intervals later.
    let after = rollback.elapsed - detected.elapsed;
    assert!(
        after >= std::time::Duration::from_secs(60) && after <= std::time::Duration::from_secs(121),
        "rolled back {after:?} after the new revision\n{}",
        lines(&events)
    );
    assert_in_order(
        &events,
        &[
            "New revision detected! Scaling up podinfo.test",
            &rollback.message,
            "Canary failed! Scaling down podinfo.test",
        ],
    );
    assert!(
        events.iter().all(|e| e.canary_weight == 0),
        "no traffic ever reached the unready canary\n{}",
        lines(&events)
    );
}

#[tokio::test(start_paused = true)]
async fn seed_canary_rolls_back_at_the_failed_checks_threshold() {
    let (outcome, events) = simulate(
        &[fixture("istio-guide/podinfo-canary.yaml")],
        Options {
            metrics: BTreeMap::from([
                ("request-success-rate".to_string(), 69.17),
                ("request-duration".to_string(), 250.0),
            ]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(outcome.phase(), CanaryPhase::Failed, "{}", lines(&events));
    let halt = "Halt podinfo.test advancement success rate 69.17% < 99%";
    assert_eq!(
        messages(&events).iter().filter(|m| *m == halt).count(),
        5,
        "{}",
        lines(&events)
    );
    assert_in_order(
        &events,
        &[
            "Advance podinfo.test canary weight 10",
            halt,
            "Rolling back podinfo.test failed checks threshold reached 5",
            "Canary failed! Scaling down podinfo.test",
        ],
    );
    let last = events.last().expect("events");
    assert_eq!(last.canary_weight, 0, "traffic back on the primary");
}

fn gate_yaml(kind: &str, name: &str) -> String {
    canary_yaml(
        "",
        &format!(
            "    maxWeight: 20\n    stepWeight: 10\n{METRICS}
    webhooks:
      - name: {name}
        type: {kind}
        url: http://flagger-loadtester.test/gate/check"
        ),
    )
}

fn phase_is(phase: CanaryPhase) -> impl FnMut(&serin_api::Canary) -> bool {
    move |c| c.status.as_ref().is_some_and(|s| s.phase == phase)
}

#[tokio::test(start_paused = true)]
async fn confirm_promotion_holds_until_the_gate_opens() {
    let mut sim = start(
        &gate_yaml("confirm-promotion", "approve"),
        Options {
            metrics: healthy(),
            webhooks: BTreeMap::from([("approve".to_string(), false)]),
            ..Default::default()
        },
    )
    .await;
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized");
    sim.new_revision().await.expect("new revision");
    sim.wait_until(
        "WaitingPromotion",
        &mut |_| {},
        phase_is(CanaryPhase::WaitingPromotion),
    )
    .await
    .expect("held");
    // Held: several more intervals pass without a promotion.
    tokio::time::sleep(std::time::Duration::from_secs(300)).await;
    let held = sim.canary(&sim.canaries[0].clone()).await.expect("canary");
    assert_eq!(
        held.status_or_default().phase,
        CanaryPhase::WaitingPromotion
    );
    assert_eq!(held.status_or_default().canary_weight, 20);
    sim.checks.set_webhook("approve", true);
    sim.wait_until("Succeeded", &mut |_| {}, phase_is(CanaryPhase::Succeeded))
        .await
        .expect("promoted once opened");
    assert_in_order(
        &sim.events(),
        &[
            "Advance podinfo.test canary weight 20",
            "Halt podinfo.test advancement waiting for promotion approval approve",
            "Confirm-promotion check approve passed",
            "Copying podinfo.test template spec to podinfo-primary.test",
            "Promotion completed! Scaling down podinfo.test",
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_rollback_gate_aborts_the_analysis() {
    let mut sim = start(
        &gate_yaml("rollback", "abort"),
        Options {
            metrics: healthy(),
            webhooks: BTreeMap::from([("abort".to_string(), false)]),
            ..Default::default()
        },
    )
    .await;
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized");
    sim.new_revision().await.expect("new revision");
    sim.wait_until("weight 10", &mut |_| {}, |c| {
        c.status.as_ref().is_some_and(|s| s.canary_weight == 10)
    })
    .await
    .expect("advancing");
    sim.checks.set_webhook("abort", true);
    sim.wait_until("Failed", &mut |_| {}, phase_is(CanaryPhase::Failed))
        .await
        .expect("rolled back");
    let events = sim.events();
    assert_in_order(
        &events,
        &[
            "Advance podinfo.test canary weight 10",
            "Rolling back podinfo.test manual webhook invoked",
            "Canary failed! Scaling down podinfo.test",
        ],
    );
    assert!(!messages(&events).contains(&"Advance podinfo.test canary weight 20".to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_new_revision_during_the_analysis_restarts_it() {
    let mut sim = start(
        &canary_yaml(
            "",
            &format!("    maxWeight: 50\n    stepWeight: 10\n{METRICS}"),
        ),
        Options {
            metrics: healthy(),
            ..Default::default()
        },
    )
    .await;
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized");
    sim.new_revision().await.expect("new revision");
    sim.wait_until("weight 30", &mut |_| {}, |c| {
        c.status.as_ref().is_some_and(|s| s.canary_weight == 30)
    })
    .await
    .expect("advancing");
    let before = sim.elapsed();
    sim.new_revision().await.expect("another revision");
    sim.wait_until("Succeeded", &mut |_| {}, phase_is(CanaryPhase::Succeeded))
        .await
        .expect("promoted");
    let events = sim.events();
    let restart = events
        .iter()
        .find(|e| e.message == "New revision detected! Restarting analysis for podinfo.test")
        .unwrap_or_else(|| panic!("no restart\n{}", lines(&events)));
    assert!(
        restart.elapsed - before < std::time::Duration::from_secs(1),
        "the restart follows the change at once, not at the next interval"
    );
    assert_in_order(
        &events,
        &[
            "Advance podinfo.test canary weight 30",
            "New revision detected! Restarting analysis for podinfo.test",
            "Advance podinfo.test canary weight 10",
            "Advance podinfo.test canary weight 50",
            "Promotion completed! Scaling down podinfo.test",
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn weights_always_sum_to_100_and_never_reach_a_scaled_down_workload() {
    let yaml = canary_yaml(
        "",
        &format!("    maxWeight: 50\n    stepWeight: 10\n{METRICS}"),
    );
    let mut sim = start(
        &yaml,
        Options {
            metrics: healthy(),
            ..Default::default()
        },
    )
    .await;
    let recorder = serin_simulate::invariants::TrafficRecorder::start(&sim.client);
    sim.run(&mut |_| {}).await.expect("promoted");
    sim.checks.set_metric("request-success-rate", 50.0);
    let outcome = sim.rollout(&mut |_| {}).await.expect("rolled back");
    assert_eq!(outcome.phase(), CanaryPhase::Failed);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(recorder.len() > 10, "the recorder saw the rollout");
    assert_eq!(
        recorder.max_canary_weight(),
        50,
        "the recorder saw every route change"
    );
    let violations = recorder.violations(&sim.canaries);
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_changed_config_map_is_a_new_revision() {
    let yaml = format!(
        "apiVersion: v1
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
---
{}",
        canary_yaml(
            "",
            &format!("    maxWeight: 20\n    stepWeight: 10\n{METRICS}")
        )
    );
    let mut sim = start(
        &yaml,
        Options {
            metrics: healthy(),
            ..Default::default()
        },
    )
    .await;
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized");
    let c = sim.canary(&sim.canaries[0].clone()).await.expect("canary");
    assert!(
        c.status_or_default()
            .tracked_configs
            .unwrap_or_default()
            .contains_key("configmap/podinfo-config"),
        "the config map is tracked"
    );
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(sim.client.clone(), "test");
    let changed_at = sim.elapsed();
    api.patch(
        "podinfo-config",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"data": {"color": "green"}})),
    )
    .await
    .expect("config changed");
    sim.wait_until("Succeeded", &mut |_| {}, |c| {
        c.status_or_default().phase == CanaryPhase::Succeeded
    })
    .await
    .expect("a rollout ends");
    let events = sim.events();
    let detected = events
        .iter()
        .find(|e| e.message == "New revision detected! Scaling up podinfo.test")
        .unwrap_or_else(|| panic!("no new revision\n{}", lines(&events)));
    assert!(
        detected.elapsed - changed_at < std::time::Duration::from_secs(1),
        "seen at once\n{}",
        lines(&events)
    );
    assert_in_order(
        &events,
        &[
            "New revision detected! Scaling up podinfo.test",
            "Advance podinfo.test canary weight 20",
            "Promotion completed! Scaling down podinfo.test",
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn session_affinity_keeps_a_cookie_for_the_analysis() {
    let docs =
        serin_api::load::read_files(&[fixture("istio-guide/podinfo-canary-session-affinity.yaml")])
            .expect("fixture loads");
    let mut sim = Simulation::start(
        docs,
        Options {
            metrics: healthy(),
            ..Default::default()
        },
    )
    .await
    .expect("starts");
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized");
    sim.new_revision().await.expect("new revision");
    // Right after the first step: the routes written in the same run as the cookie.
    sim.wait_until("weight 10", &mut |_| {}, |c| {
        c.status_or_default().canary_weight == 10
    })
    .await
    .expect("advancing");
    let during = sim.canary(&sim.canaries[0].clone()).await.expect("canary");
    let cookie = during
        .status_or_default()
        .session_affinity_cookie
        .expect("a cookie during the analysis");
    assert!(cookie.starts_with("flagger-cookie="), "{cookie}");
    // The router's sticky route uses the very cookie the status shows.
    let vs: kube::Api<serin_api::istio::VirtualService> =
        kube::Api::namespaced(sim.client.clone(), "test");
    let vs = vs.get("podinfo").await.expect("virtual service");
    let (name, value) = cookie.split_once('=').unwrap();
    let sticky = vs.spec.http.iter().any(|r| {
        r.match_.iter().any(|m| {
            m.headers
                .get("cookie")
                .and_then(|c| c.regex.as_deref())
                .is_some_and(|re| re.contains(name) && re.contains(value))
        })
    });
    assert!(sticky, "no sticky route for {cookie}: {:?}", vs.spec.http);
    sim.wait_until("Succeeded", &mut |_| {}, |c| {
        c.status_or_default().phase == CanaryPhase::Succeeded
    })
    .await
    .expect("promoted");
    let after = sim.canary(&sim.canaries[0].clone()).await.expect("canary");
    assert_eq!(
        after.status_or_default().previous_session_affinity_cookie,
        Some(cookie),
        "the cookie is retired after the promotion"
    );
}

#[tokio::test(start_paused = true)]
async fn a_spec_edit_mid_analysis_waits_for_the_interval_before_the_next_step() {
    let mut sim = start(
        &canary_yaml(
            "",
            &format!("    maxWeight: 50\n    stepWeight: 10\n{METRICS}"),
        ),
        Options {
            metrics: healthy(),
            ..Default::default()
        },
    )
    .await;
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized");
    sim.new_revision().await.expect("new revision");
    sim.wait_until("weight 10", &mut |_| {}, |c| {
        c.status.as_ref().is_some_and(|s| s.canary_weight == 10)
    })
    .await
    .expect("advancing");
    // The user edits the Canary (a new generation) right after a step.
    let api: kube::Api<serin_api::Canary> = kube::Api::namespaced(sim.client.clone(), "test");
    api.patch(
        "podinfo",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"spec": {"progressDeadlineSeconds": 120}})),
    )
    .await
    .expect("canary edited");
    sim.wait_until("weight 20", &mut |_| {}, |c| {
        c.status.as_ref().is_some_and(|s| s.canary_weight == 20)
    })
    .await
    .expect("advancing");
    let events = sim.events();
    let at = |text: &str| {
        events
            .iter()
            .find(|e| e.message == text)
            .unwrap_or_else(|| panic!("no {text:?}\n{}", lines(&events)))
            .elapsed
    };
    let gap =
        at("Advance podinfo.test canary weight 20") - at("Advance podinfo.test canary weight 10");
    assert!(
        gap >= std::time::Duration::from_secs(60),
        "the next step came {gap:?} after the last one, before the 1m interval\n{}",
        lines(&events)
    );
}

#[tokio::test(start_paused = true)]
async fn post_rollout_results_are_recorded_before_promotion_completed() {
    let yaml = canary_yaml(
        "",
        &format!(
            "    maxWeight: 20\n    stepWeight: 10\n{METRICS}
    webhooks:
      - name: notify
        type: post-rollout
        url: http://flagger-loadtester.test/"
        ),
    );
    let (outcome, events) = run_yaml(
        &yaml,
        Options {
            metrics: healthy(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        outcome.phase(),
        CanaryPhase::Succeeded,
        "{}",
        lines(&events)
    );
    assert_in_order(
        &events,
        &[
            "Routing all traffic to primary",
            "Post-rollout check notify passed",
            "Promotion completed! Scaling down podinfo.test",
        ],
    );
}
