//! Where AlertProviders and their Secrets come from: the operator looks them up in
//! the cluster, `serin alert test` and tests in objects they already hold.

use std::collections::BTreeMap;
use std::time::Duration;

use serin_api::AlertProvider;

use crate::factory::{DEFAULT_CHANNEL, DEFAULT_USERNAME, NotifierConfig};
use crate::{BoxFuture, ResolveError};

/// The data of a Secret, keys to decoded bytes.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// Finds AlertProviders and Secrets by namespace and name. Errors are messages
/// for the log ("not found", "forbidden", ...).
pub trait ProviderLookup: Send + Sync {
    fn alert_provider<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<AlertProvider, String>>;

    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<SecretData, String>>;
}

/// A lookup over objects held in memory (read from files, or built by tests).
#[derive(Debug, Clone, Default)]
pub struct InMemoryLookup {
    providers: Vec<AlertProvider>,
    secrets: Vec<(String, String, SecretData)>,
}

impl InMemoryLookup {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a provider; it must carry its namespace in `metadata.namespace`.
    pub fn add_provider(&mut self, provider: AlertProvider) {
        self.providers.push(provider);
    }

    pub fn add_secret(&mut self, namespace: &str, name: &str, data: SecretData) {
        self.secrets
            .push((namespace.to_string(), name.to_string(), data));
    }

    pub fn providers(&self) -> &[AlertProvider] {
        &self.providers
    }
}

impl ProviderLookup for InMemoryLookup {
    fn alert_provider<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<AlertProvider, String>> {
        Box::pin(async move {
            self.providers
                .iter()
                .find(|p| {
                    p.metadata.name.as_deref() == Some(name)
                        && p.metadata.namespace.as_deref() == Some(namespace)
                })
                .cloned()
                .ok_or_else(|| "not found".to_string())
        })
    }

    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<SecretData, String>> {
        Box::pin(async move {
            self.secrets
                .iter()
                .find(|(ns, n, _)| ns == namespace && n == name)
                .map(|(_, _, data)| data.clone())
                .ok_or_else(|| "not found".to_string())
        })
    }
}

/// Reads the AlertProvider `namespace/name` and its Secret into notifier settings,
/// as Flagger does: the Secret's `address` (required when `secretRef` is set)
/// overrides `spec.address`, its `token` is sent as a bearer token, and its
/// `proxy` overrides `spec.proxy`; `username` defaults to `flagger` and
/// `channel` to `general`.
pub async fn resolve_provider(
    lookup: &dyn ProviderLookup,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<NotifierConfig, ResolveError> {
    let provider_error = |message: String| ResolveError::Provider {
        namespace: namespace.to_string(),
        name: name.to_string(),
        message,
    };
    let provider = lookup
        .alert_provider(namespace, name)
        .await
        .map_err(provider_error)?;
    let spec = &provider.spec;
    let mut config =
        NotifierConfig::new(spec.type_.clone(), spec.address.clone().unwrap_or_default());
    config.timeout = timeout;
    config.proxy = spec.proxy.clone().filter(|p| !p.is_empty());
    config.username = spec
        .username
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_USERNAME.to_string());
    config.channel = spec
        .channel
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| DEFAULT_CHANNEL.to_string());
    if let Some(secret_ref) = spec.secret_ref.as_ref().filter(|r| !r.name.is_empty()) {
        let secret_error = |message: String| ResolveError::Secret {
            namespace: namespace.to_string(),
            name: name.to_string(),
            secret: secret_ref.name.clone(),
            message,
        };
        let data = lookup
            .secret(namespace, &secret_ref.name)
            .await
            .map_err(secret_error)?;
        let value = |key: &str| -> Result<Option<String>, ResolveError> {
            match data.get(key) {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes.clone())
                    // `echo URL | base64` keeps the newline: drop it.
                    .map(|s| Some(s.trim().to_string()))
                    .map_err(|_| secret_error(format!("key {key:?} is not UTF-8 text"))),
            }
        };
        config.address = value("address")?
            .filter(|a| !a.is_empty())
            .ok_or_else(|| secret_error("has no \"address\" key".to_string()))?;
        config.token = value("token")?.filter(|t| !t.is_empty());
        if let Some(proxy) = value("proxy")?.filter(|p| !p.is_empty()) {
            config.proxy = Some(proxy);
        }
    }
    Ok(config)
}
