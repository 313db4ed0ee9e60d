//! Tracked configs: the ConfigMaps and Secrets a target's pods mount or map to env
//! vars. Their checksums (`status.trackedConfigs`) make a config change a new
//! revision; at promotion they are copied to `<name>-primary` and the primary's pod
//! spec is rewritten to use the copies.

use base64::Engine as _;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret};
use kube::api::{Api, ObjectMeta};
use kube::{Client, ResourceExt};
use serin_api::Canary;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::labels::{self, LabelOptions};

/// The annotation that opts a ConfigMap or Secret out of tracking, as in Flagger:
/// any value starting with `disable`.
pub const TRACKING_ANNOTATION: &str = "flagger.app/config-tracking";

/// Secret types serin tracks; service-account tokens and the like are not copied.
const TRACKED_SECRET_TYPES: [&str; 4] = [
    "Opaque",
    "kubernetes.io/basic-auth",
    "kubernetes.io/ssh-auth",
    "kubernetes.io/tls",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    ConfigMap,
    Secret,
}

impl ConfigKind {
    /// The word status.trackedConfigs keys start with.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::ConfigMap => "configmap",
            ConfigKind::Secret => "secret",
        }
    }
}

/// A ConfigMap or Secret a pod spec refers to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigRef {
    pub kind: ConfigKind,
    pub name: String,
}

impl ConfigRef {
    pub fn config_map(name: &str) -> Self {
        ConfigRef {
            kind: ConfigKind::ConfigMap,
            name: name.to_string(),
        }
    }

    pub fn secret(name: &str) -> Self {
        ConfigRef {
            kind: ConfigKind::Secret,
            name: name.to_string(),
        }
    }

    /// `configmap/NAME` or `secret/NAME`, as status.trackedConfigs holds it.
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.name)
    }

    pub fn primary_name(&self) -> String {
        format!("{}-primary", self.name)
    }
}

/// Every ConfigMap and Secret the pod spec refers to (volumes, projected volumes,
/// env `valueFrom` and `envFrom`, in containers and init containers), each with
/// whether it is required (a missing optional one is not an error).
pub fn referenced_configs(spec: &PodSpec) -> BTreeMap<ConfigRef, bool> {
    let mut refs: BTreeMap<ConfigRef, bool> = BTreeMap::new();
    let mut add = |r: ConfigRef, optional: Option<bool>| {
        let required = optional != Some(true);
        let e = refs.entry(r).or_insert(required);
        *e = *e || required;
    };
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            add(ConfigRef::config_map(&cm.name), cm.optional);
        }
        if let Some(s) = &v.secret
            && let Some(name) = &s.secret_name
        {
            add(ConfigRef::secret(name), s.optional);
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &source.config_map {
                add(ConfigRef::config_map(&cm.name), cm.optional);
            }
            if let Some(s) = &source.secret {
                add(ConfigRef::secret(&s.name), s.optional);
            }
        }
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        for env in c.env.iter().flatten() {
            let Some(from) = &env.value_from else {
                continue;
            };
            if let Some(r) = &from.config_map_key_ref {
                add(ConfigRef::config_map(&r.name), r.optional);
            } else if let Some(r) = &from.secret_key_ref {
                add(ConfigRef::secret(&r.name), r.optional);
            }
        }
        for from in c.env_from.iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                add(ConfigRef::config_map(&r.name), r.optional);
            } else if let Some(r) = &from.secret_ref {
                add(ConfigRef::secret(&r.name), r.optional);
            }
        }
    }
    refs
}

