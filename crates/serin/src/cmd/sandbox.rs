use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<ExitCode> {
    println!("serin sandbox: coming soon (not implemented yet)");
    Ok(ExitCode::from(3))
}
