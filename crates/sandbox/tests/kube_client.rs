//! kube-rs against the in-process sandbox.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use serin_sandbox::{FaultRule, Sandbox, SandboxOptions, Verb};

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxOptions::default())
}

fn cm(name: &str, data: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "podinfo"}},
        "data": {"k": data}
    }))
    .unwrap()
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "podinfod", "image": "ghcr.io/stefanprodan/podinfo:6.0.0"}]}}}
    }))
    .unwrap()
}

#[tokio::test]
async fn crud_with_kube_client() {
    let client = sandbox().client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some());
    assert!(meta.creation_timestamp.is_some());
    assert!(meta.resource_version.is_some());

    let got = api.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "1");

    let err = api
        .create(&PostParams::default(), &cm("a", "2"))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "AlreadyExists");
        }
        other => panic!("unexpected {other:?}"),
    }

    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["k"], "2");

    let list = api
        .list(&ListParams::default().labels("app=podinfo"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let list = api
        .list(&ListParams::default().labels("app!=podinfo"))
        .await
        .unwrap();
    assert!(list.items.is_empty());

    let mut generated = cm("", "x");
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let g = api
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let name = g.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    api.delete("a", &DeleteParams::default()).await.unwrap();
    match api.get("a").await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 404);
            assert_eq!(s.reason, "NotFound");
            assert_eq!(s.message, "configmaps \"a\" not found");
        }
        other => panic!("unexpected {other:?}"),
    }

    // Objects need their namespace.
    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let err = missing
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(s) if s.code == 404 && s.message.contains("namespaces \"nowhere\""))
    );
}

#[tokio::test]
async fn optimistic_concurrency_rejects_stale_writes() {
    let client = sandbox().client();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let v1 = api
        .create(&PostParams::default(), &cm("occ", "1"))
        .await
        .unwrap();
    let mut first = v1.clone();
    first.data = Some([("k".to_string(), "first".to_string())].into());
    let v2 = api
        .replace("occ", &PostParams::default(), &first)
        .await
        .unwrap();
    assert_ne!(v1.metadata.resource_version, v2.metadata.resource_version);

    let mut stale = v1.clone();
    stale.data = Some([("k".to_string(), "stale".to_string())].into());
    match api
        .replace("occ", &PostParams::default(), &stale)
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "Conflict");
            assert!(
                s.message.contains("the object has been modified"),
                "{}",
                s.message
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(api.get("occ").await.unwrap().data.unwrap()["k"], "first");

    // A no-op write keeps the resourceVersion.
    let same = api
        .replace("occ", &PostParams::default(), &v2)
        .await
        .unwrap();
    assert_eq!(same.metadata.resource_version, v2.metadata.resource_version);
}