/// The pod spec with every reference to a tracked config pointing at its primary copy.
pub fn rewrite_to_primary(spec: &PodSpec, tracked: &BTreeSet<ConfigRef>) -> PodSpec {
    let mut spec = spec.clone();
    let cm = |name: &mut String| {
        if tracked.contains(&ConfigRef::config_map(name)) {
            name.push_str("-primary");
        }
    };
    let secret = |name: &mut String| {
        if tracked.contains(&ConfigRef::secret(name)) {
            name.push_str("-primary");
        }
    };
    for v in spec.volumes.iter_mut().flatten() {
        if let Some(c) = &mut v.config_map {
            cm(&mut c.name);
        }
        if let Some(s) = &mut v.secret
            && let Some(name) = &mut s.secret_name
        {
            secret(name);
        }
        for source in v
            .projected
            .iter_mut()
            .flat_map(|p| p.sources.iter_mut().flatten())
        {
            if let Some(c) = &mut source.config_map {
                cm(&mut c.name);
            }
            if let Some(s) = &mut source.secret {
                secret(&mut s.name);
            }
        }
    }
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        for env in c.env.iter_mut().flatten() {
            let Some(from) = &mut env.value_from else {
                continue;
            };
            if let Some(r) = &mut from.config_map_key_ref {
                cm(&mut r.name);
            } else if let Some(r) = &mut from.secret_key_ref {
                secret(&mut r.name);
            }
        }
        for from in c.env_from.iter_mut().flatten() {
            if let Some(r) = &mut from.config_map_ref {
                cm(&mut r.name);
            } else if let Some(r) = &mut from.secret_ref {
                secret(&mut r.name);
            }
        }
    }
    spec
}

/// A config's checksum by Flagger's recipe: the first 8 bytes of the SHA-256 of its
/// data's JSON as Go encodes it (sorted keys, HTML-safe escapes), in hex, so that a
/// Canary moved from Flagger should keep its tracked checksums.
pub fn checksum(data: Option<&BTreeMap<String, String>>) -> String {
    let json = match data {
        None => "null".to_string(),
        Some(m) if m.is_empty() => "null".to_string(),
        Some(m) => go_json_map(m),
    };
    let digest = Sha256::digest(json.as_bytes());
    hex::encode(&digest[..8])
}

pub fn config_map_checksum(cm: &ConfigMap) -> String {
    checksum(cm.data.as_ref())
}

/// A Secret's checksum over its data as base64 (how Go encodes bytes in JSON).
/// `stringData` counts too: the API server folds it into `data`, and a client that
/// writes it expects the same result.
pub fn secret_checksum(s: &Secret) -> String {
    let data = secret_data(s);
    let encoded: BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                base64::engine::general_purpose::STANDARD.encode(&v.0),
            )
        })
        .collect();
    checksum(Some(&encoded))
}

/// The secret's data with `stringData` folded in, as the API server stores it.
fn secret_data(s: &Secret) -> BTreeMap<String, ByteString> {
    let mut data = s.data.clone().unwrap_or_default();
    for (k, v) in s.string_data.iter().flatten() {
        data.insert(k.clone(), ByteString(v.as_bytes().to_vec()));
    }
    data
}

fn go_json_map(m: &BTreeMap<String, String>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        go_json_string(&mut out, k);
        out.push(':');
        go_json_string(&mut out, v);
    }
    out.push('}');
    out
}

/// A string as Go's `encoding/json` writes it.
fn go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", ch as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn tracking_disabled(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(TRACKING_ANNOTATION))
        .is_some_and(|v| v.starts_with("disable"))
}

/// A tracked config as read from the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackedConfig {
    ConfigMap(ConfigMap),
    Secret(Secret),
}

impl TrackedConfig {
    pub fn reference(&self) -> ConfigRef {
        match self {
            TrackedConfig::ConfigMap(c) => ConfigRef::config_map(&c.name_any()),
            TrackedConfig::Secret(s) => ConfigRef::secret(&s.name_any()),
        }
    }

    pub fn checksum(&self) -> String {
        match self {
            TrackedConfig::ConfigMap(c) => config_map_checksum(c),
            TrackedConfig::Secret(s) => secret_checksum(s),
        }
    }

    /// Whether serin tracks this config: not opted out, and for Secrets one of the
    /// types that hold user data.
    pub fn is_tracked(&self) -> bool {
        match self {
            TrackedConfig::ConfigMap(c) => !tracking_disabled(&c.metadata),
            TrackedConfig::Secret(s) => {
                let type_ = s.type_.as_deref().unwrap_or("Opaque");
                TRACKED_SECRET_TYPES.contains(&type_) && !tracking_disabled(&s.metadata)
            }
        }
    }
}

/// The configs of a target that serin tracks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackedConfigs {
    pub configs: Vec<TrackedConfig>,
}

impl TrackedConfigs {
    /// `configmap/NAME` → checksum, for status.trackedConfigs.
    pub fn checksums(&self) -> BTreeMap<String, String> {
        self.configs
            .iter()
            .map(|c| (c.reference().key(), c.checksum()))
            .collect()
    }

