//! Throughput of the sandbox (a benchmark, not a test):
//! writes per second through a kube::Client (in process and over HTTP), and watch events
//! delivered per second to 100 concurrent watchers, checking that none is lost.
//!
//! Run: `cargo bench -p serin-sandbox --bench throughput` (env WRITES=N to change the count).

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use serin_sandbox::{Sandbox, SandboxOptions};

const TASKS: usize = 8;

fn cm(name: String) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "bench"}}, "data": {"k": "v"}}),
    )
    .expect("valid ConfigMap")
}

/// `total` creates spread over TASKS concurrent tasks; returns writes per second.
async fn writes(client: kube::Client, prefix: &str, total: usize) -> f64 {
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let prefix = prefix.to_string();
        handles.push(tokio::spawn(async move {
            for i in (t..total).step_by(TASKS) {
                api.create(&PostParams::default(), &cm(format!("{prefix}-{i}")))
                    .await
                    .expect("create");
            }
        }));
    }
    for h in handles {
        h.await.expect("writer task");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let total: usize = std::env::var("WRITES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let sandbox = Sandbox::new(SandboxOptions {
        watch_history: total * 4 + 1000,
        ..Default::default()
    });

    let w = writes(sandbox.client(), "inproc", total).await;
    println!("in-process kube::Client: {total} creates, {w:.0} writes/s");

    let server = sandbox
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    let config = kube::Config::new(server.url().parse().expect("url"));
    let http_client = kube::Client::try_from(config).expect("http client");
    let w = writes(http_client, "http", total).await;
    println!("HTTP (hyper on 127.0.0.1) kube::Client: {total} creates, {w:.0} writes/s");

    // 100 watchers from the current resourceVersion, then `total` writes.
    let watchers = 100;
    let api: Api<ConfigMap> = Api::namespaced(sandbox.client(), "default");
    let rv = sandbox.resource_version().to_string();
    let mut streams = Vec::new();
    for _ in 0..watchers {
        let s = api
            .watch(&WatchParams::default().timeout(290), &rv)
            .await
            .expect("watch");
        streams.push(s.boxed());
    }
    let start = Instant::now();
    let counters: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut n = 0usize;
                let mut last = 0u64;
                let mut ordered = true;
                while n < total {
                    match tokio::time::timeout(Duration::from_secs(60), s.next()).await {
                        Ok(Some(Ok(WatchEvent::Added(o)))) => {
                            let rv: u64 = o
                                .metadata
                                .resource_version
                                .and_then(|r| r.parse().ok())
                                .unwrap_or(0);
                            ordered &= rv > last;
                            last = rv;
                            n += 1;
                        }
                        Ok(Some(Ok(_))) => {}
                        _ => break,
                    }
                }
                (n, ordered, Instant::now())
            })
        })
        .collect();
    let w = writes(sandbox.client(), "watched", total).await;
    let write_done = start.elapsed();
    let mut received = 0;
    let mut all_ordered = true;
    let mut last = start;
    for c in counters {
        let (n, ordered, at) = c.await.expect("watcher task");
        received += n;
        all_ordered &= ordered;
        last = last.max(at);
    }
    let elapsed = last.duration_since(start).as_secs_f64();
    println!(
        "{watchers} watchers, {total} writes at {w:.0} writes/s (writes took {:.2}s): {received} of {} events delivered \
         in {elapsed:.2}s = {:.0} events/s, in order: {all_ordered}, lost: {}",
        write_done.as_secs_f64(),
        watchers * total,
        received as f64 / elapsed,
        watchers * total - received,
    );

    // The same with raw watchers (counting event lines, no JSON decoding on the client
    // side): what the sandbox itself delivers.
    let rv = sandbox.resource_version();
    let mut raw = Vec::new();
    for _ in 0..watchers {
        let req = http::Request::get(format!(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=290"
        ))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
        let resp = tower::ServiceExt::oneshot(sandbox.clone(), req)
            .await
            .expect("watch");
        raw.push(resp.into_body());
    }
    let start = Instant::now();
    let counters: Vec<_> = raw
        .into_iter()
        .map(|mut body| {
            tokio::spawn(async move {
                let mut n = 0usize;
                while n < total {
                    match tokio::time::timeout(
                        Duration::from_secs(60),
                        http_body_util::BodyExt::frame(&mut body),
                    )
                    .await
                    {
                        Ok(Some(Ok(frame))) => {
                            if let Some(d) = frame.data_ref() {
                                n += d.iter().filter(|b| **b == b'\n').count();
                            }
                        }
                        _ => break,
                    }
                }
                (n, Instant::now())
            })
        })
        .collect();
    let w = writes(sandbox.client(), "raw", total).await;
    let mut received = 0;
    let mut last = start;
    for c in counters {
        let (n, at) = c.await.expect("watcher task");
        received += n;
        last = last.max(at);
    }
    let elapsed = last.duration_since(start).as_secs_f64();
    println!(
        "{watchers} raw watchers, {total} writes at {w:.0} writes/s: {received} of {} events delivered in {elapsed:.2}s = {:.0} events/s, lost: {}",
        watchers * total,
        received as f64 / elapsed,
        watchers * total - received,
    );
    server.shutdown().await;
}
