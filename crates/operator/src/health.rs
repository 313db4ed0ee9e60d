//! The operator's readiness (`/readyz`): ready when it has started, the API server
//! answered its last probe, and every watch has listed once and is not failing.
//!
//! - The API server is probed (`GET /version`, which every account may read) every
//!   [`PROBE_EVERY`], each probe bounded by [`PROBE_TIMEOUT`]; an answer older than
//!   [`PROBE_STALE`] counts as none (a frozen probe task is not "reachable").
//! - A watch is failing from the error its stream reports until it delivers again: an
//!   object, the end of a list, or (seen by [`crate::api_client`]'s layer) a watch
//!   request on its path answered 2xx, which is how a re-watch after an outage is
//!   known to work even when no object changed.
//!
//! Every reason for not being ready names the server (and the watch and its path), so
//! the body of a 503 (and the log line written when readiness changes) says what is
//! wrong where.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the API server is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How long one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A probe answer older than this is no answer.
pub const PROBE_STALE: Duration = Duration::from_secs(30);

/// Shared readiness state. Cheap to clone.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    started: bool,
    /// The API server's URL, for the messages.
    server: String,
    api: Option<Probe>,
    watches: BTreeMap<String, Watch>,
    /// The last verdict logged, so a change of readiness is logged once.
    last_logged: Option<bool>,
}

struct Probe {
    at: Instant,
    result: Result<(), String>,
}

struct Watch {
    /// The collection's path (`/apis/flagger.app/v1beta1/canaries`).
    path: String,
    synced: bool,
    failing: Option<String>,
}

impl Health {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The API server's URL, named in the messages.
    pub fn set_server(&self, server: &str) {
        self.state().server = server.trim_end_matches('/').to_string();
    }

    pub fn set_started(&self, started: bool) {
        self.state().started = started;
    }

    /// The result of one probe of the API server.
    pub fn api_probed(&self, result: Result<(), String>) {
        let mut state = self.state();
        let was_ok = state.api.as_ref().map(|p| p.result.is_ok());
        match (&result, was_ok) {
            (Err(e), None | Some(true)) => {
                tracing::warn!(msg = format!("API server {} unreachable: {e}", state.server))
            }
            (Ok(()), Some(false)) => {
                tracing::info!(msg = format!("API server {} answers again", state.server))
            }
            _ => {}
        }
        state.api = Some(Probe {
            at: Instant::now(),
            result,
        });
        drop(state);
        self.log_change();
    }

    /// A watch the controller runs, on the collection at `path`.
    pub fn watch_started(&self, name: &str, path: &str) {
        self.state().watches.insert(
            name.to_string(),
            Watch {
                path: path.to_string(),
                synced: false,
                failing: None,
            },
        );
    }

    /// The watch is gone (the controller stopped): it no longer counts.
    pub fn watch_stopped(&self, name: &str) {
        self.state().watches.remove(name);
    }

    /// The watch delivered (an object, or the end of its list).
    pub fn watch_delivered(&self, name: &str) {
        let changed = {
            let mut state = self.state();
            match state.watches.get_mut(name) {
                Some(w) => {
                    let changed = !w.synced || w.failing.is_some();
                    w.synced = true;
                    w.failing = None;
                    changed
                }
                None => false,
            }
        };
        if changed {
            self.log_change();
        }
    }

    /// The watch's stream reported an error.
    pub fn watch_failed(&self, name: &str, error: &str) {
        if let Some(w) = self.state().watches.get_mut(name) {
            w.failing = Some(error.to_string());
        }
        self.log_change();
    }

    /// A watch request on `path` was answered 2xx: the watches on it work again.
    pub fn watch_request_answered(&self, path: &str) {
        let changed = {
            let mut state = self.state();
            let mut changed = false;
            for w in state.watches.values_mut() {
                if w.path == path && w.failing.is_some() {
                    w.failing = None;
                    changed = true;
                }
            }
            changed
        };
        if changed {
            self.log_change();
        }
    }

