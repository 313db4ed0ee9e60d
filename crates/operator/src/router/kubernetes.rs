//! The `kubernetes` provider: no mesh, blue/green with the ClusterIP services alone.
//! The apex service selects the primary's pods, and all of the canary's when the
//! canary gets the traffic (weight 100). Partial weights cannot be expressed with a
//! selector; they leave the traffic on the primary.

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

/// Which pods the apex selects for a traffic split.
pub fn apex_backend_for(routes: Routes) -> Backend {
    if routes.canary >= 100 {
        Backend::Canary
    } else {
        Backend::Primary
    }
}

#[async_trait]
impl Router for KubernetesRouter {
    async fn reconcile(&self, canary: &Canary) -> Result<()> {
        let pods = read_target_pods(&self.client, canary, &self.labels).await?;
        let apex = service::apex_backend(&self.client, canary, &pods)
            .await?
            .unwrap_or(Backend::Primary);
        service::reconcile_services(&self.client, canary, &pods, apex).await
    }

    async fn set_routes(&self, canary: &Canary, routes: Routes) -> Result<()> {
        let pods = read_target_pods(&self.client, canary, &self.labels).await?;
        let (apex, _, _) = canary.service_names();
        service::reconcile_service(
            &self.client,
            canary,
            &apex,
            &pods,
            apex_backend_for(routes),
            canary.spec.service.apex.as_ref(),
        )
        .await?;
        Ok(())
    }

    async fn get_routes(&self, canary: &Canary) -> Result<Routes> {
        let pods = read_target_pods(&self.client, canary, &self.labels).await?;
        Ok(
            match service::apex_backend(&self.client, canary, &pods).await? {
                Some(Backend::Canary) => Routes::to_canary(100),
                _ => Routes::PRIMARY,
            },
        )
    }

    async fn finalize(&self, canary: &Canary) -> Result<()> {
        let pods = read_target_pods(&self.client, canary, &self.labels)
            .await
            .ok();
        service::finalize_services(&self.client, canary, pods.as_ref()).await
    }
}
