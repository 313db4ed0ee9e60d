//! The load tester's own Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// `hey`, `cmd`, `bash`, `helm` (`helm` and `helmv3` tasks) or `kubectl`.
    pub kind: String,
}

pub struct Metrics {
    pub registry: Registry,
    /// Requests sent by the built-in hey.
    pub load_requests: Counter,
    /// Commands started (hey runs, commands, bash, helm and kubectl tasks).
    pub commands: Family<CommandLabels, Counter>,
    /// Commands that failed (non-zero exit, timeout, cannot start, hey errors).
    pub commands_failed: Family<CommandLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let load_requests = Counter::default();
        let commands = Family::<CommandLabels, Counter>::default();
        let commands_failed = Family::<CommandLabels, Counter>::default();
        registry.register(
            "serin_loadtester_load_requests",
            "HTTP requests sent by the built-in hey load generator",
            load_requests.clone(),
        );
        registry.register(
            "serin_loadtester_commands",
            "Commands run by the load tester, by kind (hey, cmd, bash, helm, kubectl)",
            commands.clone(),
        );
        registry.register(
            "serin_loadtester_commands_failed",
            "Commands that failed, by kind (hey, cmd, bash, helm, kubectl)",
            commands_failed.clone(),
        );
        Metrics {
            registry,
            load_requests,
            commands,
            commands_failed,
        }
    }
}

impl Metrics {
    pub fn command_started(&self, kind: &str) {
        self.commands
            .get_or_create(&CommandLabels { kind: kind.into() })
            .inc();
    }

    pub fn command_failed(&self, kind: &str) {
        self.commands_failed
            .get_or_create(&CommandLabels { kind: kind.into() })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
