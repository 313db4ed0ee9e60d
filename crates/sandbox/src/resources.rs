//! The registry of served resources: built-in kinds plus those that CustomResourceDefinitions add.

use std::sync::Arc;

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Where the objects of a resource live. Several served versions (and, for events, two API
/// groups) share one storage, as on a real API server.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageKey {
    pub group: String,
    pub resource: String,
}

/// A column of a Table response, as a CRD's `additionalPrinterColumns` describes it.
#[derive(Clone, Debug)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// How objects of a served version differ from the stored form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    /// Same fields; only `apiVersion` changes.
    None,
    /// events.k8s.io/v1 Event served from core/v1 Event storage.
    EventsV1,
}

/// Paths of a scale subresource (`.spec.replicas` style JSON paths).
#[derive(Clone, Debug)]
pub struct ScaleSpec {
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: Option<String>,
}

/// One served group/version/resource.
#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status: bool,
    pub scale: Option<ScaleSpec>,
    /// `None`: the built-in columns for this kind (see `table`).
    pub columns: Option<Vec<PrinterColumn>>,
    pub storage: StorageKey,
    pub conversion: Conversion,
    pub from_crd: bool,
    /// The CRD's structural schema (`openAPIV3Schema`) of this version.
    pub schema: Option<Arc<Value>>,
    /// Sent as a `Warning` header on every request to a deprecated version.
    pub deprecation_warning: Option<String>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.storage.group == group && self.storage.resource == plural
    }
}

#[derive(Clone, Copy)]
struct B {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
}

fn builtin(b: B) -> ResourceType {
    ResourceType {
        group: b.group.into(),
        version: b.version.into(),
        plural: b.plural.into(),
        singular: b.singular.into(),
        kind: b.kind.into(),
        list_kind: format!("{}List", b.kind),
        namespaced: b.namespaced,
        short_names: b.short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        status: b.status,
        scale: None,
        columns: None,
        storage: StorageKey {
            group: b.group.into(),
            resource: b.plural.into(),
        },
        conversion: Conversion::None,
        from_crd: false,
        schema: None,
        deprecation_warning: None,
    }
}

fn col(name: &str, type_: &str, json_path: &str, priority: i64) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        format: String::new(),
        description: String::new(),
        priority,
        json_path: json_path.into(),
    }
}

/// Every served resource. Cheap to clone (Arcs).
#[derive(Clone, Debug)]
pub struct Registry {
    types: Vec<Arc<ResourceType>>,
    /// Bumped on every change, so clients re-fetch OpenAPI documents.
    pub generation: u64,
}

