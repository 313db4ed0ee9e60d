//! `serin status [NAME] [-n NS | -A] [--watch] [-o text|json|yaml]`: every canary's
//! phase, the primary/canary bar, iteration, failed checks against the threshold, the
//! last metric values against their ranges, the gates that hold it and its last events.
//! `--watch` redraws from watches on canaries and events, not by polling.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serin_api::Canary;

use super::view::{self, CanaryView, Conn, Store};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// One canary (all canaries of the namespace when unset)
    pub name: Option<String>,
    /// Canaries of every namespace
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Redraw on every change, from watches
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Output format
    #[arg(short = 'o', long, default_value = "text", value_parser = ["text", "json", "yaml"])]
    pub output: String,
    /// Events shown per canary
    #[arg(long, default_value_t = 5)]
    pub events: usize,
    #[command(flatten)]
    pub conn: Conn,
}

fn render(args: &Args, views: &[CanaryView]) -> anyhow::Result<String> {
    let views: Vec<&CanaryView> = views
        .iter()
        .filter(|v| args.name.as_deref().is_none_or(|n| n == v.name))
        .collect();
    Ok(match args.output.as_str() {
        "json" => {
            let mut s = if args.name.is_some() && views.len() == 1 {
                serde_json::to_string_pretty(views[0])?
            } else {
                serde_json::to_string_pretty(&views)?
            };
            s.push('\n');
            s
        }
        "yaml" => {
            if args.name.is_some() && views.len() == 1 {
                serde_saphyr::to_string(views[0])?
            } else {
                serde_saphyr::to_string(&views)?
            }
        }
        _ => {
            if views.is_empty() {
                return Ok("no canaries found\n".to_string());
            }
            views
                .iter()
                .map(|v| view::text(v, args.events))
                .collect::<Vec<_>>()
                .join("\n")
        }
    })
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.all_namespaces && args.conn.namespace.is_some() {
        bail!("give either -n NAMESPACE or -A, not both");
    }
    let client = args.conn.client().await?;
    let namespace = (!args.all_namespaces).then(|| args.conn.namespace_for(&client));
    if !args.watch {
        let views = view::list(&client, namespace.as_deref()).await?;
        if let Some(name) = &args.name
            && !views.iter().any(|v| &v.name == name)
        {
            bail!(
                "canary {name} not found in namespace {}",
                namespace.as_deref().unwrap_or("(all)")
            );
        }
        print!("{}", render(&args, &views)?);
        return Ok(ExitCode::SUCCESS);
    }
    watch(args, client, namespace).await
}

enum Change {
    Canary(Box<watcher::Event<Canary>>),
    Event(Box<watcher::Event<Event>>),
}

async fn watch(
    args: Args,
    client: kube::Client,
    namespace: Option<String>,
) -> anyhow::Result<ExitCode> {
    let (canaries, events): (Api<Canary>, Api<Event>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let mut config = watcher::Config::default();
    if let Some(name) = &args.name {
        config = config.fields(&format!("metadata.name={name}"));
    }
    let changes = futures::stream::select(
        watcher(canaries, config)
            .map(|e| e.map(|e| Change::Canary(Box::new(e))))
            .boxed(),
        watcher(events, watcher::Config::default())
            .map(|e| e.map(|e| Change::Event(Box::new(e))))
            .boxed(),
    );
    let mut changes = changes.boxed();
    let mut store = Store::default();
    let tty = std::io::stdout().is_terminal();
    let mut shown = String::new();
    loop {
        let Some(first) = changes.next().await else {
            return Ok(ExitCode::SUCCESS);
        };
        apply(&mut store, first);
        // Changes that arrive together (one run writes a status and several events)
        // make one redraw.
        while let Ok(Some(more)) =
            tokio::time::timeout(Duration::from_millis(50), changes.next()).await
        {
            apply(&mut store, more);
        }
        let text = render(&args, &store.views())?;
        if text == shown {
            continue;
        }
        shown = text;
        let mut out = std::io::stdout().lock();
        if tty && args.output == "text" {
            write!(out, "\x1b[H\x1b[2J")?;
        } else if args.output == "yaml" {
            writeln!(out, "---")?;
        }
        write!(out, "{shown}")?;
        if !tty && args.output == "text" {
            writeln!(out)?;
        }
        out.flush()?;
    }
}

fn apply(store: &mut Store, change: Result<Change, watcher::Error>) {
    let key = |ns: Option<String>, name: String| format!("{}/{name}", ns.unwrap_or_default());
    match change {
        Ok(Change::Canary(e)) => match *e {
            watcher::Event::Apply(c) | watcher::Event::InitApply(c) => {
                store.canaries.insert(key(c.namespace(), c.name_any()), c);
            }
            watcher::Event::Delete(c) => {
                store.canaries.remove(&key(c.namespace(), c.name_any()));
            }
            watcher::Event::Init => store.canaries.clear(),
            watcher::Event::InitDone => {}
        },
        Ok(Change::Event(e)) => match *e {
            watcher::Event::Apply(ev) | watcher::Event::InitApply(ev) => {
                if ev.involved_object.kind.as_deref() == Some("Canary") {
                    store.events.insert(key(ev.namespace(), ev.name_any()), ev);
                }
            }
            watcher::Event::Delete(ev) => {
                store.events.remove(&key(ev.namespace(), ev.name_any()));
            }
            watcher::Event::Init => store.events.clear(),
            watcher::Event::InitDone => {}
        },
        Err(e) => tracing::debug!(msg = "watch error", error = %e),
    }
}