#[tokio::test]
async fn generation_follows_spec_only_and_status_subresource() {
    let sb = Sandbox::new(SandboxOptions {
        rollout_delay: Duration::from_secs(3600),
        ..Default::default()
    });
    let api: Api<Deployment> = Api::namespaced(sb.client(), "default");
    let d = api
        .create(&PostParams::default(), &deployment("web", 2))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let d = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        d.metadata.generation,
        Some(1),
        "metadata changes keep the generation"
    );
    let d = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    // As kube-apiserver does for a Deployment (its annotations are copied to its
    // ReplicaSets): an annotation change bumps the generation too. A real API server
    // showed it: an operator that dropped the deployment controller's revision
    // annotation kept its primary from ever being observed rolled out.
    let d = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"team": "web"}}})),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(3), "annotation changes bump it");

    // Status goes through the status subresource only (a Service: no simulated controller).
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(sb.client(), "default");
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 9898}]}}))
        .unwrap(),
    )
    .await
    .unwrap();
    let lb = json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}});
    let s1 = svcs
        .patch_status("web", &PatchParams::default(), &Patch::Merge(lb.clone()))
        .await
        .unwrap();
    assert_eq!(
        s1.metadata.generation,
        Some(1),
        "status changes keep the generation"
    );
    let ingress = |s: &k8s_openapi::api::core::v1::Service| {
        s.status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|l| l.ingress.clone())
            .unwrap_or_default()
    };
    assert_eq!(ingress(&s1).len(), 1);
    let s2 = svcs
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": null, "spec": {"ports": [{"port": 80}]}})),
        )
        .await
        .unwrap();
    assert_eq!(
        ingress(&s2).len(),
        1,
        "status in a main-resource write is ignored"
    );
    assert_eq!(s2.metadata.generation, Some(2));
    let spec = s2.spec.unwrap();
    assert!(spec.cluster_ip.is_some(), "a cluster IP is assigned");
    assert_eq!(spec.ports.unwrap()[0].protocol.as_deref(), Some("TCP"));
    // Strategic merge keeps other containers and fields.
    let d = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "podinfod", "image": "ghcr.io/stefanprodan/podinfo:6.0.1"}]}}}})),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(4));
    let c = &d.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(c.len(), 1);
    assert_eq!(
        c[0].image.as_deref(),
        Some("ghcr.io/stefanprodan/podinfo:6.0.1")
    );
    // Scale subresource.
    let s = api.get_scale("web").await.unwrap();
    assert_eq!(s.spec.unwrap().replicas, Some(3));
    assert_eq!(s.status.unwrap().selector.as_deref(), Some("app=web"));
    api.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    let d = api.get("web").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(5));
    assert_eq!(d.metadata.generation, Some(5));
}

#[tokio::test]
async fn server_side_apply_creates_then_merges() {
    let client = sandbox().client();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let pp = PatchParams::apply("serin").force();
    api.patch(
        "ssa",
        &pp,
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ssa"}, "data": {"a": "1"}})),
    )
    .await
    .unwrap();
    let cm = api
        .patch(
            "ssa",
            &pp,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "ssa", "labels": {"l": "v"}}, "data": {"b": "2"}})),
        )
        .await
        .unwrap();
    let data = cm.data.unwrap();
    assert_eq!(data["a"], "1");
    assert_eq!(data["b"], "2");
    assert_eq!(cm.metadata.labels.unwrap()["l"], "v");
    // JSON patch too.
    let cm = api
        .patch(
            "ssa",
            &PatchParams::default(),
            &Patch::<()>::Json(
                serde_json::from_value(json!([{"op": "replace", "path": "/data/a", "value": "9"}]))
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["a"], "9");
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owners_cascade() {
    let client = sandbox().client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = api
        .create(&PostParams::default(), &cm("owner", "1"))
        .await
        .unwrap();
    let mut dep = cm("dependent", "1");
    dep.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "owner".into(),
            uid: owner.metadata.uid.clone().unwrap(),
            controller: Some(true),
            block_owner_deletion: None,
        },
    ]);
    api.create(&PostParams::default(), &dep).await.unwrap();
    api.patch(
        "owner",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["serin/test"]}})),
    )
    .await
    .unwrap();
    api.delete("owner", &DeleteParams::default()).await.unwrap();
    let held = api.get("owner").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(
        api.get("dependent").await.is_ok(),
        "dependent stays while the owner exists"
    );
    api.patch(
        "owner",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("owner").await.unwrap().is_none());
    assert!(
        api.get_opt("dependent").await.unwrap().is_none(),
        "garbage collected"
    );

    // Deleting a namespace deletes what is in it.
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "gone"}})).unwrap(),
    )
    .await
    .unwrap();
    let in_ns: Api<ConfigMap> = Api::namespaced(client, "gone");
    in_ns
        .create(&PostParams::default(), &cm("x", "1"))
        .await
        .unwrap();
    nss.delete("gone", &DeleteParams::default()).await.unwrap();
    assert!(
        in_ns
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn watcher_sees_changes_and_resumes_after_dropped_stream() {
    let sb = sandbox();
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let mut stream = watcher(
        api.clone(),
        watcher::Config::default().labels("app=podinfo"),
    )
    .applied_objects()
    .boxed();
    api.create(&PostParams::default(), &cm("w1", "1"))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("w1"));

    sb.drop_watches();
    for i in 0..5 {
        api.patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": format!("v{i}")}})),
        )
        .await
        .unwrap();
    }
    // Every update after the drop arrives, in order, through the resumed watch.
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("v4") {
        let o = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(o.data.unwrap()["k"].clone());
    }
    assert!(seen.ends_with(&["v4".to_string()]));
    let pos: Vec<usize> = (0..5)
        .map(|i| {
            seen.iter()
                .position(|s| *s == format!("v{i}"))
                .unwrap_or(usize::MAX)
        })
        .collect();
    assert!(
        pos.windows(2).all(|w| w[0] < w[1] && w[1] != usize::MAX),
        "{seen:?}"
    );
}

