//! `serin operator`: the controller against a Kubernetes cluster.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use serin_api::clock::Clock;
use serin_metrics::check::ProviderContext;
use serin_notify::{AlertMetrics, Dispatcher, KubeLookup};
use serin_operator::api_client::ApiRequestLayer;
use serin_operator::controller::{self, Context, ControllerOptions};
use serin_operator::health::Health;
use serin_operator::labels::LabelOptions;
use serin_operator::leader::LeaderElection;
use serin_operator::observer::LiveChecks;
use serin_operator::telemetry::Telemetry;
use serin_operator::webhook::{WebhookCaller, WebhookToken};

#[derive(clap::Args)]
#[group(id = "OperatorArgs")]
pub struct Args {
    /// Path to a kubeconfig; in-cluster configuration (or $KUBECONFIG) when unset
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Watch canaries in this namespace only (all namespaces when unset)
    #[arg(long)]
    pub namespace: Option<String>,
    /// Traffic provider of canaries that name none
    #[arg(long, default_value = "istio", value_parser = ["istio", "kubernetes"])]
    pub mesh_provider: String,
    /// Prometheus address for the built-in metrics
    #[arg(long, default_value = "http://prometheus:9090")]
    pub metrics_server: String,
    /// Elect a leader on a coordination.k8s.io Lease so that only one replica acts
    /// (Flagger's spelling `--enable-leader-election` works too)
    #[arg(
        long,
        alias = "enable-leader-election",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        action = clap::ArgAction::Set
    )]
    pub leader_elect: bool,
    /// Namespace of the leader election Lease (the pod's namespace by default)
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// At most this many canary analyses at once; others wait queued
    #[arg(long)]
    pub max_concurrent_canaries: Option<usize>,
    /// Labels that select a workload's pods, in the order they are looked for
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "app,name,app.kubernetes.io/name"
    )]
    pub selector_labels: Vec<String>,
    /// Prefixes of the target's labels and annotations copied to the primary (`*`: all)
    #[arg(long, value_delimiter = ',')]
    pub include_label_prefix: Vec<String>,
    /// Track the ConfigMaps and Secrets a target uses (copies for the primary, a
    /// change is a new revision)
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "true",
        action = clap::ArgAction::Set
    )]
    pub enable_config_tracking: bool,
    /// Webhook receiving every event of canaries that have no `event` webhook
    #[arg(long, env = "EVENT_WEBHOOK_URL")]
    pub event_webhook: Option<String>,
    /// Refuse MetricTemplate and AlertProvider references to other namespaces
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        action = clap::ArgAction::Set
    )]
    pub no_cross_namespace_refs: bool,
    /// Secret (NAMESPACE/NAME, key `token`) holding a bearer token for webhooks (as
    /// the load tester's --token expects): sent as `Authorization: Bearer` only to the
    /// webhook URLs under a --webhook-token-url prefix, read through the API at each call
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub webhook_token_secret: Option<String>,
    /// Webhook URLs the token may be sent to (scheme, host, port and path prefix, e.g.
    /// http://flagger-loadtester.test/); repeat or separate with commas
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    pub webhook_token_url: Vec<String>,
    /// Port of /metrics, /healthz and /readyz
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Log level (RUST_LOG overrides)
    #[arg(long, default_value = "info")]
    pub log_level: String,
    #[command(flatten)]
    pub alerts: Box<serin_notify::Args>,
}

pub(crate) async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    client_reporting(kubeconfig, None).await
}

/// The client, its failed requests naming the server and the request, and (with
/// `health`) its watch answers reported to the operator's readiness.
pub(crate) async fn client_reporting(
    kubeconfig: Option<&PathBuf>,
    health: Option<&Health>,
) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("invalid kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes configuration found (in cluster, $KUBECONFIG or ~/.kube/config); pass --kubeconfig")?,
    };
    let server = config.cluster_url.to_string();
    if let Some(h) = health {
        h.set_server(&server);
    }
    let builder = kube::client::ClientBuilder::try_from(with_user_agent(config))
        .context("cannot build the Kubernetes client")?;
    Ok(builder
        .with_layer(&ApiRequestLayer::new(&server, health.cloned()))
        .build())
}

