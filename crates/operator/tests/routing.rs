//! Routers against the in-process sandbox: the services, DestinationRules and
//! VirtualService of the seeds' canaries, and the routes of every strategy as
//! Istio's VirtualService reference defines them.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use serin_api::Canary;
use serin_api::clock::Clock;
use serin_api::istio::{
    DestinationRule, HTTPRoute, StringMatch, VirtualService, VirtualServiceSpec,
};
use serin_api::load::parse_documents;
use serin_operator::labels::ORIGINAL_CONFIGURATION;
use serin_operator::router::{Routes, SessionCookies, router_for};
use support::*;

async fn vs(client: &Client, ns: &str, name: &str) -> VirtualService {
    Api::<VirtualService>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
}

async fn svc(client: &Client, ns: &str, name: &str) -> Service {
    Api::<Service>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
}

/// The destination weights Istio picks for a request with these headers: the first
/// HTTP route one of whose matches holds (every condition; regexes match the whole
/// value, as RE2 in Envoy does), or a route without match.
fn route_for<'a>(spec: &'a VirtualServiceSpec, headers: &[(&str, &str)]) -> &'a HTTPRoute {
    let holds = |m: &StringMatch, v: Option<&str>| -> bool {
        let Some(v) = v else { return false };
        if let Some(e) = &m.exact {
            return v == e;
        }
        if let Some(p) = &m.prefix {
            return v.starts_with(p.as_str());
        }
        if let Some(r) = &m.regex {
            return regex::Regex::new(&format!("^(?:{r})$"))
                .unwrap()
                .is_match(v);
        }
        true
    };
    spec.http
        .iter()
        .find(|route| {
            route.match_.is_empty()
                || route.match_.iter().any(|m| {
                    m.headers.iter().all(|(name, sm)| {
                        let v = headers
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(name))
                            .map(|(_, v)| *v);
                        holds(sm, v)
                    })
                })
        })
        .expect("no route for the request")
}

fn weights(route: &HTTPRoute) -> BTreeMap<String, i32> {
    route
        .route
        .iter()
        .map(|d| (d.destination.host.clone(), d.weight))
        .collect()
}

fn only(host: &str) -> BTreeMap<String, i32> {
    BTreeMap::from([(host.to_string(), 100)])
}

#[tokio::test(start_paused = true)]
async fn podinfo_gets_exactly_the_objects_of_the_istio_guide() {
    let (_sb, client, canary) = podinfo(Clock::system()).await;
    let router = router_for(client.clone(), &canary).unwrap();
    router.reconcile(&canary).await.unwrap();

    let services: Vec<String> = Api::<Service>::namespaced(client.clone(), "test")
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.name_any())
        .collect();
    assert_eq!(services, ["podinfo", "podinfo-canary", "podinfo-primary"]);
    for (name, selects) in [
        ("podinfo", "podinfo-primary"),
        ("podinfo-canary", "podinfo"),
        ("podinfo-primary", "podinfo-primary"),
    ] {
        let s = svc(&client, "test", name).await;
        let spec = s.spec.clone().unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.selector.unwrap()["app"], selects, "{name} selector");
        let ports = spec.ports.unwrap();
        assert_eq!(ports.len(), 1, "{name}: no port discovery");
        assert_eq!(ports[0].name.as_deref(), Some("http"));
        assert_eq!(ports[0].port, 9898);
        assert_eq!(
            serde_json::to_value(&ports[0].target_port).unwrap(),
            json!(9898)
        );
        assert_eq!(s.labels()["app"], name);
        assert_eq!(s.owner_references()[0].name, "podinfo");
        assert_eq!(s.owner_references()[0].controller, Some(true));
    }

    let drs: Vec<DestinationRule> = Api::<DestinationRule>::namespaced(client.clone(), "test")
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let names: Vec<String> = drs.iter().map(|d| d.name_any()).collect();
    assert_eq!(names, ["podinfo-canary", "podinfo-primary"]);
    for dr in &drs {
        assert_eq!(dr.spec.host, dr.name_any());
        assert_eq!(
            dr.spec.traffic_policy,
            Some(json!({"tls": {"mode": "DISABLE"}}))
        );
        assert_eq!(dr.owner_references()[0].name, "podinfo");
    }

    let vss: Vec<String> = Api::<VirtualService>::namespaced(client.clone(), "test")
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|v| v.name_any())
        .collect();
    assert_eq!(vss, ["podinfo"]);
    let v = vs(&client, "test", "podinfo").await;
    assert_eq!(v.owner_references()[0].name, "podinfo");
    assert_eq!(
        v.annotations()
            .get("kustomize.toolkit.fluxcd.io/reconcile")
            .map(String::as_str),
        Some("disabled"),
        "Flux leaves the VirtualService to the operator"
    );
    assert_eq!(
        v.annotations()
            .get("helm.toolkit.fluxcd.io/driftDetection")
            .map(String::as_str),
        Some("disabled")
    );
    assert_eq!(
        serde_json::to_value(&v.spec).unwrap(),
        json!({
            "hosts": ["app.example.com", "podinfo"],
            "gateways": ["istio-system/public-gateway"],
            "http": [{
                "route": [
                    {"destination": {"host": "podinfo-primary"}, "weight": 100},
                    {"destination": {"host": "podinfo-canary"}, "weight": 0}
                ],
                "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "gateway-error,connect-failure,refused-stream"}
            }]
        })
    );
    assert_eq!(router.get_routes(&canary).await.unwrap(), Routes::PRIMARY);

    // A second reconcile writes nothing.
    let versions = |c: Client| async move {
        let mut out = Vec::new();
        for s in Api::<Service>::namespaced(c.clone(), "test")
            .list(&Default::default())
            .await
            .unwrap()
            .items
        {
            out.push(s.resource_version());
        }
        for d in Api::<DestinationRule>::namespaced(c.clone(), "test")
            .list(&Default::default())
            .await
            .unwrap()
            .items
        {
            out.push(d.resource_version());
        }
        out.push(vs(&c, "test", "podinfo").await.resource_version());
        out
    };
    let before = versions(client.clone()).await;
    router.reconcile(&canary).await.unwrap();
    assert_eq!(before, versions(client.clone()).await);
}

