//! The one way an alert leaves serin: a JSON POST through serin-http-client.

use serde::Serialize;

use crate::{Delivery, NotifyError, Service};

/// The most of an answer body kept for errors and `serin alert test`.
const MAX_BODY: usize = 4096;

/// Webhook URLs are credentials (Slack, Discord and Teams put the token in the
/// path), so logs and errors show only scheme, host and port.
pub fn redact(address: &str) -> String {
    match url::Url::parse(address) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            match u.port() {
                Some(port) => format!("{}://{host}:{port}/…", u.scheme()),
                None => format!("{}://{host}/…", u.scheme()),
            }
        }
        Err(_) => "<invalid URL>".to_string(),
    }
}

/// Checks that `address` is an absolute http(s) URL.
pub fn parse_address(service: Service, address: &str) -> Result<url::Url, NotifyError> {
    if address.trim().is_empty() {
        return Err(NotifyError::MissingAddress { service });
    }
    let invalid = |reason: String| NotifyError::InvalidAddress {
        service,
        address: redact(address),
        reason,
    };
    let url = url::Url::parse(address.trim()).map_err(|e| invalid(e.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(invalid(format!("scheme {other:?} is not http or https"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".to_string()));
    }
    Ok(url)
}

/// POSTs `payload` as JSON, with `Authorization: Bearer` when a token is set.
pub async fn post_json<T: Serialize + ?Sized>(
    client: &reqwest::Client,
    service: Service,
    url: &url::Url,
    token: Option<&str>,
    payload: &T,
) -> Result<Delivery, NotifyError> {
    let address = redact(url.as_str());
    let mut request = client.post(url.clone()).json(payload);
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        request = request.bearer_auth(token);
    }
    let send_error = |e: reqwest::Error| NotifyError::Send {
        service,
        address: address.clone(),
        // reqwest puts the full URL in its messages: drop it.
        reason: error_chain(&e.without_url()),
    };
    let response = request.send().await.map_err(send_error)?;
    let status = response.status().as_u16();
    // At most 64 KiB of the answer is read, whatever its size.
    let bytes = serin_http_client::read_limited(response, serin_http_client::MAX_ALERT_BODY)
        .await
        .map_err(send_error)?
        .bytes;
    let body = truncate(&String::from_utf8_lossy(&bytes));
    if (200..300).contains(&status) {
        Ok(Delivery { status, body })
    } else {
        Err(NotifyError::Status {
            service,
            address,
            status,
            body,
        })
    }
}

fn truncate(body: &str) -> String {
    if body.len() <= MAX_BODY {
        return body.to_string();
    }
    let mut end = MAX_BODY;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_path_and_query() {
        assert_eq!(
            redact("https://hooks.slack.com/services/T000/B000/XXXX?x=1"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact("http://127.0.0.1:8080/hook"),
            "http://127.0.0.1:8080/…"
        );
        assert_eq!(redact("not a url"), "<invalid URL>");
    }

    #[test]
    fn addresses_must_be_http_urls() {
        assert!(parse_address(Service::Slack, "https://hooks.slack.com/x").is_ok());
        assert!(matches!(
            parse_address(Service::Slack, ""),
            Err(NotifyError::MissingAddress { .. })
        ));
        assert!(matches!(
            parse_address(Service::GChat, "ftp://example.com/x"),
            Err(NotifyError::InvalidAddress { .. })
        ));
        assert!(matches!(
            parse_address(Service::MsTeams, "hooks.slack.com/x"),
            Err(NotifyError::InvalidAddress { .. })
        ));
    }

    #[test]
    fn long_bodies_are_cut_on_a_char_boundary() {
        let body = "é".repeat(MAX_BODY);
        let cut = truncate(&body);
        assert!(cut.len() <= MAX_BODY + "…".len());
        assert!(cut.ends_with('…'));
    }
}
