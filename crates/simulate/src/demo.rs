//! `serin demo`: the seeds' walkthrough on the sandbox, paced so a person can follow
//! it: podinfo is initialised, version 6.0.1 is promoted step by step, then a faulty
//! 6.0.2 (a success rate of 69.17%) is rolled back.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::ListParams;
use serin_api::canary::CanaryPhase;
use serin_api::istio::{DestinationRule, VirtualService};
use serin_engine::EventType;

use crate::{Error, Options, Simulation, TimedEvent, mmss};

/// The demo's manifests: namespace, podinfo Deployment and HPA, the seed's Canary.
/// [`run`] applies exactly these; `serin demo --print-manifests` prints them.
pub const MANIFESTS: &str = include_str!("demo/podinfo.yaml");

/// How the demo went.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOutcome {
    pub promotion: CanaryPhase,
    pub rollback: CanaryPhase,
    pub virtual_time: Duration,
}

impl DemoOutcome {
    /// The demo showed what it promised: a promotion, then a rollback.
    pub fn as_expected(&self) -> bool {
        self.promotion == CanaryPhase::Succeeded && self.rollback == CanaryPhase::Failed
    }

    /// The demo's last line: what happened to each version, with the phase the
    /// canary ended in (a rolled-back canary's phase is Failed: the version failed,
    /// the rollback did not).
    pub fn line(&self) -> String {
        let promoted = if self.promotion == CanaryPhase::Succeeded {
            "promoted"
        } else {
            "NOT promoted"
        };
        let rolled_back = if self.rollback == CanaryPhase::Failed {
            "rolled back"
        } else {
            "NOT rolled back"
        };
        format!(
            "result: the new version {promoted} (canary phase {}), the faulty one {rolled_back} (canary phase {}), {} of rollout time",
            self.promotion,
            self.rollback,
            mmss(self.virtual_time)
        )
    }
}

/// Display settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Virtual seconds per real second.
    pub speed: f64,
    /// ANSI colours.
    pub color: bool,
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn bold(&self, t: &str) -> String {
        self.paint("1", t)
    }
    fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
    fn green(&self, t: &str) -> String {
        self.paint("32", t)
    }
    fn yellow(&self, t: &str) -> String {
        self.paint("33", t)
    }
    fn red(&self, t: &str) -> String {
        self.paint("31", t)
    }
    fn cyan(&self, t: &str) -> String {
        self.paint("36", t)
    }
}

/// The live display: each event as it happens, then the phase and the weight bar once
/// the run that made it is over (one run's events share one status).
struct Display<'a> {
    style: &'a Style,
    shown: Option<(CanaryPhase, i32)>,
    pending: Option<(Duration, CanaryPhase, i32)>,
}

impl Display<'_> {
    fn event(&mut self, e: &TimedEvent, out: &mut dyn Write) {
        if self.pending.is_some_and(|p| p.0 != e.elapsed) {
            self.flush(out);
        }
        let kind = match e.type_ {
            EventType::Normal => self.style.green("Normal "),
            EventType::Warning => self.style.yellow("Warning"),
        };
        let _ = writeln!(
            out,
            "  {} {kind} {}",
            self.style.dim(&mmss(e.elapsed)),
            e.message
        );
        self.pending = Some((e.elapsed, e.phase, e.canary_weight));
        let _ = out.flush();
    }

    fn flush(&mut self, out: &mut dyn Write) {
        if let Some((_, phase, weight)) = self.pending.take()
            && self.shown != Some((phase, weight))
        {
            self.shown = Some((phase, weight));
            let _ = writeln!(
                out,
                "        {:<17} {}",
                self.style.bold(phase.as_str()),
                weight_bar(weight)
            );
            let _ = out.flush();
        }
    }
}

/// `primary [██████████░░░░░░░░░░] canary` for a canary weight.
pub fn weight_bar(canary_weight: i32) -> String {
    let width = 20;
    let canary = ((canary_weight.clamp(0, 100) as usize) * width + 50) / 100;
    format!(
        "primary {:>3}% [{}{}] {:>3}% canary",
        100 - canary_weight.clamp(0, 100),
        "█".repeat(width - canary),
        "░".repeat(canary),
        canary_weight.clamp(0, 100)
    )
}

