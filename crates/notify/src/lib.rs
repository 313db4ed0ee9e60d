//! serin-notify: canary alerts to Slack, Microsoft Teams, Discord, Rocket.Chat and
//! Google Chat, configured globally (operator flags) or per Canary through
//! `analysis.alerts` and AlertProvider resources.
//!
//! - [`Notifier`]: one chat service (`slack.rs`, `msteams.rs`, `discord.rs`,
//!   `rocket.rs`, `gchat.rs`), built by [`build_notifier`] from a provider `type`.
//! - [`Args`]: the operator's global alert flags; [`Dispatcher`]: what the control
//!   loop calls, sending in the background with a timeout, logging and counting
//!   failures ([`AlertMetrics`]).
//! - [`AlertEvent`]: the alerts of a canary's life, with Flagger's texts, and gate
//!   links for canaries held by a load tester gate.

pub mod config;
pub mod discord;
pub mod dispatch;
mod error;
pub mod event;
pub mod factory;
pub mod gate;
pub mod gchat;
mod kube_lookup;
pub mod lookup;
pub mod metrics;
pub mod msteams;
mod notifier;
pub mod post;
pub mod rocket;
pub mod slack;

pub use config::Args;
pub use dispatch::{AlertReport, Dispatcher, Outcome};
pub use error::{NotifyError, ResolveError};
pub use event::{AlertEvent, canary_details};
pub use factory::{NotifierConfig, build_notifier};
pub use kube_lookup::KubeLookup;
pub use lookup::{InMemoryLookup, ProviderLookup, SecretData, resolve_provider};
pub use metrics::AlertMetrics;
pub use notifier::{
    BoxFuture, Delivery, Field, Message, Notifier, Service, Severity, admits, severity_name,
};
