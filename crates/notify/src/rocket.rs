//! Rocket.Chat incoming webhooks, which accept the Slack payload; colours are CSS
//! hex values.

use crate::post::{parse_address, post_json};
use crate::slack::{SlackPayload, slack_payload};
use crate::{BoxFuture, Delivery, Message, Notifier, NotifyError, Service, Severity};

pub fn rocket_colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "#0076D7",
        Severity::Warn => "#FFA500",
        Severity::Error => "#FF0000",
    }
}

pub struct Rocket {
    url: url::Url,
    channel: String,
    username: String,
    client: reqwest::Client,
}

impl Rocket {
    pub fn new(
        address: &str,
        channel: &str,
        username: &str,
        client: reqwest::Client,
    ) -> Result<Self, NotifyError> {
        Ok(Self {
            url: parse_address(Service::Rocket, address)?,
            channel: channel.to_string(),
            username: username.to_string(),
            client,
        })
    }

    pub fn payload(&self, message: &Message) -> SlackPayload {
        slack_payload(message, &self.channel, &self.username, rocket_colour)
    }
}

impl Notifier for Rocket {
    fn service(&self) -> Service {
        Service::Rocket
    }

    fn post<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<Delivery, NotifyError>> {
        Box::pin(async move {
            let payload = self.payload(message);
            post_json(&self.client, Service::Rocket, &self.url, None, &payload).await
        })
    }
}
