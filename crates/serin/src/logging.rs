//! Logs are JSON lines with a `msg` field, so `kubectl logs deploy/serin | jq .msg`
//! works as it does for Flagger.

use tracing_subscriber::EnvFilter;

/// Installs the JSON log subscriber on stderr. `RUST_LOG` overrides `default_level`.
#[allow(dead_code)] // used by the long-running commands
pub fn init_json(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
