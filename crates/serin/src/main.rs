//! `serin`: the one binary. Every subcommand lives in its own module under `cmd/`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use serin_api::manual::RequestKind;

mod cmd;
mod logging;

/// serin: progressive delivery for Kubernetes, speaking Flagger's API.
#[derive(Parser)]
#[command(name = "serin", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the seeds' canary walkthrough on the built-in sandbox (no cluster needed)
    Demo(cmd::demo::Args),
    /// Run the operator against a Kubernetes cluster
    Operator(cmd::operator::Args),
    /// Print the CustomResourceDefinitions of Canary, MetricTemplate and AlertProvider
    Crds(cmd::crds::Args),
    /// Check Canary, MetricTemplate and AlertProvider manifests for mistakes
    Validate(cmd::validate::Args),
    /// Print every object serin would create for the Canaries in the given files
    Render(cmd::render::Args),
    /// Run a whole rollout against the in-process sandbox on a virtual clock
    Simulate(cmd::simulate::Args),
    /// Serve an in-memory Kubernetes API on loopback for kubectl and tests
    Sandbox(cmd::sandbox::Args),
    /// Render and run one metric query of a Canary against Prometheus
    Query(cmd::query::Args),
    /// Run the load tester webhook service (built-in hey, manual gates)
    Loadtester(cmd::loadtester::Args),
    /// Alert commands (send a test notification through an AlertProvider)
    Alert(cmd::alert::Args),
    /// Show canaries: phase, weights, checks, gates, events (--watch follows them)
    Status(cmd::status::Args),
    /// Promote a canary now: skip the remaining steps and gates
    Promote(cmd::request::Args),
    /// Roll a canary back now
    Abort(cmd::request::Args),
    /// Run the analysis again for a Failed canary, without changing its target
    Retry(cmd::request::Args),
    /// Hold a canary at its current weight (the progress deadline does not count)
    Pause(cmd::request::Args),
    /// Continue a paused canary
    Resume(cmd::request::Args),
    /// Serve a live web dashboard of the canaries on 127.0.0.1
    Dashboard(cmd::dashboard::Args),
}

/// Parses the command line; as `kubectl-serin` (a kubectl plugin) the help says
/// `kubectl serin`.
fn parse() -> Cli {
    let invoked = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    if invoked == "kubectl-serin" {
        let command = Cli::command()
            .name("kubectl serin")
            .bin_name("kubectl serin");
        let matches = command.get_matches();
        return Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    }
    Cli::parse()
}

fn main() -> ExitCode {
    let cli = parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("serin: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo(a) => cmd::demo::run(a).await,
            Command::Operator(a) => cmd::operator::run(a).await,
            Command::Crds(a) => cmd::crds::run(a).await,
            Command::Validate(a) => cmd::validate::run(a).await,
            Command::Render(a) => cmd::render::run(a).await,
            Command::Simulate(a) => cmd::simulate::run(a).await,
            Command::Sandbox(a) => cmd::sandbox::run(a).await,
            Command::Query(a) => cmd::query::run(a).await,
            Command::Loadtester(a) => cmd::loadtester::run(a).await,
            Command::Alert(a) => cmd::alert::run(a).await,
            Command::Status(a) => cmd::status::run(a).await,
            Command::Promote(a) => cmd::request::run(RequestKind::Promote, a).await,
            Command::Abort(a) => cmd::request::run(RequestKind::Abort, a).await,
            Command::Retry(a) => cmd::request::run(RequestKind::Retry, a).await,
            Command::Pause(a) => cmd::request::run(RequestKind::Pause, a).await,
            Command::Resume(a) => cmd::request::run(RequestKind::Resume, a).await,
            Command::Dashboard(a) => cmd::dashboard::run(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("serin: {e:#}");
            ExitCode::FAILURE
        }
    }
}
