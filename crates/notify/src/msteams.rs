//! Microsoft Teams incoming webhooks (Office 365 connector), in the legacy
//! MessageCard format: theme colour by severity, the message as activity title,
//! `name.namespace` as subtitle, the canary details as facts.

use serde::Serialize;

use crate::post::{parse_address, post_json};
use crate::{BoxFuture, Delivery, Message, Notifier, NotifyError, Service, Severity};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MessageCard {
    #[serde(rename = "@type")]
    pub type_: String,
    #[serde(rename = "@context")]
    pub context: String,
    #[serde(rename = "themeColor")]
    pub theme_color: String,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub sections: Vec<MessageCardSection>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MessageCardSection {
    #[serde(rename = "activityTitle")]
    pub activity_title: String,
    #[serde(rename = "activitySubtitle")]
    pub activity_subtitle: String,
    pub facts: Vec<MessageCardFact>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MessageCardFact {
    pub name: String,
    pub value: String,
}

/// MessageCard `themeColor` values (hex without `#`).
pub fn teams_colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "0076D7",
        Severity::Warn => "FFA500",
        Severity::Error => "FF0000",
    }
}

pub struct MsTeams {
    url: url::Url,
    client: reqwest::Client,
}

impl MsTeams {
    pub fn new(address: &str, client: reqwest::Client) -> Result<Self, NotifyError> {
        Ok(Self {
            url: parse_address(Service::MsTeams, address)?,
            client,
        })
    }

    pub fn payload(&self, message: &Message) -> MessageCard {
        let canary = message.canary();
        MessageCard {
            type_: "MessageCard".to_string(),
            context: "http://schema.org/extensions".to_string(),
            theme_color: teams_colour(message.severity).to_string(),
            summary: format!("{canary}: {}", message.text),
            title: message.phase.clone().filter(|p| !p.is_empty()),
            sections: vec![MessageCardSection {
                activity_title: message.text.clone(),
                activity_subtitle: canary,
                facts: message
                    .fields
                    .iter()
                    .map(|f| MessageCardFact {
                        name: f.name.clone(),
                        value: f.value.clone(),
                    })
                    .collect(),
            }],
        }
    }
}

impl Notifier for MsTeams {
    fn service(&self) -> Service {
        Service::MsTeams
    }

    fn post<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<Delivery, NotifyError>> {
        Box::pin(async move {
            let payload = self.payload(message);
            post_json(&self.client, Service::MsTeams, &self.url, None, &payload).await
        })
    }
}
