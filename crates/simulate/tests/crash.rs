//! Crash safety: all progress lives in the Canary status, so a controller stopped at
//! any point and replaced by a new one on the same cluster reaches the same outcome,
//! and traffic stays safe throughout.

use std::collections::BTreeMap;
use std::time::Duration;

use serin_api::canary::CanaryPhase;
use serin_sandbox::{FaultRule, Verb};
use serin_simulate::invariants::TrafficRecorder;
use serin_simulate::{Options, Simulation, TimedEvent};

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
  progressDeadlineSeconds: 60
  service:
    port: 9898
  analysis:
    interval: 1m
    threshold: 3
    maxWeight: 50
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 1m
";

fn options(success_rate: f64) -> Options {
    Options {
        metrics: BTreeMap::from([("request-success-rate".to_string(), success_rate)]),
        ..Default::default()
    }
}

async fn start(success_rate: f64) -> Simulation {
    let docs = serin_api::load::parse_documents("crash.yaml", CANARY).expect("parses");
    Simulation::start(docs, options(success_rate))
        .await
        .expect("starts")
}

fn lines(events: &[TimedEvent]) -> String {
    events
        .iter()
        .map(|e| e.line())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn phase(sim: &Simulation) -> CanaryPhase {
    sim.canary(&sim.canaries[0].clone())
        .await
        .map(|c| c.status_or_default().phase)
        .unwrap_or_default()
}

/// Runs a new revision to its end, replacing the controller whenever `restart` says
/// so (given the seconds elapsed and the events just recorded). Returns the outcome
/// and how many times the controller was replaced.
async fn rollout_with_restarts(
    sim: &mut Simulation,
    step: Duration,
    mut restart: impl FnMut(u64, &[TimedEvent]) -> bool,
) -> (CanaryPhase, usize) {
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized");
    sim.new_revision().await.expect("new revision");
    let mut restarts = 0;
    let mut seen_running = false;
    for _ in 0..20_000 {
        let fresh = sim.tick(step).await;
        let p = phase(sim).await;
        seen_running |= p.is_running();
        if seen_running && matches!(p, CanaryPhase::Succeeded | CanaryPhase::Failed) {
            return (p, restarts);
        }
        if restart(sim.elapsed().as_millis() as u64, &fresh) {
            sim.start_controller();
            restarts += 1;
        }
    }
    panic!("no outcome\n{}", lines(&sim.events()));
}

#[tokio::test(start_paused = true)]
async fn restarted_after_every_step_the_outcome_is_the_same() {
    for (rate, expected) in [(99.9, CanaryPhase::Succeeded), (50.0, CanaryPhase::Failed)] {
        let mut sim = start(rate).await;
        let traffic = TrafficRecorder::start(&sim.client);
        let (outcome, restarts) =
            rollout_with_restarts(&mut sim, Duration::from_secs(1), |_, fresh| {
                !fresh.is_empty()
            })
            .await;
        let events = sim.events();
        assert_eq!(outcome, expected, "{}", lines(&events));
        assert!(restarts >= 5, "restarted at every step ({restarts})");
        let msgs: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
        if expected == CanaryPhase::Succeeded {
            for w in [10, 20, 30, 40, 50] {
                let advance = format!("Advance podinfo.test canary weight {w}");
                assert_eq!(
                    msgs.iter().filter(|m| **m == advance).count(),
                    1,
                    "each step happens once: {advance}\n{}",
                    lines(&events)
                );
            }
        } else {
            assert!(msgs.contains(&"Canary failed! Scaling down podinfo.test"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_traffic_seen(&traffic, expected);
        let violations = traffic.violations(&sim.canaries);
        assert!(violations.is_empty(), "{violations:#?}");
    }
}

/// The recorder really watched the rollout: the routes reached the highest weight
/// this outcome passes through (50 before a promotion; 10 before a rollback, which
/// comes at the third failed check), so an empty history cannot pass for a safe one.
fn assert_traffic_seen(traffic: &TrafficRecorder, outcome: CanaryPhase) {
    let expected = if outcome == CanaryPhase::Succeeded {
        50
    } else {
        10
    };
    assert!(traffic.len() > 5, "{} changes recorded", traffic.len());
    assert_eq!(
        traffic.max_canary_weight(),
        expected,
        "the recorder saw the route changes"
    );
}

#[tokio::test(start_paused = true)]
async fn stopped_in_the_middle_of_runs_the_outcome_is_the_same() {
    for (rate, expected) in [(99.9, CanaryPhase::Succeeded), (50.0, CanaryPhase::Failed)] {
        let mut sim = start(rate).await;
        // Every write takes a while, so runs span time and restarts land inside them.
        for verb in [Verb::Create, Verb::Update, Verb::Patch] {
            sim.sandbox.faults().set(
                "*",
                verb,
                FaultRule {
                    delay: Duration::from_millis(700),
                    ..Default::default()
                },
            );
        }
        let traffic = TrafficRecorder::start(&sim.client);
        let (outcome, restarts) =
            rollout_with_restarts(&mut sim, Duration::from_millis(100), |ms, _| {
                ms % 3_700 < 100
            })
            .await;
        assert_eq!(outcome, expected, "{}", lines(&sim.events()));
        assert!(restarts >= 5, "restarted repeatedly ({restarts})");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_traffic_seen(&traffic, expected);
        let violations = traffic.violations(&sim.canaries);
        assert!(violations.is_empty(), "{violations:#?}");
    }
}

#[tokio::test(start_paused = true)]
async fn two_replicas_with_leader_election_act_as_one() {
    let mut sim = start(99.9).await;
    sim.stop_controller();
    let a = sim.spawn_replica("replica-a");
    let b = sim.spawn_replica("replica-b");
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized");
    sim.new_revision().await.expect("new revision");
    sim.wait_until("weight 20", &mut |_| {}, |c| {
        c.status_or_default().canary_weight == 20
    })
    .await
    .expect("advancing");
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(sim.client.clone(), "default");
    let holder = leases
        .get("serin-leader")
        .await
        .expect("lease")
        .spec
        .and_then(|s| s.holder_identity)
        .expect("a holder");
    // The leader crashes; the other replica takes over and finishes.
    if holder == "replica-a" {
        a.abort()
    } else {
        b.abort()
    }
    sim.wait_until("Succeeded", &mut |_| {}, |c| {
        c.status_or_default().phase == CanaryPhase::Succeeded
    })
    .await
    .expect("promoted by the other replica");
    let new_holder = leases
        .get("serin-leader")
        .await
        .expect("lease")
        .spec
        .and_then(|s| s.holder_identity)
        .expect("a holder");
    assert_ne!(new_holder, holder, "leadership moved");
    let events = sim.events();
    for w in [10, 20, 30, 40, 50] {
        let advance = format!("Advance podinfo.test canary weight {w}");
        assert_eq!(
            events.iter().filter(|e| e.message == advance).count(),
            1,
            "one replica acts at a time: {advance}\n{}",
            lines(&events)
        );
    }
    a.abort();
    b.abort();
}
