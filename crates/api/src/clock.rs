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
