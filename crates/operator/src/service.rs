//! The ClusterIP services of a canary: the apex (`podinfo`, what clients call), the
//! `-primary` and the `-canary` service, made for every provider.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodTemplateSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ObjectMeta};
use kube::{Client, ResourceExt};
use serin_api::Canary;
use serin_api::canary::CustomMetadata;

use crate::error::{Error, Result};
use crate::labels::{self, Applied, SelectorLabel};
use crate::workload::TargetPods;

/// Containers whose ports are the mesh's, never the application's.
const SIDECARS: [&str; 2] = ["istio-proxy", "envoy"];

/// Which pods a service sends traffic to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Primary,
    Canary,
}

impl Backend {
    pub fn selector(self, label: &SelectorLabel) -> BTreeMap<String, String> {
        match self {
            Backend::Primary => label.primary_selector(),
            Backend::Canary => label.canary_selector(),
        }
    }
}

/// The service's first port: `service.port` named `service.portName` (`http` by
/// default), to `service.targetPort` (the port itself by default).
pub fn main_port(canary: &Canary) -> ServicePort {
    let s = &canary.spec.service;
    let target_port = match &s.target_port {
        None => IntOrString::Int(s.port),
        Some(IntOrString::Int(0)) => IntOrString::Int(s.port),
        Some(IntOrString::String(p)) if p.is_empty() || p == "0" => IntOrString::Int(s.port),
        Some(p) => p.clone(),
    };
    ServicePort {
        name: Some(
            s.port_name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "http".into()),
        ),
        protocol: Some("TCP".into()),
        port: s.port,
        target_port: Some(target_port),
        app_protocol: s.app_protocol.clone().filter(|p| !p.is_empty()),
        node_port: None,
    }
}

/// With `service.portDiscovery`, every other port the target's containers declare
/// (sidecars excepted), named after the container port or `tcp-<container>-<index>`.
pub fn discovered_ports(canary: &Canary, containers: &[Container]) -> Vec<ServicePort> {
    if !canary.spec.service.port_discovery {
        return Vec::new();
    }
    let main = main_port(canary);
    let mut ports: BTreeMap<String, i32> = BTreeMap::new();
    for c in containers {
        if SIDECARS.contains(&c.name.as_str()) {
            continue;
        }
        for (i, p) in c.ports.iter().flatten().enumerate() {
            let is_main = match &main.target_port {
                Some(IntOrString::Int(n)) => p.container_port == *n,
                Some(IntOrString::String(name)) => p.name.as_deref() == Some(name.as_str()),
                None => false,
            };
            if is_main {
                continue;
            }
            let name = p
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| format!("tcp-{}-{i}", c.name));
            ports.insert(name, p.container_port);
        }
    }
    ports
        .into_iter()
        .map(|(name, port)| ServicePort {
            name: Some(name),
            protocol: Some("TCP".into()),
            port,
            target_port: Some(IntOrString::Int(port)),
            ..Default::default()
        })
        .collect()
}

/// Every port of the canary's services.
pub fn service_ports(canary: &Canary, template: &PodTemplateSpec) -> Vec<ServicePort> {
    let mut ports = vec![main_port(canary)];
    if let Some(spec) = &template.spec {
        ports.extend(discovered_ports(canary, &spec.containers));
    }
    ports
}

/// The service `name`, selecting `backend`'s pods, with the labels and annotations
/// of `metadata` (plus `<selector label>: <name>`), owned by the Canary.
pub fn desired_service(
    canary: &Canary,
    name: &str,
    pods: &TargetPods,
    backend: Backend,
    metadata: Option<&CustomMetadata>,
) -> Result<Service> {
    let s = &canary.spec.service;
    let (labels_, annotations) = service_metadata(name, &pods.selector, metadata);
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: canary.namespace(),
            labels: Some(labels_),
            annotations: Some(annotations).filter(|a| !a.is_empty()),
            owner_references: Some(vec![labels::owner_reference(canary)?]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: s.headless.then(|| "None".to_string()),
            selector: Some(backend.selector(&pods.selector)),
            ports: Some(service_ports(canary, &pods.template)),
            traffic_distribution: s.traffic_distribution.clone().filter(|t| !t.is_empty()),
            ..Default::default()
        }),
        status: None,
    })
}

