//! serin's load tester: the webhook service canaries call for acceptance tests, load
//! during analysis and manual gates, compatible with Flagger's load tester payloads and
//! endpoints, with a built-in `hey` and shell commands disabled unless asked for.

pub mod command;
pub mod gates;
mod generator;
pub mod hey;
mod http1;
pub mod metrics;
pub mod payload;
pub mod server;
pub mod targets;
pub mod words;

pub use hey::{HeyArgs, HeyError, Report};
pub use payload::WebhookPayload;
pub use server::{Config, DEFAULT_COMMAND_TIMEOUT, LoadTester};
