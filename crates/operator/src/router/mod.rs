//! Traffic routers: one per provider (Istio, Kubernetes blue/green), behind
//! [`Router`]. A new mesh is one new file here.

use async_trait::async_trait;
use serin_api::Canary;

use crate::error::Result;

/// The traffic split between primary and canary. The weights always sum to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routes {
    pub primary: i32,
    pub canary: i32,
    /// The canary receives a copy of the primary's traffic.
    pub mirrored: bool,
}

impl Routes {
    /// All traffic to the primary.
    pub const PRIMARY: Routes = Routes {
        primary: 100,
        canary: 0,
        mirrored: false,
    };

    /// `canary` percent to the canary, the rest to the primary.
    pub fn to_canary(canary: i32) -> Routes {
        let canary = canary.clamp(0, 100);
        Routes {
            primary: 100 - canary,
            canary,
            mirrored: false,
        }
    }
}

/// Owns the objects that route traffic for a canary (services, Istio objects).
#[async_trait]
pub trait Router: Send + Sync {
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
