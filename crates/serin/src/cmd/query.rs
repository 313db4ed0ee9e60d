//! `serin query`: render one metric query of a Canary, with the MetricTemplates of the
//! same files, and run it against the template's provider (Prometheus, Datadog,
//! CloudWatch...). Users run it to try a template before a rollout, typically through
//! a port-forward (`--address http://localhost:9090`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Secret;
use serin_api::canary::CanaryMetric;
use serin_api::load::{Object, read_files, to_object};
use serin_api::{Canary, MetricTemplate};
use serin_metrics::check::{
    ProviderContext, QuerySource, build_provider, config_failure_message, find_template, prepare,
    template_key,
};
use serin_metrics::{BuiltinMetric, ProviderConfigError};

#[derive(clap::Args)]
pub struct Args {
    // The files with the Canary, its MetricTemplates and their Secrets.
    #[command(flatten)]
    pub manifests: super::Manifests,
    /// Name of the Canary
    #[arg(long, value_name = "NAME")]
    pub canary: String,
    /// Namespace of the Canary (needed only when several Canaries have that name)
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Name of the metric in the Canary's analysis
    #[arg(long, value_name = "NAME")]
    pub metric: String,
    /// Address of the provider to query, replacing every configured address (e.g. a
    /// port-forward to Prometheus)
    #[arg(long, visible_alias = "prometheus", value_name = "URL")]
    pub address: Option<String>,
    /// Print the rendered query before the value
    #[arg(long)]
    pub show_query: bool,
    /// Evaluate the query at this Unix time (seconds) instead of now
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub time: Option<f64>,
    /// How long to wait for the provider (Go duration: 5s, 1m)
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub timeout: String,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let timeout = serin_api::duration::parse_duration(&args.timeout)
        .context("--timeout")
        .and_then(|d| {
            if d.is_zero() {
                bail!("--timeout must be more than 0s")
            } else {
                Ok(d)
            }
        })?;
    // Objects without a namespace land where `kubectl apply -n NS` would put them.
    let default_namespace = args.namespace.as_deref().unwrap_or("default");
    let loaded = Loaded::read(&args.manifests.files, default_namespace)?;
    let canary = loaded.canary(&args.canary, args.namespace.as_deref())?;
    let metric = find_metric(canary, &args.metric)?;

    let template = find_template(canary, metric, &loaded.templates);
    let prepared = match prepare(canary, metric, template) {
        Ok(p) => p,
        Err(e) => {
            if let Some((name, namespace)) = template_key(canary, metric)
                && template.is_none()
            {
                bail!(
                    "MetricTemplate {name} in namespace {namespace} (templateRef of metric {}) is not in the given files; add its file with -f",
                    metric.name
                );
            }
            return Err(e.into());
        }
    };
    if args.show_query {
        println!("{}", prepared.query.trim());
    }

    let secret = secret_data(&loaded, canary, &prepared, args.address.is_some())?;
    let provider_type = prepared
        .provider
        .as_ref()
        .map(|p| p.type_.as_str())
        .unwrap_or_default();
    // Keptn and the external metrics API are read through the Kubernetes API: the
    // current kubeconfig context, as kubectl would use it.
    let kube = if matches!(provider_type, "keptn" | "externalmetrics") {
        match kube::Client::try_default().await {
            Ok(c) => Some(c),
            Err(e) if provider_type == "keptn" || args.address.is_none() => {
                bail!("the {provider_type} provider reads the Kubernetes API: {e}")
            }
            Err(_) => None,
        }
    } else {
        None
    };
    let context = ProviderContext {
        operator_metrics_server: None,
        address_override: args.address.clone(),
        timeout,
        evaluation_time: args.time,
        kube,
    };
    let provider = match build_provider(canary, &prepared, secret.as_ref(), &context) {
        Ok(p) => p,
        Err(e @ ProviderConfigError::NoAddress { .. }) => {
            bail!("{e}, or pass --address URL")
        }
        Err(e) => bail!("{}", config_failure_message(&prepared, &e)),
    };
    let value = provider.run_query(&prepared.query).await?;
    println!("{} = {value}", args.metric);
    Ok(ExitCode::SUCCESS)
}

/// The Flagger objects and Secrets of the given files.
struct Loaded {
    canaries: Vec<Canary>,
    templates: Vec<MetricTemplate>,
    secrets: Vec<Secret>,
}

