//! The metadata serin puts on what it generates (selector labels, filtered labels and
//! annotations, owner references, revision hashes) and the one way it writes a
//! generated object: read it, compare, and create or replace only when it differs.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serin_api::Canary;

use crate::error::{Error, Result};

/// Flux's own labels and annotations; never copied to generated objects.
pub const TOOLKIT_MARKER: &str = "toolkit.fluxcd.io";
/// The pod template annotation whose change makes the primary roll its pods.
pub const REVISION_ANNOTATION: &str = "flagger-id";
/// Where the spec of a VirtualService serin took over is kept, as Flagger does.
pub const ORIGINAL_CONFIGURATION: &str = "flagger.kubernetes.io/original-configuration";
/// kubectl's record of the last applied object.
pub const KUBECTL_LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// How generated objects get their labels. The operator's flags set these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelOptions {
    /// Labels that select a workload's pods, in the order they are looked for.
    pub selector_labels: Vec<String>,
    /// Prefixes of the target's labels and annotations copied to the primary
    /// workload (`*` copies all). Empty by default, as in Flagger.
    pub include_label_prefix: Vec<String>,
}

impl Default for LabelOptions {
    fn default() -> Self {
        LabelOptions {
            selector_labels: serin_api::defaults::SELECTOR_LABELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            include_label_prefix: Vec::new(),
        }
    }
}

/// The label that selects a target's pods (`app: podinfo`) and what its primary's
/// pods carry instead (`app: podinfo-primary`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorLabel {
    pub key: String,
    pub value: String,
}

impl SelectorLabel {
    /// The first of `keys` in the workload's `spec.selector.matchLabels`.
    pub fn find(
        kind: &str,
        namespace: &str,
        name: &str,
        selector: Option<&LabelSelector>,
        keys: &[String],
    ) -> Result<SelectorLabel> {
        let labels = selector.and_then(|s| s.match_labels.as_ref());
        for key in keys {
            if let Some(value) = labels.and_then(|l| l.get(key)) {
                return Ok(SelectorLabel {
                    key: key.clone(),
                    value: value.clone(),
                });
            }
        }
        Err(Error::Invalid(format!(
            "{} {name}.{namespace} spec.selector.matchLabels must contain one of {keys:?}",
            kind.to_lowercase()
        )))
    }

    pub fn primary_value(&self) -> String {
        format!("{}-primary", self.value)
    }

    /// `{key: value}`: what selects the target's pods.
    pub fn canary_selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(self.key.clone(), self.value.clone())])
    }

    /// `{key: value-primary}`: what selects the primary's pods.
    pub fn primary_selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(self.key.clone(), self.primary_value())])
    }
}

/// The labels without Flux's, with the selector label set to the primary's value.
pub fn primary_labels(
    labels: Option<&BTreeMap<String, String>>,
    selector: &SelectorLabel,
) -> BTreeMap<String, String> {
    let mut out = filter_metadata(labels);
    out.insert(selector.key.clone(), selector.primary_value());
    out
}

