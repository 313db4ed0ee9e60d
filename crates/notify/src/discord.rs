//! Discord, through its Slack-compatible endpoint: the webhook URL with `/slack`
//! appended, and the Slack payload.

use crate::post::{parse_address, post_json};
use crate::slack::{SlackPayload, slack_colour, slack_payload};
use crate::{BoxFuture, Delivery, Message, Notifier, NotifyError, Service};

pub struct Discord {
    url: url::Url,
    channel: String,
    username: String,
    client: reqwest::Client,
}

impl Discord {
    pub fn new(
        address: &str,
        channel: &str,
        username: &str,
        client: reqwest::Client,
    ) -> Result<Self, NotifyError> {
        let mut url = parse_address(Service::Discord, address)?;
        let path = url.path().trim_end_matches('/').to_string();
        if !path.ends_with("/slack") {
            url.set_path(&format!("{path}/slack"));
        }
        Ok(Self {
            url,
            channel: channel.to_string(),
            username: username.to_string(),
            client,
        })
    }

    /// Where the alerts go (the `/slack` endpoint).
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    pub fn payload(&self, message: &Message) -> SlackPayload {
        slack_payload(message, &self.channel, &self.username, slack_colour)
    }
}

impl Notifier for Discord {
    fn service(&self) -> Service {
        Service::Discord
    }

    fn post<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<Delivery, NotifyError>> {
        Box::pin(async move {
            let payload = self.payload(message);
            post_json(&self.client, Service::Discord, &self.url, None, &payload).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discord(address: &str) -> Discord {
        let client = serin_http_client::client(&Default::default()).expect("client");
        Discord::new(address, "general", "serin", client).expect("valid address")
    }

    #[test]
    fn the_slack_endpoint_is_appended_once() {
        assert_eq!(
            discord("https://discord.com/api/webhooks/1/abc")
                .url()
                .as_str(),
            "https://discord.com/api/webhooks/1/abc/slack"
        );
        assert_eq!(
            discord("https://discord.com/api/webhooks/1/abc/")
                .url()
                .as_str(),
            "https://discord.com/api/webhooks/1/abc/slack"
        );
        assert_eq!(
            discord("https://discord.com/api/webhooks/1/abc/slack")
                .url()
                .as_str(),
            "https://discord.com/api/webhooks/1/abc/slack"
        );
        assert_eq!(
            discord("https://discord.com/api/webhooks/1/abc?wait=true")
                .url()
                .as_str(),
            "https://discord.com/api/webhooks/1/abc/slack?wait=true"
        );
    }
}
