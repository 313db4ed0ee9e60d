//! The operator's lookup: AlertProviders and Secrets read from the cluster.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serin_api::AlertProvider;

use crate::BoxFuture;
use crate::lookup::{ProviderLookup, SecretData};

/// Reads AlertProviders and their Secrets with a `kube::Client` at send time, so a
/// changed provider or rotated webhook URL is used by the next alert.
#[derive(Clone)]
pub struct KubeLookup {
    client: kube::Client,
}

impl KubeLookup {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

fn describe(e: kube::Error) -> String {
    match e {
        kube::Error::Api(status) if status.is_not_found() => "not found".to_string(),
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

impl ProviderLookup for KubeLookup {
    fn alert_provider<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<AlertProvider, String>> {
        Box::pin(async move {
            Api::<AlertProvider>::namespaced(self.client.clone(), namespace)
                .get(name)
                .await
                .map_err(describe)
        })
    }

    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<SecretData, String>> {
        Box::pin(async move {
            let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
                .get(name)
                .await
                .map_err(describe)?;
            Ok(secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect())
        })
    }
}