fn service_metadata(
    name: &str,
    selector: &SelectorLabel,
    metadata: Option<&CustomMetadata>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut l = metadata.map(|m| m.labels.clone()).unwrap_or_default();
    l.insert(selector.key.clone(), name.to_string());
    let a = labels::router_annotations(metadata.map(|m| &m.annotations));
    (l, a)
}

fn port_key(
    p: &ServicePort,
) -> (
    i32,
    Option<String>,
    Option<String>,
    Option<IntOrString>,
    Option<String>,
) {
    (
        p.port,
        p.name.clone(),
        Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
        Some(p.target_port.clone().unwrap_or(IntOrString::Int(p.port))),
        p.app_protocol.clone(),
    )
}

fn same_ports(a: &[ServicePort], b: &[ServicePort]) -> bool {
    let mut a: Vec<_> = a.iter().map(port_key).collect();
    let mut b: Vec<_> = b.iter().map(port_key).collect();
    a.sort_by(|x, y| format!("{x:?}").cmp(&format!("{y:?}")));
    b.sort_by(|x, y| format!("{x:?}").cmp(&format!("{y:?}")));
    a == b
}

/// The current service brought in line with the desired one: ports (node ports
/// kept), selector and traffic distribution always; labels and annotations only when
/// this canary owns it (a service the user made keeps theirs), with the keys of
/// `service.unmanagedMetadata` left as they are. `None` when nothing differs.
pub fn updated_service(canary: &Canary, current: &Service, desired: &Service) -> Option<Service> {
    let mut next = current.clone();
    let want = desired.spec.clone().unwrap_or_default();
    let spec = next.spec.get_or_insert_with(Default::default);
    let mut ports = want.ports.clone().unwrap_or_default();
    for p in &mut ports {
        p.node_port = spec
            .ports
            .iter()
            .flatten()
            .find(|c| c.name == p.name && c.node_port.is_some_and(|n| n > 0))
            .and_then(|c| c.node_port);
    }
    let mut changed = false;
    if !same_ports(spec.ports.as_deref().unwrap_or_default(), &ports) {
        spec.ports = Some(ports);
        changed = true;
    }
    changed |= labels::assign(&mut spec.selector, want.selector.clone());
    if want.traffic_distribution.is_some() {
        changed |= labels::assign(
            &mut spec.traffic_distribution,
            want.traffic_distribution.clone(),
        );
    }
    if labels::is_owned_by(&current.metadata, canary) {
        let unmanaged = canary
            .spec
            .service
            .unmanaged_metadata
            .clone()
            .unwrap_or_default();
        let mut l = desired.metadata.labels.clone().unwrap_or_default();
        let mut a = desired.metadata.annotations.clone().unwrap_or_default();
        for k in &unmanaged.labels {
            if let Some(v) = current.metadata.labels.as_ref().and_then(|m| m.get(k)) {
                l.insert(k.clone(), v.clone());
            }
        }
        for k in &unmanaged.annotations {
            if let Some(v) = current.metadata.annotations.as_ref().and_then(|m| m.get(k)) {
                a.insert(k.clone(), v.clone());
            }
        }
        if current.metadata.labels.clone().unwrap_or_default() != l {
            next.metadata.labels = Some(l);
            changed = true;
        }
        if current.metadata.annotations.clone().unwrap_or_default() != a {
            next.metadata.annotations = Some(a).filter(|a| !a.is_empty());
            changed = true;
        }
    } else {
        // A service the user made keeps its metadata, but Flux must not put its
        // selector back on the target's pods.
        let mut a = next.metadata.annotations.clone().unwrap_or_default();
        if labels::add_flux_opt_out(&mut a) {
            next.metadata.annotations = Some(a);
            changed = true;
        }
    }
    changed.then_some(next)
}

