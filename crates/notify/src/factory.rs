//! From an AlertProvider's settings to a ready notifier.

use std::time::Duration;

use crate::discord::Discord;
use crate::gchat::GChat;
use crate::msteams::MsTeams;
use crate::rocket::Rocket;
use crate::slack::Slack;
use crate::{Notifier, NotifyError, Service};

/// Flagger's defaults for per-canary providers without `username` / `channel`.
pub const DEFAULT_USERNAME: &str = "flagger";
pub const DEFAULT_CHANNEL: &str = "general";
/// How long one alert may take when nothing else is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything needed to post to one chat service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierConfig {
    /// `slack`, `msteams`, `discord`, `rocket` or `gchat`.
    pub type_: String,
    pub address: String,
    /// Sent as `Authorization: Bearer` (Slack `chat.postMessage` with a bot token).
    pub token: Option<String>,
    pub channel: String,
    pub username: String,
    pub proxy: Option<String>,
    pub timeout: Duration,
}

impl NotifierConfig {
    pub fn new(type_: impl Into<String>, address: impl Into<String>) -> Self {
        Self {
            type_: type_.into(),
            address: address.into(),
            token: None,
            channel: String::new(),
            username: String::new(),
            proxy: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Builds the notifier for `config.type_`; an unknown type, a missing or malformed
/// address or a malformed proxy URL is an error.
pub fn build_notifier(config: &NotifierConfig) -> Result<Box<dyn Notifier>, NotifyError> {
    let service: Service = config.type_.parse()?;
    let client = serin_http_client::client(&serin_http_client::ClientOptions {
        timeout: config.timeout,
        insecure_skip_verify: false,
        proxy: config.proxy.clone().filter(|p| !p.trim().is_empty()),
    })?;
    let address = config.address.as_str();
    let channel = config.channel.as_str();
    let username = config.username.as_str();
    Ok(match service {
        Service::Slack => Box::new(Slack::new(
            address,
            config.token.clone(),
            channel,
            username,
            client,
        )?),
        Service::MsTeams => Box::new(MsTeams::new(address, client)?),
        Service::Discord => Box::new(Discord::new(address, channel, username, client)?),
        Service::Rocket => Box::new(Rocket::new(address, channel, username, client)?),
        Service::GChat => Box::new(GChat::new(address, client)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_type_builds() {
        for service in Service::ALL {
            let config = NotifierConfig::new(service.as_str(), "https://chat.example.com/hook");
            let notifier = build_notifier(&config).expect("builds");
            assert_eq!(notifier.service(), service);
        }
    }

    #[test]
    fn an_unknown_type_is_an_error_naming_the_known_ones() {
        let err = build_notifier(&NotifierConfig::new("pagerduty", "https://x.example.com/"))
            .err()
            .expect("unknown type");
        let text = err.to_string();
        assert!(text.contains("\"pagerduty\""), "{text}");
        assert!(
            text.contains("slack, msteams, discord, rocket, gchat"),
            "{text}"
        );
    }

    #[test]
    fn a_bad_proxy_or_address_is_an_error() {
        let mut config = NotifierConfig::new("slack", "https://hooks.slack.com/services/x");
        config.proxy = Some("::not a url::".into());
        assert!(build_notifier(&config).is_err());
        let config = NotifierConfig::new("msteams", "");
        assert!(matches!(
            build_notifier(&config).err(),
            Some(NotifyError::MissingAddress { .. })
        ));
    }
}
