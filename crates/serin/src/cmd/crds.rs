use std::process::ExitCode;

use anyhow::Context;

/// Prints the three CRDs as one YAML stream (the same file as deploy/crds/crds.yaml).
#[derive(clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<ExitCode> {
    let yaml = serin_api::crd::crds_yaml().context("cannot serialise the CRDs")?;
    print!("{yaml}");
    Ok(ExitCode::SUCCESS)
}
