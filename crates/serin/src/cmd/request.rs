//! `serin promote|abort|retry|pause|resume NAME`: writes the request in the Canary's
//! annotations (see `serin_api::manual`) and waits, from a watch, for the operator's
//! verdict, which it prints: done (exit 0) or refused with the reason (exit 1).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serin_api::Canary;
use serin_api::manual::{self, ManualState, RequestKind};

use super::view::{self, Conn};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The Canary's name
    pub name: String,
    /// Why (recorded in the event with who asked)
    #[arg(long)]
    pub reason: Option<String>,
    /// Who is asking (the kubeconfig context's user by default)
    #[arg(long)]
    pub by: Option<String>,
    /// Write the request and return without waiting for the operator
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the operator's verdict
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub conn: Conn,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    serin_api::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// The outcome of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Done(String),
    Refused(String),
    /// Written, not acted on yet.
    Pending,
}

/// Writes a request on a canary. Refuses to overwrite another pending request.
pub async fn write(
    client: &Client,
    namespace: &str,
    name: &str,
    kind: RequestKind,
    by: &str,
    reason: Option<&str>,
) -> anyhow::Result<String> {
    let api: Api<Canary> = Api::namespaced(client.clone(), namespace);
    let canary = api
        .get_opt(name)
        .await
        .with_context(|| format!("cannot read canary {name}.{namespace}"))?
        .with_context(|| format!("canary {name}.{namespace} not found"))?;
    if let Some(pending) = ManualState::of(&canary).request {
        let what = match &pending.kind {
            Ok(k) => k.as_str().to_string(),
            Err(v) => v.clone(),
        };
        bail!(
            "canary {name}.{namespace} already has a request waiting for the operator: {what} {} (id {})",
            pending.who_and_why(),
            pending.id
        );
    }
    let id = format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        std::process::id()
    );
    let annotations: serde_json::Map<String, serde_json::Value> = [
        (manual::REQUEST, Some(kind.as_str())),
        (manual::REQUEST_BY, Some(by)),
        // null removes a reason left from an earlier request.
        (manual::REQUEST_REASON, reason),
        (manual::REQUEST_ID, Some(id.as_str())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
    .collect();
    let patch = serde_json::json!({"metadata": {
        // The resourceVersion read above: a request written meanwhile is not replaced.
        "resourceVersion": canary.resource_version(),
        "annotations": annotations,
    }});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("cannot write the request on canary {name}.{namespace}"))?;
    Ok(id)
}

/// The verdict on request `id` as the canary shows it.
pub fn verdict_of(canary: &Canary, id: &str) -> Verdict {
    let result = canary.annotations().get(manual::RESULT);
    match result.and_then(|r| manual::parse_result(r)) {
        Some((rid, refused, message)) if rid == id => {
            if refused {
                Verdict::Refused(message.to_string())
            } else {
                Verdict::Done(message.to_string())
            }
        }
        _ => Verdict::Pending,
    }
}

/// Waits, from a watch on the canary, for the verdict on request `id`.
pub async fn wait(
    client: &Client,
    namespace: &str,
    name: &str,
    id: &str,
    timeout: Duration,
) -> anyhow::Result<(Verdict, Option<Canary>)> {
    let api: Api<Canary> = Api::namespaced(client.clone(), namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api, config).boxed();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let event = match next {
            Err(_) | Ok(None) => return Ok((Verdict::Pending, None)),
            Ok(Some(Err(e))) => {
                tracing::debug!(msg = "watch error", error = %e);
                continue;
            }
            Ok(Some(Ok(e))) => e,
        };
        let canary = match event {
            watcher::Event::Apply(c) | watcher::Event::InitApply(c) => c,
            watcher::Event::Delete(_) => bail!("canary {name}.{namespace} was deleted"),
            _ => continue,
        };
        let verdict = verdict_of(&canary, id);
        if verdict != Verdict::Pending {
            return Ok((verdict, Some(canary)));
        }
    }
}

pub async fn run(kind: RequestKind, args: Args) -> anyhow::Result<ExitCode> {
    let client = args.conn.client().await?;
    let namespace = args.conn.namespace_for(&client);
    let by = args.by.clone().unwrap_or_else(|| args.conn.who());
    let id = write(
        &client,
        &namespace,
        &args.name,
        kind,
        &by,
        args.reason.as_deref(),
    )
    .await?;
    let target = format!("{}.{namespace}", args.name);
    if args.no_wait {
        println!(
            "{target}: {} requested by {by} (id {id}); the operator acts on it from its watch",
            kind.as_str()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (verdict, canary) = wait(&client, &namespace, &args.name, &id, args.timeout).await?;
    match verdict {
        Verdict::Done(message) => {
            println!("{target}: {message}");
            if let Some(c) = canary {
                let status = c.status_or_default();
                println!(
                    "  {:<16} {}",
                    status.phase.as_str(),
                    view::bar(status.canary_weight)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Verdict::Refused(message) => {
            eprintln!("{target}: {} refused: {message}", kind.as_str());
            Ok(ExitCode::FAILURE)
        }
        Verdict::Pending => {
            eprintln!(
                "{target}: the {} request (id {id}) is written on the canary, but no operator acted on it within {}s; it stays until one does (is `serin operator` running?)",
                kind.as_str(),
                args.timeout.as_secs()
            );
            Ok(ExitCode::from(3))
        }
    }
}
