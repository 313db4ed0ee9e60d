//! The webhook caller: POSTs Flagger's JSON payload to a canary's webhooks.
//!
//! Any 2xx answer is a pass. A failed call is retried `retries` times; every attempt is
//! bounded by the webhook's `timeout` (10s by default). `disableTLS: true` skips the
//! verification of the server's certificate, as in Flagger. Of a failing answer at
//! most 64 KiB is read (the message shows its first 256 bytes); a passing answer's body
//! is not read.

use std::collections::BTreeMap;
use std::time::Duration;

use serin_api::Canary;
use serin_api::canary::{CanaryPhase, CanaryWebhook, WebhookPayload};
use serin_http_client::{ClientOptions, MAX_WEBHOOK_BODY, client, read_limited};

/// Calls webhooks. Clients are built per call from the webhook's own settings; the
/// client builder is cheap next to a network round trip.
#[derive(Debug, Clone, Default)]
pub struct WebhookCaller {
    /// Proxy for outbound webhook calls, when the operator has one.
    pub proxy: Option<String>,
}

/// The payload for a webhook call.
pub fn payload(
    canary: &Canary,
    webhook: &CanaryWebhook,
    phase: CanaryPhase,
    extra: &BTreeMap<String, String>,
) -> WebhookPayload {
    let mut metadata = webhook.metadata.clone().unwrap_or_default();
    metadata.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    let status = canary.status_or_default();
    WebhookPayload {
        name: canary.metadata.name.clone().unwrap_or_default(),
        namespace: canary.metadata.namespace.clone().unwrap_or_default(),
        phase,
        checksum: status
            .last_applied_spec
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| spec_checksum(canary)),
        metadata,
    }
}

/// A stable checksum of the canary spec, for payloads sent before the first revision is
/// recorded.
fn spec_checksum(canary: &Canary) -> String {
    use sha2::Digest;
    let text = serde_json::to_string(&canary.spec).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..8])
}

impl WebhookCaller {
    /// Calls `webhook` once per attempt (1 + retries) until one answers 2xx.
    pub async fn call(
        &self,
        canary: &Canary,
        webhook: &CanaryWebhook,
        phase: CanaryPhase,
        extra: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let url = webhook.url.trim();
        if url.is_empty() {
            return Err(format!("webhook {} has no url", webhook.name));
        }
        let parsed = url::Url::parse(url).map_err(|e| format!("invalid webhook url {url}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "invalid webhook url {url}: scheme must be http or https"
            ));
        }
        let timeout = webhook.timeout();
        let options = ClientOptions {
            timeout,
            insecure_skip_verify: webhook.disable_tls,
            proxy: self.proxy.clone(),
        };
        let http = client(&options).map_err(|e| e.to_string())?;
        let body = payload(canary, webhook, phase, extra);
        let attempts = webhook.retries.unwrap_or(0).clamp(0, 10) as usize + 1;
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(retry_delay(attempt)).await;
            }
            let sent = tokio::time::timeout(timeout, async {
                let response = http
                    .post(parsed.clone())
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| describe(&e, timeout))?;
                let status = response.status();
                if status.is_success() {
                    // The answer of a passing webhook is not used: not read at all.
                    Ok(())
                } else {
                    let body = read_limited(response, MAX_WEBHOOK_BODY)
                        .await
                        .map(|b| b.bytes)
                        .unwrap_or_default();
                    let text = String::from_utf8_lossy(&body);
                    Err(
                        format!("{} {}", status.as_u16(), truncate(text.trim(), 256))
                            .trim()
                            .to_string(),
                    )
                }
            })
            .await;
            match sent {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("timeout after {}s", timeout.as_secs_f64()),
            }
        }
        Err(last)
    }
}

/// A transport error in words: the timeout, or the innermost cause.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timeout after {}s", timeout.as_secs_f64());
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{e}: {cause}")
}

fn retry_delay(attempt: usize) -> Duration {
    Duration::from_millis(200 * (1 << attempt.min(4)) as u64)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_carries_metadata_and_checksum() {
        let mut canary = Canary::new("podinfo", Default::default());
        canary.metadata.namespace = Some("test".into());
        let hook = CanaryWebhook {
            name: "load".into(),
            url: "http://127.0.0.1:1/".into(),
            metadata: Some(BTreeMap::from([("cmd".to_string(), "hey".to_string())])),
            ..Default::default()
        };
        let p = payload(&canary, &hook, CanaryPhase::Progressing, &BTreeMap::new());
        assert_eq!(p.name, "podinfo");
        assert_eq!(p.namespace, "test");
        assert_eq!(p.metadata.get("cmd").map(String::as_str), Some("hey"));
        assert_eq!(p.checksum.len(), 16);
    }
}
