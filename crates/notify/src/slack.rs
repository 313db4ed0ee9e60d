//! Slack incoming webhooks (and `chat.postMessage` with a bot token): one legacy
//! attachment, coloured by severity, authored by `name.namespace`, titled with the
//! phase, with the message as text and the canary details as fields.
//! Discord and Rocket.Chat accept the same payload (see `discord.rs`, `rocket.rs`).

use serde::Serialize;

use crate::post::{parse_address, post_json};
use crate::{BoxFuture, Delivery, Message, Notifier, NotifyError, Service, Severity};

/// The body Slack-compatible webhooks receive.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SlackPayload {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub channel: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    pub icon_emoji: String,
    pub attachments: Vec<SlackAttachment>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SlackAttachment {
    pub color: String,
    /// Plain-text summary for clients that cannot show attachments (notifications).
    pub fallback: String,
    pub author_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub text: String,
    pub mrkdwn_in: Vec<String>,
    pub fields: Vec<SlackField>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SlackField {
    pub title: String,
    pub value: String,
    pub short: bool,
}

/// Builds the Slack-compatible body; `colour` maps a severity to the colour the
/// service understands.
pub fn slack_payload(
    message: &Message,
    channel: &str,
    username: &str,
    colour: fn(Severity) -> &'static str,
) -> SlackPayload {
    let canary = message.canary();
    SlackPayload {
        channel: channel.to_string(),
        username: username.to_string(),
        icon_emoji: ":rocket:".to_string(),
        attachments: vec![SlackAttachment {
            color: colour(message.severity).to_string(),
            fallback: format!("{canary}: {}", message.text),
            author_name: canary,
            title: message.phase.clone().filter(|p| !p.is_empty()),
            text: message.text.clone(),
            mrkdwn_in: vec!["text".to_string()],
            fields: message
                .fields
                .iter()
                .map(|f| SlackField {
                    title: f.name.clone(),
                    value: f.value.clone(),
                    short: false,
                })
                .collect(),
        }],
    }
}

/// Slack's named attachment colours.
pub fn slack_colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "good",
        Severity::Warn => "warning",
        Severity::Error => "danger",
    }
}

pub struct Slack {
    url: url::Url,
    token: Option<String>,
    channel: String,
    username: String,
    client: reqwest::Client,
}

impl Slack {
    pub fn new(
        address: &str,
        token: Option<String>,
        channel: &str,
        username: &str,
        client: reqwest::Client,
    ) -> Result<Self, NotifyError> {
        Ok(Self {
            url: parse_address(Service::Slack, address)?,
            token: token.filter(|t| !t.is_empty()),
            channel: channel.to_string(),
            username: username.to_string(),
            client,
        })
    }

    pub fn payload(&self, message: &Message) -> SlackPayload {
        slack_payload(message, &self.channel, &self.username, slack_colour)
    }
}

impl Notifier for Slack {
    fn service(&self) -> Service {
        Service::Slack
    }

    fn post<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<Delivery, NotifyError>> {
        Box::pin(async move {
            let payload = self.payload(message);
            let delivery = post_json(
                &self.client,
                Service::Slack,
                &self.url,
                self.token.as_deref(),
                &payload,
            )
            .await?;
            // chat.postMessage (used with a bot token) answers 200 with {"ok": false}
            // when it refuses a message.
            if let Ok(answer) = serde_json::from_str::<serde_json::Value>(&delivery.body)
                && answer.get("ok") == Some(&serde_json::Value::Bool(false))
            {
                return Err(NotifyError::Status {
                    service: Service::Slack,
                    address: crate::post::redact(self.url.as_str()),
                    status: delivery.status,
                    body: delivery.body,
                });
            }
            Ok(delivery)
        })
    }
}
