//! `serin loadtester`: the webhook service canaries call for load, acceptance tests and
//! manual gates (Flagger's `flagger-loadtester`, with a built-in hey).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serin_loadtester::{Config, LoadTester};

#[derive(clap::Args)]
pub struct Args {
    /// Port to listen on (used with --listen when that is only an IP address)
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on: an IP (with --port) or IP:PORT [default: 0.0.0.0]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Allow `type: bash` webhooks and commands other than hey (off by default)
    #[arg(long)]
    enable_bash: bool,
    /// With --enable-bash, run only commands that start with one of these prefixes
    /// (repeatable); they then run without a shell and `type: bash` is refused
    #[arg(long = "allow-cmd", value_name = "PREFIX")]
    allow_cmd: Vec<String>,
    /// Require `Authorization: Bearer TOKEN` on every endpoint
    #[arg(long, env = "SERIN_LOADTESTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How long a command may run unless the webhook's metadata.timeout says otherwise
    /// (Go duration: 30s, 10m, 1h)
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    timeout: Duration,
    /// Where hey may send load: a host name, a domain (leading dot) or an address range
    /// (repeatable; replaces the default .svc, .svc.cluster.local, 10.0.0.0/8,
    /// 172.16.0.0/12, 192.168.0.0/16, fd00::/8). Others are refused with a 403
    #[arg(long = "allow-target", value_name = "HOST|.DOMAIN|CIDR", value_parser = serin_loadtester::targets::AllowedTarget::parse)]
    allow_target: Vec<serin_loadtester::targets::AllowedTarget>,
    /// Answer only canaries whose namespace this regular expression matches (anywhere
    /// in the name, as Flagger's -namespace-regexp: write ^test$ for exactly one); the
    /// others get 403 on webhooks and gates. Empty: every namespace
    #[arg(long, value_name = "REGEXP")]
    namespace_regexp: Option<String>,
    /// Answer `type: cmd` webhooks with 202 at once and run the command in the
    /// background, as Flagger's load tester does (its result then only goes to the log).
    /// By default the answer waits for the command and carries its result
    #[arg(long)]
    background_cmd: bool,
    /// The program `type: helm` and `type: helmv3` webhooks run
    #[arg(long, value_name = "PATH", default_value = "helm")]
    helm: String,
    /// The program `type: kubectl` webhooks run
    #[arg(long, value_name = "PATH", default_value = "kubectl")]
    kubectl: String,
    /// Log level when RUST_LOG is not set
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    match serin_loadtester::words::parse_go_duration(s) {
        Ok(d) if d.is_zero() => Err("the timeout must be more than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn listen_addr(listen: Option<&str>, port: u16) -> anyhow::Result<SocketAddr> {
    match listen {
        None => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
        Some(s) => {
            if let Ok(addr) = s.parse::<SocketAddr>() {
                return Ok(addr);
            }
            let ip = s.trim_start_matches('[').trim_end_matches(']');
            ip.parse::<IpAddr>()
                .map(|ip| SocketAddr::new(ip, port))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "--listen {s:?} is neither an IP address nor IP:PORT (e.g. 0.0.0.0 or 127.0.0.1:8080)"
                    )
                })
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down the load tester");
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::logging::init_json(&args.log_level);
    if args.token.as_deref() == Some("") {
        anyhow::bail!("--token must not be empty");
    }
    if !args.allow_cmd.is_empty() && !args.enable_bash {
        tracing::warn!("--allow-cmd has no effect without --enable-bash: only hey commands run");
    }
    let namespace_regexp =
        serin_loadtester::server::namespace_regexp(args.namespace_regexp.as_deref().unwrap_or(""))
            .map_err(|e| {
                anyhow::anyhow!("--namespace-regexp is not a valid regular expression: {e}")
            })?;
    let addr = listen_addr(args.listen.as_deref(), args.port)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let config = Config {
        enable_bash: args.enable_bash,
        allow_cmd: args.allow_cmd,
        token: args.token,
        command_timeout: args.timeout,
        allow_target: if args.allow_target.is_empty() {
            Config::default().allow_target
        } else {
            args.allow_target
        },
        namespace_regexp,
        background_cmd: args.background_cmd,
        helm: args.helm,
        kubectl: args.kubectl,
    };
    tracing::info!(
        address = %addr,
        enable_bash = config.enable_bash,
        allow_cmd = ?config.allow_cmd,
        token = config.token.is_some(),
        timeout = ?config.command_timeout,
        namespace_regexp = config.namespace_regexp.as_ref().map_or("", |r| r.as_str()),
        background_cmd = config.background_cmd,
        "Starting load tester v{} API on {addr}",
        env!("CARGO_PKG_VERSION")
    );
    LoadTester::new(config)
        .serve(listener, shutdown_signal())
        .await
        .context("the load tester's HTTP server failed")?;
    tracing::info!("HTTP server stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_an_ip_or_a_socket_address() {
        assert_eq!(listen_addr(None, 8080).unwrap().to_string(), "0.0.0.0:8080");
        assert_eq!(
            listen_addr(Some("127.0.0.1"), 9090).unwrap().to_string(),
            "127.0.0.1:9090"
        );
        assert_eq!(
            listen_addr(Some("127.0.0.1:1234"), 9090)
                .unwrap()
                .to_string(),
            "127.0.0.1:1234"
        );
        assert_eq!(
            listen_addr(Some("::1"), 80).unwrap().to_string(),
            "[::1]:80"
        );
        assert!(listen_addr(Some("localhost:x"), 80).is_err());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(args: &[&str]) -> Args {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("loadtester").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .args
    }

    #[test]
    fn flaggers_options_and_the_compatibility_mode_are_accepted() {
        let a = parse(&[]);
        assert_eq!(a.namespace_regexp, None);
        assert!(!a.background_cmd, "waiting for a command stays the default");
        assert_eq!((a.helm.as_str(), a.kubectl.as_str()), ("helm", "kubectl"));
        // Flagger's chart passes `-namespace-regexp=` (main.rs turns the single dash
        // into two) when its value is unset.
        let a = parse(&["--namespace-regexp=", "--timeout=1h"]);
        assert_eq!(a.namespace_regexp.as_deref(), Some(""));
        let a = parse(&[
            "--namespace-regexp=^(test|staging)$",
            "--background-cmd",
            "--helm=/opt/helm/helm",
            "--kubectl=/opt/bin/kubectl",
        ]);
        assert_eq!(a.namespace_regexp.as_deref(), Some("^(test|staging)$"));
        assert!(a.background_cmd);
        assert_eq!(a.helm, "/opt/helm/helm");
        assert_eq!(a.kubectl, "/opt/bin/kubectl");
    }

    #[tokio::test]
    async fn an_invalid_namespace_regexp_stops_the_start_naming_the_flag() {
        let mut a = parse(&["--namespace-regexp=(unclosed", "--listen=127.0.0.1:0"]);
        a.log_level = "off".into();
        let err = run(a).await.unwrap_err().to_string();
        assert!(err.contains("--namespace-regexp"), "{err}");
    }
}
