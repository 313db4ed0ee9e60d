//! The `kubernetes` provider: no mesh, blue/green with the ClusterIP services alone.
//! As in Flagger, the apex service always selects the primary's pods, whatever it
//! selected before (an existing `svc/podinfo` selecting `app: podinfo` is pointed at
//! `podinfo-primary` once the primary is ready): the analysis runs against the
//! `-canary` service and a promotion copies the canary's spec to the primary. There
//! is no traffic split to set or read back.

use async_trait::async_trait;
use kube::Client;
use serin_api::Canary;

use super::{Router, Routes};
use crate::error::Result;
use crate::labels::LabelOptions;
use crate::service::{self, Backend};
use crate::workload::read_target_pods;

pub struct KubernetesRouter {
    client: Client,
    labels: LabelOptions,
}

impl KubernetesRouter {
    pub fn new(client: Client, labels: LabelOptions) -> Self {
        KubernetesRouter { client, labels }
    }
}

#[async_trait]
impl Router for KubernetesRouter {
    async fn initialize(&self, canary: &Canary) -> Result<()> {
        let pods = read_target_pods(&self.client, canary, &self.labels).await?;
        service::reconcile_backend_services(&self.client, canary, &pods).await
    }

    async fn reconcile(&self, canary: &Canary) -> Result<()> {
        let pods = read_target_pods(&self.client, canary, &self.labels).await?;
        service::reconcile_services(&self.client, canary, &pods, Backend::Primary).await
    }

    /// No split to set: the apex stays on the primary.
    async fn set_routes(&self, _canary: &Canary, _routes: Routes) -> Result<()> {
        Ok(())
    }

    /// All traffic on the primary, always.
    async fn get_routes(&self, _canary: &Canary) -> Result<Routes> {
        Ok(Routes::PRIMARY)
    }

    async fn finalize(&self, canary: &Canary) -> Result<()> {
        let pods = read_target_pods(&self.client, canary, &self.labels)
            .await
            .ok();
        service::finalize_services(&self.client, canary, pods.as_ref()).await
    }
}