impl Loaded {
    fn read(files: &[PathBuf], default_namespace: &str) -> anyhow::Result<Self> {
        let mut loaded = Loaded {
            canaries: Vec::new(),
            templates: Vec::new(),
            secrets: Vec::new(),
        };
        for doc in read_files(files)? {
            let at = || format!("{}:{}: {} {}", doc.source, doc.line, doc.kind(), doc.name());
            match to_object(&doc).with_context(at)? {
                Object::Canary(c) => loaded.canaries.push(*c),
                Object::MetricTemplate(t) => loaded.templates.push(*t),
                Object::Other(value) if doc.kind() == "Secret" && doc.api_version() == "v1" => {
                    loaded
                        .secrets
                        .push(serde_json::from_value(value).with_context(at)?);
                }
                _ => {}
            }
        }
        let fill = |ns: &mut Option<String>| {
            if ns.as_deref().is_none_or(str::is_empty) {
                *ns = Some(default_namespace.to_string());
            }
        };
        loaded
            .canaries
            .iter_mut()
            .for_each(|c| fill(&mut c.metadata.namespace));
        loaded
            .templates
            .iter_mut()
            .for_each(|t| fill(&mut t.metadata.namespace));
        loaded
            .secrets
            .iter_mut()
            .for_each(|s| fill(&mut s.metadata.namespace));
        Ok(loaded)
    }

    fn canary(&self, name: &str, namespace: Option<&str>) -> anyhow::Result<&Canary> {
        let named: Vec<&Canary> = self
            .canaries
            .iter()
            .filter(|c| c.metadata.name.as_deref() == Some(name))
            .collect();
        let found: Vec<&Canary> = named
            .iter()
            .copied()
            .filter(|c| namespace.is_none_or(|ns| c.metadata.namespace.as_deref() == Some(ns)))
            .collect();
        match (found.as_slice(), namespace) {
            ([one], _) => Ok(one),
            ([], _) if self.canaries.is_empty() => bail!("no Canary in the given files"),
            ([], Some(ns)) if !named.is_empty() => bail!(
                "Canary {name} is not in namespace {ns} (found in: {})",
                namespaces(&named)
            ),
            ([], _) => bail!(
                "no Canary named {name} in the given files (found: {})",
                self.canaries
                    .iter()
                    .map(|c| c.id())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (_, _) => bail!(
                "several Canaries are named {name} (namespaces: {}): pass --namespace",
                namespaces(&found)
            ),
        }
    }
}

fn namespaces(canaries: &[&Canary]) -> String {
    canaries
        .iter()
        .map(|c| c.metadata.namespace.clone().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The metric by name; an old built-in name finds its new name and back.
fn find_metric<'a>(canary: &'a Canary, name: &str) -> anyhow::Result<&'a CanaryMetric> {
    let metrics: &[CanaryMetric] = canary
        .analysis()
        .map(|a| a.metrics.as_slice())
        .unwrap_or_default();
    if let Some(m) = metrics.iter().find(|m| m.name == name) {
        return Ok(m);
    }
    if let Some(builtin) = BuiltinMetric::from_name(name)
        && let Some(m) = metrics
            .iter()
            .find(|m| BuiltinMetric::from_name(&m.name) == Some(builtin))
    {
        return Ok(m);
    }
    if metrics.is_empty() {
        bail!("Canary {} has no metrics in its analysis", canary.id());
    }
    bail!(
        "Canary {} has no metric {name} (metrics: {})",
        canary.id(),
        metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The data of the Secret a template's `provider.secretRef` names, from the files.
/// With `--prometheus`, a Secret that is not in the files is not needed: the query
/// goes out without credentials.
fn secret_data(
    loaded: &Loaded,
    canary: &Canary,
    prepared: &serin_metrics::PreparedQuery,
    address_overridden: bool,
) -> anyhow::Result<Option<BTreeMap<String, Vec<u8>>>> {
    let Some(secret_ref) = prepared
        .provider
        .as_ref()
        .and_then(|p| p.secret_ref.as_ref())
    else {
        return Ok(None);
    };
    let namespace = match &prepared.source {
        QuerySource::Template { namespace, .. } => namespace.clone(),
        _ => canary.metadata.namespace.clone().unwrap_or_default(),
    };
    let secret = loaded.secrets.iter().find(|s| {
        s.metadata.name.as_deref() == Some(secret_ref.name.as_str())
            && s.metadata.namespace.as_deref().unwrap_or_default() == namespace
    });
    let Some(secret) = secret else {
        if address_overridden {
            eprintln!(
                "serin: Secret {} in namespace {namespace} (provider.secretRef) is not in the given files: querying without credentials",
                secret_ref.name
            );
            return Ok(None);
        }
        bail!(
            "Secret {} in namespace {namespace} (provider.secretRef) is not in the given files; add its file with -f",
            secret_ref.name
        );
    };
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    Ok(Some(data))
}
