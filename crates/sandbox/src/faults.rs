//! Fault injection for reliability tests: per resource and verb, a rate of 409 Conflict and
//! 500 answers and a delay before answering.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::ApiError;

/// The API verbs faults can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    fn is_write(self) -> bool {
        matches!(
            self,
            Self::Create | Self::Update | Self::Patch | Self::Delete | Self::DeleteCollection
        )
    }
}

/// What happens to matching requests. Rates are between 0.0 and 1.0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultRule {
    /// Share of writes answered `409 Conflict` (ignored for reads).
    pub conflict_rate: f64,
    /// Share of requests answered `500 Internal Server Error`.
    pub error_rate: f64,
    /// Wait this long (on tokio's clock) before answering.
    pub delay: Duration,
}

/// The fault rules of a sandbox; `resource` is the plural name (`deployments`) or `*` for all.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    rules: Arc<Mutex<HashMap<(String, Verb), FaultRule>>>,
    rng: Arc<Mutex<u64>>,
}

/// The decision for one request.
pub(crate) struct Injected {
    pub delay: Duration,
    pub error: Option<ApiError>,
}

impl Faults {
    pub fn set(&self, resource: &str, verb: Verb, rule: FaultRule) {
        if let Ok(mut r) = self.rules.lock() {
            r.insert((resource.to_string(), verb), rule);
        }
    }

    pub fn clear(&self, resource: &str, verb: Verb) {
        if let Ok(mut r) = self.rules.lock() {
            r.remove(&(resource.to_string(), verb));
        }
    }

    pub fn clear_all(&self) {
        if let Ok(mut r) = self.rules.lock() {
            r.clear();
        }
    }

    fn roll(&self) -> f64 {
        let Ok(mut s) = self.rng.lock() else {
            return 1.0;
        };
        *s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*s >> 11) as f64) / ((1u64 << 53) as f64)
    }

    pub(crate) fn decide(
        &self,
        resource: &str,
        name: Option<&str>,
        group: &str,
        verb: Verb,
    ) -> Option<Injected> {
        let rule = {
            let rules = self.rules.lock().ok()?;
            if rules.is_empty() {
                return None;
            }
            rules
                .get(&(resource.to_string(), verb))
                .or_else(|| rules.get(&("*".to_string(), verb)))
                .cloned()?
        };
        let mut error = None;
        if verb.is_write() && rule.conflict_rate > 0.0 && self.roll() < rule.conflict_rate {
            error = Some(ApiError::conflict(
                group,
                resource,
                name.unwrap_or_default(),
            ));
        } else if rule.error_rate > 0.0 && self.roll() < rule.error_rate {
            error = Some(ApiError::internal(format!(
                "Internal error occurred: injected fault on {verb:?} {resource}"
            )));
        }
        Some(Injected {
            delay: rule.delay,
            error,
        })
    }
}