/// Labels or annotations without Flux's own.
pub fn filter_metadata(meta: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    meta.into_iter()
        .flatten()
        .filter(|(k, _)| !k.contains(TOOLKIT_MARKER))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Flux's opt-out annotations, set on the routing objects serin makes, as Flagger
/// sets them, so that kustomize-controller and helm-controller leave them to serin.
pub const FLUX_OPT_OUT: [(&str, &str); 2] = [
    ("kustomize.toolkit.fluxcd.io/reconcile", "disabled"),
    ("helm.toolkit.fluxcd.io/driftDetection", "disabled"),
];

/// Annotations of a routing object (service, VirtualService): the user's without
/// Flux's own, plus [`FLUX_OPT_OUT`].
pub fn router_annotations(meta: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    let mut out = filter_metadata(meta);
    add_flux_opt_out(&mut out);
    out
}

/// Adds [`FLUX_OPT_OUT`] to `annotations`; true when one was missing.
pub fn add_flux_opt_out(annotations: &mut BTreeMap<String, String>) -> bool {
    let mut changed = false;
    for (k, v) in FLUX_OPT_OUT {
        if annotations.get(k).map(String::as_str) != Some(v) {
            annotations.insert(k.to_string(), v.to_string());
            changed = true;
        }
    }
    changed
}

/// The entries whose key starts with one of the prefixes (`*` matches all), without
/// Flux's own.
pub fn include_by_prefix(
    meta: Option<&BTreeMap<String, String>>,
    prefixes: &[String],
) -> BTreeMap<String, String> {
    meta.into_iter()
        .flatten()
        .filter(|(k, _)| !k.contains(TOOLKIT_MARKER))
        .filter(|(k, _)| {
            prefixes
                .iter()
                .any(|p| p == "*" || (!p.is_empty() && k.starts_with(p.as_str())))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The owner reference every generated object carries: the Canary, as controller.
/// Deleting the Canary in the foreground waits for these objects, as with Flagger.
pub fn owner_reference(canary: &Canary) -> Result<OwnerReference> {
    let mut owner = canary.controller_owner_ref(&()).ok_or_else(|| {
        Error::Invalid(format!(
            "canary {} has no uid yet; it must be read from the cluster",
            canary.id()
        ))
    })?;
    owner.block_owner_deletion = Some(true);
    Ok(owner)
}

/// True when the object's controller is this Canary.
pub fn is_owned_by(meta: &kube::api::ObjectMeta, canary: &Canary) -> bool {
    controller_of(meta).is_some_and(|o| {
        o.kind == "Canary"
            && o.name == canary.name_any()
            && canary.metadata.uid.as_ref().is_none_or(|uid| *uid == o.uid)
    })
}

/// The owner reference marked as controller.
pub fn controller_of(meta: &kube::api::ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// Object names in messages: `podinfo.test`.
pub fn dotted(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}")
}

/// The canary's namespace; a Canary read from the cluster always has one.
pub fn namespace_of(canary: &Canary) -> Result<String> {
    canary
        .metadata
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Error::Invalid(format!("canary {} has no namespace", canary.name_any())))
}

/// A stable short hash in the style of Flagger's `lastAppliedSpec` values: FNV-1a
/// of the canonical JSON (keys sorted), spelled with Kubernetes' safe alphabet.
/// Revisions use Flagger's own hash ([`crate::workload::flagger_hash`]); this is
/// its fallback should the Go type table behind that ever fail to load.
pub fn compute_hash<T: Serialize>(value: &T) -> String {
    let canonical = match serde_json::to_value(value) {
        Ok(v) => canonical_json(&v),
        Err(_) => String::new(),
    };
    safe_encode(&fnv1a32(canonical.as_bytes()).to_string())
}

/// JSON text with every object's keys sorted, so equal values hash equally whatever
/// order their fields were read in.
pub fn canonical_json(value: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// FNV-32a of `bytes`, as `SafeEncodeString` of its decimal digits: the shape of
/// every hash Flagger records.
pub(crate) fn fnv_hash(bytes: &[u8]) -> String {
    safe_encode(&fnv1a32(bytes).to_string())
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Kubernetes' `rand.SafeEncodeString`: no vowels, no look-alike characters.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// A UUID-shaped identifier derived from `seed`: the same input gives the same id, so
/// the primary's pods roll exactly when what they run changed.
pub fn revision_id(seed: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// What happened when a generated object was made to match its desired form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Updated,
    Unchanged,
}

/// How many times a replace is retried after a conflict (someone else wrote the
/// object between our read and our write).
const CONFLICT_RETRIES: usize = 5;

/// Makes the object `name` match what `desired` says: `desired(None)` is the object to
/// create when it does not exist; `desired(Some(current))` returns the updated object,
/// or `None` when the current one is right as it is (no write). A conflict re-reads
/// and tries again.
pub async fn create_or_update<K, F>(
    api: &Api<K>,
    kind: &str,
    name: &str,
    desired: F,
) -> Result<Applied>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
    F: Fn(Option<&K>) -> Result<Option<K>>,
{
    let id = match api.namespace() {
        Some(ns) => dotted(name, ns),
        None => name.to_string(),
    };
    for _ in 0..CONFLICT_RETRIES {
        let current = api
            .get_opt(name)
            .await
            .map_err(|e| Error::kube(format!("{kind} {id} get query error"), e))?;
        match current {
            None => {
                let Some(obj) = desired(None)? else {
                    return Ok(Applied::Unchanged);
                };
                match api.create(&PostParams::default(), &obj).await {
                    Ok(_) => return Ok(Applied::Created),
                    Err(e) if is_status(&e, 409) => continue,
                    Err(e) => return Err(Error::kube(format!("creating {kind} {id} failed"), e)),
                }
            }
            Some(cur) => {
                let Some(obj) = desired(Some(&cur))? else {
                    return Ok(Applied::Unchanged);
                };
                match api.replace(name, &PostParams::default(), &obj).await {
                    Ok(_) => return Ok(Applied::Updated),
                    Err(e) if is_status(&e, 409) => continue,
                    Err(e) => return Err(Error::kube(format!("updating {kind} {id} failed"), e)),
                }
            }
        }
    }
    Err(Error::Invalid(format!(
        "updating {kind} {id} failed: conflicting writes after {CONFLICT_RETRIES} attempts"
    )))
}

/// Deletes the object when this Canary controls it; anything else is left alone.
pub async fn delete_if_owned<K>(
    api: &Api<K>,
    kind: &str,
    name: &str,
    canary: &Canary,
) -> Result<bool>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let id = match api.namespace() {
        Some(ns) => dotted(name, ns),
        None => name.to_string(),
    };
    let current = api
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("{kind} {id} get query error"), e))?;
    match current {
        Some(obj) if is_owned_by(obj.meta(), canary) => {
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => Ok(true),
                Err(e) if is_status(&e, 404) => Ok(false),
                Err(e) => Err(Error::kube(format!("deleting {kind} {id} failed"), e)),
            }
        }
        _ => Ok(false),
    }
}

/// True when the API answered with this HTTP status.
pub fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// A Kubernetes timestamp on serin's clock type.
pub fn to_utc(
    t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(
        t.0.as_second(),
        u32::try_from(t.0.subsec_nanosecond()).unwrap_or(0),
    )
}

/// A time of serin's clock as a Kubernetes timestamp.
pub fn to_time(
    t: chrono::DateTime<chrono::Utc>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    let ts = k8s_openapi::jiff::Timestamp::new(
        t.timestamp(),
        i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    )
    .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts)
}

