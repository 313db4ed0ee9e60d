//! The load tester against real HTTP targets on 127.0.0.1: a tiny axum server that
//! counts requests and records what reached it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode};
use prometheus_client::metrics::counter::Counter;
use serde_json::json;
use serin_loadtester::{Config, HeyArgs, LoadTester};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    headers: HeaderMap,
    body: Bytes,
}

struct Target {
    count: AtomicU64,
    seen: Mutex<Vec<Seen>>,
    peers: Mutex<HashSet<SocketAddr>>,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Requests are held until this many are in flight at once (0: answer at once), so
    /// the highest concurrency the generator reaches is observed without timing.
    hold_until: u64,
    released: watch::Sender<bool>,
}

async fn target_handler(
    State(t): State<Arc<Target>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    t.count.fetch_add(1, Ordering::SeqCst);
    let now = t.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    t.max_in_flight.fetch_max(now, Ordering::SeqCst);
    if t.hold_until > 0 {
        if now >= t.hold_until {
            t.released.send_replace(true);
        }
        let mut rx = t.released.subscribe();
        // Bounded: a generator with too few workers fails the assertion, it does not hang.
        let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|r| *r)).await;
    }
    {
        let mut seen = t.seen.lock().unwrap();
        if seen.len() < 100 {
            seen.push(Seen {
                method,
                headers,
                body,
            });
        }
    }
    t.peers.lock().unwrap().insert(peer);
    t.in_flight.fetch_sub(1, Ordering::SeqCst);
    (StatusCode::OK, "hello")
}

