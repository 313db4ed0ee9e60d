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
//!
//! A 401 or 403 answer's message names the webhook, its URL and the status
//! (`webhook gate at http://lt/gate/check answered 401 Unauthorized: ...`): the
//! engine reports a 401 from a gate as a failed check, never as a closed gate.
//!
//! With a [`WebhookToken`] (`--webhook-token-secret`), the token read from that
//! Secret is sent as `Authorization: Bearer <token>` to the webhooks whose URL is
//! under one of the operator's `--webhook-token-url` prefixes, and to no other: a
//! Canary's author chooses the URL, never where the token goes.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serin_api::Canary;
use serin_api::canary::{CanaryPhase, CanaryWebhook, WebhookPayload};
use serin_http_client::{ClientOptions, MAX_WEBHOOK_BODY, client, read_limited};

/// Calls webhooks. Clients are built per call from the webhook's own settings; the
/// client builder is cheap next to a network round trip.
#[derive(Debug, Clone, Default)]
pub struct WebhookCaller {
    /// Proxy for outbound webhook calls, when the operator has one.
    pub proxy: Option<String>,
    /// The token sent to the webhooks under its URL prefixes.
    pub token: Option<WebhookToken>,
}

/// The key of the token in its Secret.
pub const TOKEN_KEY: &str = "token";
/// A token longer than this is refused (a misconfigured Secret, not a token).
const MAX_TOKEN_LEN: usize = 4096;

/// A bearer token for webhooks, kept in a Secret the operator reads through the API
/// at each call (so a rotated token is used at once), sent only to the URLs under
/// one of `prefixes`.
#[derive(Clone)]
pub struct WebhookToken {
    secrets: Api<Secret>,
    namespace: String,
    name: String,
    prefixes: Vec<url::Url>,
}

impl std::fmt::Debug for WebhookToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookToken")
            .field("secret", &format!("{}/{}", self.namespace, self.name))
            .field(
                "prefixes",
                &self.prefixes.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl WebhookToken {
    /// `secret` is `namespace/name`; `prefixes` are the URLs (`http://host[:port][/path]`)
    /// the token may be sent to. Errors name the flag at fault.
    pub fn new(client: kube::Client, secret: &str, prefixes: &[String]) -> Result<Self, String> {
        let (namespace, name) = secret
            .split_once('/')
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| format!("--webhook-token-secret {secret:?}: expected NAMESPACE/NAME"))?;
        if prefixes.is_empty() {
            return Err(format!(
                "--webhook-token-secret {secret} needs --webhook-token-url: the webhook URLs \
                 (http[s]://host[:port][/path]) the token may be sent to"
            ));
        }
        let prefixes = prefixes
            .iter()
            .map(|p| parse_prefix(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            secrets: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            prefixes,
        })
    }

    /// Whether the token goes to `url`: same scheme, host and port as a prefix, and a
    /// path under the prefix's path (at a `/` boundary).
    pub fn applies_to(&self, url: &url::Url) -> bool {
        self.prefixes.iter().any(|p| under_prefix(p, url))
    }

    /// The token, read from the Secret now.
    async fn read(&self) -> Result<String, String> {
        let what = format!("webhook token Secret {}/{}", self.namespace, self.name);
        let secret = self
            .secrets
            .get_opt(&self.name)
            .await
            .map_err(|e| format!("cannot read the {what}: {e}"))?
            .ok_or_else(|| format!("the {what} does not exist"))?;
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(TOKEN_KEY))
            .map(|v| v.0.clone())
            .ok_or_else(|| format!("the {what} has no key {TOKEN_KEY:?}"))?;
        if value.len() > MAX_TOKEN_LEN {
            return Err(format!(
                "the {what} key {TOKEN_KEY:?} is over {MAX_TOKEN_LEN} bytes"
            ));
        }
        let token = String::from_utf8(value)
            .map_err(|_| format!("the {what} key {TOKEN_KEY:?} is not UTF-8"))?;
        let token = token.trim();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the {what} key {TOKEN_KEY:?} is empty or has characters a header cannot carry"
            ));
        }
        Ok(token.to_string())
    }
}