/// Sets `target` to `value` and tells whether that changed anything.
pub fn assign<T: PartialEq>(target: &mut T, value: T) -> bool {
    if *target == value {
        false
    } else {
        *target = value;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_label_is_found_in_order() {
        let sel = LabelSelector {
            match_labels: Some(BTreeMap::from([
                ("name".to_string(), "n".to_string()),
                ("app.kubernetes.io/name".to_string(), "k".to_string()),
            ])),
            ..Default::default()
        };
        let keys = LabelOptions::default().selector_labels;
        let l = SelectorLabel::find("Deployment", "test", "podinfo", Some(&sel), &keys).unwrap();
        assert_eq!((l.key.as_str(), l.value.as_str()), ("name", "n"));
        assert_eq!(l.primary_value(), "n-primary");
        let err = SelectorLabel::find("Deployment", "test", "podinfo", None, &keys).unwrap_err();
        assert_eq!(
            err.to_string(),
            "deployment podinfo.test spec.selector.matchLabels must contain one of [\"app\", \"name\", \"app.kubernetes.io/name\"]"
        );
    }

    #[test]
    fn flux_labels_are_never_copied() {
        let m = BTreeMap::from([
            (
                "kustomize.toolkit.fluxcd.io/name".to_string(),
                "apps".to_string(),
            ),
            ("team".to_string(), "a".to_string()),
            ("app".to_string(), "podinfo".to_string()),
        ]);
        let sel = SelectorLabel {
            key: "app".into(),
            value: "podinfo".into(),
        };
        let p = primary_labels(Some(&m), &sel);
        assert_eq!(p.get("app").map(String::as_str), Some("podinfo-primary"));
        assert!(!p.keys().any(|k| k.contains(TOOLKIT_MARKER)));
        assert!(include_by_prefix(Some(&m), &[]).is_empty());
        assert_eq!(include_by_prefix(Some(&m), &["te".into()]).len(), 1);
        assert_eq!(include_by_prefix(Some(&m), &["*".into()]).len(), 2);
    }

    #[test]
    fn hashes_ignore_key_order_but_not_values() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":{"x":[1,2],"y":"z"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":{"y":"z","x":[1,2]},"a":1}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"b":{"y":"z","x":[2,1]},"a":1}"#).unwrap();
        assert_eq!(compute_hash(&a), compute_hash(&b));
        assert_ne!(compute_hash(&a), compute_hash(&c));
        assert!(
            compute_hash(&a)
                .chars()
                .all(|ch| "bcdfghjklmnpqrstvwxz2456789".contains(ch))
        );
    }

    #[test]
    fn revision_ids_are_uuid_shaped_and_stable() {
        let a = revision_id("x");
        assert_eq!(a, revision_id("x"));
        assert_ne!(a, revision_id("y"));
        let parts: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
    }
}