impl Registry {
    pub fn builtin() -> Self {
        let ns = true;
        let cluster = false;
        let mut types = Vec::new();
        let core = |plural, singular, kind, namespaced, short, status| B {
            group: "",
            version: "v1",
            plural,
            singular,
            kind,
            namespaced,
            short,
            status,
        };
        for b in [
            core(
                "namespaces",
                "namespace",
                "Namespace",
                cluster,
                &["ns"][..],
                true,
            ),
            core("configmaps", "configmap", "ConfigMap", ns, &["cm"], false),
            core("secrets", "secret", "Secret", ns, &[], false),
            core("services", "service", "Service", ns, &["svc"], true),
            core("pods", "pod", "Pod", ns, &["po"], true),
            core("events", "event", "Event", ns, &["ev"], false),
            core(
                "serviceaccounts",
                "serviceaccount",
                "ServiceAccount",
                ns,
                &["sa"],
                false,
            ),
            core("endpoints", "endpoints", "Endpoints", ns, &["ep"], false),
        ] {
            types.push(builtin(b));
        }
        let mut ev = builtin(B {
            group: "events.k8s.io",
            version: "v1",
            plural: "events",
            singular: "event",
            kind: "Event",
            namespaced: ns,
            short: &["ev"],
            status: false,
        });
        ev.storage = StorageKey {
            group: String::new(),
            resource: "events".into(),
        };
        ev.conversion = Conversion::EventsV1;
        types.push(ev);
        let apps = |plural, singular, kind, short, scale: bool| {
            let mut t = builtin(B {
                group: "apps",
                version: "v1",
                plural,
                singular,
                kind,
                namespaced: ns,
                short,
                status: true,
            });
            if scale {
                t.scale = Some(ScaleSpec {
                    spec_replicas_path: ".spec.replicas".into(),
                    status_replicas_path: ".status.replicas".into(),
                    label_selector_path: None,
                });
            }
            t
        };
        types.push(apps(
            "deployments",
            "deployment",
            "Deployment",
            &["deploy"][..],
            true,
        ));
        types.push(apps("daemonsets", "daemonset", "DaemonSet", &["ds"], false));
        types.push(apps(
            "replicasets",
            "replicaset",
            "ReplicaSet",
            &["rs"],
            true,
        ));
        types.push(apps(
            "statefulsets",
            "statefulset",
            "StatefulSet",
            &["sts"],
            true,
        ));
        for v in ["v2", "v2beta2"] {
            types.push(builtin(B {
                group: "autoscaling",
                version: v,
                plural: "horizontalpodautoscalers",
                singular: "horizontalpodautoscaler",
                kind: "HorizontalPodAutoscaler",
                namespaced: ns,
                short: &["hpa"],
                status: true,
            }));
        }
        for (plural, singular, kind, namespaced) in [
            ("roles", "role", "Role", ns),
            ("rolebindings", "rolebinding", "RoleBinding", ns),
            ("clusterroles", "clusterrole", "ClusterRole", cluster),
            (
                "clusterrolebindings",
                "clusterrolebinding",
                "ClusterRoleBinding",
                cluster,
            ),
        ] {
            types.push(builtin(B {
                group: "rbac.authorization.k8s.io",
                version: "v1",
                plural,
                singular,
                kind,
                namespaced,
                short: &[],
                status: false,
            }));
        }
        types.push(builtin(B {
            group: "policy",
            version: "v1",
            plural: "poddisruptionbudgets",
            singular: "poddisruptionbudget",
            kind: "PodDisruptionBudget",
            namespaced: ns,
            short: &["pdb"],
            status: true,
        }));
        types.push(builtin(B {
            group: "coordination.k8s.io",
            version: "v1",
            plural: "leases",
            singular: "lease",
            kind: "Lease",
            namespaced: ns,
            short: &[],
            status: false,
        }));
        types.push(builtin(B {
            group: "apiextensions.k8s.io",
            version: "v1",
            plural: "customresourcedefinitions",
            singular: "customresourcedefinition",
            kind: "CustomResourceDefinition",
            namespaced: cluster,
            short: &["crd", "crds"],
            status: true,
        }));
        for v in ["v1beta1", "v1alpha3", "v1"] {
            for (plural, singular, kind, short, columns) in [
                (
                    "virtualservices",
                    "virtualservice",
                    "VirtualService",
                    &["vs"][..],
                    vec![
                        col("Gateways", "string", ".spec.gateways", 0),
                        col("Hosts", "string", ".spec.hosts", 0),
                        col("Age", "date", ".metadata.creationTimestamp", 0),
                    ],
                ),
                (
                    "destinationrules",
                    "destinationrule",
                    "DestinationRule",
                    &["dr"],
                    vec![
                        col("Host", "string", ".spec.host", 0),
                        col("Age", "date", ".metadata.creationTimestamp", 0),
                    ],
                ),
                (
                    "gateways",
                    "gateway",
                    "Gateway",
                    &["gw"],
                    vec![col("Age", "date", ".metadata.creationTimestamp", 0)],
                ),
            ] {
                let mut t = builtin(B {
                    group: "networking.istio.io",
                    version: v,
                    plural,
                    singular,
                    kind,
                    namespaced: ns,
                    short,
                    status: true,
                });
                t.columns = Some(columns);
                t.categories = vec!["istio-io".into(), "networking-istio-io".into()];
                types.push(t);
            }
        }
        // The Gateway API's routes and gateways (gateway.networking.k8s.io), in the
        // versions the Gateway API CRDs serve.
        for v in ["v1", "v1beta1"] {
            for (plural, singular, kind, short, columns) in [
                (
                    "httproutes",
                    "httproute",
                    "HTTPRoute",
                    &[][..],
                    vec![
                        col("Hostnames", "string", ".spec.hostnames", 0),
                        col("Age", "date", ".metadata.creationTimestamp", 0),
                    ],
                ),
                (
                    "gateways",
                    "gateway",
                    "Gateway",
                    &["gtw"][..],
                    vec![
                        col("Class", "string", ".spec.gatewayClassName", 0),
                        col("Age", "date", ".metadata.creationTimestamp", 0),
                    ],
                ),
            ] {
                let mut t = builtin(B {
                    group: "gateway.networking.k8s.io",
                    version: v,
                    plural,
                    singular,
                    kind,
                    namespaced: ns,
                    short,
                    status: true,
                });
                t.columns = Some(columns);
                t.categories = vec!["gateway-api".into()];
                types.push(t);
            }
        }
        // `kubectl get all`
        for t in types.iter_mut() {
            if matches!(
                (t.group.as_str(), t.plural.as_str()),
                ("", "pods" | "services")
                    | (
                        "apps",
                        "deployments" | "daemonsets" | "replicasets" | "statefulsets"
                    )
                    | ("autoscaling", "horizontalpodautoscalers")
            ) {
                t.categories = vec!["all".into()];
            }
        }
        Self {
            types: types.into_iter().map(Arc::new).collect(),
            generation: 1,
        }
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// The preferred served version of a storage (for garbage collection and hooks).
    pub fn for_storage(&self, key: &StorageKey) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| &t.storage == key && t.conversion == Conversion::None)
            .cloned()
    }

    /// Groups with their versions, preferred version first, in registration order.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for t in &self.types {
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, vs)) => {
                    if !vs.contains(&t.version) {
                        vs.push(t.version.clone());
                    }
                }
                None => out.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        for (_, vs) in &mut out {
            vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        out
    }

    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceType>> {
        self.types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .cloned()
            .collect()
    }

    /// Serve (or re-serve) the resource a CustomResourceDefinition describes.
    pub fn register_crd(&mut self, crd: &Value) -> ApiResult<()> {
        let parsed = parse_crd(crd)?;
        let group = parsed[0].group.clone();
        let plural = parsed[0].plural.clone();
        self.types
            .retain(|t| !(t.from_crd && t.group == group && t.plural == plural));
        self.types.extend(parsed.into_iter().map(Arc::new));
        self.generation += 1;
        Ok(())
    }

    pub fn unregister_crd(&mut self, group: &str, plural: &str) {
        self.types
            .retain(|t| !(t.from_crd && t.group == group && t.plural == plural));
        self.generation += 1;
    }
}

