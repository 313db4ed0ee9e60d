//! Watches: a stream of newline-delimited `{"type":..,"object":..}` events read from the
//! store's change history, from a resourceVersion on. Each watcher keeps its own cursor
//! into the history, so a slow watcher never loses events; one that falls further behind
//! than the history reaches gets `410 Gone`, as on a real API server.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};

use crate::Sandbox;
use crate::convert::from_storage;
use crate::error::ApiError;
use crate::http::{Query, SandboxBody, Shape, Target, error_response, partial};
use crate::resources::{Conversion, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Change, EventType};
use crate::table::{IncludeObject, table};

struct Filter {
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    metadata_only: bool,
    /// `kubectl get -w`: every event's object is a one-row Table.
    table: Option<(IncludeObject, serin_api::clock::Clock)>,
}

impl Filter {
    fn served(&self, stored: &Value) -> Value {
        let v = from_storage(&self.rt, stored);
        if self.metadata_only { partial(&v) } else { v }
    }

    fn line_for(&self, kind: &str, served: &Value) -> Bytes {
        match &self.table {
            Some((include, clock)) => {
                let rv = served
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                let t = table(
                    &self.rt,
                    std::slice::from_ref(served),
                    rv,
                    *include,
                    clock.now(),
                );
                event_line(kind, &t)
            }
            None => event_line(kind, served),
        }
    }

    fn matches(&self, served: &Value, stored: &Value) -> bool {
        self.labels.matches(stored) && (self.fields.is_empty() || self.fields.matches(served))
    }

    /// The event line this watcher gets for a change, if any.
    fn line(&self, c: &Change) -> Option<Bytes> {
        if c.key != self.rt.storage {
            return None;
        }
        if let Some(ns) = &self.namespace
            && *ns != c.namespace
        {
            return None;
        }
        let plain = self.labels.is_empty()
            && self.fields.is_empty()
            && !self.metadata_only
            && self.table.is_none();
        let same_form = self.rt.conversion == Conversion::None
            && c.object.get("apiVersion").and_then(Value::as_str)
                == Some(self.rt.api_version().as_str())
            && c.object.get("kind").and_then(Value::as_str) == Some(self.rt.kind.as_str());
        if plain && same_form {
            return Some(
                c.line
                    .get_or_init(|| event_line(c.kind.as_str(), &c.object))
                    .clone(),
            );
        }
        let now = self.served(&c.object);
        let now_matches = self.matches(&now, &c.object);
        let kind = match c.kind {
            EventType::Added | EventType::Deleted => now_matches.then_some(c.kind),
            EventType::Modified => {
                let before = c
                    .previous
                    .as_ref()
                    .map(|p| self.matches(&self.served(p), p))
                    .unwrap_or(false);
                match (before, now_matches) {
                    (true, true) => Some(EventType::Modified),
                    (false, true) => Some(EventType::Added),
                    (true, false) => Some(EventType::Deleted),
                    (false, false) => None,
                }
            }
        }?;
        Some(self.line_for(kind.as_str(), &now))
    }
}

fn event_line(kind: &str, obj: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn bookmark(rt: &ResourceType, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta}),
    )
}

/// How long a watch from a resourceVersion the sandbox has not reached waits for it,
/// as kube-apiserver's watch cache does, before answering 504 Too large resource version.
const FRESH_WAIT: Duration = Duration::from_secs(3);

fn gone(rv: u64, oldest: u64) -> Bytes {
    let e = ApiError::gone(format!("too old resource version: {rv} ({oldest})"));
    event_line("ERROR", &e.status())
}