#[tokio::test]
async fn watch_from_expired_version_is_gone() {
    let sb = Sandbox::new(SandboxOptions {
        watch_history: 16,
        ..Default::default()
    });
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let first = api
        .create(&PostParams::default(), &cm("h", "0"))
        .await
        .unwrap();
    for i in 0..40 {
        api.patch(
            "h",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let rv = first.metadata.resource_version.unwrap();
    let mut s = api
        .watch(&kube::api::WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .unwrap()
        .unwrap();
    match ev {
        Ok(kube::api::WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_from_a_version_not_reached_yet_waits_for_it_then_answers_504() {
    let sb = sandbox();
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let first = api
        .create(&PostParams::default(), &cm("ahead", "0"))
        .await
        .unwrap();
    let rv: u64 = first.metadata.resource_version.unwrap().parse().unwrap();
    // One version ahead, reached by a write while the watch waits: served as usual.
    let mut s = api
        .watch(&kube::api::WatchParams::default(), &(rv + 1).to_string())
        .await
        .unwrap()
        .boxed();
    for i in 1..=2 {
        api.patch(
            "ahead",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let ev = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let kube::api::WatchEvent::Modified(o) = ev else {
        panic!("expected the second change, got {ev:?}");
    };
    assert_eq!(o.data.unwrap()["k"], "2");
    // Far ahead (a client of a server that restarted with other data): an ERROR event,
    // as kube-apiserver's watch cache answers, not a watch that stays silent.
    let far = (rv + 1000).to_string();
    let mut s = api
        .watch(&kube::api::WatchParams::default(), &far)
        .await
        .unwrap()
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(20), s.next())
        .await
        .unwrap()
        .unwrap();
    let status = match ev {
        Ok(kube::api::WatchEvent::Error(e)) => e,
        other => panic!("expected 504 Too large resource version, got {other:?}"),
    };
    assert_eq!(status.code, 504);
    assert!(
        status.message.starts_with(&format!(
            "Timeout: Too large resource version: {far}, current: "
        )),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn controller_reconciles_changes() {
    use kube::runtime::controller::{Action, Controller};
    use std::sync::Arc;
    let sb = sandbox();
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let ctl = Controller::new(api.clone(), watcher::Config::default())
        .run(
            move |cm: Arc<ConfigMap>, tx: Arc<tokio::sync::mpsc::UnboundedSender<String>>| async move {
                let v = cm.data.as_ref().and_then(|d| d.get("k").cloned()).unwrap_or_default();
                let _ = tx.send(format!("{}={v}", cm.metadata.name.clone().unwrap_or_default()));
                Ok::<_, kube::Error>(Action::await_change())
            },
            |_, _, _| Action::await_change(),
            Arc::new(tx),
        )
        .for_each(|_| async {});
    let handle = tokio::spawn(ctl);
    api.create(&PostParams::default(), &cm("c1", "one"))
        .await
        .unwrap();
    wait_for(&mut rx, "c1=one").await;
    api.patch(
        "c1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "two"}})),
    )
    .await
    .unwrap();
    wait_for(&mut rx, "c1=two").await;
    handle.abort();
}

#[tokio::test]
async fn injected_faults_answer_409_and_500() {
    let sb = sandbox();
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    api.create(&PostParams::default(), &cm("f", "1"))
        .await
        .unwrap();
    sb.faults().set(
        "configmaps",
        Verb::Patch,
        FaultRule {
            conflict_rate: 1.0,
            ..Default::default()
        },
    );
    let err = api
        .patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "2"}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));
    sb.faults().set(
        "configmaps",
        Verb::Get,
        FaultRule {
            error_rate: 1.0,
            ..Default::default()
        },
    );
    assert!(matches!(api.get("f").await.unwrap_err(), kube::Error::Api(s) if s.code == 500));
    sb.faults().clear_all();
    assert_eq!(api.get("f").await.unwrap().data.unwrap()["k"], "1");
}

#[tokio::test(start_paused = true)]
async fn deployments_become_ready_after_the_rollout_delay_on_virtual_time() {
    let sb = Sandbox::new(SandboxOptions {
        rollout_delay: Duration::from_secs(30),
        ..Default::default()
    });
    let api: Api<Deployment> = Api::namespaced(sb.client(), "default");
    api.create(&PostParams::default(), &deployment("podinfo", 2))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let st = api.get("podinfo").await.unwrap().status.unwrap();
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(st.available_replicas.unwrap_or(0), 0);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let st = api.get("podinfo").await.unwrap().status.unwrap();
    assert_eq!(st.ready_replicas, Some(2));
    assert_eq!(st.updated_replicas, Some(2));
    assert_eq!(st.available_replicas, Some(2));
    let conds = st.conditions.unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True")
    );
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Progressing"
                && c.reason.as_deref() == Some("NewReplicaSetAvailable"))
    );

    // Scaled to zero: ready with zero replicas.
    api.patch_scale(
        "podinfo",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(31)).await;
    let d = api.get("podinfo").await.unwrap();
    let st = d.status.unwrap();
    assert_eq!(st.observed_generation, d.metadata.generation);
    assert_eq!(st.replicas, Some(0));
    assert!(
        st.conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True")
    );

    // Never ready: stays unavailable, then the progress deadline passes.
    sb.set_never_ready("default", "Deployment", "podinfo", true);
    api.patch(
        "podinfo",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1,
        "template": {"metadata": {"annotations": {"rev": "2"}}}}})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let st = api.get("podinfo").await.unwrap().status.unwrap();
    assert_eq!(st.updated_replicas, Some(1));
    assert_eq!(st.available_replicas, Some(0));
    tokio::time::sleep(Duration::from_secs(600)).await;
    let st = api.get("podinfo").await.unwrap().status.unwrap();
    assert!(
        st.conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
    );
    sb.set_never_ready("default", "Deployment", "podinfo", false);
    tokio::time::sleep(Duration::from_secs(31)).await;
    let st = api.get("podinfo").await.unwrap().status.unwrap();
    assert_eq!(st.available_replicas, Some(1));
}

async fn wait_for(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, want: &str) {
    loop {
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if got == want {
            return;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn watches_get_bookmarks_and_streaming_lists_work() {
    let sb = Sandbox::new(SandboxOptions {
        bookmark_interval: Duration::from_secs(30),
        ..Default::default()
    });
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let created = api
        .create(&PostParams::default(), &cm("b", "1"))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.unwrap();
    let mut s = api
        .watch(&kube::api::WatchParams::default().timeout(290), &rv)
        .await
        .unwrap()
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(45), s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match ev {
        kube::api::WatchEvent::Bookmark(b) => {
            assert!(
                b.metadata.resource_version.parse::<u64>().unwrap() >= rv.parse::<u64>().unwrap()
            )
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }

    // kube's streaming lists (sendInitialEvents) see existing objects and then changes.
    let mut stream = watcher(api.clone(), watcher::Config::default().streaming_lists())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("b"));
    api.create(&PostParams::default(), &cm("c", "1"))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.metadata.name.as_deref(), Some("c"));
}

#[tokio::test(start_paused = true)]
async fn injected_delay_runs_on_tokio_time_and_daemonsets_get_ready() {
    use k8s_openapi::api::apps::v1::DaemonSet;
    let sb = Sandbox::new(SandboxOptions {
        rollout_delay: Duration::from_secs(10),
        ..Default::default()
    });
    let api: Api<DaemonSet> = Api::namespaced(sb.client(), "default");
    api.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "a", "image": "a:1"}]}}}}))
        .unwrap())
        .await
        .unwrap();
    sb.faults().set(
        "daemonsets",
        Verb::Get,
        FaultRule {
            delay: Duration::from_secs(20),
            ..Default::default()
        },
    );
    let before = tokio::time::Instant::now();
    let ds = api.get("agent").await.unwrap();
    assert!(before.elapsed() >= Duration::from_secs(20));
    // The get was delayed past the rollout delay, so the DaemonSet is ready by now.
    let st = ds.status.unwrap();
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(st.number_ready, 1);
    assert_eq!(st.updated_number_scheduled, Some(1));
}