#[tokio::test(start_paused = true)]
async fn weights_set_are_weights_read() {
    let (_sb, client, canary) = podinfo(Clock::system()).await;
    let router = router_for(client.clone(), &canary).unwrap();
    router.reconcile(&canary).await.unwrap();
    for w in [10, 20, 50, 0, 100] {
        router
            .set_routes(&canary, Routes::to_canary(w))
            .await
            .unwrap();
        assert_eq!(
            router.get_routes(&canary).await.unwrap(),
            Routes::to_canary(w)
        );
        let v = vs(&client, "test", "podinfo").await;
        assert_eq!(
            weights(route_for(&v.spec, &[])),
            BTreeMap::from([
                ("podinfo-primary".to_string(), 100 - w),
                ("podinfo-canary".to_string(), w)
            ])
        );
        assert_eq!(
            v.spec.http[0].retries.as_ref().unwrap().attempts,
            3,
            "route settings kept"
        );
    }
    // The weights survive a reconcile, and setting the same weights writes nothing.
    router
        .set_routes(&canary, Routes::to_canary(30))
        .await
        .unwrap();
    router.reconcile(&canary).await.unwrap();
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::to_canary(30)
    );
    let rv = vs(&client, "test", "podinfo").await.resource_version();
    router
        .set_routes(&canary, Routes::to_canary(30))
        .await
        .unwrap();
    assert_eq!(vs(&client, "test", "podinfo").await.resource_version(), rv);
}

/// The frontend Canary of the GitOps seed, its A/B analysis from the seed's fragment.
fn frontend() -> Canary {
    let fragment = read(&repo_path(
        "tests/fixtures/seeds/gitops-istio/frontend-canary-ab-analysis.fragment.yaml",
    ));
    let analysis = parse_documents("fragment", &fragment).unwrap()[0].value["analysis"].clone();
    serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "frontend", "namespace": "prod"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "frontend"},
            "service": {"port": 80, "targetPort": 9898, "gateways": ["istio-system/public-gateway"], "hosts": ["*"]},
            "analysis": analysis
        }
    }))
    .unwrap()
}

const FRONTEND: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: frontend, namespace: prod, labels: {app: frontend}}
spec:
  selector: {matchLabels: {app: frontend}}
  template:
    metadata: {labels: {app: frontend}}
    spec:
      containers: [{name: frontend, image: "ghcr.io/stefanprodan/podinfo:6.0.0", ports: [{name: http, containerPort: 9898}]}]
