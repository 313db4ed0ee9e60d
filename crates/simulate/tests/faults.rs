//! Under API faults (conflicts, server errors, dropped watches) the controller never
//! panics and the rollout still completes.

use std::collections::BTreeMap;
use std::time::Duration;

use serin_api::canary::CanaryPhase;
use serin_sandbox::{FaultRule, Verb};
use serin_simulate::{Options, Simulation};

#[tokio::test(start_paused = true)]
async fn conflicts_errors_and_dropped_watches_do_not_stop_a_rollout() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/seeds/istio-guide/podinfo-canary.yaml"),
    )
    .expect("fixture");
    let docs = serin_api::load::parse_documents("podinfo-canary.yaml", &text).expect("parses");
    let mut sim = Simulation::start(
        docs,
        Options {
            metrics: BTreeMap::from([
                ("request-success-rate".to_string(), 99.9),
                ("request-duration".to_string(), 100.0),
            ]),
            ..Default::default()
        },
    )
    .await
    .expect("starts");
    for verb in [
        Verb::Get,
        Verb::List,
        Verb::Watch,
        Verb::Create,
        Verb::Update,
        Verb::Patch,
    ] {
        sim.sandbox.faults().set(
            "*",
            verb,
            FaultRule {
                conflict_rate: 0.15,
                error_rate: 0.15,
                delay: Duration::ZERO,
            },
        );
    }
    // Drop every watch now and then while the rollout runs.
    let sandbox = sim.sandbox.clone();
    let dropper = tokio::spawn(async move {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_secs(17)).await;
            sandbox.drop_watches();
        }
    });
    let outcome = sim.run(&mut |_| {}).await.expect("the rollout ends");
    dropper.abort();
    let events = sim.events();
    let lines: Vec<String> = events.iter().map(|e| e.line()).collect();
    assert_eq!(
        outcome.phase(),
        CanaryPhase::Succeeded,
        "{}",
        lines.join("\n")
    );
    assert!(
        events
            .iter()
            .any(|e| e.message == "Promotion completed! Scaling down podinfo.test")
    );
    assert!(
        events.iter().any(|e| e.message.contains("Internal error")
            || e.message.contains("conflict")
            || e.message.contains("Conflict")),
        "faults were injected and reported:\n{}",
        lines.join("\n")
    );
}
