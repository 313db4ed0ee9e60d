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
        checksum: canary_checksum(
            status.tracked_configs.as_ref(),
            status.last_applied_spec.as_deref().unwrap_or_default(),
        ),
        metadata,
    }
}

/// Flagger's `canaryChecksum`: its `ComputeHash` (go-spew's `%#v`, FNV-32a,
/// `rand.SafeEncodeString`) of a struct of the status' `trackedConfigs` (a pointer
/// to a map: `<nil>` when the status has none) and `lastAppliedSpec`. A receiver
/// that keys on it sees the values Flagger would send, and a config-only revision
/// has a new one.
fn canary_checksum(tracked: Option<&BTreeMap<String, String>>, applied: &str) -> String {
    // go-spew prints map keys sorted (Go's string order is byte order, as a
    // BTreeMap's) and strings unquoted.
    let configs = match tracked {
        None => "<nil>".to_string(),
        Some(m) => {
            let pairs: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("map[{}]", pairs.join(" "))
        }
    };
    let text = format!(
        "(struct {{ TrackedConfigs *map[string]string; LastAppliedSpec string }}){{TrackedConfigs:(*map[string]string){configs} LastAppliedSpec:(string){applied}}}"
    );
    crate::labels::fnv_hash(text.as_bytes())
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
        // Flagger's canaryChecksum of a status with nothing applied yet.
        assert_eq!(p.checksum, "758df7c9fc");
    }

    /// The values Flagger v1.44.0's `canaryChecksum` gives (go-spew at the commit
    /// Flagger pins, FNV-32a, `rand.SafeEncodeString`), computed once with Go.
    #[test]
    fn the_checksum_is_flaggers_canary_checksum() {
        let hook = CanaryWebhook::default();
        let checksum = |tracked: Option<&[(&str, &str)]>, applied: Option<&str>| {
            let mut canary = Canary::new("podinfo", Default::default());
            canary.status = Some(serin_api::canary::CanaryStatus {
                last_applied_spec: applied.map(str::to_string),
                tracked_configs: tracked.map(|t| {
                    t.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                }),
                ..Default::default()
            });
            payload(&canary, &hook, CanaryPhase::Progressing, &BTreeMap::new()).checksum
        };
        assert_eq!(checksum(None, None), "758df7c9fc");
        assert_eq!(checksum(Some(&[]), None), "68bf6f479b");
        assert_eq!(checksum(None, Some("5f4b7c9d8")), "588f977879");
        assert_eq!(checksum(Some(&[]), Some("5f4b7c9d8")), "65cb9888d8");
        assert_eq!(
            checksum(
                Some(&[("configmap/podinfo-config", "6d7b6c5f9c")]),
                Some("5f4b7c9d8")
            ),
            "5cb66668db"
        );
        assert_eq!(
            checksum(
                Some(&[
                    ("secret/podinfo-secret", "c4b5d9f7"),
                    ("configmap/podinfo-config", "7c8f5d6b9"),
                    ("configmap/a-first", "x\"q\\"),
                ]),
                Some("5f4b7c9d8")
            ),
            "56dc4cb6cb"
        );
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
