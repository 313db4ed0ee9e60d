//! `serin sandbox`: the in-memory Kubernetes API on 127.0.0.1 for kubectl, until Ctrl-C.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use serin_sandbox::{Sandbox, SandboxOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Port on 127.0.0.1 (0 picks a free one)
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Where to write the kubeconfig that points at the sandbox
    #[arg(long, default_value = "serin-sandbox.kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Seconds a Deployment or DaemonSet takes to become ready after a change
    #[arg(long, default_value_t = 2.0)]
    pub rollout_delay: f64,
    /// Start without serin's CRDs (Canary, MetricTemplate, AlertProvider) installed
    #[arg(long)]
    pub no_crds: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rollout_delay = Duration::try_from_secs_f64(args.rollout_delay)
        .context("--rollout-delay must be a non-negative number of seconds")?;
    let sandbox = Sandbox::new(SandboxOptions {
        rollout_delay,
        ..Default::default()
    });
    if !args.no_crds {
        let crds: Api<CustomResourceDefinition> = Api::all(sandbox.client());
        for crd in serin_api::crd::crds() {
            crds.create(&PostParams::default(), &crd)
                .await
                .context("cannot install serin's CRDs in the sandbox")?;
        }
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let server = sandbox
        .serve(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let path = std::path::absolute(&args.kubeconfig)
        .with_context(|| format!("cannot resolve {}", args.kubeconfig.display()))?;
    sandbox
        .write_kubeconfig(&path, server.addr())
        .with_context(|| format!("cannot write the kubeconfig {}", path.display()))?;
    tracing::info!(msg = "sandbox serving", url = %server.url(), kubeconfig = %path.display());
    eprintln!(
        "serin sandbox: serving the Kubernetes API on {} (Ctrl-C stops it)",
        server.url()
    );
    println!("export KUBECONFIG={}", path.display());
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    server.shutdown().await;
    eprintln!("serin sandbox: stopped");
    Ok(ExitCode::SUCCESS)
}
