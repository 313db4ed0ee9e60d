//! Stand-ins for what a Canary needs and the manifests do not hold: its target (a
//! podinfo workload, as in the seeds) and its HPA. `serin simulate` and
//! `serin render` add them so that a Canary file alone is enough to try serin; both
//! tell the user which objects were stood in.

use serde_json::{Value, json};

use crate::load::{Document, Object, to_object};

/// The `source` of a stand-in document (errors about it name this, not a file).
pub const SOURCE: &str = "(stand-in)";

/// One object made up because the input lacked it.
#[derive(Debug, Clone)]
pub struct StandIn {
    /// What it is, for a note to the user: `deployment test/podinfo (podinfo 6.0.0
    /// stand-in)`.
    pub what: String,
    /// The object, as a document of its own.
    pub document: Document,
}

impl StandIn {
    /// The line a command prints on standard error for it.
    pub fn note(&self) -> String {
        format!("using a stand-in {}: the files do not define it", self.what)
    }
}

fn add(out: &mut Vec<StandIn>, known: &mut Vec<Document>, what: String, value: Value) {
    let document = Document {
        source: SOURCE.into(),
        line: 1,
        value,
    };
    known.push(document.clone());
    out.push(StandIn { what, document });
}

fn has(docs: &[Document], default_namespace: &str, kind: &str, ns: &str, name: &str) -> bool {
    docs.iter().any(|d| {
        d.kind() == kind && d.name() == name && d.namespace().unwrap_or(default_namespace) == ns
    })
}

/// The stand-ins the Canaries in `docs` need: a podinfo Deployment (or DaemonSet, as
/// `targetRef.kind` says) for a target that is not among the documents, and an HPA
/// for an `autoscalerRef` that is not. Objects that name no namespace are in
/// `default_namespace`. A Canary that cannot be read is skipped (the caller reports
/// it); a target two Canaries share is stood in once.
pub fn stand_ins(docs: &[Document], default_namespace: &str) -> Vec<StandIn> {
    let mut out: Vec<StandIn> = Vec::new();
    let mut known: Vec<Document> = docs.to_vec();
    for doc in docs {
        let Ok(Object::Canary(c)) = to_object(doc) else {
            continue;
        };
        let ns = c
            .metadata
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| default_namespace.into());
        let target = c.spec.target_ref.name.clone();
        let kind = c
            .spec
            .target_ref
            .kind
            .clone()
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "Deployment".into());
        let port = c.spec.service.target_port.as_ref().and_then(|p| match p {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => Some(*i),
            _ => None,
        });
        let port = port.unwrap_or(c.spec.service.port);
        if !target.is_empty() && !has(&known, default_namespace, &kind, &ns, &target) {
            let mut spec = json!({
                "selector": {"matchLabels": {"app": target}},
                "template": {
                    "metadata": {"labels": {"app": target}},
                    "spec": {"containers": [{
                        "name": "podinfod",
                        "image": "ghcr.io/stefanprodan/podinfo:6.0.0",
                        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                    }]},
                },
            });
            if kind == "Deployment" {
                spec["replicas"] = json!(1);
                spec["progressDeadlineSeconds"] =
                    json!(c.spec.progress_deadline_seconds.unwrap_or(600));
            }
            add(
                &mut out,
                &mut known,
                format!(
                    "{} {ns}/{target} (podinfo 6.0.0 stand-in)",
                    kind.to_lowercase()
                ),
                json!({
                    "apiVersion": "apps/v1",
                    "kind": kind,
                    "metadata": {"name": target, "namespace": ns, "labels": {"app": target}},
                    "spec": spec,
                }),
            );
        }
        if let Some(hpa) = &c.spec.autoscaler_ref
            && !hpa.name.is_empty()
            && !has(
                &known,
                default_namespace,
                "HorizontalPodAutoscaler",
                &ns,
                &hpa.name,
            )
        {
            add(
                &mut out,
                &mut known,
                format!("horizontalpodautoscaler {ns}/{} (stand-in)", hpa.name),
                json!({
                    "apiVersion": "autoscaling/v2",
                    "kind": "HorizontalPodAutoscaler",
                    "metadata": {"name": hpa.name, "namespace": ns},
                    "spec": {
                        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target},
                        "minReplicas": 2,
                        "maxReplicas": 4,
                        "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 99}}}],
                    },
                }),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_documents;

    const CANARY: &str = "apiVersion: flagger.app/v1beta1\nkind: Canary\n\
        metadata: {name: podinfo, namespace: test}\n\
        spec:\n  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}\n  \
        autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: podinfo}\n  \
        service: {port: 9898}\n";

    #[test]
    fn a_canary_alone_gets_its_target_and_hpa_once() {
        let text = format!(
            "{CANARY}---\n{}",
            CANARY.replace("{name: podinfo, namespace", "{name: second, namespace")
        );
        let docs = parse_documents("c.yaml", &text).unwrap();
        let s = stand_ins(&docs, "default");
        let whats: Vec<&str> = s.iter().map(|s| s.what.as_str()).collect();
        assert_eq!(
            whats,
            [
                "deployment test/podinfo (podinfo 6.0.0 stand-in)",
                "horizontalpodautoscaler test/podinfo (stand-in)",
            ]
        );
        assert_eq!(
            s[0].document.value["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
            9898
        );
        assert_eq!(s[0].document.source, SOURCE);
    }

    #[test]
    fn a_target_in_the_input_is_not_stood_in() {
        let target = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: podinfo}\n---\n";
        let text = format!(
            "{target}{}",
            CANARY.replace("namespace: test", "namespace: prod")
        );
        let docs = parse_documents("c.yaml", &text).unwrap();
        assert_eq!(stand_ins(&docs, "prod").len(), 1, "only the HPA");
        assert_eq!(
            stand_ins(&docs, "default").len(),
            2,
            "the target is in default"
        );
    }
}