/// Creates or updates one service of the canary.
pub async fn reconcile_service(
    client: &Client,
    canary: &Canary,
    name: &str,
    pods: &TargetPods,
    backend: Backend,
    metadata: Option<&CustomMetadata>,
) -> Result<Applied> {
    let namespace = labels::namespace_of(canary)?;
    let api: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let desired = desired_service(canary, name, pods, backend, metadata)?;
    let applied = labels::create_or_update(&api, "service", name, |current| {
        Ok(match current {
            None => Some(desired.clone()),
            Some(cur) => updated_service(canary, cur, &desired),
        })
    })
    .await?;
    match applied {
        Applied::Created => {
            tracing::info!(canary = %canary.id(), "Service {} created", labels::dotted(name, &namespace))
        }
        Applied::Updated => {
            tracing::info!(canary = %canary.id(), "Service {} updated", labels::dotted(name, &namespace))
        }
        Applied::Unchanged => {}
    }
    Ok(applied)
}

/// Creates or updates the canary and primary services (not the apex, which
/// clients call): safe before the primary is ready, as nothing calls them yet.
pub async fn reconcile_backend_services(
    client: &Client,
    canary: &Canary,
    pods: &TargetPods,
) -> Result<()> {
    let (_, primary_name, canary_name) = canary.service_names();
    let s = &canary.spec.service;
    reconcile_service(
        client,
        canary,
        &canary_name,
        pods,
        Backend::Canary,
        s.canary.as_ref(),
    )
    .await?;
    reconcile_service(
        client,
        canary,
        &primary_name,
        pods,
        Backend::Primary,
        s.primary.as_ref(),
    )
    .await?;
    Ok(())
}

/// Creates or updates the canary and primary services, and the apex service
/// selecting `apex`.
pub async fn reconcile_services(
    client: &Client,
    canary: &Canary,
    pods: &TargetPods,
    apex: Backend,
) -> Result<()> {
    reconcile_backend_services(client, canary, pods).await?;
    let (apex_name, _, _) = canary.service_names();
    reconcile_service(
        client,
        canary,
        &apex_name,
        pods,
        apex,
        canary.spec.service.apex.as_ref(),
    )
    .await?;
    Ok(())
}

