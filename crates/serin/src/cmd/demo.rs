//! `serin demo`: the seeds' canary walkthrough on the built-in sandbox, with no cluster.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use serin_simulate::demo::{DemoOptions, run as run_demo};
use serin_simulate::virtual_runtime;

#[derive(clap::Args)]
pub struct Args {
    /// Rollout seconds shown per real second (30: one analysis minute takes 2 s)
    #[arg(long, default_value_t = 30.0)]
    pub speed: f64,
    /// Colours: auto (when stdout is a terminal), always or never
    #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,
    /// Print the manifests the demo applies (multi-document YAML, for
    /// `kubectl apply -f -`) and exit without running it
    #[arg(long)]
    pub print_manifests: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.print_manifests {
        let mut out = std::io::stdout().lock();
        out.write_all(serin_simulate::demo::MANIFESTS.as_bytes())?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    if !(args.speed.is_finite() && args.speed > 0.0) {
        anyhow::bail!("--speed must be a positive number");
    }
    let color = match args.color.as_str() {
        "always" => true,
        "never" => false,
        _ => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let options = DemoOptions {
        speed: args.speed,
        color,
    };
    tokio::task::spawn_blocking(move || -> anyhow::Result<ExitCode> {
        let rt = virtual_runtime().context("cannot start the virtual-time runtime")?;
        rt.block_on(async move {
            let mut out = std::io::stdout().lock();
            let outcome = run_demo(&mut out, options).await?;
            Ok(if outcome.as_expected() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        })
    })
    .await
    .context("demo thread")?
}