#[tokio::test]
async fn watch_with_label_selector_sees_objects_leave_and_enter() {
    let sb = sandbox();
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let created = api
        .create(&PostParams::default(), &cm("sel", "1"))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.unwrap();
    let mut s = api
        .watch(
            &kube::api::WatchParams::default()
                .labels("app=podinfo")
                .timeout(60),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    api.patch(
        "sel",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "sel",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "ignored"}})),
    )
    .await
    .unwrap();
    api.patch(
        "sel",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "podinfo"}}})),
    )
    .await
    .unwrap();
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let ev = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        kinds.push(match ev {
            kube::api::WatchEvent::Added(_) => "ADDED",
            kube::api::WatchEvent::Modified(_) => "MODIFIED",
            kube::api::WatchEvent::Deleted(_) => "DELETED",
            _ => "OTHER",
        });
    }
    assert_eq!(kinds, ["DELETED", "ADDED"]);
}

#[tokio::test]
async fn custom_resources_are_pruned_defaulted_and_validated_by_their_schema() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{ApiResource, DynamicObject};
    let sb = sandbox();
    let crds: Api<CustomResourceDefinition> = Api::all(sb.client());
    crds.create(&PostParams::default(), &serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "replicas": {"type": "integer", "default": 1},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}}}]}
    })).unwrap())
    .await
    .unwrap();
    let crd = crds.get("widgets.example.com").await.unwrap();
    let established = crd.status.unwrap().conditions.unwrap_or_default();
    assert!(
        established
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );

    let ar = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(sb.client(), "default", &ar);
    let w: DynamicObject =
        serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"free": {"x": 1}, "typo": true}}))
        .unwrap();
    let w = api.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(
        w.data["spec"],
        json!({"free": {"x": 1}, "replicas": 1}),
        "pruned and defaulted"
    );
    let bad: DynamicObject =
        serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "bad"}, "spec": {"replicas": "two"}}))
        .unwrap();
    match api.create(&PostParams::default(), &bad).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert!(
                s.message
                    .contains("spec.replicas in body must be of type integer"),
                "{}",
                s.message
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // Custom resources refuse unconditional updates.
    let mut blind = api.get("w").await.unwrap();
    blind.metadata.resource_version = None;
    match api
        .replace("w", &PostParams::default(), &blind)
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert!(
                s.message.contains("must be specified for an update"),
                "{}",
                s.message
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // Scale subresource of a custom resource.
    api.patch_scale(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await
    .unwrap();
    assert_eq!(api.get("w").await.unwrap().data["spec"]["replicas"], 4);
    // Deleting the CRD stops serving the resource and removes its objects.
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        matches!(api.list(&ListParams::default()).await.unwrap_err(), kube::Error::Api(s) if s.code == 404)
    );
}

#[tokio::test]
async fn bad_requests_get_status_errors_not_panics() {
    use tower::ServiceExt;
    let sb = sandbox();
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            "not json",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            "[1,2]",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            r#"{"metadata":"x"}"#,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            r#"{"metadata":{"name":"Bad_Name"}}"#,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/vnd.kubernetes.protobuf",
            "k8s\0\u{ff}",
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/x?fieldManager=m",
            "application/apply-patch+yaml",
            "[1]",
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/x?fieldManager=m",
            "application/apply-patch+yaml",
            r#"{"metadata":"s"}"#,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/x",
            "text/plain",
            "{}",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20b",
            "",
            "",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=abc",
            "",
            "",
        ),
        ("GET", "/apis/nope.io/v1/things", "", ""),
        (
            "PUT",
            "/api/v1/namespaces/default/configmaps/x/scale",
            "application/json",
            "{}",
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/configmaps/x",
            "application/json",
            r#"{"propagationPolicy":"Sideways"}"#,
        ),
    ];
    for (method, uri, ct, body) in cases {
        let mut req = http::Request::builder().method(method).uri(uri);
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap();
        let resp = sb.clone().oneshot(req).await.unwrap();
        let code = resp.status().as_u16();
        assert!((400..500).contains(&code), "{method} {uri} {body}: {code}");
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let status: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(status["kind"], "Status", "{method} {uri}");
        assert_eq!(status["code"], code, "{method} {uri}");
    }
}