/// serin names itself to the API server: its User-Agent is the field manager of
/// every write that names none (kubectl shows "serin" in managedFields, as "flagger"
/// for Flagger), and the user in audit logs' userAgent.
fn with_user_agent(mut config: kube::Config) -> kube::Config {
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("serin/", env!("CARGO_PKG_VERSION"))),
    ));
    config
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::logging::init_json(&args.log_level);
    if args.max_concurrent_canaries == Some(0) {
        bail!("--max-concurrent-canaries must be at least 1");
    }
    let telemetry = Telemetry::new(&args.mesh_provider);
    let client = client_reporting(args.kubeconfig.as_ref(), Some(telemetry.health())).await?;
    let clock = Clock::system();
    let webhook_token = match &args.webhook_token_secret {
        Some(secret) => Some(
            WebhookToken::new(client.clone(), secret, &args.webhook_token_url)
                .map_err(anyhow::Error::msg)?,
        ),
        None if !args.webhook_token_url.is_empty() => {
            bail!("--webhook-token-url needs --webhook-token-secret (the Secret with the token)")
        }
        None => None,
    };

    let alert_metrics = AlertMetrics::new();
    telemetry.register(|r| alert_metrics.register(r));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", args.port))
        .await
        .with_context(|| format!("cannot listen on port {}", args.port))?;
    tracing::info!(
        msg = format!(
            "serving /metrics, /healthz and /readyz on port {}",
            args.port
        )
    );
    let server = tokio::spawn(telemetry.clone().serve(listener));
    let probe = tokio::spawn(serin_operator::health::probe_api_server(
        telemetry.health().clone(),
        client.clone(),
    ));

    let dispatcher = Dispatcher::from_args(
        &args.alerts,
        Arc::new(KubeLookup::new(client.clone())),
        alert_metrics,
    )
    .context("invalid alert settings")?;
    let checks = Arc::new(LiveChecks {
        client: client.clone(),
        webhooks: WebhookCaller {
            token: webhook_token,
            ..Default::default()
        },
        metrics: ProviderContext {
            operator_metrics_server: Some(args.metrics_server.clone()).filter(|s| !s.is_empty()),
            kube: Some(client.clone()),
            ..Default::default()
        },
    });
    let ctx = Context::new(
        client.clone(),
        clock,
        ControllerOptions {
            namespace: args.namespace.clone(),
            mesh_provider: Some(args.mesh_provider.clone()),
            max_concurrent_canaries: args.max_concurrent_canaries,
            labels: LabelOptions {
                selector_labels: args.selector_labels.clone(),
                include_label_prefix: args.include_label_prefix.clone(),
            },
            config_tracking: args.enable_config_tracking,
            event_webhook: args.event_webhook.clone().filter(|u| !u.trim().is_empty()),
            no_cross_namespace_refs: args.no_cross_namespace_refs,
        },
        checks,
    )
    .with_alerts(dispatcher)
    .with_telemetry(telemetry.clone());
    telemetry.set_ready(true);

    tracing::info!(
        msg = "starting the canary controller",
        namespace = args.namespace.as_deref().unwrap_or("(all)"),
        mesh_provider = %args.mesh_provider
    );
    let ctx = Arc::new(ctx);
    let election = args.leader_elect.then(|| {
        let namespace = args
            .leader_election_namespace
            .clone()
            .or_else(|| args.namespace.clone())
            .unwrap_or_else(|| client.default_namespace().to_string());
        let identity = format!(
            "{}_{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "serin".into()),
            std::process::id()
        );
        tracing::info!(
            msg = format!("waiting for leadership on lease {namespace}/serin-leader as {identity}")
        );
        LeaderElection::new(client.clone(), &namespace, "serin-leader", &identity, clock)
    });
    let work = async {
        match election.clone() {
            Some(election) => match election.run_as_leader(controller::run(ctx)).await {
                Ok(()) => Err(anyhow::anyhow!("the canary watch ended")),
                Err(lost) => Err(anyhow::anyhow!("{lost}; exiting so another replica acts")),
            },
            None => {
                controller::run(ctx).await;
                Err(anyhow::anyhow!("the canary watch ended"))
            }
        }
    };
    let result = tokio::select! {
        r = work => r,
        _ = shutdown_signal() => {
            tracing::info!(msg = "shutting down");
            Ok(ExitCode::SUCCESS)
        }
    };
    // The controller has stopped (its future is dropped): the Lease can go to another
    // replica now rather than once it expires.
    if let Some(election) = &election {
        release(election).await;
    }
    probe.abort();
    server.abort();
    result
}

/// Releases the Lease if this replica holds it, within a few seconds.
async fn release(election: &LeaderElection) {
    match tokio::time::timeout(std::time::Duration::from_secs(5), election.release()).await {
        Ok(Ok(true)) => {
            tracing::info!(msg = format!("released the leader lease as {}", election.identity()))
        }
        Ok(Ok(false)) => {}
        Ok(Err(e)) => tracing::warn!(msg = format!("cannot release the leader lease: {e}")),
        Err(_) => tracing::warn!(msg = "cannot release the leader lease: no answer within 5s"),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
