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
    /// Print every object serin would create for the Canaries in the given files (a
    /// target or HPA missing from them is stood in by podinfo's, said on stderr)
    Render(cmd::render::Args),
    /// Run a whole rollout against the in-process sandbox on a virtual clock (a
    /// target or HPA missing from the files is stood in by podinfo's, said on stderr)
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
        let matches = command.get_matches_from(go_style_flags(std::env::args_os()));
        return Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    }
    Cli::parse_from(go_style_flags(std::env::args_os()))
}

/// Flagger's chart passes flags as `-name=value`, as Go's flag package spells them:
/// a single dash before a long name becomes two. Short flags (`-f`), values that
/// are numbers and everything after `--` are left as they are.
fn go_style_flags(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut rest = false;
    for arg in args {
        let text = arg.to_str().map(str::to_string);
        match text {
            Some(t) if !rest && t == "--" => {
                rest = true;
                out.push(arg);
            }
            Some(t) if !rest && is_go_long_flag(&t) => out.push(format!("-{t}").into()),
            _ => out.push(arg),
        }
    }
    out
}

fn is_go_long_flag(arg: &str) -> bool {
    let Some(body) = arg.strip_prefix('-') else {
        return false;
    };
    let name = body.split('=').next().unwrap_or_default();
    !body.starts_with('-')
        && name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
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

#[cfg(test)]
mod tests {
    use super::*;

    fn go(args: &[&str]) -> Vec<String> {
        go_style_flags(args.iter().map(std::ffi::OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    /// The flags Flagger's chart passes, in its spelling, reach the operator.
    #[test]
    fn the_operator_takes_flaggers_flags() {
        let cli = Cli::try_parse_from(go_style_flags(
            [
                "serin",
                "operator",
                "-mesh-provider=kubernetes",
                "-metrics-server=http://prometheus.istio-system:9090",
                "-enable-leader-election=true",
                "-selector-labels=app.kubernetes.io/name,app",
                "-include-label-prefix=team,app.kubernetes.io",
                "-enable-config-tracking=false",
                "-event-webhook=http://events.test/",
                "-no-cross-namespace-refs=true",
            ]
            .map(std::ffi::OsString::from),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let Command::Operator(a) = cli.command else {
            panic!("not the operator")
        };
        assert_eq!(a.mesh_provider, "kubernetes");
        assert_eq!(a.metrics_server, "http://prometheus.istio-system:9090");
        assert!(a.leader_elect);
        assert_eq!(a.selector_labels, ["app.kubernetes.io/name", "app"]);
        assert_eq!(a.include_label_prefix, ["team", "app.kubernetes.io"]);
        assert!(!a.enable_config_tracking);
        assert_eq!(a.event_webhook.as_deref(), Some("http://events.test/"));
        assert!(a.no_cross_namespace_refs);

        let cli = Cli::try_parse_from(["serin", "operator", "--leader-elect"]).unwrap();
        let Command::Operator(a) = cli.command else {
            panic!("not the operator")
        };
        assert!(a.leader_elect);
        assert!(a.enable_config_tracking, "on by default, as in Flagger");
        assert!(!a.no_cross_namespace_refs);
        assert_eq!(a.selector_labels, ["app", "name", "app.kubernetes.io/name"]);
    }

    #[test]
    fn flaggers_single_dash_flags_become_long_flags() {
        assert_eq!(
            go(&[
                "serin",
                "operator",
                "-mesh-provider=kubernetes",
                "-enable-leader-election=true",
                "-f",
                "x.yaml",
                "--port",
                "-1",
                "--",
                "-kept"
            ]),
            [
                "serin",
                "operator",
                "--mesh-provider=kubernetes",
                "--enable-leader-election=true",
                "-f",
                "x.yaml",
                "--port",
                "-1",
                "--",
                "-kept"
            ]
        );
    }
}
