//! `serin simulate`: a whole rollout of the real controller and engine against the
//! in-process sandbox, on a virtual clock.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serin_simulate::{Options, Simulation, TimedEvent, virtual_runtime};

#[derive(clap::Args)]
pub struct Args {
    // Manifests to apply (Canary, Deployment, HPA, MetricTemplate...); a Canary's
    // target missing from the files is stood in by a podinfo Deployment.
    #[command(flatten)]
    pub manifests: super::Manifests,
    /// The value every check of metric NAME answers (a metric with no value fails)
    #[arg(long = "metric", value_name = "NAME=VALUE")]
    pub metrics: Vec<String>,
    /// Whether webhook NAME passes or fails (webhooks pass by default)
    #[arg(long = "webhook", value_name = "NAME=pass|fail")]
    pub webhooks: Vec<String>,
    /// The new revision never becomes ready (rolled back at the progress deadline)
    #[arg(long)]
    pub never_ready: bool,
    /// Traffic provider of canaries that name none
    #[arg(long, value_parser = ["istio", "kubernetes"])]
    pub mesh_provider: Option<String>,
    /// Output format
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
}

fn parse_metrics(items: &[String]) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for item in items {
        let Some((name, value)) = item.split_once('=') else {
            bail!("--metric {item}: expected NAME=VALUE");
        };
        let v: f64 = value
            .trim()
            .parse()
            .with_context(|| format!("--metric {item}: {value} is not a number"))?;
        if !v.is_finite() {
            bail!("--metric {item}: the value must be a finite number");
        }
        out.insert(name.trim().to_string(), v);
    }
    Ok(out)
}

fn parse_webhooks(items: &[String]) -> anyhow::Result<BTreeMap<String, bool>> {
    let mut out = BTreeMap::new();
    for item in items {
        let pass = match item.split_once('=') {
            Some((name, "pass")) => (name, true),
            Some((name, "fail")) => (name, false),
            _ => bail!("--webhook {item}: expected NAME=pass or NAME=fail"),
        };
        out.insert(pass.0.trim().to_string(), pass.1);
    }
    Ok(out)
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let options = Options {
        metrics: parse_metrics(&args.metrics)?,
        webhooks: parse_webhooks(&args.webhooks)?,
        never_ready: args.never_ready,
        mesh_provider: args.mesh_provider.clone(),
        ..Default::default()
    };
    let docs = serin_api::load::read_files(&args.manifests.files)?;
    let json = args.format == "json";
    // The simulation owns a current-thread runtime on paused time, away from the
    // multi-threaded runtime main() runs on.
    tokio::task::spawn_blocking(move || -> anyhow::Result<ExitCode> {
        let rt = virtual_runtime().context("cannot start the virtual-time runtime")?;
        rt.block_on(async move {
            let mut sim = Simulation::start(docs, options).await?;
            for s in &sim.stand_ins {
                eprintln!("simulate: {s}");
            }
            let mut out = std::io::stdout().lock();
            let outcome = {
            let mut print = |e: &TimedEvent| {
                let line = if json {
                    e.json().to_string()
                } else {
                    e.line()
                };
                let _ = writeln!(out, "{line}");
            };
            sim.run(&mut print).await?
            };
            if json {
                let result = serde_json::json!({
                    "result": outcome.phase().as_str(),
                    "time": serin_simulate::mmss(outcome.elapsed),
                    "seconds": outcome.elapsed.as_secs(),
                    "canaries": outcome.phases.iter().map(|(k, v)| (k.clone(), v.as_str())).collect::<BTreeMap<_, _>>(),
                });
                let _ = writeln!(out, "{result}");
            } else {
                let _ = writeln!(out, "{}", outcome.line());
            }
            Ok(if outcome.phase() == serin_api::canary::CanaryPhase::Succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        })
    })
    .await
    .context("simulation thread")?
}