/// Kubernetes version priority: GA > beta > alpha, then by number.
pub fn version_priority(v: &str) -> (u8, u64, u64) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let Ok(major) = digits.parse::<u64>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    for (prefix, rank) in [("beta", 2), ("alpha", 1)] {
        if let Some(n) = tail.strip_prefix(prefix)
            && let Ok(minor) = n.parse::<u64>()
        {
            return (rank, major, minor);
        }
    }
    (0, 0, 0)
}

fn s(v: &Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn strings(v: &Value, ptr: &str) -> Vec<String> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn parse_crd(crd: &Value) -> ApiResult<Vec<ResourceType>> {
    let name = s(crd, "/metadata/name");
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    let kind = s(crd, "/spec/names/kind");
    let invalid =
        |m: &str| ApiError::invalid("apiextensions.k8s.io", "CustomResourceDefinition", &name, m);
    if group.is_empty() || !group.contains('.') {
        return Err(invalid(
            "spec.group: Invalid value: should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() || kind.is_empty() {
        return Err(invalid(
            "spec.names: Required value: plural and kind are required",
        ));
    }
    if name != format!("{plural}.{group}") {
        return Err(invalid(&format!(
            "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
        )));
    }
    let singular = match s(crd, "/spec/names/singular") {
        x if x.is_empty() => kind.to_lowercase(),
        x => x,
    };
    let list_kind = match s(crd, "/spec/names/listKind") {
        x if x.is_empty() => format!("{kind}List"),
        x => x,
    };
    let namespaced = s(crd, "/spec/scope") != "Cluster";
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| invalid("spec.versions: Required value: must have exactly one version marked as storage version"))?;
    let mut out = Vec::new();
    for v in versions {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let version = s(v, "/name");
        if version.is_empty() {
            return Err(invalid("spec.versions[].name: Required value"));
        }
        let scale = v.pointer("/subresources/scale").map(|sc| ScaleSpec {
            spec_replicas_path: s(sc, "/specReplicasPath"),
            status_replicas_path: s(sc, "/statusReplicasPath"),
            label_selector_path: sc
                .get("labelSelectorPath")
                .and_then(Value::as_str)
                .map(String::from),
        });
        let columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .map(|c| PrinterColumn {
                        name: s(c, "/name"),
                        type_: s(c, "/type"),
                        format: s(c, "/format"),
                        description: s(c, "/description"),
                        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        json_path: s(c, "/jsonPath"),
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| vec![col("Age", "date", ".metadata.creationTimestamp", 0)]);
        out.push(ResourceType {
            group: group.clone(),
            version,
            plural: plural.clone(),
            singular: singular.clone(),
            kind: kind.clone(),
            list_kind: list_kind.clone(),
            namespaced,
            short_names: strings(crd, "/spec/names/shortNames"),
            categories: strings(crd, "/spec/names/categories"),
            status: v.pointer("/subresources/status").is_some(),
            scale,
            columns: Some(columns),
            storage: StorageKey {
                group: group.clone(),
                resource: plural.clone(),
            },
            conversion: Conversion::None,
            from_crd: true,
            schema: v
                .pointer("/schema/openAPIV3Schema")
                .filter(|s| s.is_object())
                .map(|s| Arc::new(s.clone())),
            deprecation_warning: (v.get("deprecated").and_then(Value::as_bool) == Some(true)).then(
                || {
                    v.get("deprecationWarning")
                        .and_then(Value::as_str)
                        .map(String::from)
                        .unwrap_or_else(|| {
                            format!("{group}/{} {kind} is deprecated", s(v, "/name"))
                        })
                },
            ),
        });
    }
    if out.is_empty() {
        return Err(invalid("spec.versions: Invalid value: no served version"));
    }
    // Defaults must pass their own schema. kube-apiserver names the schema
    // spec.validation when every version has the same one, else per version.
    let schemas: Vec<(usize, &Value)> = versions
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.pointer("/schema/openAPIV3Schema").map(|s| (i, s)))
        .collect();
    let shared = schemas.len() == versions.len() && schemas.windows(2).all(|w| w[0].1 == w[1].1);
    let mut bad = Vec::new();
    for (i, schema) in &schemas {
        if shared {
            bad.extend(crate::schema::bad_defaults(
                schema,
                "spec.validation.openAPIV3Schema",
            ));
            break;
        }
        bad.extend(crate::schema::bad_defaults(
            schema,
            &format!("spec.versions[{i}].schema.openAPIV3Schema"),
        ));
    }
    if !bad.is_empty() {
        return Err(ApiError::invalid_fields(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            &name,
            bad,
        ));
    }
    out.sort_by_key(|t| std::cmp::Reverse(version_priority(&t.version)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order_follows_kubernetes_priority() {
        let mut v = vec!["v1alpha3", "v1", "v1beta1", "v2beta2", "v2"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, ["v2", "v1", "v2beta2", "v1beta1", "v1alpha3"]);
    }
}