fn parse_prefix(prefix: &str) -> Result<url::Url, String> {
    let bad = |why: &str| format!("--webhook-token-url {prefix:?}: {why}");
    let url = url::Url::parse(prefix.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("no user or password in the URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("no query or fragment: a scheme, host, port and path"));
    }
    Ok(url)
}

fn under_prefix(prefix: &url::Url, url: &url::Url) -> bool {
    if prefix.scheme() != url.scheme()
        || prefix.host_str() != url.host_str()
        || prefix.port_or_known_default() != url.port_or_known_default()
    {
        return false;
    }
    let base = prefix.path();
    let path = url.path();
    if base.ends_with('/') {
        path.starts_with(base)
    } else {
        path == base
            || path
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('/'))
    }
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
        let token = match &self.token {
            Some(t) if t.applies_to(&parsed) => {
                // Bounded by the webhook's timeout, as the call itself.
                let read = tokio::time::timeout(timeout, t.read())
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "the webhook token Secret was not read within {}s",
                            timeout.as_secs_f64()
                        ))
                    });
                Some(read.map_err(|e| format!("webhook {} at {url}: {e}", webhook.name))?)
            }
            _ => None,
        };
        let body = payload(canary, webhook, phase, extra);
        let attempts = webhook.retries.unwrap_or(0).clamp(0, 10) as usize + 1;
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(retry_delay(attempt)).await;
            }
            let sent = tokio::time::timeout(timeout, async {
                let mut request = http.post(parsed.clone()).json(&body);
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                let response = request
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
                let message = if matches!(status, 401 | 403) {
                    // Credentials refused: say who answered what, so it never reads
                    // as a gate that is merely closed.
                    refused(&webhook.name, url, status, text)
                } else if text.is_empty() {
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

/// The message of a 401 or 403 answer: `webhook NAME at URL answered 401
/// Unauthorized: BODY`.
fn refused(name: &str, url: &str, status: u16, body: &str) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let answered = if status == 401 {
        serin_engine::UNAUTHORIZED_ANSWER.to_string()
    } else {
        format!("answered {status} {reason}")
    };
    if body.is_empty() {
        format!("webhook {name} at {url} {answered}")
    } else {
        format!("webhook {name} at {url} {answered}: {body}")
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
    fn the_token_goes_only_under_its_prefixes() {
        let under = |prefix: &str, url: &str| {
            under_prefix(
                &parse_prefix(prefix).unwrap(),
                &url::Url::parse(url).unwrap(),
            )
        };
        assert!(under(
            "http://flagger-loadtester.test/",
            "http://flagger-loadtester.test/gate/check"
        ));
        assert!(under(
            "http://flagger-loadtester.test",
            "http://flagger-loadtester.test:80/"
        ));
        assert!(under("http://lt.test/hooks", "http://lt.test/hooks/gate"));
        assert!(under("http://lt.test/hooks", "http://LT.test/hooks"));
        // Another host that starts the same, a user part naming the host, another
        // port or scheme, a path that only starts the same: no token.
        assert!(!under(
            "http://flagger-loadtester.test/",
            "http://flagger-loadtester.test.evil.example/"
        ));
        assert!(!under(
            "http://flagger-loadtester.test/",
            "http://flagger-loadtester.test@evil.example/"
        ));
        assert!(!under("http://lt.test/", "http://lt.test:8080/"));
        assert!(!under("http://lt.test/", "https://lt.test/"));
        assert!(!under("http://lt.test/hooks", "http://lt.test/hooksevil"));
        for bad in [
            "lt.test",
            "ftp://lt.test/",
            "http://u:p@lt.test/",
            "http://lt.test/?a=1",
        ] {
            assert!(parse_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_refusal_names_the_webhook_and_the_status() {
        assert_eq!(
            refused("gate", "http://lt/gate/check", 401, "unauthorized"),
            "webhook gate at http://lt/gate/check answered 401 Unauthorized: unauthorized"
        );
        assert!(serin_engine::refused_credentials(&refused(
            "g",
            "http://lt/",
            401,
            ""
        )));
        assert_eq!(
            refused("load", "http://lt/", 403, ""),
            "webhook load at http://lt/ answered 403 Forbidden"
        );
        assert!(!serin_engine::refused_credentials(&refused(
            "g",
            "http://lt/",
            403,
            "x"
        )));
    }

    #[test]
    fn retries_back_off_as_flaggers_client() {
        let delays: Vec<u64> = (1..=7).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert!(is_retried(500) && is_retried(503) && is_retried(429));
        assert!(!is_retried(501) && !is_retried(403) && !is_retried(404));
    }
}