    pub fn refs(&self) -> BTreeSet<ConfigRef> {
        self.configs.iter().map(TrackedConfig::reference).collect()
    }

    /// Reads every config the pod spec refers to. A missing required config is an
    /// error; a missing optional one, an opted-out one or a Secret of another type
    /// is left out.
    pub async fn read(client: &Client, namespace: &str, spec: &PodSpec) -> Result<TrackedConfigs> {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let mut configs = Vec::new();
        for (r, required) in referenced_configs(spec) {
            let found = match r.kind {
                ConfigKind::ConfigMap => cms
                    .get_opt(&r.name)
                    .await
                    .map_err(|e| {
                        Error::kube(
                            format!(
                                "configmap {} get query error",
                                labels::dotted(&r.name, namespace)
                            ),
                            e,
                        )
                    })?
                    .map(TrackedConfig::ConfigMap),
                ConfigKind::Secret => secrets
                    .get_opt(&r.name)
                    .await
                    .map_err(|e| {
                        Error::kube(
                            format!(
                                "secret {} get query error",
                                labels::dotted(&r.name, namespace)
                            ),
                            e,
                        )
                    })?
                    .map(TrackedConfig::Secret),
            };
            match found {
                Some(c) if c.is_tracked() => configs.push(c),
                Some(_) => {}
                None if required => {
                    return Err(Error::NotFound {
                        kind: match r.kind {
                            ConfigKind::ConfigMap => "ConfigMap".into(),
                            ConfigKind::Secret => "Secret".into(),
                        },
                        namespace: namespace.to_string(),
                        name: r.name.clone(),
                    });
                }
                None => tracing::debug!(config = %r.key(), "optional config not found"),
            }
        }
        Ok(TrackedConfigs { configs })
    }

    /// Creates or updates the `-primary` copy of every tracked config.
    pub async fn sync_primary_copies(
        &self,
        client: &Client,
        canary: &Canary,
        opts: &LabelOptions,
    ) -> Result<()> {
        let namespace = labels::namespace_of(canary)?;
        for config in &self.configs {
            match config {
                TrackedConfig::ConfigMap(cm) => {
                    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
                    let name = ConfigRef::config_map(&cm.name_any()).primary_name();
                    let applied = labels::create_or_update(&api, "configmap", &name, |current| {
                        let desired = primary_config_map(canary, cm, current, opts)?;
                        Ok(match current {
                            Some(cur) if same_config_map(cur, &desired) => None,
                            _ => Some(desired),
                        })
                    })
                    .await?;
                    log_applied(canary, "ConfigMap", &name, applied);
                }
                TrackedConfig::Secret(s) => {
                    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
                    let name = ConfigRef::secret(&s.name_any()).primary_name();
                    let applied = labels::create_or_update(&api, "secret", &name, |current| {
                        let desired = primary_secret(canary, s, current, opts)?;
                        Ok(match current {
                            Some(cur) if same_secret(cur, &desired) => None,
                            _ => Some(desired),
                        })
                    })
                    .await?;
                    log_applied(canary, "Secret", &name, applied);
                }
            }
        }
        Ok(())
    }

    /// Deletes the `-primary` copies this canary made.
    pub async fn delete_primary_copies(
        client: &Client,
        canary: &Canary,
        spec: &PodSpec,
    ) -> Result<()> {
        let namespace = labels::namespace_of(canary)?;
        for r in referenced_configs(spec).keys() {
            let name = r.primary_name();
            match r.kind {
                ConfigKind::ConfigMap => {
                    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
                    labels::delete_if_owned(&api, "configmap", &name, canary).await?;
                }
                ConfigKind::Secret => {
                    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
                    labels::delete_if_owned(&api, "secret", &name, canary).await?;
                }
            }
        }
        Ok(())
    }
}

fn log_applied(canary: &Canary, kind: &str, name: &str, applied: labels::Applied) {
    if applied != labels::Applied::Unchanged {
        tracing::info!(canary = %canary.id(), "{kind} {name} synced");
    }
}

