//! The one time source of serin.
//!
//! Wall-clock time is derived from tokio's clock, so a runtime with paused time
//! (`serin simulate`, tests) moves every timestamp, timeout and schedule forward
//! together on virtual time, while a normal runtime gives real time.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// Maps tokio's monotonic clock onto UTC from a fixed starting point.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start_wall: DateTime<Utc>,
    start_instant: Instant,
}

impl Clock {
    /// A clock that starts at the real current time.
    pub fn system() -> Self {
        Self::starting_at(Utc::now())
    }

    /// A clock whose `now()` is `start` at this instant of tokio's clock.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self {
            start_wall: start,
            start_instant: Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now().saturating_duration_since(self.start_instant);
        self.start_wall + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero())
    }

    /// Time since the clock was made, on tokio's clock.
    pub fn elapsed(&self) -> std::time::Duration {
        Instant::now().saturating_duration_since(self.start_instant)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

/// A UTC time as the Kubernetes API's `Time` (seconds precision on the wire).
pub fn k8s_time(t: DateTime<Utc>) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    let ts = k8s_openapi::jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts)
}

impl Clock {
    /// `now()` as the Kubernetes API's `Time`.
    pub fn now_k8s(&self) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
        k8s_time(self.now())
    }
}