/// Services a canary makes, for finalization: the ones it owns are deleted; an apex
/// service the user made is pointed back at the target's pods.
pub async fn finalize_services(
    client: &Client,
    canary: &Canary,
    pods: Option<&TargetPods>,
) -> Result<()> {
    let namespace = labels::namespace_of(canary)?;
    let api: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let (apex, primary, canary_svc) = canary.service_names();
    if let Some(pods) = pods {
        let current = api.get_opt(&apex).await.map_err(|e| {
            Error::kube(
                format!(
                    "service {} get query error",
                    labels::dotted(&apex, &namespace)
                ),
                e,
            )
        })?;
        if let Some(svc) = current
            && !labels::is_owned_by(&svc.metadata, canary)
        {
            labels::create_or_update(&api, "service", &apex, |cur| {
                let Some(cur) = cur else { return Ok(None) };
                let mut next = cur.clone();
                let sel = Some(pods.selector.canary_selector());
                let spec = next.spec.get_or_insert_with(Default::default);
                Ok(labels::assign(&mut spec.selector, sel).then_some(next))
            })
            .await?;
        }
    }
    for name in [apex, primary, canary_svc] {
        labels::delete_if_owned(&api, "service", &name, canary).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;
    use serde_json::json;

    fn canary(service: serde_json::Value) -> Canary {
        let mut c: Canary = serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test", "uid": "u-1"},
            "spec": {"targetRef": {"name": "podinfo"}, "service": service}
        }))
        .unwrap();
        c.metadata.uid = Some("u-1".into());
        c
    }

    fn pods(containers: Vec<Container>) -> TargetPods {
        TargetPods {
            kind: "Deployment".into(),
            selector: SelectorLabel {
                key: "app".into(),
                value: "podinfo".into(),
            },
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(k8s_openapi::api::core::v1::PodSpec {
                    containers,
                    ..Default::default()
                }),
            },
        }
    }

    fn container(name: &str, ports: &[(Option<&str>, i32)]) -> Container {
        Container {
            name: name.into(),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p)| ContainerPort {
                        name: n.map(String::from),
                        container_port: *p,
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn port_discovery_adds_every_other_application_port() {
        let c = canary(
            json!({"port": 80, "targetPort": "http", "portDiscovery": true, "appProtocol": "http"}),
        );
        let p = pods(vec![
            container(
                "app",
                &[(Some("http"), 9898), (Some("metrics"), 9797), (None, 9999)],
            ),
            container("istio-proxy", &[(Some("http-envoy-prom"), 15090)]),
        ]);
        let svc = desired_service(&c, "podinfo-canary", &p, Backend::Canary, None).unwrap();
        let ports: Vec<_> = svc
            .spec
            .unwrap()
            .ports
            .unwrap()
            .into_iter()
            .map(|p| {
                (
                    p.name.unwrap(),
                    p.port,
                    serde_json::to_value(p.target_port).unwrap(),
                    p.app_protocol,
                )
            })
            .collect();
        assert_eq!(
            ports,
            [
                (
                    "http".to_string(),
                    80,
                    json!("http"),
                    Some("http".to_string())
                ),
                ("metrics".to_string(), 9797, json!(9797), None),
                ("tcp-app-2".to_string(), 9999, json!(9999), None),
            ]
        );
    }

    #[test]
    fn custom_metadata_and_headless() {
        let c = canary(json!({
            "port": 9898, "headless": true,
            "canary": {"labels": {"tier": "canary"}, "annotations": {"a": "1", "kustomize.toolkit.fluxcd.io/checksum": "x"}}
        }));
        let p = pods(vec![]);
        let meta = c.spec.service.canary.clone();
        let svc =
            desired_service(&c, "podinfo-canary", &p, Backend::Canary, meta.as_ref()).unwrap();
        assert_eq!(
            svc.metadata.labels.unwrap(),
            BTreeMap::from([
                ("app".into(), "podinfo-canary".into()),
                ("tier".into(), "canary".into())
            ])
        );
        assert_eq!(
            svc.metadata.annotations.unwrap(),
            BTreeMap::from([
                ("a".into(), "1".into()),
                (
                    "helm.toolkit.fluxcd.io/driftDetection".into(),
                    "disabled".into()
                ),
                (
                    "kustomize.toolkit.fluxcd.io/reconcile".into(),
                    "disabled".into()
                ),
            ]),
            "Flux's own annotations are dropped, its opt-out ones set, as Flagger does"
        );
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.selector.unwrap()["app"], "podinfo");
    }

    #[test]
    fn updates_keep_node_ports_and_unmanaged_metadata() {
        let c = canary(json!({"port": 9898, "unmanagedMetadata": {"annotations": ["keep"]}}));
        let p = pods(vec![]);
        let desired = desired_service(&c, "podinfo", &p, Backend::Primary, None).unwrap();
        let mut current = desired.clone();
        current.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].node_port = Some(30080);
        let with_opt_out = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            let mut m: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            labels::add_flux_opt_out(&mut m);
            m
        };
        current.metadata.annotations = Some(with_opt_out(&[("keep", "me")]));
        assert!(
            updated_service(&c, &current, &desired).is_none(),
            "nothing to change"
        );
        current.spec.as_mut().unwrap().selector =
            Some(BTreeMap::from([("app".into(), "other".into())]));
        current.metadata.annotations = Some(BTreeMap::from([
            ("keep".into(), "me".into()),
            ("drop".into(), "x".into()),
        ]));
        let next = updated_service(&c, &current, &desired).unwrap();
        let spec = next.spec.unwrap();
        assert_eq!(spec.selector.unwrap()["app"], "podinfo-primary");
        assert_eq!(spec.ports.unwrap()[0].node_port, Some(30080));
        assert_eq!(
            next.metadata.annotations.unwrap(),
            with_opt_out(&[("keep", "me")])
        );

        // A service the user made keeps its own metadata, plus Flux's opt-out.
        let mut theirs = current.clone();
        theirs.metadata.owner_references = None;
        let next = updated_service(&c, &theirs, &desired).unwrap();
        assert_eq!(
            next.metadata.annotations.unwrap(),
            with_opt_out(&[("keep", "me"), ("drop", "x")])
        );
    }
}