"#;

#[tokio::test(start_paused = true)]
async fn ab_testing_routes_firefox_and_insiders_to_the_canary() {
    let (_sb, client) = sandbox(Clock::system()).await;
    apply(&client, FRONTEND).await;
    let canary = create_canary(&client, frontend()).await;
    let router = router_for(client.clone(), &canary).unwrap();
    router.reconcile(&canary).await.unwrap();

    let firefox = [(
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0",
    )];
    let chrome = [(
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
    )];
    // The seed's regex wants `type=insider` first or right after a `;`.
    let insider = [
        ("user-agent", "curl/8.0"),
        ("cookie", "type=insider; theme=dark"),
    ];
    let insider_later = [
        ("user-agent", "curl/8.0"),
        ("cookie", "session=1;type=insider"),
    ];
    let outsider = [("user-agent", "curl/8.0"), ("cookie", "type=outsider")];

    // Before the analysis, everyone gets the primary.
    let v = vs(&client, "prod", "frontend").await;
    for h in [&firefox[..], &chrome, &insider, &outsider] {
        assert_eq!(weights(route_for(&v.spec, h))["frontend-primary"], 100);
    }

    // The A/B strategy active: matching requests to the canary, the rest to the primary.
    router
        .set_routes(&canary, Routes::to_canary(100))
        .await
        .unwrap();
    let v = vs(&client, "prod", "frontend").await;
    assert_eq!(
        v.spec.http.len(),
        2,
        "the A/B route comes before the default route"
    );
    let to_canary = BTreeMap::from([
        ("frontend-primary".to_string(), 0),
        ("frontend-canary".to_string(), 100),
    ]);
    assert_eq!(weights(route_for(&v.spec, &firefox)), to_canary);
    assert_eq!(weights(route_for(&v.spec, &insider)), to_canary);
    assert_eq!(weights(route_for(&v.spec, &insider_later)), to_canary);
    assert_eq!(
        weights(route_for(&v.spec, &chrome)),
        only("frontend-primary")
    );
    assert_eq!(
        weights(route_for(&v.spec, &outsider)),
        only("frontend-primary")
    );
    assert_eq!(v.spec.hosts, ["*"], "`*` already covers the apex name");
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::to_canary(100)
    );

    router.set_routes(&canary, Routes::PRIMARY).await.unwrap();
    let v = vs(&client, "prod", "frontend").await;
    assert_eq!(
        weights(route_for(&v.spec, &firefox))["frontend-primary"],
        100
    );
}

#[tokio::test(start_paused = true)]
async fn mirroring_copies_traffic_to_the_canary() {
    let (_sb, client) = sandbox(Clock::system()).await;
    apply(&client, &read(&data_path("podinfo.yaml"))).await;
    let mut canary = seed_canary("tests/fixtures/seeds/istio-guide/podinfo-canary.yaml");
    // The guide's mirroring fragment shows only the analysis of this Canary.
    let fragment = read(&repo_path(
        "tests/fixtures/seeds/istio-guide/podinfo-canary-mirroring.fragment.yaml",
    ));
    let analysis =
        parse_documents("fragment", &fragment).unwrap()[0].value["spec"]["analysis"].clone();
    canary.spec.analysis = Some(serde_json::from_value(analysis).unwrap());
    let canary = create_canary(&client, canary).await;
    let router = router_for(client.clone(), &canary).unwrap();
    router.reconcile(&canary).await.unwrap();
    let mirrored = Routes {
        mirrored: true,
        ..Routes::PRIMARY
    };
    router.set_routes(&canary, mirrored).await.unwrap();
    let v = vs(&client, "test", "podinfo").await;
    let route = serde_json::to_value(&v.spec.http[0]).unwrap();
    assert_eq!(route["mirror"], json!({"host": "podinfo-canary"}));
    assert_eq!(route["mirrorPercentage"], json!({"value": 100.0}));
    assert_eq!(
        weights(&v.spec.http[0])["podinfo-primary"],
        100,
        "users are served by the primary"
    );
    assert_eq!(router.get_routes(&canary).await.unwrap(), mirrored);
    router.set_routes(&canary, Routes::PRIMARY).await.unwrap();
    let v = vs(&client, "test", "podinfo").await;
    assert!(v.spec.http[0].mirror.is_none());
    assert_eq!(router.get_routes(&canary).await.unwrap(), Routes::PRIMARY);
}

