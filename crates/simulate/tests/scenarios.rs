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
