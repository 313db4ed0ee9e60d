//! The webhook caller: POSTs Flagger's JSON payload to a canary's webhooks.
//!
//! As in Flagger: 200, 201 and 202 pass; the error of any other answer is its body.
//! A connection error, a timeout, a 429 or a 5xx (but 501) is retried `retries`
//! times, after 1s, 2s, 4s... (at most 30s), as Flagger's retrying client does; other
//! answers are final. Every attempt is bounded by the webhook's `timeout` (10s by
//! default). `disableTLS: true` skips the verification of the server's
//! certificate.
//! Of a failing answer at most 64 KiB is read (the message shows its first 256
//! bytes); a passing answer's body is not read.

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
        checksum: match status
            .last_applied_spec
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            Some(applied) => revision_checksum(applied, status.tracked_configs.as_ref()),
            None => spec_checksum(canary),
        },
        metadata,
    }
}

/// The checksum of a revision, as Flagger's covers it: the target's spec and its
/// tracked ConfigMaps and Secrets, so a config-only revision has a new one.
fn revision_checksum(applied: &str, tracked: Option<&BTreeMap<String, String>>) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(applied.as_bytes());
    for (name, sum) in tracked.into_iter().flatten() {
        hasher.update(b"\n");
        hasher.update(name.as_bytes());
        hasher.update(b"=");
        hasher.update(sum.as_bytes());
    }
    hex::encode(&hasher.finalize()[..8])
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
                    .map_err(|e| (describe(&e, timeout), true))?;
                let status = response.status().as_u16();
                if (200..=202).contains(&status) {
                    // The answer of a passing webhook is not used: not read at all.
                    return Ok(());
                }
                // Of a failing answer at most MAX_WEBHOOK_BODY is read.
                let body = read_limited(response, MAX_WEBHOOK_BODY)
                    .await
                    .map(|b| b.bytes)
                    .unwrap_or_default();
                let text = String::from_utf8_lossy(&body).to_string();
                let text = truncate(text.trim(), 256);
                let message = if text.is_empty() {
                    status.to_string()
                } else {
                    text.to_string()
                };
                Err((message, is_retried(status)))
            })
            .await;
            match sent {
                Ok(Ok(())) => return Ok(()),
                Ok(Err((e, retry))) => {
                    last = e;
                    if !retry {
                        break;
                    }
                }
                Err(_) => last = format!("timeout after {}s", timeout.as_secs_f64()),
            }
        }
        Err(last)
    }
}

/// The answers Flagger's retrying client tries again.
fn is_retried(status: u16) -> bool {
    status == 429 || (status >= 500 && status != 501)
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

/// 1s before the first retry, doubling, at most 30s.
fn retry_delay(attempt: usize) -> Duration {
    Duration::from_secs((1u64 << (attempt.saturating_sub(1)).min(5)).min(30))
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

    #[test]
    fn the_checksum_covers_the_tracked_configs() {
        let mut canary = Canary::new("podinfo", Default::default());
        let hook = CanaryWebhook::default();
        let at =
            |c: &Canary| payload(c, &hook, CanaryPhase::Progressing, &BTreeMap::new()).checksum;
        let mut status = serin_api::canary::CanaryStatus {
            last_applied_spec: Some("5d8f6c7b9".into()),
            tracked_configs: Some(BTreeMap::from([("configmap/podinfo".into(), "a1".into())])),
            ..Default::default()
        };
        canary.status = Some(status.clone());
        let before = at(&canary);
        assert_eq!(before, at(&canary), "stable");
        status.tracked_configs = Some(BTreeMap::from([("configmap/podinfo".into(), "b2".into())]));
        canary.status = Some(status);
        assert_ne!(
            before,
            at(&canary),
            "a config-only revision has a new checksum"
        );
    }

    #[test]
    fn retries_back_off_as_flaggers_client() {
        let delays: Vec<u64> = (1..=7).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert!(is_retried(500) && is_retried(503) && is_retried(429));
        assert!(!is_retried(501) && !is_retried(403) && !is_retried(404));
    }
}