async fn start_target(hold_until: u64) -> (String, Arc<Target>) {
    let target = Arc::new(Target {
        count: AtomicU64::new(0),
        seen: Mutex::new(Vec::new()),
        peers: Mutex::new(HashSet::new()),
        in_flight: AtomicU64::new(0),
        max_in_flight: AtomicU64::new(0),
        hold_until,
        released: watch::channel(false).0,
    });
    let app = Router::new()
        .fallback(target_handler)
        .with_state(target.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (format!("http://{addr}/path"), target)
}

async fn start_loadtester(mut config: Config) -> (String, LoadTester) {
    // The targets of these tests are on loopback.
    config
        .allow_target
        .push(serin_loadtester::targets::AllowedTarget::parse("127.0.0.1").unwrap());
    let lt = LoadTester::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = lt.clone();
    tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
    (format!("http://{addr}"), lt)
}

fn client() -> reqwest::Client {
    serin_http_client::client(&serin_http_client::ClientOptions::default()).unwrap()
}

fn payload(name: &str, metadata: serde_json::Value) -> serde_json::Value {
    json!({"name": name, "namespace": "test", "phase": "Progressing", "checksum": "abc", "metadata": metadata})
}

async fn post(url: &str, body: &serde_json::Value) -> (StatusCode, String) {
    post_with(url, body, None).await
}

async fn post_with(
    url: &str,
    body: &serde_json::Value,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut req = client().post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

/// Waits (bounded) until no load test runs in the background.
async fn wait_idle(lt: &LoadTester) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !lt.running().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "load tests still running: {:?}",
            lt.running()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn rate_limited_duration_run_sends_rate_times_workers_times_seconds() {
    let (url, target) = start_target(0).await;
    let (lt_url, lt) = start_loadtester(Config::default()).await;
    let (status, text) = post(
        &lt_url,
        &payload(
            "podinfo",
            json!({"cmd": format!("hey -z 2s -q 10 -c 2 {url}")}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("load test started"), "{text}");
    wait_idle(&lt).await;
    // Exactly q * c * z: each worker sends one request per tick due by the end of the
    // run, catching up ticks missed while the machine was busy, so the count does not
    // depend on load (throughput figures are in benches/generator.rs).
    let sent = target.count.load(Ordering::SeqCst);
    assert_eq!(sent, 40, "hey -z 2s -q 10 -c 2");
    let metrics = lt.metrics_text();
    assert!(
        metrics.contains(&format!("serin_loadtester_load_requests_total {sent}")),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"serin_loadtester_commands_total{kind="hey"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn request_count_and_workers_are_honoured() {
    let (url, target) = start_target(4).await;
    let args = HeyArgs::parse_command(&format!("hey -n 20 -c 4 {url}")).unwrap();
    let report = serin_loadtester::hey::run(&args, &Counter::default())
        .await
        .unwrap();
    assert_eq!(target.count.load(Ordering::SeqCst), 20);
    assert_eq!(target.max_in_flight.load(Ordering::SeqCst), 4);
    assert_eq!(report.requests, 20);
    assert_eq!(report.status_codes.get(&200), Some(&20));
    assert_eq!(report.size_total_bytes, 20 * 5);
    assert!(report.summary().contains("[200]\t20 responses"));

    // A count that does not divide by the workers is still sent in full.
    let (url, target) = start_target(3).await;
    let args = HeyArgs::parse_command(&format!("hey -n 10 -c 3 {url}")).unwrap();
    serin_loadtester::hey::run(&args, &Counter::default())
        .await
        .unwrap();
    assert_eq!(target.count.load(Ordering::SeqCst), 10);
    assert_eq!(target.max_in_flight.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn method_headers_body_and_host_reach_the_target() {
    let (url, target) = start_target(0).await;
    let (lt_url, lt) = start_loadtester(Config::default()).await;
    let cmd = format!(
        "hey -n 3 -c 1 -m put -H 'X-Canary: yes' -H 'Authorization: Bearer abc' \
         -d '{{\"k\":1}}' -T application/json -host podinfo.example {url}"
    );
    let (status, text) = post(&lt_url, &payload("podinfo", json!({"cmd": cmd}))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    wait_idle(&lt).await;
    let seen = target.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.method, Method::PUT);
        assert_eq!(s.headers["x-canary"], "yes");
        assert_eq!(s.headers["authorization"], "Bearer abc");
        assert_eq!(s.headers["content-type"], "application/json");
        assert_eq!(s.headers["host"], "podinfo.example");
        assert_eq!(s.headers["user-agent"], "hey/0.0.1");
        // As reqwest sent it before hey had a client of its own.
        assert_eq!(s.headers["accept"], "*/*");
        assert_eq!(s.body, Bytes::from_static(b"{\"k\":1}"));
    }
}

#[tokio::test]
async fn keepalive_reuses_one_connection_and_can_be_disabled() {
    let (url, target) = start_target(0).await;
    let args = HeyArgs::parse_command(&format!("hey -n 5 -c 1 {url}")).unwrap();
    serin_loadtester::hey::run(&args, &Counter::default())
        .await
        .unwrap();
    assert_eq!(target.peers.lock().unwrap().len(), 1);

    let (url, target) = start_target(0).await;
    let args = HeyArgs::parse_command(&format!("hey -n 5 -c 1 -disable-keepalive {url}")).unwrap();
    serin_loadtester::hey::run(&args, &Counter::default())
        .await
        .unwrap();
    assert_eq!(target.peers.lock().unwrap().len(), 5);
}

#[tokio::test]
async fn unreachable_target_is_reported_as_errors() {
    // Bind then drop to get a loopback port where nothing listens.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args = HeyArgs::parse_command(&format!("hey -n 2 -c 1 http://127.0.0.1:{port}/")).unwrap();
    let report = serin_loadtester::hey::run(&args, &Counter::default())
        .await
        .unwrap();
    assert_eq!(report.requests, 2);
    assert_eq!(report.responses, 0);
    assert_eq!(
        report.errors.values().sum::<u64>(),
        2,
        "{:?}",
        report.errors
    );
    assert!(report.summary().contains("Error distribution"));
}

#[tokio::test]
async fn a_running_load_test_is_not_started_twice() {
    let (url, _target) = start_target(0).await;
    let (lt_url, lt) = start_loadtester(Config::default()).await;
    let cmd = format!("hey -z 1m -q 1 -c 1 {url}");
    let (status, text) = post(&lt_url, &payload("podinfo", json!({"cmd": cmd}))).await;
    assert_eq!(
        (status, text.contains("started")),
        (StatusCode::OK, true),
        "{text}"
    );
    let (status, text) = post(&lt_url, &payload("podinfo", json!({"cmd": cmd}))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("already running"), "{text}");
    // Another canary with the same command is its own load test.
    let (_, text) = post(&lt_url, &payload("other", json!({"cmd": cmd}))).await;
    assert!(text.contains("started"), "{text}");
    assert_eq!(
        lt.running(),
        vec![format!("other.test {cmd}"), format!("podinfo.test {cmd}")]
    );
    assert!(
        lt.metrics_text()
            .contains(r#"serin_loadtester_commands_total{kind="hey"} 2"#)
    );
}

#[tokio::test]
async fn metadata_timeout_stops_a_background_load_test() {
    let (url, _target) = start_target(0).await;
    let (lt_url, lt) = start_loadtester(Config::default()).await;
    let body = payload(
        "podinfo",
        json!({"cmd": format!("hey -n 100000 -q 5 -c 1 {url}"), "timeout": "300ms"}),
    );
    let (status, _) = post(&lt_url, &body).await;
    assert_eq!(status, StatusCode::OK);
    wait_idle(&lt).await;
    let m = lt.metrics_text();
    assert!(
        m.contains(r#"serin_loadtester_commands_failed_total{kind="hey"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn a_finished_load_test_can_run_again() {
    let (url, target) = start_target(0).await;
    let (lt_url, lt) = start_loadtester(Config::default()).await;
    let body = payload("podinfo", json!({"cmd": format!("hey -n 2 -c 1 {url}")}));
    post(&lt_url, &body).await;
    wait_idle(&lt).await;
    let (_, text) = post(&lt_url, &body).await;
    assert!(text.contains("started"), "{text}");
    wait_idle(&lt).await;
    assert_eq!(target.count.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn bash_and_other_commands_are_refused_by_default() {
    let (lt_url, lt) = start_loadtester(Config::default()).await;
    let (status, text) = post(
        &lt_url,
        &payload("podinfo", json!({"type": "bash", "cmd": "echo hi"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(text.contains("--enable-bash"), "{text}");
    let (status, text) = post(&lt_url, &payload("podinfo", json!({"cmd": "echo hi"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        text.contains("--enable-bash") && text.contains("`echo`"),
        "{text}"
    );
    assert!(!lt.metrics_text().contains("kind=\"bash\""));
}

#[tokio::test]
async fn bash_runs_when_enabled() {
    let (lt_url, lt) = start_loadtester(Config {
        enable_bash: true,
        ..Config::default()
    })
    .await;
    let (status, text) = post(
        &lt_url,
        &payload(
            "podinfo",
            json!({"type": "bash", "cmd": "echo token | grep token", "returnCmdOutput": "true"}),
        ),
    )
    .await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "token\n"));
    // A plain command runs without a shell: the quote is kept as one argument.
    let (status, text) = post(
        &lt_url,
        &payload(
            "podinfo",
            json!({"cmd": "echo 'a  b' $HOME", "returnCmdOutput": "true"}),
        ),
    )
    .await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "a  b $HOME\n"));
    let m = lt.metrics_text();
    assert!(
        m.contains(r#"serin_loadtester_commands_total{kind="bash"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"serin_loadtester_commands_total{kind="cmd"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn allow_list_prefixes_are_enforced() {
    let (lt_url, _lt) = start_loadtester(Config {
        enable_bash: true,
        allow_cmd: vec!["echo ".into(), "true".into()],
        ..Config::default()
    })
    .await;
    let ok = |m| payload("podinfo", m);
    let (status, _) = post(&lt_url, &ok(json!({"cmd": "echo allowed"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post(&lt_url, &ok(json!({"cmd": "true"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = post(&lt_url, &ok(json!({"cmd": "ls /"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(text.contains("--allow-cmd"), "{text}");
    let (status, _) = post(&lt_url, &ok(json!({"type": "bash", "cmd": "id; echo x"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A shell line that starts with an allowed prefix is refused too: the prefix would
    // not stop what comes after the `;`.
    let (status, text) = post(
        &lt_url,
        &ok(json!({"type": "bash", "cmd": "echo x; id -un", "returnCmdOutput": "true"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(
        text.contains("type: bash is refused while --allow-cmd"),
        "{text}"
    );
    // Without a shell the same line is refused as shell syntax, never run by a shell.
    let (status, text) = post(
        &lt_url,
        &ok(json!({"cmd": "echo x; id -un", "returnCmdOutput": "true"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("shell syntax"), "{text}");
}

#[tokio::test]
async fn a_failing_command_is_a_500_with_its_output() {
    let (lt_url, lt) = start_loadtester(Config {
        enable_bash: true,
        ..Config::default()
    })
    .await;
    let (status, text) = post(
        &lt_url,
        &payload(
            "podinfo",
            json!({"type": "bash", "cmd": "echo boom-out; echo boom-err >&2; exit 3"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        text.contains("boom-out") && text.contains("boom-err"),
        "{text}"
    );
    assert!(text.contains("exit status: 3"), "{text}");

    let (status, text) = post(
        &lt_url,
        &payload("podinfo", json!({"cmd": "ls /no/such/dir/serin"})),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(text.contains("/no/such/dir/serin"), "{text}");

    let (status, text) = post(
        &lt_url,
        &payload("podinfo", json!({"cmd": "serin-no-such-program-xyz"})),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        text.contains("cannot start serin-no-such-program-xyz"),
        "{text}"
    );

    let (status, text) = post(
        &lt_url,
        &payload("podinfo", json!({"cmd": "sleep 30", "timeout": "300ms"})),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(text.contains("timed out"), "{text}");

    let m = lt.metrics_text();
    assert!(
        m.contains(r#"serin_loadtester_commands_failed_total{kind="bash"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"serin_loadtester_commands_failed_total{kind="cmd"} 3"#),
        "{m}"
    );
}

#[tokio::test]
async fn malformed_payloads_are_a_400_naming_the_problem() {
    let (lt_url, _lt) = start_loadtester(Config::default()).await;
    let raw = client()
        .post(&lt_url)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    assert!(raw.text().await.unwrap().contains("not JSON"));

    let cases = [
        (
            json!({"namespace": "test", "metadata": {"cmd": "hey http://x/"}}),
            "field `name` is missing",
        ),
        (
            json!({"name": "a", "namespace": "test", "metadata": {"cmd": "hey http://x/", "timeout": 5}}),
            "metadata.timeout` must be a string",
        ),
        (
            json!({"name": "a", "namespace": "test"}),
            "metadata not found",
        ),
        (
            json!({"name": "a", "namespace": "test", "metadata": {"type": "bash"}}),
            "metadata.cmd is missing",
        ),
        (
            json!({"name": "a", "namespace": "test", "metadata": {"cmd": "x", "type": "concord"}}),
            "unknown task type",
        ),
        (
            json!({"name": "a", "namespace": "test", "metadata": {"cmd": "hey -z 1x http://x/"}}),
            "invalid hey command",
        ),
        (
            json!({"name": "a", "namespace": "test", "metadata": {"cmd": "hey http://x/", "timeout": "soon"}}),
            "metadata.timeout",
        ),
        (
            json!({"name": "a", "namespace": "test", "metadata": {"cmd": "hey http://x/", "logCmdOutput": "yes"}}),
            "logCmdOutput",
        ),
        (
            json!({"name": "a", "namespace": "test", "metadata": {"cmd": "curl -s http://x | grep ok"}}),
            "metadata.type: bash",
        ),
    ];
    for (body, expected) in cases {
        let (status, text) = post(&lt_url, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        assert!(text.contains(expected), "{body}: {text}");
    }
}

#[tokio::test]
async fn gates_follow_flaggers_semantics() {
    let (lt_url, _lt) = start_loadtester(Config::default()).await;
    let canary = json!({"name": "podinfo", "namespace": "test", "phase": "Progressing"});
    let other = json!({"name": "podinfo", "namespace": "prod"});
    let call = |path: &str, body: &serde_json::Value| {
        let url = format!("{lt_url}{path}");
        let body = body.clone();
        async move { post(&url, &body).await.0 }
    };
    // Closed until opened.
    assert_eq!(call("/gate/check", &canary).await, StatusCode::FORBIDDEN);
    assert_eq!(call("/gate/open", &canary).await, StatusCode::ACCEPTED);
    assert_eq!(call("/gate/check", &canary).await, StatusCode::OK);
    assert_eq!(call("/gate/check", &other).await, StatusCode::FORBIDDEN);
    assert_eq!(call("/gate/close", &canary).await, StatusCode::ACCEPTED);
    assert_eq!(call("/gate/check", &canary).await, StatusCode::FORBIDDEN);
    // approve and halt do not look at the gate or the body.
    assert_eq!(call("/gate/approve", &canary).await, StatusCode::OK);
    assert_eq!(call("/gate/halt", &canary).await, StatusCode::FORBIDDEN);
    let empty = client()
        .post(format!("{lt_url}/gate/approve"))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), StatusCode::OK);
    // Rollback: 200 means roll back; independent of the gate.
    assert_eq!(
        call("/rollback/check", &canary).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(call("/gate/open", &canary).await, StatusCode::ACCEPTED);
    assert_eq!(
        call("/rollback/check", &canary).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(call("/rollback/open", &canary).await, StatusCode::ACCEPTED);
    assert_eq!(call("/rollback/check", &canary).await, StatusCode::OK);
    assert_eq!(call("/rollback/check", &other).await, StatusCode::FORBIDDEN);
    assert_eq!(call("/rollback/close", &canary).await, StatusCode::ACCEPTED);
    assert_eq!(
        call("/rollback/check", &canary).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(call("/gate/check", &canary).await, StatusCode::OK);
    // A gate needs to know which canary.
    let (status, text) = post(&format!("{lt_url}/gate/open"), &json!({"name": "podinfo"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("namespace"), "{text}");
}

#[tokio::test]
async fn the_token_is_required_on_every_endpoint_when_set() {
    let (lt_url, _lt) = start_loadtester(Config {
        token: Some("s3cret".into()),
        ..Config::default()
    })
    .await;
    let canary = json!({"name": "podinfo", "namespace": "test"});
    for path in [
        "/",
        "/healthz",
        "/metrics",
        "/gate/check",
        "/gate/open",
        "/gate/close",
        "/gate/approve",
        "/gate/halt",
        "/rollback/check",
        "/rollback/open",
        "/rollback/close",
    ] {
        let url = format!("{lt_url}{path}");
        let (status, text) = post_with(&url, &canary, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(text.contains("Authorization: Bearer"), "{text}");
        let (status, _) = post_with(&url, &canary, Some("wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let url = |p: &str| format!("{lt_url}{p}");
    assert_eq!(
        post_with(&url("/gate/open"), &canary, Some("s3cret"))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post_with(&url("/gate/check"), &canary, Some("s3cret"))
            .await
            .0,
        StatusCode::OK
    );
    let health = client()
        .get(url("/healthz"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let metrics = client()
        .get(url("/metrics"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("serin_loadtester_load_requests_total 0")
    );
}

#[tokio::test]
async fn healthz_answers_without_a_token_configured() {
    let (lt_url, _lt) = start_loadtester(Config::default()).await;
    let r = client()
        .get(format!("{lt_url}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "OK");
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_command_printing_hundreds_of_megabytes_is_cut_while_it_streams() {
    let (lt_url, _lt) = start_loadtester(Config {
        enable_bash: true,
        ..Config::default()
    })
    .await;
    let before = peak_rss_kib();
    let (status, text) = post(
        &lt_url,
        &payload(
            "podinfo",
            json!({"cmd": "head -c 400000000 /dev/zero", "returnCmdOutput": "true"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.ends_with("(output truncated)"), "{:.80}", text);
    assert!(text.len() < 70 * 1024, "{}", text.len());
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 100,
        "400 MB of output raised the peak memory by {grown_mib} MiB"
    );
}

#[tokio::test]
async fn a_timed_out_command_is_killed_with_its_children() {
    let (lt_url, _lt) = start_loadtester(Config {
        enable_bash: true,
        ..Config::default()
    })
    .await;
    let dir = std::env::temp_dir().join(format!("serin-lt-group-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("child.pid");
    let cmd = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
    let (status, text) = post(
        &lt_url,
        &payload(
            "podinfo",
            json!({"type": "bash", "cmd": cmd, "timeout": "500ms"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(text.contains("timed out"), "{text}");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Gone, or a zombie waiting for init to reap it: not running.
    let running = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .map(|r| r.trim().starts_with(['S', 'R']))
            })
            .unwrap_or(false)
    };
    let mut still = running();
    for _ in 0..50 {
        if !still {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        still = running();
    }
    if still {
        // Do not leave it behind (it is ours: its pid came from the command above).
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!still, "the command's child {pid} survived the timeout");
}

#[tokio::test]
async fn a_duration_beyond_the_timeout_is_refused_not_cut() {
    let (url, _target) = start_target(0).await;
    let (lt_url, lt) = start_loadtester(Config::default()).await;
    let (status, text) = post(
        &lt_url,
        &payload(
            "podinfo",
            json!({"cmd": format!("hey -z 100h -q 1 -c 1 {url}")}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains("-z 360000s is longer than the command timeout 3600s"),
        "{text}"
    );
    let m = lt.metrics_text();
    assert!(
        !m.contains(r#"serin_loadtester_commands_total{kind="hey"} 1"#),
        "not started: {m}"
    );
}

#[tokio::test]
async fn targets_outside_the_allow_list_are_a_403_saying_why() {
    let lt = LoadTester::new(Config::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = lt.clone();
    tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
    let lt_url = format!("http://{addr}");
    for target in [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:9/",
    ] {
        let (status, text) = post(
            &lt_url,
            &payload(
                "podinfo",
                json!({"cmd": format!("hey -z 1s -q 1 -c 1 {target}")}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{target}: {text}");
        assert!(text.contains("is not allowed"), "{text}");
        assert!(text.contains("--allow-target"), "{text}");
    }
    let m = lt.metrics_text();
    assert!(
        !m.contains(r#"serin_loadtester_commands_total{kind="hey"} 1"#),
        "nothing started: {m}"
    );
}

/// A target that answers `/path` and redirects the others there with the status
/// their name says (`/301`, `/302`, `/303`, `/307`, `/308`), recording what reached
/// `/path`.
async fn start_redirecting_target() -> (String, Arc<Target>) {
    let (url, target) = start_target(0).await;
    let path_url = url.clone();
    let app = Router::new().fallback(move |uri: axum::http::Uri| {
        let to = path_url.clone();
        async move {
            let status = uri
                .path()
                .trim_start_matches('/')
                .parse::<u16>()
                .unwrap_or(404);
            (
                StatusCode::from_u16(status).unwrap(),
                [(axum::http::header::LOCATION, to)],
                "moved",
            )
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), target)
}

#[tokio::test]
async fn redirects_are_followed_with_the_method_and_body_rules_of_each_status() {
    let (base, target) = start_redirecting_target().await;
    for (status, method, body) in [
        (301, Method::GET, ""),
        (302, Method::GET, ""),
        (303, Method::GET, ""),
        (307, Method::POST, "{}"),
        (308, Method::POST, "{}"),
    ] {
        target.seen.lock().unwrap().clear();
        let cmd = format!("hey -n 2 -c 1 -m POST -d '{{}}' {base}/{status}");
        let report =
            serin_loadtester::hey::run(&HeyArgs::parse_command(&cmd).unwrap(), &Counter::default())
                .await
                .unwrap();
        assert_eq!(
            report.status_codes.get(&200),
            Some(&2),
            "{status}: {report:?}"
        );
        assert_eq!(report.size_total_bytes, 2 * 5, "the final answer's body");
        let seen = target.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{status}");
        for s in &seen {
            assert_eq!(s.method, method, "{status}");
            assert_eq!(s.body, Bytes::from(body), "{status}");
            assert_eq!(s.headers["user-agent"], "hey/0.0.1");
        }
    }
}

/// A raw HTTP/1.1 server that answers one request per connection and then closes it
/// without saying so (no `Connection: close`), as a server whose keep-alive timeout
/// is shorter than the client's.
async fn start_one_request_per_connection_target() -> (String, Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = Arc::new(AtomicU64::new(0));
    let count = answered.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                count.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (format!("http://{addr}/"), answered)
}

#[tokio::test]
async fn a_kept_alive_connection_closed_by_the_server_is_replaced_without_errors() {
    let (url, answered) = start_one_request_per_connection_target().await;
    let args = HeyArgs::parse_command(&format!("hey -n 20 -c 2 {url}")).unwrap();
    let report = serin_loadtester::hey::run(&args, &Counter::default())
        .await
        .unwrap();
    assert_eq!(report.errors, Default::default(), "{report:?}");
    assert_eq!(report.status_codes.get(&200), Some(&20));
    assert_eq!(answered.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_is_a_timeout_error() {
    // Accepts and reads, never answers; bounded by the test's own runtime.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let args = HeyArgs::parse_command(&format!("hey -n 2 -c 1 -t 1 http://{addr}/")).unwrap();
    let report = serin_loadtester::hey::run(&args, &Counter::default())
        .await
        .unwrap();
    assert_eq!(report.requests, 2);
    assert_eq!(report.responses, 0);
    assert_eq!(
        report.errors.get("timeout"),
        Some(&2),
        "{:?}",
        report.errors
    );
}

#[tokio::test]
async fn head_requests_read_no_body_and_keep_the_connection() {
    let (url, target) = start_target(0).await;
    let args = HeyArgs::parse_command(&format!("hey -n 4 -c 1 -m HEAD {url}")).unwrap();
    let report = serin_loadtester::hey::run(&args, &Counter::default())
        .await
        .unwrap();
    assert_eq!(report.status_codes.get(&200), Some(&4), "{report:?}");
    assert_eq!(report.size_total_bytes, 0);
    assert_eq!(target.peers.lock().unwrap().len(), 1);
    assert!(
        target
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|s| s.method == Method::HEAD)
    );
}