#[tokio::test(start_paused = true)]
async fn session_affinity_keeps_canary_users_on_the_canary() {
    let (_sb, client) = sandbox(Clock::system()).await;
    apply(&client, &read(&data_path("podinfo.yaml"))).await;
    let mut canary = create_canary(
        &client,
        seed_canary("tests/fixtures/seeds/istio-guide/podinfo-canary-session-affinity.yaml"),
    )
    .await;
    let router = router_for(client.clone(), &canary).unwrap();
    router.reconcile(&canary).await.unwrap();

    // The engine keeps the cookie in the status when the analysis starts; the
    // router reads it from there.
    let cookie = "flagger-cookie=kZqWbRtYxE".to_string();
    let mut status = canary.status_or_default();
    status.session_affinity_cookie = Some(cookie.clone());
    canary.status = Some(status);
    let cookies = SessionCookies::for_routes(&canary, 10);
    assert_eq!(cookies.canary.as_deref(), Some(cookie.as_str()));
    router
        .set_routes(&canary, Routes::to_canary(10))
        .await
        .unwrap();

    let v = vs(&client, "test", "podinfo").await;
    assert_eq!(v.spec.http.len(), 2);
    // A user holding the cookie stays on the canary.
    let with_cookie = [("cookie", format!("theme=dark; {cookie}"))];
    let with_cookie: Vec<(&str, &str)> =
        with_cookie.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        weights(route_for(&v.spec, &with_cookie)),
        BTreeMap::from([
            ("podinfo-primary".to_string(), 0),
            ("podinfo-canary".to_string(), 100)
        ])
    );
    // Others are split by weight, and those sent to the canary get the cookie.
    let weighted = route_for(&v.spec, &[]);
    assert_eq!(weights(weighted)["podinfo-canary"], 10);
    let canary_dest = weighted
        .route
        .iter()
        .find(|d| d.destination.host == "podinfo-canary")
        .unwrap();
    assert_eq!(
        canary_dest
            .headers
            .as_ref()
            .unwrap()
            .response
            .as_ref()
            .unwrap()
            .add["Set-Cookie"],
        format!("{cookie}; Max-Age=21600")
    );
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::to_canary(10)
    );

    // Back to the primary: the engine retires the cookie, and it is expired on users
    // that still hold it.
    let mut status = canary.status_or_default();
    status.previous_session_affinity_cookie = status.session_affinity_cookie.take();
    canary.status = Some(status);
    let cookies = SessionCookies::for_routes(&canary, 0);
    assert_eq!(cookies.previous.as_deref(), Some(cookie.as_str()));
    assert_eq!(cookies.canary, None);
    router.set_routes(&canary, Routes::PRIMARY).await.unwrap();
    let v = vs(&client, "test", "podinfo").await;
    let expiring = route_for(&v.spec, &with_cookie);
    assert_eq!(weights(expiring)["podinfo-primary"], 100);
    assert_eq!(
        expiring
            .headers
            .as_ref()
            .unwrap()
            .response
            .as_ref()
            .unwrap()
            .add["Set-Cookie"],
        format!("{cookie}; Max-Age=-1")
    );
    assert_eq!(router.get_routes(&canary).await.unwrap(), Routes::PRIMARY);
}

#[tokio::test(start_paused = true)]
async fn tcp_services_get_the_tcp_routes_of_the_guide() {
    let (_sb, client) = sandbox(Clock::system()).await;
    apply(
        &client,
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: tcp-service, namespace: test}
spec:
  selector: {matchLabels: {app: tcp-service}}
  template:
    metadata: {labels: {app: tcp-service}}
    spec:
      containers: [{name: server, image: "tcp:1", ports: [{containerPort: 7070}]}]
"#,
    )
    .await;
    let fragment = read(&repo_path(
        "tests/fixtures/seeds/istio-guide/podinfo-canary-tcp-service.fragment.yaml",
    ));
    let service =
        parse_documents("fragment", &fragment).unwrap()[0].value["spec"]["service"].clone();
    let canary: Canary = serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": "tcp-service", "namespace": "test"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tcp-service"},
            "service": service,
            "analysis": {"interval": "1m", "threshold": 5, "maxWeight": 50, "stepWeight": 10}
        }
    }))
    .unwrap();
    let canary = create_canary(&client, canary).await;
    let router = router_for(client.clone(), &canary).unwrap();
    router.reconcile(&canary).await.unwrap();

    let expected = read(&repo_path(
        "tests/fixtures/seeds/istio-guide/virtualservice-tcp-section.fragment.yaml",
    ));
    let expected = parse_documents("fragment", &expected).unwrap()[0].value["tcp"].clone();
    let v = vs(&client, "test", "tcp-service").await;
    assert!(v.spec.http.is_empty());
    assert_eq!(serde_json::to_value(&v.spec.tcp).unwrap(), expected);
    let s = svc(&client, "test", "tcp-service-canary").await;
    let port = &s.spec.unwrap().ports.unwrap()[0];
    assert_eq!(port.name.as_deref(), Some("tcp-service-port"));
    assert_eq!(port.app_protocol.as_deref(), Some("TCP"));

    router
        .set_routes(&canary, Routes::to_canary(40))
        .await
        .unwrap();
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::to_canary(40)
    );
    let v = vs(&client, "test", "tcp-service").await;
    assert_eq!(v.spec.tcp[0].route[1].weight, 40);
}