/// Owner references of a primary copy: this canary as controller, and whatever else
/// already owned it (not as controller), as Flagger keeps them.
fn copy_owners(
    canary: &Canary,
    current: Option<&ObjectMeta>,
) -> Result<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>> {
    let mut owners = vec![labels::owner_reference(canary)?];
    for o in current
        .and_then(|m| m.owner_references.as_ref())
        .into_iter()
        .flatten()
    {
        if o.uid != owners[0].uid && !(o.kind == "Canary" && o.name == canary.name_any()) {
            let mut o = o.clone();
            o.controller = Some(false);
            owners.push(o);
        }
    }
    Ok(owners)
}

/// The `-primary` copy of a ConfigMap (on top of the current copy, if any).
pub fn primary_config_map(
    canary: &Canary,
    source: &ConfigMap,
    current: Option<&ConfigMap>,
    opts: &LabelOptions,
) -> Result<ConfigMap> {
    let mut out = current.cloned().unwrap_or_default();
    out.metadata.name = Some(ConfigRef::config_map(&source.name_any()).primary_name());
    out.metadata.namespace = source
        .metadata
        .namespace
        .clone()
        .or_else(|| canary.namespace());
    out.metadata.labels = Some(labels::include_by_prefix(
        source.metadata.labels.as_ref(),
        &opts.include_label_prefix,
    ))
    .filter(|l| !l.is_empty());
    out.metadata.owner_references = Some(copy_owners(canary, current.map(|c| &c.metadata))?);
    out.data = source.data.clone().filter(|d| !d.is_empty());
    out.binary_data = source.binary_data.clone().filter(|d| !d.is_empty());
    Ok(out)
}

/// The `-primary` copy of a Secret (on top of the current copy, if any).
pub fn primary_secret(
    canary: &Canary,
    source: &Secret,
    current: Option<&Secret>,
    opts: &LabelOptions,
) -> Result<Secret> {
    let mut out = current.cloned().unwrap_or_default();
    out.metadata.name = Some(ConfigRef::secret(&source.name_any()).primary_name());
    out.metadata.namespace = source
        .metadata
        .namespace
        .clone()
        .or_else(|| canary.namespace());
    out.metadata.labels = Some(labels::include_by_prefix(
        source.metadata.labels.as_ref(),
        &opts.include_label_prefix,
    ))
    .filter(|l| !l.is_empty());
    out.metadata.owner_references = Some(copy_owners(canary, current.map(|c| &c.metadata))?);
    out.type_ = source.type_.clone();
    let data = secret_data(source);
    out.data = Some(data).filter(|d| !d.is_empty());
    out.string_data = None;
    Ok(out)
}

fn same_config_map(a: &ConfigMap, b: &ConfigMap) -> bool {
    a.data.clone().unwrap_or_default() == b.data.clone().unwrap_or_default()
        && a.binary_data.clone().unwrap_or_default() == b.binary_data.clone().unwrap_or_default()
        && a.metadata.labels.clone().unwrap_or_default()
            == b.metadata.labels.clone().unwrap_or_default()
        && a.metadata.owner_references == b.metadata.owner_references
}

