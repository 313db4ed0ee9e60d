//! Requests to act on a rollout by hand (`serin promote|abort|retry|pause|resume`, the
//! dashboard's buttons), carried in annotations on the Canary itself.
//!
//! Annotations, because a request then works through the Kubernetes API with any RBAC
//! a user can be given (`patch` on canaries), survives an operator restart, shows in
//! `kubectl describe`, and is left alone by Flux and Argo CD, whose field managers do
//! not own these keys. The operator owns their meaning: it acts on a request, records
//! an event naming who asked and why, writes the outcome in [`RESULT`] and removes the
//! request.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Canary;

/// The request: one of `promote`, `abort`, `retry`, `pause`, `resume`.
pub const REQUEST: &str = "serin.dev/request";
/// Who asked (free text written by the client; the API server's audit log is the
/// authority on who really patched the object).
pub const REQUEST_BY: &str = "serin.dev/request-by";
/// Why (optional).
pub const REQUEST_REASON: &str = "serin.dev/request-reason";
/// A token naming this request, so a client can find the outcome of its own request.
pub const REQUEST_ID: &str = "serin.dev/request-id";
/// Written by the operator: `ID done: MESSAGE` or `ID refused: MESSAGE`.
pub const RESULT: &str = "serin.dev/request-result";
/// Written by the operator while the canary is paused: the time it was paused.
pub const PAUSED: &str = "serin.dev/paused";
/// Written by the operator on resume: the progress deadline counts from this time.
pub const RESUMED: &str = "serin.dev/resumed";

/// Written by the operator after each run that checked something: the webhook and
/// metric results of that run as JSON ([`LastChecks`]), for `serin status` and the
/// dashboard.
pub const LAST_CHECKS: &str = "serin.dev/last-checks";

/// The keys a client writes for a request.
pub const REQUEST_KEYS: [&str; 4] = [REQUEST, REQUEST_BY, REQUEST_REASON, REQUEST_ID];

/// Longest `by` or `reason` carried into events; the rest is cut.
const MAX_TEXT: usize = 256;

/// What can be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Promote,
    Abort,
    Retry,
    Pause,
    Resume,
}

impl RequestKind {
    pub const ALL: [RequestKind; 5] = [
        RequestKind::Promote,
        RequestKind::Abort,
        RequestKind::Retry,
        RequestKind::Pause,
        RequestKind::Resume,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Promote => "promote",
            RequestKind::Abort => "abort",
            RequestKind::Retry => "retry",
            RequestKind::Pause => "pause",
            RequestKind::Resume => "resume",
        }
    }

    pub fn parse(s: &str) -> Option<RequestKind> {
        RequestKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// A request found on a Canary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `Err` holds the unknown value written in [`REQUEST`].
    pub kind: Result<RequestKind, String>,
    pub by: String,
    pub reason: Option<String>,
    pub id: String,
}

impl Request {
    /// "by alice" or "by alice: bad latency", for event texts.
    pub fn who_and_why(&self) -> String {
        match &self.reason {
            Some(r) => format!("by {}: {r}", self.by),
            None => format!("by {}", self.by),
        }
    }
}

/// The hand-operated state of a Canary: a pending request, and whether it is paused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ManualState {
    pub request: Option<Request>,
    /// When the canary was paused; `None` when it is not paused.
    pub paused: Option<DateTime<Utc>>,
    /// When it was last resumed.
    pub resumed: Option<DateTime<Utc>>,
}

