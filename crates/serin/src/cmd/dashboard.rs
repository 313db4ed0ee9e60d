//! `serin dashboard`: a live web page on loopback. The binary serves the page (one
//! HTML file with its script and styles, no CDN) and a small API it reads from the
//! cluster through watches on canaries and events:
//!
//! - `GET /api/canaries`: every canary's view (as `serin status -o json`) with the
//!   history the dashboard saw: canary weight over time and each metric's values.
//! - `GET /api/stream`: the same as server-sent events, one `canaries` event per change.
//! - `POST /api/canaries/{namespace}/{name}/{action}` (`promote`, `abort`, `retry`,
//!   `pause`, `resume`; JSON body `{"reason": "..."}`): writes the same request as the
//!   command and answers with the operator's verdict.
//!
//! A page on another site cannot make the browser act: writes need the header
//! `X-Serin-Dashboard` (a cross-origin page cannot send it without a CORS preflight,
//! which is never granted) and any request whose `Host` is not loopback is refused.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde::{Deserialize, Serialize};
use serin_api::Canary;
use serin_api::manual::{LastChecks, RequestKind};

use super::request::{self, Verdict};
use super::view::{CanaryView, Conn, Store};

const PAGE: &str = include_str!("dashboard.html");
/// Points kept per canary and per metric.
const HISTORY: usize = 2000;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Port on 127.0.0.1
    #[arg(long, default_value_t = 8090)]
    pub port: u16,
    /// Who the requests made from the page name (the kubeconfig context's user by
    /// default)
    #[arg(long)]
    pub by: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct WeightPoint {
    time: String,
    canary_weight: i32,
    phase: String,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct MetricPoint {
    time: String,
    value: f64,
    passed: bool,
}

#[derive(Default, Clone)]
struct History {
    weights: Vec<WeightPoint>,
    metrics: BTreeMap<String, Vec<MetricPoint>>,
    last_checked: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CanaryWithHistory {
    #[serde(flatten)]
    view: CanaryView,
    weights: Vec<WeightPoint>,
    metric_history: BTreeMap<String, Vec<MetricPoint>>,
}

struct Shared {
    client: Client,
    by: String,
    store: Mutex<Store>,
    history: Mutex<BTreeMap<String, History>>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn snapshot(&self) -> serde_json::Value {
        let views = self.store.lock().unwrap_or_else(|p| p.into_inner()).views();
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let canaries: Vec<CanaryWithHistory> = views
            .into_iter()
            .map(|view| {
                let h = history
                    .get(&format!("{}/{}", view.namespace, view.name))
                    .cloned()
                    .unwrap_or_default();
                CanaryWithHistory {
                    view,
                    weights: h.weights,
                    metric_history: h.metrics,
                }
            })
            .collect();
        serde_json::json!({ "canaries": canaries })
    }

    /// Notes what changed in a canary for its history.
    fn remember(&self, canary: &Canary) {
        let key = format!(
            "{}/{}",
            canary.namespace().unwrap_or_default(),
            canary.name_any()
        );
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let status = canary.status_or_default();
        let mut all = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let h = all.entry(key).or_default();
        let point = WeightPoint {
            time: now.clone(),
            canary_weight: status.canary_weight,
            phase: status.phase.as_str().to_string(),
        };
        let same = h
            .weights
            .last()
            .is_some_and(|p| p.canary_weight == point.canary_weight && p.phase == point.phase);
        if !same {
            h.weights.push(point);
            if h.weights.len() > HISTORY {
                h.weights.remove(0);
            }
        }
        if let Some(last) = LastChecks::of(canary)
            && h.last_checked.as_deref() != Some(last.time.as_str())
        {
            for r in last.results.iter().filter(|r| r.kind == "metric") {
                if let Some(value) = r.value {
                    let points = h.metrics.entry(r.name.clone()).or_default();
                    points.push(MetricPoint {
                        time: last.time.clone(),
                        value,
                        passed: r.passed,
                    });
                    if points.len() > HISTORY {
                        points.remove(0);
                    }
                }
            }
            h.last_checked = Some(last.time);
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::logging::init_json("warn");
    let client = args.conn.client().await?;
    let by = args.by.clone().unwrap_or_else(|| args.conn.who());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let addr = listener.local_addr()?;
    let (changed, _) = tokio::sync::watch::channel(0u64);
    let shared = Arc::new(Shared {
        client: client.clone(),
        by,
        store: Mutex::new(Store::default()),
        history: Mutex::new(BTreeMap::new()),
        changed,
    });
    tokio::spawn(follow(shared.clone(), args.conn.namespace.clone()));
    println!("serin dashboard on http://{addr}/");
    axum::serve(listener, router(shared, addr))
        .await
        .context("the dashboard server stopped")?;
    Ok(ExitCode::SUCCESS)
}

fn router(shared: Arc<Shared>, addr: SocketAddr) -> axum::Router {
    axum::Router::new()
        .route("/", get(page))
        .route("/api/canaries", get(canaries))
        .route("/api/stream", get(stream))
        .route("/api/canaries/{namespace}/{name}/{action}", post(act))
        .layer(middleware::from_fn_with_state(addr, loopback_only))
        .with_state(shared)
}

/// Refuses requests addressed to another host name (DNS rebinding).
async fn loopback_only(State(addr): State<SocketAddr>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let port = addr.port();
    let allowed = [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    if !allowed.iter().any(|a| a == host) {
        return (
            StatusCode::FORBIDDEN,
            "serin dashboard answers on loopback only\n",
        )
            .into_response();
    }
    next.run(req).await
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}

async fn canaries(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    Json(shared.snapshot())
}

async fn stream(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>> {
    let receiver = shared.changed.subscribe();
    let first = SseEvent::default()
        .event("canaries")
        .data(shared.snapshot().to_string());
    let updates = futures::stream::unfold((receiver, shared), |(mut rx, shared)| async move {
        rx.changed().await.ok()?;
        // Changes that arrive together (a status and its events) make one update.
        tokio::time::sleep(Duration::from_millis(50)).await;
        rx.borrow_and_update();
        let event = SseEvent::default()
            .event("canaries")
            .data(shared.snapshot().to_string());
        Some((Ok(event), (rx, shared)))
    });
    Sse::new(futures::stream::once(async move { Ok(first) }).chain(updates))
        .keep_alive(KeepAlive::default())
}

#[derive(Deserialize, Default)]
struct ActBody {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Serialize)]
struct ActAnswer {
    verdict: &'static str,
    message: String,
}

async fn act(
    State(shared): State<Arc<Shared>>,
    Path((namespace, name, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !headers.contains_key("x-serin-dashboard") {
        return (StatusCode::FORBIDDEN, "missing X-Serin-Dashboard header\n").into_response();
    }
    let Some(kind) = RequestKind::parse(&action) else {
        return (StatusCode::NOT_FOUND, format!("unknown action {action}\n")).into_response();
    };
    let body: ActBody = serde_json::from_slice(&body).unwrap_or_default();
    let reason = body
        .reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    let id = match request::write(
        &shared.client,
        &namespace,
        &name,
        kind,
        &shared.by,
        reason.as_deref(),
    )
    .await
    {
        Ok(id) => id,
        Err(e) => {
            return (
                StatusCode::CONFLICT,
                Json(ActAnswer {
                    verdict: "error",
                    message: format!("{e:#}"),
                }),
            )
                .into_response();
        }
    };
    let answer = match request::wait(
        &shared.client,
        &namespace,
        &name,
        &id,
        Duration::from_secs(15),
    )
    .await
    {
        Ok((Verdict::Done(m), _)) => (
            StatusCode::OK,
            ActAnswer {
                verdict: "done",
                message: m,
            },
        ),
        Ok((Verdict::Refused(m), _)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            ActAnswer {
                verdict: "refused",
                message: m,
            },
        ),
        Ok((Verdict::Pending, _)) => (
            StatusCode::ACCEPTED,
            ActAnswer {
                verdict: "pending",
                message: "written on the canary; no operator acted on it yet".into(),
            },
        ),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            ActAnswer {
                verdict: "error",
                message: format!("{e:#}"),
            },
        ),
    };
    (answer.0, Json(answer.1)).into_response()
}

enum Change {
    Canary(Box<watcher::Event<Canary>>),
    Event(Box<watcher::Event<Event>>),
}

/// Keeps the store current from watches and tells the page of every change.
async fn follow(shared: Arc<Shared>, namespace: Option<String>) {
    let (canaries, events): (Api<Canary>, Api<Event>) = match &namespace {
        Some(ns) => (
            Api::namespaced(shared.client.clone(), ns),
            Api::namespaced(shared.client.clone(), ns),
        ),
        None => (
            Api::all(shared.client.clone()),
            Api::all(shared.client.clone()),
        ),
    };
    use kube::runtime::WatchStreamExt;
    let mut changes = futures::stream::select(
        watcher(canaries, watcher::Config::default())
            .default_backoff()
            .map(|e| e.map(|e| Change::Canary(Box::new(e))))
            .boxed(),
        watcher(events, watcher::Config::default())
            .default_backoff()
            .map(|e| e.map(|e| Change::Event(Box::new(e))))
            .boxed(),
    );
    let key = |ns: Option<String>, name: String| format!("{}/{name}", ns.unwrap_or_default());
    while let Some(change) = changes.next().await {
        {
            let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
            match change {
                Ok(Change::Canary(e)) => match *e {
                    watcher::Event::Apply(c) | watcher::Event::InitApply(c) => {
                        shared.remember(&c);
                        store.canaries.insert(key(c.namespace(), c.name_any()), c);
                    }
                    watcher::Event::Delete(c) => {
                        store.canaries.remove(&key(c.namespace(), c.name_any()));
                    }
                    _ => continue,
                },
                Ok(Change::Event(e)) => match *e {
                    watcher::Event::Apply(e) | watcher::Event::InitApply(e) => {
                        if e.involved_object.kind.as_deref() != Some("Canary") {
                            continue;
                        }
                        store.events.insert(key(e.namespace(), e.name_any()), e);
                        // Bounded: the oldest events go first.
                        if store.events.len() > 5000
                            && let Some(oldest) = store
                                .events
                                .iter()
                                .min_by_key(|(_, e)| e.last_timestamp.clone().map(|t| t.0))
                                .map(|(k, _)| k.clone())
                        {
                            store.events.remove(&oldest);
                        }
                    }
                    watcher::Event::Delete(e) => {
                        store.events.remove(&key(e.namespace(), e.name_any()));
                    }
                    _ => continue,
                },
                Err(e) => {
                    tracing::debug!(msg = "watch error", error = %e);
                    continue;
                }
            }
        }
        shared.changed.send_modify(|v| *v += 1);
    }
}