#[tokio::test(start_paused = true)]
async fn an_existing_virtual_service_is_taken_over_and_restored() {
    let (_sb, client, canary) = podinfo(Clock::system()).await;
    let original = json!({"hosts": ["podinfo"], "http": [{"route": [{"destination": {"host": "podinfo"}, "weight": 100}]}]});
    let existing = VirtualService {
        metadata: ObjectMeta {
            name: Some("podinfo".into()),
            namespace: Some("test".into()),
            ..Default::default()
        },
        spec: serde_json::from_value(original.clone()).unwrap(),
    };
    Api::<VirtualService>::namespaced(client.clone(), "test")
        .create(&PostParams::default(), &existing)
        .await
        .unwrap();
    let router = router_for(client.clone(), &canary).unwrap();
    router.reconcile(&canary).await.unwrap();
    let v = vs(&client, "test", "podinfo").await;
    assert_eq!(router.get_routes(&canary).await.unwrap(), Routes::PRIMARY);
    let saved: Value = serde_json::from_str(&v.annotations()[ORIGINAL_CONFIGURATION]).unwrap();
    assert_eq!(saved, original);
    assert!(
        v.owner_references().is_empty(),
        "a taken-over VirtualService stays the user's"
    );
    router.reconcile(&canary).await.unwrap();
    assert_eq!(
        vs(&client, "test", "podinfo").await.resource_version(),
        v.resource_version()
    );

    router.finalize(&canary).await.unwrap();
    let v = vs(&client, "test", "podinfo").await;
    assert_eq!(serde_json::to_value(&v.spec).unwrap(), original);
    assert!(
        Api::<DestinationRule>::namespaced(client.clone(), "test")
            .get_opt("podinfo-canary")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn kubernetes_provider_points_the_apex_service_at_the_primary() {
    let (_sb, client) = sandbox(Clock::system()).await;
    apply(&client, &read(&data_path("podinfo.yaml"))).await;
    let mut canary = seed_canary("tests/fixtures/seeds/istio-guide/podinfo-canary.yaml");
    canary.spec.provider = Some("kubernetes".into());
    canary.spec.service.port_discovery = true;
    let canary = create_canary(&client, canary).await;
    // The app ran before it was put under a Canary: its own Service selects the
    // target's pods, which the initialisation then scales to zero.
    let existing: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"selector": {"app": "podinfo"}, "ports": [{"name": "http", "port": 9898}]}
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "test")
        .create(&PostParams::default(), &existing)
        .await
        .unwrap();
    let router = router_for(client.clone(), &canary).unwrap();
    router.reconcile(&canary).await.unwrap();
    let selector = |s: Service| s.spec.unwrap().selector.unwrap()["app"].clone();
    assert_eq!(
        selector(svc(&client, "test", "podinfo").await),
        "podinfo-primary",
        "the user's apex service now selects the primary, as in Flagger"
    );
    // Flux and Helm leave the routing objects to the operator (Flagger's own e2e
    // test checks these two on the apex service).
    for name in ["podinfo", "podinfo-primary", "podinfo-canary"] {
        let a = svc(&client, "test", name).await.annotations().clone();
        assert_eq!(
            a.get("kustomize.toolkit.fluxcd.io/reconcile")
                .map(String::as_str),
            Some("disabled"),
            "{name}: {a:?}"
        );
        assert_eq!(
            a.get("helm.toolkit.fluxcd.io/driftDetection")
                .map(String::as_str),
            Some("disabled"),
            "{name}: {a:?}"
        );
    }
    assert_eq!(
        selector(svc(&client, "test", "podinfo-canary").await),
        "podinfo"
    );
    assert_eq!(router.get_routes(&canary).await.unwrap(), Routes::PRIMARY);
    let ports: Vec<(String, i32)> = svc(&client, "test", "podinfo")
        .await
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| (p.name.clone().unwrap(), p.port))
        .collect();
    assert_eq!(
        ports,
        [
            ("http".to_string(), 9898),
            ("grpc".to_string(), 9999),
            ("http-metrics".to_string(), 9797)
        ],
        "port discovery adds the other container ports"
    );
    assert!(
        Api::<VirtualService>::namespaced(client.clone(), "test")
            .get_opt("podinfo")
            .await
            .unwrap()
            .is_none(),
        "no mesh objects"
    );

    // There is no split to set: the apex stays on the primary.
    router
        .set_routes(&canary, Routes::to_canary(100))
        .await
        .unwrap();
    assert_eq!(
        selector(svc(&client, "test", "podinfo").await),
        "podinfo-primary"
    );
    assert_eq!(router.get_routes(&canary).await.unwrap(), Routes::PRIMARY);
}

