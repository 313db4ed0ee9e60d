//! The webhook caller against a real HTTP server on loopback: Flagger's JSON payload,
//! 2xx is a pass, the status and body of a failure, retries and the timeout.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use serin_api::Canary;
use serin_api::canary::{CanaryPhase, CanaryStatus, CanaryWebhook};
use serin_operator::webhook::WebhookCaller;

#[derive(Clone, Default)]
struct Server {
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    /// Answers to give, in order; 200 once they run out.
    answers: Arc<Mutex<Vec<u16>>>,
}

async fn hook(State(s): State<Server>, body: String) -> (StatusCode, String) {
    s.bodies
        .lock()
        .unwrap()
        .push(serde_json::from_str(&body).unwrap_or(serde_json::Value::Null));
    let code = {
        let mut a = s.answers.lock().unwrap();
        if a.is_empty() { 200 } else { a.remove(0) }
    };
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        if code == 200 {
            "ok".into()
        } else {
            "gate closed".into()
        },
    )
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "late"
}

/// An answer that never ends: 64 KiB chunks, forever, as fast as the client reads.
fn endless(status: StatusCode) -> axum::response::Response {
    let chunk = axum::body::Bytes::from(vec![b'x'; 64 * 1024]);
    let body = futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
    (status, axum::body::Body::from_stream(body)).into_response()
}

async fn serve(server: Server) -> String {
    let app = axum::Router::new()
        .route("/", post(hook))
        .route("/slow", post(slow))
        .route("/endless", post(|| async { endless(StatusCode::OK) }))
        .route(
            "/endless-fail",
            post(|| async { endless(StatusCode::INTERNAL_SERVER_ERROR) }),
        )
        .with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn canary() -> Canary {
    let mut c = Canary::new("podinfo", Default::default());
    c.metadata.namespace = Some("test".into());
    c.status = Some(CanaryStatus {
        last_applied_spec: Some("5d8f6c7b9".into()),
        ..Default::default()
    });
    c
}

fn webhook(url: String) -> CanaryWebhook {
    CanaryWebhook {
        name: "load-test".into(),
        url,
        timeout: Some("2s".into()),
        metadata: Some(BTreeMap::from([(
            "cmd".to_string(),
            "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/".to_string(),
        )])),
        ..Default::default()
    }
}

#[tokio::test]
async fn posts_the_flagger_payload_and_passes_on_2xx() {
    let server = Server::default();
    let base = serve(server.clone()).await;
    let caller = WebhookCaller::default();
    caller
        .call(
            &canary(),
            &webhook(format!("{base}/")),
            CanaryPhase::Progressing,
            &BTreeMap::new(),
        )
        .await
        .expect("200 passes");
    let body = server.bodies.lock().unwrap()[0].clone();
    assert_eq!(body["name"], "podinfo");
    assert_eq!(body["namespace"], "test");
    assert_eq!(body["phase"], "Progressing");
    // Flagger's canaryChecksum of this status (computed with Flagger's go-spew).
    assert_eq!(body["checksum"], "c7cf45b77");
    assert_eq!(
        body["metadata"]["cmd"],
        "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"
    );
}

#[tokio::test]
async fn a_failure_names_status_and_body_and_retries_are_honoured() {
    let server = Server::default();
    *server.answers.lock().unwrap() = vec![400, 400, 400];
    let base = serve(server.clone()).await;
    let caller = WebhookCaller::default();
    let err = caller
        .call(
            &canary(),
            &webhook(format!("{base}/")),
            CanaryPhase::Progressing,
            &BTreeMap::new(),
        )
        .await
        .expect_err("400 fails");
    assert_eq!(err, "gate closed", "the error is the body, as in Flagger");
    assert_eq!(
        server.bodies.lock().unwrap().len(),
        1,
        "no retries by default"
    );
    // A refusal (401, 403) says who answered what.
    server.bodies.lock().unwrap().clear();
    *server.answers.lock().unwrap() = vec![403];
    let err = caller
        .call(
            &canary(),
            &webhook(format!("{base}/")),
            CanaryPhase::Progressing,
            &BTreeMap::new(),
        )
        .await
        .expect_err("403 fails");
    assert_eq!(
        err,
        format!("webhook load-test at {base}/ answered 403 Forbidden: gate closed")
    );

    *server.answers.lock().unwrap() = vec![500, 500];
    let mut hook = webhook(format!("{base}/"));
    hook.retries = Some(2);
    caller
        .call(&canary(), &hook, CanaryPhase::Progressing, &BTreeMap::new())
        .await
        .expect("the third attempt passes");
    assert_eq!(server.bodies.lock().unwrap().len(), 4);

    // A closed gate (4xx) is final: retries are for 5xx and connection errors.
    server.bodies.lock().unwrap().clear();
    *server.answers.lock().unwrap() = vec![403, 403, 403];
    caller
        .call(&canary(), &hook, CanaryPhase::Progressing, &BTreeMap::new())
        .await
        .expect_err("403 fails");
    assert_eq!(
        server.bodies.lock().unwrap().len(),
        1,
        "a 403 is not retried"
    );

    // 201 and 202 pass as in Flagger; 204 does not.
    for (code, passes) in [(201, true), (202, true), (204, false)] {
        *server.answers.lock().unwrap() = vec![code];
        let result = caller
            .call(
                &canary(),
                &webhook(format!("{base}/")),
                CanaryPhase::Progressing,
                &BTreeMap::new(),
            )
            .await;
        assert_eq!(result.is_ok(), passes, "{code}: {result:?}");
    }
}

#[tokio::test]
async fn a_slow_webhook_times_out_and_bad_urls_are_errors() {
    let base = serve(Server::default()).await;
    let caller = WebhookCaller::default();
    let mut hook = webhook(format!("{base}/slow"));
    hook.timeout = Some("200ms".into());
    let started = std::time::Instant::now();
    let err = caller
        .call(&canary(), &hook, CanaryPhase::Progressing, &BTreeMap::new())
        .await
        .expect_err("times out");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "bounded by the timeout"
    );
    assert!(
        err.contains("timeout") || err.contains("timed out"),
        "{err}"
    );
    let err = caller
        .call(
            &canary(),
            &webhook("ftp://127.0.0.1/".into()),
            CanaryPhase::Progressing,
            &BTreeMap::new(),
        )
        .await
        .expect_err("bad scheme");
    assert!(err.contains("http or https"), "{err}");
}

#[tokio::test]
async fn an_endless_answer_is_not_read_to_its_end() {
    let base = serve(Server::default()).await;
    let caller = WebhookCaller::default();
    let mut hook = webhook(format!("{base}/endless"));
    hook.timeout = Some("3s".into());
    caller
        .call(&canary(), &hook, CanaryPhase::Progressing, &BTreeMap::new())
        .await
        .expect("a 2xx passes without its body being read");
    hook.url = format!("{base}/endless-fail");
    let err = caller
        .call(&canary(), &hook, CanaryPhase::Progressing, &BTreeMap::new())
        .await
        .expect_err("500 fails");
    // As in Flagger, the error is the body: its start only.
    assert!(err.starts_with("xxxx"), "the start of the body: {err:.40}");
    assert!(err.len() < 300, "only the start of the body is kept");
}
