//! The annotation side of requests made by hand: after a run wrote its status, the
//! request it handled is closed (removed, with its outcome in `serin.dev/request-result`)
//! and the pause mark set or removed, with a merge patch carrying the resourceVersion,
//! so a new request written meanwhile is never removed unseen.

use kube::Api;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serin_api::Canary;
use serin_api::manual::{self, AnnotationChanges};

const ATTEMPTS: u32 = 5;

/// Applies `changes` to the annotations of `canary` (the object as last written).
pub async fn apply_annotations(
    api: &Api<Canary>,
    canary: &Canary,
    changes: &AnnotationChanges,
) -> Result<(), kube::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let handled = canary.annotations().get(manual::REQUEST_ID).cloned();
    let mut object = canary.clone();
    let mut changes = changes.clone();
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": object.resource_version(),
            "annotations": changes,
        }});
        match api
            .patch(
                &canary.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                object = api.get(&canary.name_any()).await?;
                if object.annotations().get(manual::REQUEST_ID) != handled.as_ref()
                    || object.annotations().get(manual::REQUEST).is_none()
                {
                    // A new request arrived (or the old one was withdrawn): leave it
                    // for the next run, which the watch brings at once.
                    for key in manual::REQUEST_KEYS {
                        changes.remove(key);
                    }
                }
                last = Some(kube::Error::Api(s));
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        kube::Error::Api(Box::new(kube::core::Status::failure(
            "annotation patch retries exhausted",
            "Conflict",
        )))
    }))
}