#[tokio::test(start_paused = true)]
async fn conflicting_writes_are_retried_then_reported() {
    use serin_sandbox::{FaultRule, Verb};
    let (sb, client, canary) = podinfo(Clock::system()).await;
    let router = router_for(client.clone(), &canary).unwrap();
    router.reconcile(&canary).await.unwrap();
    let rule = |rate| FaultRule {
        conflict_rate: rate,
        ..Default::default()
    };
    // Someone else writes the VirtualService now and then: serin reads again and retries.
    sb.faults().set("virtualservices", Verb::Update, rule(0.3));
    for w in [10, 20, 30, 40, 50] {
        router
            .set_routes(&canary, Routes::to_canary(w))
            .await
            .unwrap();
    }
    sb.faults().clear_all();
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::to_canary(50)
    );
    // Always in conflict: a clear error naming the object, after a bounded number of tries.
    sb.faults().set("virtualservices", Verb::Update, rule(1.0));
    let err = router
        .set_routes(&canary, Routes::PRIMARY)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "updating VirtualService podinfo.test failed: conflicting writes after 5 attempts"
    );
}

#[tokio::test(start_paused = true)]
async fn finalize_removes_what_the_router_made() {
    let (_sb, client, canary) = podinfo(Clock::system()).await;
    let router = router_for(client.clone(), &canary).unwrap();
    router.reconcile(&canary).await.unwrap();
    router.finalize(&canary).await.unwrap();
    let none_left = |n: usize, what: &str| assert_eq!(n, 0, "{what} left");
    none_left(
        Api::<Service>::namespaced(client.clone(), "test")
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        "services",
    );
    none_left(
        Api::<DestinationRule>::namespaced(client.clone(), "test")
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        "destination rules",
    );
    none_left(
        Api::<VirtualService>::namespaced(client.clone(), "test")
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        "virtual services",
    );
}

#[tokio::test(start_paused = true)]
async fn an_apex_service_the_user_made_is_pointed_back_at_the_target() {
    let (_sb, client, canary) = podinfo(Clock::system()).await;
    apply(
        &client,
        r#"
apiVersion: v1
kind: Service
metadata: {name: podinfo, namespace: test, labels: {team: web}}
spec:
  selector: {app: podinfo}
  ports: [{name: http, port: 9898, targetPort: 9898}]
"#,
    )
    .await;
    let router = router_for(client.clone(), &canary).unwrap();
    router.reconcile(&canary).await.unwrap();
    let apex = svc(&client, "test", "podinfo").await;
    assert_eq!(
        apex.spec.as_ref().unwrap().selector.as_ref().unwrap()["app"],
        "podinfo-primary"
    );
    assert_eq!(apex.labels()["team"], "web", "the user's labels stay");
    router.finalize(&canary).await.unwrap();
    let apex = svc(&client, "test", "podinfo").await;
    assert_eq!(apex.spec.unwrap().selector.unwrap()["app"], "podinfo");
}
