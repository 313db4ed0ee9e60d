//! Global alert settings of the operator, from flags or environment variables (so a
//! webhook URL can come from a Secret through `env.valueFrom`).

use std::time::Duration;

use crate::factory::{NotifierConfig, build_notifier};
use crate::{Notifier, NotifyError};

/// Flatten into the operator command with `#[command(flatten)]`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Slack incoming webhook URL for canaries without `analysis.alerts`
    #[arg(long, env = "SLACK_URL", hide_env_values = true)]
    pub slack_url: Option<String>,
    /// Slack bot token, sent as a bearer token (use with https://slack.com/api/chat.postMessage)
    #[arg(long, env = "SLACK_TOKEN", hide_env_values = true)]
    pub slack_token: Option<String>,
    /// Slack channel
    #[arg(long, env = "SLACK_CHANNEL")]
    pub slack_channel: Option<String>,
    /// Slack user name
    #[arg(long, env = "SLACK_USER", default_value = "flagger")]
    pub slack_user: String,
    /// HTTP(S) proxy for Slack
    #[arg(long, env = "SLACK_PROXY_URL")]
    pub slack_proxy_url: Option<String>,
    /// Microsoft Teams incoming webhook URL for canaries without `analysis.alerts`
    #[arg(long, env = "MSTEAMS_URL", hide_env_values = true)]
    pub msteams_url: Option<String>,
    /// HTTP(S) proxy for Microsoft Teams
    #[arg(long, env = "MSTEAMS_PROXY_URL")]
    pub msteams_proxy_url: Option<String>,
    /// Longest time one alert may take (Go duration: 5s, 500ms)
    #[arg(long, env = "ALERT_TIMEOUT", default_value = "5s", value_parser = parse_timeout)]
    pub alert_timeout: Duration,
    /// Cluster name added to every alert
    #[arg(long)]
    pub cluster_name: Option<String>,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            slack_url: None,
            slack_token: None,
            slack_channel: None,
            slack_user: "flagger".to_string(),
            slack_proxy_url: None,
            msteams_url: None,
            msteams_proxy_url: None,
            alert_timeout: crate::factory::DEFAULT_TIMEOUT,
            cluster_name: None,
        }
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = serin_api::duration::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("the alert timeout must be more than zero".to_string());
    }
    Ok(d)
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl Args {
    /// The settings of each configured global notifier (Slack, Teams, or both).
    pub fn global_configs(&self) -> Vec<NotifierConfig> {
        let mut configs = Vec::new();
        if let Some(url) = non_empty(&self.slack_url) {
            let mut c = NotifierConfig::new("slack", url);
            c.token = non_empty(&self.slack_token);
            c.channel = non_empty(&self.slack_channel).unwrap_or_default();
            c.username = self.slack_user.clone();
            c.proxy = non_empty(&self.slack_proxy_url);
            c.timeout = self.alert_timeout;
            configs.push(c);
        }
        if let Some(url) = non_empty(&self.msteams_url) {
            let mut c = NotifierConfig::new("msteams", url);
            c.proxy = non_empty(&self.msteams_proxy_url);
            c.timeout = self.alert_timeout;
            configs.push(c);
        }
        configs
    }

    /// Builds the global notifiers; a malformed URL is an error at start-up rather
    /// than a silent loss of every alert.
    pub fn global_notifiers(&self) -> Result<Vec<Box<dyn Notifier>>, NotifyError> {
        self.global_configs().iter().map(build_notifier).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        alerts: Args,
    }

    #[test]
    fn flags_configure_slack_and_teams() {
        let cli = Cli::try_parse_from([
            "serin",
            "--slack-url=https://hooks.slack.com/services/x",
            "--slack-channel=general",
            "--slack-user=serin",
            "--slack-proxy-url=http://proxy.local:3128",
            "--msteams-url=https://outlook.office.com/webhook/x",
            "--alert-timeout=2s",
            "--cluster-name=prod",
        ])
        .expect("parses");
        let configs = cli.alerts.global_configs();
        assert_eq!(configs.len(), 2);
        assert_eq!(configs[0].type_, "slack");
        assert_eq!(configs[0].channel, "general");
        assert_eq!(configs[0].username, "serin");
        assert_eq!(configs[0].proxy.as_deref(), Some("http://proxy.local:3128"));
        assert_eq!(configs[0].timeout, Duration::from_secs(2));
        assert_eq!(configs[1].type_, "msteams");
        assert_eq!(cli.alerts.cluster_name.as_deref(), Some("prod"));
        assert_eq!(cli.alerts.global_notifiers().expect("valid").len(), 2);
    }

    #[test]
    fn nothing_configured_means_no_global_notifier() {
        assert!(Args::default().global_configs().is_empty());
    }

    #[test]
    fn a_zero_or_malformed_timeout_is_refused() {
        for bad in ["--alert-timeout=0s", "--alert-timeout=soon"] {
            assert!(Cli::try_parse_from(["serin", bad]).is_err(), "{bad}");
        }
    }
}