/// Runs the demo, writing the display to `out`. Must run on a current-thread runtime
/// with paused time ([`crate::virtual_runtime`]); the pace comes from `options.speed`.
pub async fn run(out: &mut dyn Write, options: DemoOptions) -> Result<DemoOutcome, Error> {
    let style = Style {
        color: options.color,
    };
    let docs = serin_api::load::parse_documents("demo/podinfo.yaml", MANIFESTS)
        .map_err(|e| Error::Apply(e.to_string()))?;
    let sim_options = Options {
        metrics: BTreeMap::from([
            ("request-success-rate".to_string(), 99.92),
            ("request-duration".to_string(), 312.0),
        ]),
        pace: Some(options.speed),
        ..Default::default()
    };
    let minute = 60.0 / options.speed;
    let _ = writeln!(
        out,
        "{}",
        style.bold("serin demo: Flagger's Istio canary walkthrough, on an in-memory cluster")
    );
    let _ = writeln!(
        out,
        "{}",
        style.dim(&format!(
            "No cluster needed: serin's real controller and engine run against a sandbox API server.\n\
             The clock is accelerated: one minute of the rollout takes {minute:.1}s here."
        ))
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{}",
        style.cyan(
            "$ kubectl apply -f podinfo.yaml   # deployment, hpa and canary in namespace test"
        )
    );
    let mut sim = Simulation::start(docs, sim_options).await?;

    let mut display = Display {
        style: &style,
        shown: None,
        pending: None,
    };

    sim.wait_initialized(&mut |e| display.event(e, out)).await?;
    display.flush(out);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{}",
        style.cyan("$ kubectl -n test get deploy,svc,virtualservice,destinationrule")
    );
    for line in generated_objects(&sim).await {
        let _ = writeln!(out, "  {line}");
    }

    let image = current_image(&sim).await;
    let next = crate::bump_image(&image);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{}",
        style.bold(&format!(
            "1. A new version: {image} → {next} (healthy: success rate 99.92%, p99 312ms)"
        ))
    );
    let _ = writeln!(
        out,
        "{}",
        style.cyan(&format!(
            "$ kubectl -n test set image deployment/podinfo podinfod={next}"
        ))
    );
    let promotion = sim.rollout(&mut |e| display.event(e, out)).await?;
    display.flush(out);
    let verdict = promotion.phase();
    let _ = writeln!(
        out,
        "  {}",
        if verdict == CanaryPhase::Succeeded {
            style.green(&format!(
                "✔ {next} promoted after {}",
                mmss(promotion.elapsed)
            ))
        } else {
            style.red(&format!("✘ {next} was not promoted ({verdict})"))
        }
    );

    let faulty = crate::bump_image(&next);
    sim.checks.set_metric("request-success-rate", 69.17);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{}",
        style.bold(&format!("2. A faulty version: {faulty} answers HTTP 500 to about a third of requests (success rate 69.17%)"))
    );
    let _ = writeln!(
        out,
        "{}",
        style.cyan(&format!(
            "$ kubectl -n test set image deployment/podinfo podinfod={faulty}"
        ))
    );
    let rollback = sim.rollout(&mut |e| display.event(e, out)).await?;
    display.flush(out);
    let verdict2 = rollback.phase();
    let _ = writeln!(
        out,
        "  {}",
        if verdict2 == CanaryPhase::Failed {
            style.yellow(&format!(
                "✔ {faulty} rolled back after {}: all traffic stayed on or returned to {next}",
                mmss(rollback.elapsed)
            ))
        } else {
            style.red(&format!("✘ {faulty} was not rolled back ({verdict2})"))
        }
    );
    let outcome = DemoOutcome {
        promotion: verdict,
        rollback: verdict2,
        virtual_time: rollback.elapsed,
    };
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", style.bold(&outcome.line()));
    let _ = writeln!(
        out,
        "{}",
        style.dim("Next: `serin simulate -f your-canary.yaml --metric request-success-rate=99` for your own manifests.")
    );
    let _ = out.flush();
    Ok(outcome)
}

async fn current_image(sim: &Simulation) -> String {
    let api: Api<Deployment> = Api::namespaced(sim.client.clone(), "test");
    api.get("podinfo")
        .await
        .ok()
        .and_then(|d| d.spec)
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.first().and_then(|c| c.image.clone()))
        .unwrap_or_else(|| "podinfo".into())
}

async fn generated_objects(sim: &Simulation) -> Vec<String> {
    let mut out = Vec::new();
    let lp = ListParams::default();
    if let Ok(l) = Api::<Deployment>::namespaced(sim.client.clone(), "test")
        .list(&lp)
        .await
    {
        for d in l.items {
            let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            out.push(format!(
                "deployment.apps/{:<24} replicas {replicas}",
                d.metadata.name.unwrap_or_default()
            ));
        }
    }
    if let Ok(l) = Api::<Service>::namespaced(sim.client.clone(), "test")
        .list(&lp)
        .await
    {
        for s in l.items {
            out.push(format!("service/{}", s.metadata.name.unwrap_or_default()));
        }
    }
    if let Ok(l) = Api::<DestinationRule>::namespaced(sim.client.clone(), "test")
        .list(&lp)
        .await
    {
        for s in l.items {
            out.push(format!(
                "destinationrule.networking.istio.io/{}",
                s.metadata.name.unwrap_or_default()
            ));
        }
    }
    if let Ok(l) = Api::<VirtualService>::namespaced(sim.client.clone(), "test")
        .list(&lp)
        .await
    {
        for s in l.items {
            let routes: Vec<String> = s
                .spec
                .http
                .iter()
                .flat_map(|r| r.route.iter())
                .map(|d| format!("{} {}", d.destination.host, d.weight))
                .collect();
            out.push(format!(
                "virtualservice.networking.istio.io/{:<8} routes: {}",
                s.metadata.name.unwrap_or_default(),
                routes.join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_splits_twenty_cells() {
        assert_eq!(
            weight_bar(0),
            format!("primary 100% [{}]   0% canary", "█".repeat(20))
        );
        assert_eq!(
            weight_bar(50),
            format!(
                "primary  50% [{}{}]  50% canary",
                "█".repeat(10),
                "░".repeat(10)
            )
        );
    }
}