#[tokio::test]
async fn foreground_deletion_waits_for_dependents() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    let sb = sandbox();
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let owner = api
        .create(&PostParams::default(), &cm("fg-owner", "1"))
        .await
        .unwrap();
    let mut dep = cm("fg-dep", "1");
    dep.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "fg-owner".into(),
        uid: owner.metadata.uid.clone().unwrap(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    dep.metadata.finalizers = Some(vec!["serin/hold".into()]);
    api.create(&PostParams::default(), &dep).await.unwrap();
    api.delete("fg-owner", &DeleteParams::foreground())
        .await
        .unwrap();
    let held = api.get("fg-owner").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(held.metadata.finalizers.unwrap(), ["foregroundDeletion"]);
    assert!(
        api.get("fg-dep")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    // Releasing the dependent's finalizer lets both go.
    api.patch(
        "fg-dep",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("fg-dep").await.unwrap().is_none());
    assert!(api.get_opt("fg-owner").await.unwrap().is_none());
}

#[tokio::test]
async fn secret_string_data_is_stored_as_data() {
    use k8s_openapi::api::core::v1::Secret;
    let client = sandbox().client();
    let api: Api<Secret> = Api::namespaced(client, "default");
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "auth"},
        "data": {"username": "b2xk", "token": "dG9r"},
        "stringData": {"username": "flagger", "password": "s3cr3t"}
    }))
    .unwrap();
    api.create(&PostParams::default(), &secret).await.unwrap();
    let text = |s: &Secret, k: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|v| String::from_utf8_lossy(&v.0).to_string())
    };
    let stored = api.get("auth").await.unwrap();
    // As on a real API server: stringData wins over data and is never returned.
    assert_eq!(text(&stored, "username").as_deref(), Some("flagger"));
    assert_eq!(text(&stored, "password").as_deref(), Some("s3cr3t"));
    assert_eq!(text(&stored, "token").as_deref(), Some("tok"));
    assert_eq!(stored.string_data, None);
    // A merge patch of stringData changes data too.
    api.patch(
        "auth",
        &PatchParams::default(),
        &Patch::Merge(json!({"stringData": {"password": "rotated"}})),
    )
    .await
    .unwrap();
    let patched = api.get("auth").await.unwrap();
    assert_eq!(text(&patched, "password").as_deref(), Some("rotated"));
    assert_eq!(patched.string_data, None);
}

#[tokio::test]
async fn a_body_over_the_api_servers_limit_is_refused_with_413() {
    let sandbox = sandbox();
    let api: Api<ConfigMap> = Api::namespaced(sandbox.client(), "default");
    let two_mib = "x".repeat(2 * 1024 * 1024);
    api.create(&PostParams::default(), &cm("fits", &two_mib))
        .await
        .expect("2 MiB is under the 3 MiB limit");
    let four_mib = "x".repeat(4 * 1024 * 1024);
    let err = api
        .create(&PostParams::default(), &cm("huge", &four_mib))
        .await
        .expect_err("refused");
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (413, "RequestEntityTooLarge"));
            assert_eq!(s.message, "limit is 3145728");
        }
        other => panic!("{other}"),
    }
    assert!(api.get_opt("huge").await.expect("read").is_none());
}
