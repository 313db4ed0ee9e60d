//! Traffic routers: one per provider (Istio, Gateway API, Kubernetes blue/green),
//! behind [`Router`]. A new mesh is one new file here.

use async_trait::async_trait;
use serin_api::Canary;

use crate::error::{Error, Result};
use crate::labels::LabelOptions;

mod gateway_api;
mod istio;
mod kubernetes;

pub use gateway_api::{
    GatewayApiRouter, GatewayApiVersion, http_route, http_route_spec, merge_route_matches,
    route_matches,
};

pub use istio::{
    IstioRouter, destination_rule, merge_match_conditions, routes_in, virtual_service,
    virtual_service_spec,
};
pub use kubernetes::KubernetesRouter;

/// The traffic split, as the engine decides it.
pub use serin_engine::Routes;

/// Owns the objects that route traffic for a canary (services, Istio objects).
#[async_trait]
pub trait Router: Send + Sync {
    /// What can be made before the primary is ready, when nothing routes to it yet:
    /// the `-canary` and `-primary` services. The apex service and the mesh's
    /// objects wait for [`Router::reconcile`], which runs once the primary is ready.
    async fn initialize(&self, _canary: &Canary) -> Result<()> {
        Ok(())
    }

    /// Creates or updates the routing objects so they match the spec, keeping the
    /// current weights. No write when nothing changed.
    async fn reconcile(&self, canary: &Canary) -> Result<()>;

    /// Sets the traffic split. For A/B testing, `canary == 100` routes the requests
    /// that match `analysis.match` to the canary and the rest to the primary.
    async fn set_routes(&self, canary: &Canary, routes: Routes) -> Result<()>;

    /// Reads the traffic split back from the cluster.
    async fn get_routes(&self, canary: &Canary) -> Result<Routes>;

    /// Removes what the router made when a canary with `revertOnDeletion` is deleted.
    async fn finalize(&self, canary: &Canary) -> Result<()>;
}

/// The router for the canary's provider: `istio` (the default), `kubernetes`, or
/// `gatewayapi:v1`/`gatewayapi:v1beta1`.
/// Every router also keeps the canary's ClusterIP services.
pub fn router_for(client: kube::Client, canary: &Canary) -> Result<Box<dyn Router>> {
    router_with(client, canary, LabelOptions::default())
}

/// [`router_for`] with explicit label settings.
pub fn router_with(
    client: kube::Client,
    canary: &Canary,
    labels: LabelOptions,
) -> Result<Box<dyn Router>> {
    match canary.provider() {
        "istio" => Ok(Box::new(IstioRouter::new(client, labels))),
        "kubernetes" => Ok(Box::new(KubernetesRouter::new(client, labels))),
        other if GatewayApiVersion::from_provider(other).is_some() => {
            let version = GatewayApiVersion::from_provider(other).unwrap_or(GatewayApiVersion::V1);
            Ok(Box::new(GatewayApiRouter::new(client, labels, version)))
        }
        other => Err(Error::Invalid(format!(
            "canary {}: provider {other} is not supported (istio, kubernetes, gatewayapi:v1 or gatewayapi:v1beta1)",
            canary.id()
        ))),
    }
}

/// The session-affinity cookies (`name=value`) of a canary's routes, as
/// `status.sessionAffinityCookie`, `primarySessionAffinityCookie` and
/// `previousSessionAffinityCookie` keep them.
///
/// The engine chooses the cookies and keeps them in the status (a new value at the
/// start of each analysis, retired when the rollout ends); the router only reads
/// them, so the cookie users receive is always the one the status shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionCookies {
    /// Sent to users routed to the canary; while set, they stay on the canary.
    pub canary: Option<String>,
    /// Sent to users routed to the primary (with `primaryCookieName`).
    pub primary: Option<String>,
    /// The canary cookie of the last rollout, expired on the users that still hold it.
    pub previous: Option<String>,
}

impl SessionCookies {
    /// The cookies once the canary gets `canary_weight` percent of the traffic.
    /// Without `analysis.sessionAffinity` the status is kept as it is.
    pub fn for_routes(canary: &Canary, canary_weight: i32) -> SessionCookies {
        let status = canary.status_or_default();
        let from_status = SessionCookies {
            canary: status
                .session_affinity_cookie
                .clone()
                .filter(|c| !c.is_empty()),
            primary: status
                .primary_session_affinity_cookie
                .clone()
                .filter(|c| !c.is_empty()),
            previous: status
                .previous_session_affinity_cookie
                .clone()
                .filter(|c| !c.is_empty()),
        };
        if canary_weight > 0
            || canary
                .analysis()
                .is_none_or(|a| a.session_affinity.is_none())
        {
            from_status
        } else {
            SessionCookies {
                canary: None,
                primary: from_status.primary,
                previous: from_status.canary.or(from_status.previous),
            }
        }
    }
}