fn same_secret(a: &Secret, b: &Secret) -> bool {
    secret_data(a) == secret_data(b)
        && a.type_ == b.type_
        && a.metadata.labels.clone().unwrap_or_default()
            == b.metadata.labels.clone().unwrap_or_default()
        && a.metadata.owner_references == b.metadata.owner_references
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, ConfigMapProjection, ConfigMapVolumeSource,
        Container, EnvFromSource, EnvVar, EnvVarSource, ProjectedVolumeSource, SecretEnvSource,
        SecretKeySelector, SecretProjection, SecretVolumeSource, Volume, VolumeProjection,
    };

    fn spec() -> PodSpec {
        PodSpec {
            volumes: Some(vec![
                Volume {
                    name: "cfg".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: "cm-vol".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Volume {
                    name: "sec".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some("s-vol".into()),
                        optional: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Volume {
                    name: "proj".into(),
                    projected: Some(ProjectedVolumeSource {
                        sources: Some(vec![
                            VolumeProjection {
                                config_map: Some(ConfigMapProjection {
                                    name: "cm-proj".into(),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            },
                            VolumeProjection {
                                secret: Some(SecretProjection {
                                    name: "s-proj".into(),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            containers: vec![Container {
                name: "app".into(),
                env: Some(vec![
                    EnvVar {
                        name: "A".into(),
                        value_from: Some(EnvVarSource {
                            config_map_key_ref: Some(ConfigMapKeySelector {
                                name: "cm-env".into(),
                                key: "a".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    EnvVar {
                        name: "B".into(),
                        value_from: Some(EnvVarSource {
                            secret_key_ref: Some(SecretKeySelector {
                                name: "s-env".into(),
                                key: "b".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ]),
                env_from: Some(vec![
                    EnvFromSource {
                        config_map_ref: Some(ConfigMapEnvSource {
                            name: "cm-from".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    EnvFromSource {
                        secret_ref: Some(SecretEnvSource {
                            name: "s-from".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }],
            init_containers: Some(vec![Container {
                name: "init".into(),
                env_from: Some(vec![EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource {
                        name: "cm-init".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn every_kind_of_reference_is_found() {
        let refs = referenced_configs(&spec());
        let keys: Vec<String> = refs.keys().map(ConfigRef::key).collect();
        assert_eq!(
            keys,
            [
                "configmap/cm-env",
                "configmap/cm-from",
                "configmap/cm-init",
                "configmap/cm-proj",
                "configmap/cm-vol",
                "secret/s-env",
                "secret/s-from",
                "secret/s-proj",
                "secret/s-vol",
            ]
        );
        assert!(!refs[&ConfigRef::secret("s-vol")], "optional volume");
        assert!(refs[&ConfigRef::config_map("cm-vol")]);
    }

    #[test]
    fn only_tracked_references_are_rewritten() {
        let tracked: BTreeSet<ConfigRef> = [
            ConfigRef::config_map("cm-vol"),
            ConfigRef::config_map("cm-init"),
            ConfigRef::secret("s-proj"),
            ConfigRef::secret("s-env"),
            ConfigRef::config_map("cm-from"),
        ]
        .into();
        let out = rewrite_to_primary(&spec(), &tracked);
        let keys: Vec<String> = referenced_configs(&out)
            .keys()
            .map(ConfigRef::key)
            .collect();
        assert_eq!(
            keys,
            [
                "configmap/cm-env",
                "configmap/cm-from-primary",
                "configmap/cm-init-primary",
                "configmap/cm-proj",
                "configmap/cm-vol-primary",
                "secret/s-env-primary",
                "secret/s-from",
                "secret/s-proj-primary",
                "secret/s-vol",
            ]
        );
    }

    #[test]
    fn checksums_follow_go_json() {
        // Go: json.Marshal(map[string]string{"a":"<b>"}) == `{"a":"\u003cb\u003e"}`
        let m = BTreeMap::from([("a".to_string(), "<b>\n".to_string())]);
        assert_eq!(go_json_map(&m), r#"{"a":"\u003cb\u003e\n"}"#);
        let expected = hex::encode(&Sha256::digest(br#"{"a":"\u003cb\u003e\n"}"#)[..8]);
        assert_eq!(checksum(Some(&m)), expected);
        assert_eq!(checksum(None), checksum(Some(&BTreeMap::new())));
        assert_eq!(checksum(None).len(), 16);
    }

    #[test]
    fn string_data_counts_like_data() {
        let a = Secret {
            data: Some(BTreeMap::from([(
                "k".to_string(),
                ByteString(b"v".to_vec()),
            )])),
            ..Default::default()
        };
        let b = Secret {
            string_data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
            ..Default::default()
        };
        assert_eq!(secret_checksum(&a), secret_checksum(&b));
    }

    #[test]
    fn opted_out_and_token_secrets_are_not_tracked() {
        let mut cm = ConfigMap::default();
        assert!(TrackedConfig::ConfigMap(cm.clone()).is_tracked());
        cm.metadata.annotations = Some(BTreeMap::from([(
            TRACKING_ANNOTATION.to_string(),
            "disabled".to_string(),
        )]));
        assert!(!TrackedConfig::ConfigMap(cm).is_tracked());
        let token = Secret {
            type_: Some("kubernetes.io/service-account-token".into()),
            ..Default::default()
        };
        assert!(!TrackedConfig::Secret(token).is_tracked());
        assert!(TrackedConfig::Secret(Secret::default()).is_tracked());
    }
}
