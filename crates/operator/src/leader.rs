//! Leader election on a `coordination.k8s.io/v1` Lease, so that with several replicas
//! exactly one runs canaries. The leader renews the Lease every `renew_every`; another
//! replica takes it over once it has not been renewed for `lease_duration`, or at its
//! next try (every `retry_every`) once the holder has released it ([`LeaderElection::release`],
//! on SIGTERM, as client-go's `ReleaseOnCancel`). Every write carries the Lease's
//! resourceVersion, so two candidates never both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use serin_api::clock::Clock;
use tokio::sync::watch;

#[derive(Clone)]
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    clock: Clock,
    pub lease_duration: Duration,
    pub renew_every: Duration,
    /// How often a candidate that does not hold the Lease tries to take it.
    pub retry_every: Duration,
}

impl LeaderElection {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        clock: Clock,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            clock,
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            retry_every: Duration::from_secs(2),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn now(&self) -> MicroTime {
        MicroTime(serin_api::clock::k8s_time(self.clock.now()).0)
    }

    /// One attempt to take or renew the Lease. `Ok(true)` when this candidate holds it.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = self.now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.lease_duration.as_secs() as i32),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.identity;
        let expired = match &spec.renew_time {
            None => true,
            Some(t) => {
                let duration = spec
                    .lease_duration_seconds
                    .map(|s| Duration::from_secs(s.max(1) as u64))
                    .unwrap_or(self.lease_duration);
                let renewed = t.0.as_second();
                now.0.as_second() >= renewed + duration.as_secs() as i64
            }
        };
        if !ours && !holder.is_empty() && !expired {
            return Ok(false);
        }
        let mut next = spec;
        if !ours {
            next.acquire_time = Some(now.clone());
            next.lease_transitions = Some(next.lease_transitions.unwrap_or(0) + 1);
            next.holder_identity = Some(self.identity.clone());
        }
        next.renew_time = Some(now);
        next.lease_duration_seconds = Some(self.lease_duration.as_secs() as i32);
        lease.spec = Some(next);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up, as client-go's `ReleaseOnCancel` does: the holder is
    /// cleared and the duration shortened to one second, so a waiting candidate takes
    /// it at its next try instead of once the lease duration has passed. Only while
    /// this candidate still holds it (the write carries the resourceVersion read);
    /// `Ok(true)` when released. Call it only once this candidate has stopped acting.
    pub async fn release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        let now = self.now();
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(msg = format!("leader election: {e}")),
            }
            tokio::time::sleep(self.retry_every).await;
        }
    }

    /// Keeps renewing the Lease in the background. The receiver turns `false` when the
    /// lease could not be renewed within its duration (another replica may act now).
    pub fn keep(self) -> (tokio::task::JoinHandle<()>, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(true);
        let handle = tokio::spawn(async move {
            let mut last_renewed = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(self.renew_every).await;
                match self.try_acquire().await {
                    Ok(true) => last_renewed = tokio::time::Instant::now(),
                    Ok(false) => {
                        let _ = tx.send(false);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(msg = format!("leader election: cannot renew lease: {e}"));
                        if last_renewed.elapsed() >= self.lease_duration {
                            let _ = tx.send(false);
                            return;
                        }
                    }
                }
            }
        });
        (handle, rx)
    }
}

/// Leadership was lost: another replica may act now, so this one must stop.
#[derive(Debug, thiserror::Error)]
#[error("lost leadership of lease {0}")]
pub struct LostLeadership(pub String);

impl LeaderElection {
    /// Waits for leadership, then runs `work` while keeping the lease. Returns when
    /// `work` ends, or with [`LostLeadership`] (having dropped `work`) when the lease
    /// is lost.
    pub async fn run_as_leader<F>(self, work: F) -> Result<(), LostLeadership>
    where
        F: std::future::Future<Output = ()>,
    {
        self.acquire().await;
        tracing::info!(msg = format!("became the leader as {}", self.identity));
        let name = self.name.clone();
        let (renewal, mut lost) = self.keep();
        // Stop renewing whenever this future ends or is dropped, so a stopped replica
        // never holds the lease without acting.
        let _renewal = AbortOnDrop(renewal);
        let result = tokio::select! {
            _ = work => Ok(()),
            _ = async {
                while lost.changed().await.is_ok() {
                    if !*lost.borrow() {
                        return;
                    }
                }
                std::future::pending::<()>().await
            } => Err(LostLeadership(name)),
        };
        result
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
