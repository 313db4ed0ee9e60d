//! `serin alert test`: one test notification through an AlertProvider read from
//! files, so a webhook URL, Secret or proxy can be checked before a rollout needs it.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Secret;
use serin_api::load::{Object, read_files, to_object};
use serin_notify::post::redact;
use serin_notify::{
    Field, InMemoryLookup, Message, NotifyError, Severity, build_notifier, resolve_provider,
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Send one test notification through an AlertProvider. Exit 0 when the chat
    /// service answers 2xx, 1 otherwise, 2 when a file cannot be read.
    Test(TestArgs),
}

#[derive(clap::Args)]
struct TestArgs {
    // The files holding the AlertProvider and its Secret.
    #[command(flatten)]
    manifests: super::Manifests,
    /// The AlertProvider's name
    #[arg(long)]
    provider: String,
    /// The AlertProvider's namespace; objects written without one are in it
    /// [default: the namespace of the only provider of that name, else "default"]
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// The text of the test notification
    #[arg(long, default_value = "This is a test alert from serin.")]
    message: String,
    /// Severity of the test notification (info, warn, error): sets its colour
    #[arg(long, default_value = "info", value_parser = parse_severity)]
    severity: Severity,
    /// Longest time to wait for the chat service (Go duration)
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    timeout: Duration,
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    match s {
        "info" => Ok(Severity::Info),
        "warn" => Ok(Severity::Warn),
        "error" => Ok(Severity::Error),
        other => Err(format!("{other:?} is not info, warn or error")),
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match serin_api::duration::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("the timeout must be more than zero".into()),
        Err(e) => Err(e.to_string()),
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Test(args) => test(args).await,
    }
}

async fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let docs = match read_files(&args.manifests.files) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let default_namespace = args.namespace.as_deref().unwrap_or("default");
    let mut lookup = InMemoryLookup::new();
    for doc in &docs {
        let at = format!("{}:{}", doc.source, doc.line);
        let namespace = doc.namespace().unwrap_or(default_namespace).to_string();
        if doc.kind() == "Secret" && doc.api_version() == "v1" {
            let secret: Secret = serde_json::from_value(doc.value.clone())
                .with_context(|| format!("{at}: invalid Secret"))?;
            let mut data: BTreeMap<String, Vec<u8>> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            // As the API server does: stringData wins over data.
            for (k, v) in secret.string_data.unwrap_or_default() {
                data.insert(k, v.into_bytes());
            }
            lookup.add_secret(&namespace, doc.name(), data);
            continue;
        }
        if doc.is_flagger() && doc.kind() == "AlertProvider" {
            let Object::AlertProvider(mut provider) =
                to_object(doc).with_context(|| format!("{at}: invalid AlertProvider"))?
            else {
                continue;
            };
            provider.metadata.namespace = Some(namespace);
            lookup.add_provider(*provider);
        }
    }

    let namespace = match &args.namespace {
        Some(ns) => ns.clone(),
        None => only_namespace_of(&lookup, &args.provider)?,
    };
    let config = resolve_provider(&lookup, &namespace, &args.provider, args.timeout).await?;
    let notifier = build_notifier(&config)
        .with_context(|| format!("alert provider {namespace}/{}", args.provider))?;
    let message = Message {
        name: args.provider.clone(),
        namespace: namespace.clone(),
        phase: None,
        text: args.message,
        fields: vec![
            Field::new("Provider", format!("{namespace}/{}", args.provider)),
            Field::new("Type", config.type_.clone()),
        ],
        severity: args.severity,
    };
    println!(
        "POST {} ({} provider {namespace}/{})",
        redact(&config.address),
        config.type_,
        args.provider
    );
    match notifier.post(&message).await {
        Ok(delivery) => {
            println!("status: {}", delivery.status);
            println!("body: {}", delivery.body);
            Ok(ExitCode::SUCCESS)
        }
        Err(NotifyError::Status { status, body, .. }) => {
            println!("status: {status}");
            println!("body: {body}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            println!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Without `--namespace`, the provider's name must be unambiguous in the files.
fn only_namespace_of(lookup: &InMemoryLookup, name: &str) -> anyhow::Result<String> {
    let namespaces: Vec<String> = lookup
        .providers()
        .iter()
        .filter(|p| p.metadata.name.as_deref() == Some(name))
        .filter_map(|p| p.metadata.namespace.clone())
        .collect();
    match namespaces.as_slice() {
        [one] => Ok(one.clone()),
        [] => {
            let known: Vec<String> = lookup
                .providers()
                .iter()
                .map(|p| {
                    format!(
                        "{}/{}",
                        p.metadata.namespace.as_deref().unwrap_or_default(),
                        p.metadata.name.as_deref().unwrap_or_default()
                    )
                })
                .collect();
            if known.is_empty() {
                bail!("no AlertProvider named {name:?} in the files (they hold no AlertProvider)")
            }
            bail!(
                "no AlertProvider named {name:?} in the files (they hold {})",
                known.join(", ")
            )
        }
        many => bail!(
            "AlertProvider {name:?} is in several namespaces ({}): choose one with --namespace",
            many.join(", ")
        ),
    }
}