    /// `Ok` when ready, else every reason why not.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let state = self.state();
        let mut reasons = Vec::new();
        if !state.started {
            reasons.push("the operator is starting".to_string());
        }
        let server = if state.server.is_empty() {
            "the API server".to_string()
        } else {
            format!("API server {}", state.server)
        };
        match &state.api {
            None => reasons.push(format!("{server} not probed yet")),
            Some(p) if p.at.elapsed() > PROBE_STALE => reasons.push(format!(
                "{server} not probed for {}s",
                p.at.elapsed().as_secs()
            )),
            Some(Probe { result: Err(e), .. }) => {
                reasons.push(format!("{server} unreachable: {e}"))
            }
            Some(_) => {}
        }
        for (name, w) in &state.watches {
            let at = format!("{}{}", state.server, w.path);
            if let Some(e) = &w.failing {
                reasons.push(format!("{name} watch ({at}) failing: {e}"));
            } else if !w.synced {
                reasons.push(format!("{name} watch ({at}) has not listed yet"));
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    pub fn is_ready(&self) -> bool {
        self.check().is_ok()
    }

    /// Logs when readiness changes (once per change, not per probe). Not being ready
    /// while starting (before the first lists) is not news.
    fn log_change(&self) {
        let verdict = self.check();
        let ready = verdict.is_ok();
        let mut state = self.state();
        if !state.started || state.last_logged == Some(ready) {
            return;
        }
        if state.last_logged.is_none() && !ready {
            return;
        }
        state.last_logged = Some(ready);
        drop(state);
        match verdict {
            Ok(()) => tracing::info!(msg = "ready: the API server answers and every watch works"),
            Err(reasons) => tracing::warn!(msg = format!("not ready: {}", reasons.join("; "))),
        }
    }
}

/// Probes the API server every [`PROBE_EVERY`] until dropped.
pub async fn probe_api_server(health: Health, client: kube::Client) {
    loop {
        let result = match tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "GET /version not answered within {}s",
                PROBE_TIMEOUT.as_secs()
            )),
        };
        health.api_probed(result);
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_started_reachable_and_every_watch_works() {
        let h = Health::default();
        h.set_server("https://10.0.0.1:6443/");
        assert!(!h.is_ready(), "not started");
        h.set_started(true);
        let reasons = h.check().unwrap_err();
        assert_eq!(reasons, ["API server https://10.0.0.1:6443 not probed yet"]);
        h.api_probed(Ok(()));
        assert!(h.is_ready());
        h.watch_started("Canary", "/apis/flagger.app/v1beta1/canaries");
        assert!(
            h.check().unwrap_err()[0].contains("has not listed yet"),
            "{:?}",
            h.check()
        );
        h.watch_delivered("Canary");
        assert!(h.is_ready());
        h.watch_failed("Canary", "connection refused");
        h.api_probed(Err(
            "GET https://10.0.0.1:6443/version: connection refused".into()
        ));
        let reasons = h.check().unwrap_err();
        assert_eq!(
            reasons,
            [
                "API server https://10.0.0.1:6443 unreachable: GET https://10.0.0.1:6443/version: connection refused",
                "Canary watch (https://10.0.0.1:6443/apis/flagger.app/v1beta1/canaries) failing: connection refused",
            ]
        );
        // The server is back, but the watch has not re-watched yet.
        h.api_probed(Ok(()));
        assert!(!h.is_ready());
        // A watch on another collection says nothing about this one.
        h.watch_request_answered("/api/v1/secrets");
        assert!(!h.is_ready());
        h.watch_request_answered("/apis/flagger.app/v1beta1/canaries");
        assert!(h.is_ready(), "{:?}", h.check());
        h.watch_stopped("Canary");
        h.set_started(false);
        assert!(!h.is_ready());
    }
}