pub(crate) fn watch(sb: &Sandbox, t: &Target, q: &Query, shape: Shape) -> Response<SandboxBody> {
    let labels = match LabelSelector::parse(q.get("labelSelector").unwrap_or_default()) {
        Ok(l) => l,
        Err(e) => return error_response(&e),
    };
    let fields = match FieldSelector::parse(q.get("fieldSelector").unwrap_or_default()) {
        Ok(f) => f,
        Err(e) => return error_response(&e),
    };
    let start = match q.get("resourceVersion") {
        None | Some("0") => None,
        Some(rv) => match rv.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => {
                return error_response(&ApiError::bad_request(format!(
                    "invalid resourceVersion {rv:?}"
                )));
            }
        },
    };
    let send_initial = q.get("sendInitialEvents") == Some("true");
    let bookmarks = q.get("allowWatchBookmarks") == Some("true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let filter = Filter {
        rt: t.rt.clone(),
        namespace: if t.rt.namespaced {
            t.namespace.clone()
        } else {
            None
        },
        labels,
        fields,
        metadata_only: shape == Shape::Metadata,
        table: (shape == Shape::Table).then(|| {
            (
                IncludeObject::parse(q.get("includeObject")),
                sb.inner.options.clock,
            )
        }),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let sb = sb.clone();
    let bookmark_every = sb.inner.options.bookmark_interval;
    tokio::spawn(async move {
        let mut drops = sb.inner.drops.subscribe();
        drops.borrow_and_update();
        let (mut changes, mut cursor, initial) = {
            let state = sb.state();
            let changes = state.subscribe();
            match start {
                Some(rv) if !send_initial => (changes, rv, Vec::new()),
                _ => {
                    let rv = state.resource_version();
                    let ns = if filter.rt.namespaced {
                        filter.namespace.as_deref()
                    } else {
                        Some("")
                    };
                    let objs = match filter.fields.name() {
                        Some(name) => state
                            .get(&filter.rt.storage, ns.unwrap_or_default(), name)
                            .into_iter()
                            .collect(),
                        None => state.list(&filter.rt.storage, ns),
                    };
                    let lines: Vec<Bytes> = objs
                        .iter()
                        .filter_map(|o| {
                            let served = filter.served(o);
                            filter
                                .matches(&served, o)
                                .then(|| filter.line_for("ADDED", &served))
                        })
                        .collect();
                    (changes, rv, lines)
                }
            }
        };
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if send_initial && bookmarks && tx.send(bookmark(&filter.rt, cursor, true)).await.is_err() {
            return;
        }
        let deadline = timeout.map(|d| tokio::time::Instant::now() + d);
        let mut next_bookmark = tokio::time::Instant::now() + bookmark_every;
        // A resourceVersion ahead of the sandbox's (a client of a sandbox that restarted
        // with other data): served if the sandbox reaches it soon, else an ERROR event,
        // never a silent watch that skips what happens meanwhile.
        let mut too_large_at = (cursor > sb.state().resource_version())
            .then(|| tokio::time::Instant::now() + FRESH_WAIT);
        loop {
            changes.borrow_and_update();
            if too_large_at.is_some() && sb.state().resource_version() >= cursor {
                too_large_at = None;
            }
            let batch = sb.state().changes_since(cursor, 256);
            let batch = match batch {
                Ok(b) => b,
                Err(oldest) => {
                    let _ = tx.send(gone(cursor, oldest)).await;
                    return;
                }
            };
            if !batch.is_empty() {
                for c in batch {
                    cursor = c.rv;
                    if let Some(line) = filter.line(&c)
                        && tx.send(line).await.is_err()
                    {
                        return;
                    }
                }
                continue;
            }
            let until_deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let until_fresh = async {
                match too_large_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = until_fresh => {
                    let current = sb.state().resource_version();
                    let e = ApiError::resource_version_too_large(cursor, current);
                    let _ = tx.send(event_line("ERROR", &e.status())).await;
                    return;
                }
                _ = drops.changed() => return,
                _ = tx.closed() => return,
                _ = until_deadline => return,
                _ = tokio::time::sleep_until(next_bookmark) => {
                    next_bookmark = tokio::time::Instant::now() + bookmark_every;
                    if bookmarks && tx.send(bookmark(&filter.rt, cursor, false)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b))))
    });
    Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(StreamBody::new(stream).boxed_unsync())
        .unwrap_or_else(|_| Response::new(crate::http::full(Bytes::new())))
}
