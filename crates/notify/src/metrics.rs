//! serin's own counters of alerts sent and failed, by provider type.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// `slack`, `msteams`, `discord`, `rocket`, `gchat`, or `unknown` when the
    /// provider could not be read.
    pub provider: String,
}

/// `serin_alerts_sent_total` and `serin_alerts_failed_total`. Clones share counts.
#[derive(Debug, Clone, Default)]
pub struct AlertMetrics {
    pub sent: Family<AlertLabels, Counter>,
    pub failed: Family<AlertLabels, Counter>,
}

impl AlertMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers both counters (the `_total` suffix is added by the encoder).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "serin_alerts_sent",
            "Alerts accepted by a chat service",
            self.sent.clone(),
        );
        registry.register(
            "serin_alerts_failed",
            "Alerts that could not be delivered (bad provider, error answer, timeout)",
            self.failed.clone(),
        );
    }

    pub fn sent_count(&self, provider: &str) -> u64 {
        self.sent
            .get_or_create(&AlertLabels {
                provider: provider.to_string(),
            })
            .get()
    }

    pub fn failed_count(&self, provider: &str) -> u64 {
        self.failed
            .get_or_create(&AlertLabels {
                provider: provider.to_string(),
            })
            .get()
    }

    pub(crate) fn record(&self, provider: &str, ok: bool) {
        let labels = AlertLabels {
            provider: provider.to_string(),
        };
        if ok {
            self.sent.get_or_create(&labels).inc();
        } else {
            self.failed.get_or_create(&labels).inc();
        }
    }
}