fn bounded(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

fn time(s: Option<&String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl ManualState {
    /// Reads the annotations of a Canary. A paused mark that is not a time still counts
    /// as paused (from the epoch), so a damaged annotation never resumes a rollout.
    pub fn of(canary: &Canary) -> ManualState {
        let empty = BTreeMap::new();
        let a = canary.metadata.annotations.as_ref().unwrap_or(&empty);
        let request = a.get(REQUEST).map(|kind| Request {
            kind: RequestKind::parse(kind).ok_or_else(|| bounded(kind)),
            by: a
                .get(REQUEST_BY)
                .map(|s| bounded(s))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".to_string()),
            reason: a
                .get(REQUEST_REASON)
                .map(|s| bounded(s))
                .filter(|s| !s.is_empty()),
            id: a.get(REQUEST_ID).map(|s| bounded(s)).unwrap_or_default(),
        });
        let paused = a
            .get(PAUSED)
            .map(|s| time(Some(s)).unwrap_or(DateTime::<Utc>::UNIX_EPOCH));
        ManualState {
            request,
            paused,
            resumed: time(a.get(RESUMED)),
        }
    }
}

/// One webhook or metric result of a run.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// `metric`, or the webhook's type (`pre-rollout`, `confirm-rollout`...).
    pub kind: String,
    pub name: String,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl CheckResult {
    /// A result with its message cut to a bounded length.
    pub fn new(kind: &str, name: &str, passed: bool, message: Option<&str>) -> Self {
        CheckResult {
            kind: bounded(kind),
            name: bounded(name),
            passed,
            value: None,
            min: None,
            max: None,
            message: message.map(bounded),
        }
    }
}

/// The results of the last run that checked anything.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LastChecks {
    /// RFC 3339.
    pub time: String,
    pub results: Vec<CheckResult>,
}

impl LastChecks {
    pub fn of(canary: &Canary) -> Option<LastChecks> {
        let raw = canary.metadata.annotations.as_ref()?.get(LAST_CHECKS)?;
        serde_json::from_str(raw).ok()
    }
}

/// How the operator changes the annotations after a run: `Some(value)` sets a key,
/// `None` removes it (a JSON merge patch of `metadata.annotations`).
pub type AnnotationChanges = BTreeMap<String, Option<String>>;

/// The changes that close a request with its outcome.
pub fn close_request(request: &Request, refused: bool, message: &str) -> AnnotationChanges {
    let mut changes: AnnotationChanges =
        REQUEST_KEYS.iter().map(|k| (k.to_string(), None)).collect();
    let verdict = if refused { "refused" } else { "done" };
    let id = if request.id.is_empty() {
        "-"
    } else {
        request.id.as_str()
    };
    changes.insert(
        RESULT.to_string(),
        Some(format!("{id} {verdict}: {message}")),
    );
    changes
}

/// The outcome of a request as written in [`RESULT`]: `(id, refused, message)`.
pub fn parse_result(value: &str) -> Option<(&str, bool, &str)> {
    let (id, rest) = value.split_once(' ')?;
    if let Some(m) = rest.strip_prefix("done: ") {
        return Some((id, false, m));
    }
    rest.strip_prefix("refused: ").map(|m| (id, true, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(annotations: &[(&str, &str)]) -> Canary {
        let mut c: Canary = serde_json::from_value(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {"targetRef": {"kind": "Deployment", "name": "podinfo"}, "service": {"port": 80}}
        }))
        .unwrap();
        c.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        c
    }

    #[test]
    fn reads_a_request_and_bounds_its_texts() {
        let long = "x".repeat(1000);
        let c = canary(&[
            (REQUEST, " Abort "),
            (REQUEST_BY, "alice"),
            (REQUEST_REASON, &long),
            (REQUEST_ID, "r1"),
        ]);
        let r = ManualState::of(&c).request.unwrap();
        assert_eq!(r.kind, Ok(RequestKind::Abort));
        assert_eq!(r.by, "alice");
        assert_eq!(r.reason.unwrap().len(), MAX_TEXT + 3);
    }

    #[test]
    fn an_unknown_request_is_kept_as_text_and_a_damaged_pause_still_pauses() {
        let c = canary(&[(REQUEST, "explode"), (PAUSED, "yesterday")]);
        let s = ManualState::of(&c);
        assert_eq!(s.request.unwrap().kind, Err("explode".to_string()));
        assert!(s.paused.is_some());
    }

    #[test]
    fn a_result_round_trips() {
        let r = ManualState::of(&canary(&[(REQUEST, "pause"), (REQUEST_ID, "r7")]))
            .request
            .unwrap();
        let changes = close_request(&r, true, "not running");
        let v = changes[RESULT].clone().unwrap();
        assert_eq!(parse_result(&v), Some(("r7", true, "not running")));
        assert_eq!(changes[REQUEST], None);
    }
}
