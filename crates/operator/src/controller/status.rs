//! Status writes with optimistic concurrency: the write carries the resourceVersion the
//! run started from; on a conflict the Canary is read again and the same status is
//! written onto the fresh object, so a decision is never lost to a concurrent spec or
//! metadata change.

use std::time::Duration;

use kube::Api;
use kube::ResourceExt;
use kube::api::PostParams;
use serin_api::{Canary, CanaryStatus};

const ATTEMPTS: u32 = 8;

fn retryable(e: &kube::Error) -> Option<bool> {
    match e {
        kube::Error::Api(s) if s.code == 409 => Some(true),
        kube::Error::Api(s) if s.code >= 500 || s.code == 429 => Some(false),
        kube::Error::Service(_) | kube::Error::HyperError(_) => Some(false),
        _ => None,
    }
}

/// Writes `status` on `canary` (replace of the status subresource), re-reading the
/// Canary after a conflict and retrying server errors a few times.
pub async fn write_status(
    api: &Api<Canary>,
    canary: &Canary,
    status: CanaryStatus,
) -> Result<Canary, kube::Error> {
    let name = canary.name_any();
    let mut object = canary.clone();
    object.status = Some(status.clone());
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
        }
        match api
            .replace_status(&name, &PostParams::default(), &object)
            .await
        {
            Ok(c) => return Ok(c),
            Err(e) => match retryable(&e) {
                None => return Err(e),
                Some(conflict) => {
                    if conflict {
                        match api.get(&name).await {
                            Ok(fresh) => {
                                object = fresh;
                                object.status = Some(status.clone());
                            }
                            Err(e) if retryable(&e).is_some() => {}
                            Err(e) => return Err(e),
                        }
                    }
                    last = Some(e);
                }
            },
        }
    }
    Err(last.unwrap_or_else(|| {
        kube::Error::Api(Box::new(kube::core::Status::failure(
            "status write retries exhausted",
            "Conflict",
        )))
    }))
}
