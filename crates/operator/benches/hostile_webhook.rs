//! Operator memory under a hostile webhook: a loopback server answers with a 1.5 GB
//! body (once 200, once 500); prints the process's peak resident memory (VmHWM) before
//! and after. `cargo bench -p serin-operator --bench hostile_webhook`.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use serin_api::Canary;
use serin_api::canary::{CanaryPhase, CanaryWebhook};
use serin_operator::webhook::WebhookCaller;

const SIZE: usize = 1536 * 1024 * 1024;
const CHUNK: usize = 1024 * 1024;

fn huge(status: StatusCode) -> axum::response::Response {
    let chunk = axum::body::Bytes::from(vec![b'x'; CHUNK]);
    let body = futures::stream::iter(
        (0..SIZE / CHUNK).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    (status, axum::body::Body::from_stream(body)).into_response()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let app = axum::Router::new()
        .route("/ok", post(|| async { huge(StatusCode::OK) }))
        .route(
            "/fail",
            post(|| async { huge(StatusCode::INTERNAL_SERVER_ERROR) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut canary = Canary::new("podinfo", Default::default());
    canary.metadata.namespace = Some("test".into());
    let caller = WebhookCaller::default();
    println!("peak RSS before: {:.1} MiB", peak_rss_mib());
    for path in ["ok", "fail"] {
        let hook = CanaryWebhook {
            name: "hostile".into(),
            url: format!("http://{addr}/{path}"),
            timeout: Some("60s".into()),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let result = caller
            .call(&canary, &hook, CanaryPhase::Progressing, &BTreeMap::new())
            .await;
        println!(
            "1.5 GB answer on /{path}: {} in {:?}, peak RSS {:.1} MiB",
            match &result {
                Ok(()) => "passed".to_string(),
                Err(e) => format!("failed ({:.20}...)", e),
            },
            started.elapsed(),
            peak_rss_mib()
        );
    }
}
