//! Google Chat incoming webhooks, as a `cardsV2` card: `name.namespace` and the
//! phase in the header, the message (coloured by severity) in the first section,
//! one `decoratedText` widget per detail in the second.

use serde::Serialize;

use crate::post::{parse_address, post_json};
use crate::{BoxFuture, Delivery, Message, Notifier, NotifyError, Service, Severity};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GChatPayload {
    #[serde(rename = "cardsV2")]
    pub cards_v2: Vec<GChatCardWithId>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GChatCardWithId {
    #[serde(rename = "cardId")]
    pub card_id: String,
    pub card: GChatCard,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GChatCard {
    pub header: GChatHeader,
    pub sections: Vec<GChatSection>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GChatHeader {
    pub title: String,
    pub subtitle: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GChatSection {
    pub widgets: Vec<GChatWidget>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub enum GChatWidget {
    #[serde(rename = "textParagraph")]
    TextParagraph { text: String },
    #[serde(rename = "decoratedText")]
    DecoratedText {
        #[serde(rename = "topLabel")]
        top_label: String,
        text: String,
    },
}

pub fn gchat_colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "#0076D7",
        Severity::Warn => "#FFA500",
        Severity::Error => "#FF0000",
    }
}

/// Google Chat card text is a small HTML subset: user text must not inject tags.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

pub struct GChat {
    url: url::Url,
    client: reqwest::Client,
}

impl GChat {
    pub fn new(address: &str, client: reqwest::Client) -> Result<Self, NotifyError> {
        Ok(Self {
            url: parse_address(Service::GChat, address)?,
            client,
        })
    }

    pub fn payload(&self, message: &Message) -> GChatPayload {
        let mut sections = vec![GChatSection {
            widgets: vec![GChatWidget::TextParagraph {
                text: format!(
                    "<font color=\"{}\"><b>{}</b></font>",
                    gchat_colour(message.severity),
                    escape_html(&message.text)
                ),
            }],
        }];
        if !message.fields.is_empty() {
            sections.push(GChatSection {
                widgets: message
                    .fields
                    .iter()
                    .map(|f| GChatWidget::DecoratedText {
                        top_label: f.name.clone(),
                        text: escape_html(&f.value),
                    })
                    .collect(),
            });
        }
        GChatPayload {
            cards_v2: vec![GChatCardWithId {
                card_id: "serin-alert".to_string(),
                card: GChatCard {
                    header: GChatHeader {
                        title: message.canary(),
                        subtitle: message
                            .phase
                            .clone()
                            .filter(|p| !p.is_empty())
                            .unwrap_or_else(|| "serin".to_string()),
                    },
                    sections,
                },
            }],
        }
    }
}

impl Notifier for GChat {
    fn service(&self) -> Service {
        Service::GChat
    }

    fn post<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<Delivery, NotifyError>> {
        Box::pin(async move {
            let payload = self.payload(message);
            post_json(&self.client, Service::GChat, &self.url, None, &payload).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_text_is_escaped() {
        assert_eq!(
            escape_html("success rate 69.17% < 99% & \"x\""),
            "success rate 69.17% &lt; 99% &amp; &quot;x&quot;"
        );
    }
}
