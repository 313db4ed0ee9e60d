//! Alerts as chat services receive them: real HTTP receivers on 127.0.0.1 record
//! every body, checked against each service's documented webhook format.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::{Value, json};
use serin_api::{AlertProvider, Canary};
use serin_notify::{
    AlertEvent, AlertMetrics, Dispatcher, InMemoryLookup, NotifierConfig, Severity, build_notifier,
};
use tokio::sync::{mpsc, watch};

/// Upper bound for any single test step; a guard against a hung test, never a
/// timing assertion.
const GUARD: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct Received {
    path: String,
    host: Option<String>,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Value,
}

#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    /// Holds the request until the test releases it, then answers 200.
    Hang,
}

struct ReceiverState {
    answer: Answer,
    requests: mpsc::UnboundedSender<Received>,
    release: watch::Receiver<bool>,
    log: Arc<Mutex<Vec<&'static str>>>,
}

struct Receiver {
    addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Received>,
    release: watch::Sender<bool>,
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl Receiver {
    async fn start(answer: Answer) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (release_tx, release_rx) = watch::channel(false);
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(ReceiverState {
            answer,
            requests: tx,
            release: release_rx,
            log: log.clone(),
        });
        let app = Router::new().fallback(record).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            requests: rx,
            release: release_tx,
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(GUARD, self.requests.recv())
            .await
            .expect("a request within the guard time")
            .expect("receiver running")
    }

    /// Everything received so far, without waiting.
    fn drain(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok(r) = self.requests.try_recv() {
            out.push(r);
        }
        out
    }
}

async fn record(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let received = Received {
        path: uri.path().to_string(),
        host: uri
            .authority()
            .map(|a| a.to_string())
            .or_else(|| header("host")),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    state.log.lock().expect("log").push("request received");
    let _ = state.requests.send(received);
    match state.answer {
        Answer::Status(code) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            if code < 300 {
                "ok".into()
            } else {
                "boom".into()
            },
        ),
        Answer::Hang => {
            let mut release = state.release.clone();
            let _ = release.wait_for(|released| *released).await;
            state.log.lock().expect("log").push("receiver answered");
            (StatusCode::OK, "late".into())
        }
    }
}

fn canary(alerts: Value) -> Canary {
    serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898},
            "analysis": {
                "interval": "1m",
                "threshold": 5,
                "maxWeight": 50,
                "stepWeight": 10,
                "alerts": alerts,
            }
        },
        "status": {"phase": "Progressing", "failedChecks": 5, "canaryWeight": 20}
    }))
    .expect("valid canary")
}

fn provider(name: &str, namespace: &str, spec: Value) -> AlertProvider {
    serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "AlertProvider",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }))
    .expect("valid provider")
}

fn global(config: NotifierConfig) -> Dispatcher {
    let notifier = build_notifier(&config).expect("notifier");
    Dispatcher::new(
        vec![notifier],
        Arc::new(InMemoryLookup::new()),
        AlertMetrics::new(),
        Duration::from_secs(10),
    )
}

fn config(type_: &str, url: String) -> NotifierConfig {
    let mut c = NotifierConfig::new(type_, url);
    c.channel = "general".into();
    c.username = "flagger".into();
    c
}

/// The canary details every promotion and rollback alert carries, in order.
const DETAILS: [(&str, &str); 5] = [
    ("Target", "Deployment/podinfo.test"),
    ("Failed checks threshold", "5"),
    ("Progress deadline", "60s"),
    ("Interval", "1m"),
    ("Traffic routing", "Weight step: 10 max: 50"),
];

const PROMOTED: &str = "Canary analysis completed successfully, promotion finished.";
const ROLLED_BACK: &str = "Failed checks threshold reached 5";

async fn deliver(type_: &str, path: &str, event: AlertEvent) -> Received {
    let mut receiver = Receiver::start(Answer::Status(200)).await;
    let dispatcher = global(config(type_, receiver.url(path)));
    let report = tokio::time::timeout(GUARD, dispatcher.alert(&canary(json!([])), event))
        .await
        .expect("dispatch within the guard time")
        .expect("alert task");
    assert_eq!(report.sent(), 1, "{report:?}");
    assert_eq!(report.failed(), 0, "{report:?}");
    let received = receiver.next().await;
    assert_eq!(
        received.content_type.as_deref(),
        Some("application/json"),
        "every service expects a JSON body"
    );
    received
}

/// Slack's documented incoming-webhook message with legacy attachments: every key
/// of the body and of each attachment is one Slack knows, with its documented type.
fn assert_slack_format(body: &Value, colours: &[&str]) {
    let top = body.as_object().expect("object body");
    for key in top.keys() {
        assert!(
            [
                "channel",
                "username",
                "icon_emoji",
                "icon_url",
                "text",
                "attachments"
            ]
            .contains(&key.as_str()),
            "unknown top-level key {key}"
        );
    }
    let attachments = body["attachments"].as_array().expect("attachments list");
    assert_eq!(attachments.len(), 1);
    let a = attachments[0].as_object().expect("attachment object");
    for key in a.keys() {
        assert!(
            [
                "color",
                "fallback",
                "author_name",
                "title",
                "text",
                "mrkdwn_in",
                "fields",
                "footer",
                "ts"
            ]
            .contains(&key.as_str()),
            "unknown attachment key {key}"
        );
    }
    let colour = a["color"].as_str().expect("color string");
    assert!(colours.contains(&colour), "colour {colour}");
    assert!(a["fallback"].is_string(), "fallback is required text");
    for field in a["fields"].as_array().expect("fields list") {
        let f = field.as_object().expect("field object");
        assert!(f["title"].is_string() && f["value"].is_string() && f["short"].is_boolean());
        assert_eq!(f.len(), 3);
    }
}

fn slack_fields() -> Value {
    Value::Array(
        DETAILS
            .iter()
            .map(|(t, v)| json!({"title": t, "value": v, "short": false}))
            .collect(),
    )
}

fn slack_like(colour: &str, phase: &str, text: &str) -> Value {
    json!({
        "channel": "general",
        "username": "flagger",
        "icon_emoji": ":rocket:",
        "attachments": [{
            "color": colour,
            "fallback": format!("podinfo.test: {text}"),
            "author_name": "podinfo.test",
            "title": phase,
            "text": text,
            "mrkdwn_in": ["text"],
            "fields": slack_fields(),
        }]
    })
}

#[tokio::test]
async fn slack_receives_a_coloured_attachment_for_promotion_and_rollback() {
    let promoted = deliver("slack", "/services/T0/B0/x", AlertEvent::promoted()).await;
    assert_eq!(promoted.path, "/services/T0/B0/x");
    assert_eq!(promoted.authorization, None);
    assert_slack_format(&promoted.body, &["good", "warning", "danger"]);
    assert_eq!(promoted.body, slack_like("good", "Succeeded", PROMOTED));

    let rolled_back = deliver("slack", "/services/T0/B0/x", AlertEvent::failed_checks(5)).await;
    assert_slack_format(&rolled_back.body, &["good", "warning", "danger"]);
    assert_eq!(
        rolled_back.body,
        slack_like("danger", "Failed", ROLLED_BACK)
    );
}

#[tokio::test]
async fn discord_receives_the_slack_payload_on_its_slack_endpoint() {
    let promoted = deliver("discord", "/api/webhooks/1/tok", AlertEvent::promoted()).await;
    assert_eq!(promoted.path, "/api/webhooks/1/tok/slack");
    assert_slack_format(&promoted.body, &["good", "warning", "danger"]);
    assert_eq!(promoted.body, slack_like("good", "Succeeded", PROMOTED));

    let rolled_back = deliver(
        "discord",
        "/api/webhooks/1/tok",
        AlertEvent::failed_checks(5),
    )
    .await;
    assert_eq!(rolled_back.path, "/api/webhooks/1/tok/slack");
    assert_eq!(
        rolled_back.body,
        slack_like("danger", "Failed", ROLLED_BACK)
    );
}

#[tokio::test]
async fn rocket_chat_receives_the_slack_payload_with_hex_colours() {
    let promoted = deliver("rocket", "/hooks/abc/def", AlertEvent::promoted()).await;
    assert_eq!(promoted.path, "/hooks/abc/def");
    assert_slack_format(&promoted.body, &["#0076D7", "#FFA500", "#FF0000"]);
    assert_eq!(promoted.body, slack_like("#0076D7", "Succeeded", PROMOTED));

    let rolled_back = deliver("rocket", "/hooks/abc/def", AlertEvent::failed_checks(5)).await;
    assert_eq!(
        rolled_back.body,
        slack_like("#FF0000", "Failed", ROLLED_BACK)
    );
}

fn teams_card(colour: &str, phase: &str, text: &str) -> Value {
    json!({
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": colour,
        "summary": format!("podinfo.test: {text}"),
        "title": phase,
        "sections": [{
            "activityTitle": text,
            "activitySubtitle": "podinfo.test",
            "facts": DETAILS.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
        }]
    })
}

/// The MessageCard reference: `@type`/`@context`, `summary` (required when there
/// is no `text`), a 6-digit hex `themeColor`, sections with name/value facts.
fn assert_message_card_format(body: &Value) {
    assert_eq!(body["@type"], "MessageCard");
    assert!(
        body["@context"]
            .as_str()
            .is_some_and(|c| c.ends_with("schema.org/extensions"))
    );
    assert!(body["summary"].as_str().is_some_and(|s| !s.is_empty()));
    let colour = body["themeColor"].as_str().expect("themeColor");
    assert!(
        colour.len() == 6 && colour.chars().all(|c| c.is_ascii_hexdigit()),
        "{colour}"
    );
    for section in body["sections"].as_array().expect("sections") {
        assert!(section["activityTitle"].is_string());
        for fact in section["facts"].as_array().expect("facts") {
            assert_eq!(fact.as_object().expect("fact").len(), 2);
            assert!(fact["name"].is_string() && fact["value"].is_string());
        }
    }
}

#[tokio::test]
async fn teams_receives_a_message_card_for_promotion_and_rollback() {
    let promoted = deliver("msteams", "/webhookb2/x", AlertEvent::promoted()).await;
    assert_message_card_format(&promoted.body);
    assert_eq!(promoted.body, teams_card("0076D7", "Succeeded", PROMOTED));

    let rolled_back = deliver("msteams", "/webhookb2/x", AlertEvent::failed_checks(5)).await;
    assert_message_card_format(&rolled_back.body);
    assert_eq!(
        rolled_back.body,
        teams_card("FF0000", "Failed", ROLLED_BACK)
    );
}

fn gchat_card(colour: &str, phase: &str, text: &str) -> Value {
    json!({
        "cardsV2": [{
            "cardId": "serin-alert",
            "card": {
                "header": {"title": "podinfo.test", "subtitle": phase},
                "sections": [
                    {"widgets": [{"textParagraph": {
                        "text": format!("<font color=\"{colour}\"><b>{text}</b></font>")
                    }}]},
                    {"widgets": DETAILS.iter().map(|(n, v)| json!({
                        "decoratedText": {"topLabel": n, "text": v}
                    })).collect::<Vec<_>>()},
                ]
            }
        }]
    })
}

/// Google Chat's `cardsV2`: a list of {cardId, card}, a card with a header title
/// and sections of widgets, each widget exactly one of the widget kinds.
fn assert_cards_v2_format(body: &Value) {
    let cards = body["cardsV2"].as_array().expect("cardsV2 list");
    assert!(!cards.is_empty());
    for c in cards {
        assert!(c["cardId"].is_string());
        let card = &c["card"];
        assert!(card["header"]["title"].is_string());
        for section in card["sections"].as_array().expect("sections") {
            let widgets = section["widgets"].as_array().expect("widgets");
            assert!(!widgets.is_empty(), "a section holds at least one widget");
            for w in widgets {
                let w = w.as_object().expect("widget object");
                assert_eq!(w.len(), 1, "one widget kind per widget: {w:?}");
                let (kind, value) = w.iter().next().expect("one entry");
                assert!(["textParagraph", "decoratedText"].contains(&kind.as_str()));
                assert!(value["text"].is_string());
            }
        }
    }
}

#[tokio::test]
async fn google_chat_receives_a_card_for_promotion_and_rollback() {
    let promoted = deliver("gchat", "/v1/spaces/AAA/messages", AlertEvent::promoted()).await;
    assert_cards_v2_format(&promoted.body);
    assert_eq!(promoted.body, gchat_card("#0076D7", "Succeeded", PROMOTED));

    let rolled_back = deliver(
        "gchat",
        "/v1/spaces/AAA/messages",
        AlertEvent::failed_checks(5),
    )
    .await;
    assert_cards_v2_format(&rolled_back.body);
    assert_eq!(
        rolled_back.body,
        gchat_card("#FF0000", "Failed", ROLLED_BACK)
    );
}

/// Three providers subscribed at info, warn and error on one receiver, told apart
/// by path.
async fn severity_setup(receiver: &Receiver) -> (Dispatcher, Canary) {
    let mut lookup = InMemoryLookup::new();
    for level in ["info", "warn", "error"] {
        lookup.add_provider(provider(
            &format!("{level}-slack"),
            "test",
            json!({"type": "slack", "address": receiver.url(&format!("/{level}"))}),
        ));
    }
    let canary = canary(json!([
        {"name": "all", "severity": "info", "providerRef": {"name": "info-slack"}},
        {"name": "warnings", "severity": "warn", "providerRef": {"name": "warn-slack", "namespace": "test"}},
        {"name": "errors", "severity": "error", "providerRef": {"name": "error-slack"}},
    ]));
    // A global notifier on another path proves the alerts list replaces it.
    let global = build_notifier(&config("slack", receiver.url("/global"))).expect("notifier");
    let dispatcher = Dispatcher::new(
        vec![global],
        Arc::new(lookup),
        AlertMetrics::new(),
        Duration::from_secs(10),
    );
    (dispatcher, canary)
}

#[tokio::test]
async fn each_provider_receives_the_severities_it_subscribed_to() {
    let mut receiver = Receiver::start(Answer::Status(200)).await;
    let (dispatcher, canary) = severity_setup(&receiver).await;
    let cases = [
        (Severity::Info, AlertEvent::promoted(), vec!["/info"]),
        (
            Severity::Warn,
            AlertEvent::manual_rollback(),
            vec!["/info", "/warn"],
        ),
        (
            Severity::Error,
            AlertEvent::failed_checks(5),
            vec!["/info", "/warn", "/error"],
        ),
    ];
    for (severity, event, expected) in cases {
        assert_eq!(event.severity, severity);
        let report = tokio::time::timeout(GUARD, dispatcher.alert(&canary, event))
            .await
            .expect("dispatch within the guard time")
            .expect("alert task");
        assert_eq!(report.sent(), expected.len(), "{severity:?}: {report:?}");
        let mut paths: Vec<String> = receiver.drain().into_iter().map(|r| r.path).collect();
        paths.sort();
        let mut expected: Vec<String> = expected.into_iter().map(String::from).collect();
        expected.sort();
        assert_eq!(paths, expected, "{severity:?}");
    }
    assert_eq!(dispatcher.metrics().sent_count("slack"), 6);
}

#[tokio::test]
async fn a_hanging_receiver_neither_blocks_the_caller_nor_counts_as_sent() {
    let mut receiver = Receiver::start(Answer::Hang).await;
    let mut dispatcher_config = config("slack", receiver.url("/hook"));
    dispatcher_config.timeout = Duration::from_millis(300);
    let notifier = build_notifier(&dispatcher_config).expect("notifier");
    let metrics = AlertMetrics::new();
    let dispatcher = Dispatcher::new(
        vec![notifier],
        Arc::new(InMemoryLookup::new()),
        metrics.clone(),
        Duration::from_millis(300),
    );
    let log = receiver.log.clone();

    let handle = dispatcher.alert(&canary(json!([])), AlertEvent::failed_checks(5));
    log.lock().expect("log").push("alert returned");
    // The request is in the receiver's hands, unanswered, while the caller goes on.
    let request = receiver.next().await;
    assert_eq!(request.path, "/hook");
    let report = tokio::time::timeout(GUARD, handle)
        .await
        .expect("the alert gives up within the guard time")
        .expect("alert task");
    log.lock().expect("log").push("alert gave up");
    receiver.release.send(true).expect("release");

    assert_eq!(report.sent(), 0);
    assert_eq!(report.failed(), 1);
    let error = report.outcomes[0].result.clone().expect_err("failed");
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(metrics.failed_count("slack"), 1);
    assert_eq!(metrics.sent_count("slack"), 0);
    // The caller went on before the receiver saw the request, and the alert gave up
    // while the receiver still held it.
    let order = log.lock().expect("log").clone();
    assert_eq!(
        order[..3],
        ["alert returned", "request received", "alert gave up"],
        "{order:?}"
    );
}

#[tokio::test]
async fn an_error_answer_is_reported_and_counted_as_failed() {
    let mut receiver = Receiver::start(Answer::Status(500)).await;
    let metrics = AlertMetrics::new();
    let notifier = build_notifier(&config("msteams", receiver.url("/hook"))).expect("notifier");
    let dispatcher = Dispatcher::new(
        vec![notifier],
        Arc::new(InMemoryLookup::new()),
        metrics.clone(),
        Duration::from_secs(10),
    );
    let report = tokio::time::timeout(
        GUARD,
        dispatcher.alert(&canary(json!([])), AlertEvent::promoted()),
    )
    .await
    .expect("dispatch within the guard time")
    .expect("alert task");
    receiver.next().await;
    assert_eq!(report.failed(), 1);
    let error = report.outcomes[0].result.clone().expect_err("failed");
    assert!(error.contains("500") && error.contains("boom"), "{error}");
    // The webhook path is a credential: it never reaches logs or reports.
    assert!(!error.contains("/hook"), "{error}");
    assert_eq!(metrics.failed_count("msteams"), 1);

    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains("serin_alerts_failed_total{provider=\"msteams\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn providers_take_address_token_and_proxy_from_their_secret() {
    let mut receiver = Receiver::start(Answer::Status(200)).await;
    let mut lookup = InMemoryLookup::new();
    lookup.add_provider(provider(
        "on-call",
        "flagger",
        json!({
            "type": "slack",
            "channel": "on-call-alerts",
            "username": "serin",
            "address": "https://hooks.slack.com/services/ignored",
            "secretRef": {"name": "on-call-url"},
        }),
    ));
    let mut data = BTreeMap::new();
    // `echo URL | base64` leaves a newline in the decoded value.
    // The address names a host that does not resolve: only the proxy from the
    // Secret (the receiver) can take the alert there.
    data.insert(
        "address".into(),
        b"http://alerts.invalid/from-secret\n".to_vec(),
    );
    data.insert("token".into(), b"xoxb-123".to_vec());
    data.insert("proxy".into(), receiver.url("").into_bytes());
    lookup.add_secret("flagger", "on-call-url", data);
    lookup.add_provider(provider(
        "no-address",
        "test",
        json!({
            "type": "discord", "secretRef": {"name": "empty"}
        }),
    ));
    lookup.add_secret("test", "empty", BTreeMap::new());

    let metrics = AlertMetrics::new();
    let dispatcher = Dispatcher::new(vec![], Arc::new(lookup), metrics.clone(), GUARD);
    let canary = canary(json!([
        {"name": "on-call", "severity": "error", "providerRef": {"name": "on-call", "namespace": "flagger"}},
        {"name": "broken", "providerRef": {"name": "no-address"}},
        {"name": "missing", "providerRef": {"name": "nowhere"}},
    ]));
    let report = tokio::time::timeout(
        GUARD,
        dispatcher.alert(&canary, AlertEvent::failed_checks(5)),
    )
    .await
    .expect("dispatch within the guard time")
    .expect("alert task");
    let received = receiver.next().await;
    assert_eq!(received.path, "/from-secret");
    assert_eq!(received.host.as_deref(), Some("alerts.invalid"));
    assert_eq!(received.authorization.as_deref(), Some("Bearer xoxb-123"));
    assert_eq!(received.body["channel"], "on-call-alerts");
    assert_eq!(received.body["username"], "serin");

    assert_eq!(report.sent(), 1, "{report:?}");
    assert_eq!(report.failed(), 2, "{report:?}");
    let errors: Vec<String> = report
        .outcomes
        .iter()
        .filter_map(|o| o.result.clone().err())
        .collect();
    assert!(
        errors[0].contains("test/no-address") && errors[0].contains("\"address\""),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("test/nowhere") && errors[1].contains("not found"),
        "{errors:?}"
    );
    assert_eq!(metrics.failed_count("unknown"), 2);
}

#[tokio::test]
async fn a_canary_held_by_a_load_tester_gate_names_the_endpoint_to_open() {
    let mut receiver = Receiver::start(Answer::Status(200)).await;
    let dispatcher = global(config("slack", receiver.url("/hook")));
    let webhook = serde_json::from_value(json!({
        "name": "approve promotion",
        "type": "confirm-promotion",
        "url": "http://flagger-loadtester.test/gate/check",
    }))
    .expect("webhook");
    let event = AlertEvent::waiting_for_approval(&webhook).expect("a gate");
    let report = tokio::time::timeout(GUARD, dispatcher.alert(&canary(json!([])), event))
        .await
        .expect("dispatch within the guard time")
        .expect("alert task");
    assert_eq!(report.sent(), 1);
    let body = receiver.next().await.body;
    let attachment = &body["attachments"][0];
    assert_eq!(attachment["color"], "warning");
    assert_eq!(attachment["title"], "WaitingPromotion");
    assert_eq!(
        attachment["text"],
        "Canary promotion is waiting for approval. To approve, open the gate: \
         `curl -d '{\"name\":\"podinfo\",\"namespace\":\"test\"}' http://flagger-loadtester.test/gate/open`"
    );
    assert_eq!(
        attachment["fields"],
        json!([{"title": "Gate", "value": "http://flagger-loadtester.test/gate/open", "short": false}])
    );

    // A gate that is not a load tester's says it waits, without a link.
    let webhook = serde_json::from_value(json!({
        "name": "ask", "type": "confirm-rollout", "url": "http://approvals.test/ask",
    }))
    .expect("webhook");
    let event = AlertEvent::waiting_for_approval(&webhook).expect("a gate");
    dispatcher
        .alert(&canary(json!([])), event)
        .await
        .expect("alert task");
    let body = receiver.next().await.body;
    assert_eq!(
        body["attachments"][0]["text"],
        "Canary is waiting for approval."
    );
    assert_eq!(body["attachments"][0]["title"], "Waiting");
    assert_eq!(body["attachments"][0]["fields"], json!([]));
}

/// Collects what the JSON log subscriber writes.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_alert_is_logged_as_json_with_a_msg_and_without_the_webhook_path() {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .finish();
    // The test runtime is single-threaded, so the spawned alert logs here too.
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut receiver = Receiver::start(Answer::Status(500)).await;
    let dispatcher = global(config("slack", receiver.url("/services/T0/B0/SECRET")));
    let report = tokio::time::timeout(
        GUARD,
        dispatcher.alert(&canary(json!([])), AlertEvent::promoted()),
    )
    .await
    .expect("dispatch within the guard time")
    .expect("alert task");
    receiver.next().await;
    assert_eq!(report.failed(), 1);

    let text = String::from_utf8(buffer.0.lock().expect("log buffer").clone()).expect("utf-8");
    assert!(!text.contains("SECRET"), "{text}");
    let line: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["level"] == "WARN")
        .expect("a warning line");
    let msg = line["msg"].as_str().expect("msg field");
    assert!(
        msg.starts_with("alert for podinfo.test can't be sent to global slack:")
            && msg.contains("500"),
        "{msg}"
    );
    assert_eq!(line["canary"], "podinfo.test");
    assert_eq!(line["provider"], "slack");
}

/// A Kubernetes API that knows one AlertProvider and one Secret.
fn fake_api_server() -> kube::Client {
    let service = tower::service_fn(|request: http::Request<kube::client::Body>| async move {
        let (status, body) = match request.uri().path() {
            "/apis/flagger.app/v1beta1/namespaces/flagger/alertproviders/on-call" => (
                200,
                json!({
                    "apiVersion": "flagger.app/v1beta1", "kind": "AlertProvider",
                    "metadata": {"name": "on-call", "namespace": "flagger"},
                    "spec": {"type": "gchat", "secretRef": {"name": "on-call-url"}},
                }),
            ),
            "/api/v1/namespaces/flagger/secrets/on-call-url" => (
                200,
                json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "on-call-url", "namespace": "flagger"},
                    // "https://chat.example/hook" and "tok"
                    "data": {"address": "aHR0cHM6Ly9jaGF0LmV4YW1wbGUvaG9vaw==", "token": "dG9r"},
                }),
            ),
            _ => (
                404,
                json!({
                    "apiVersion": "v1", "kind": "Status", "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": "not found",
                }),
            ),
        };
        let response = http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .expect("response");
        Ok::<_, std::convert::Infallible>(response)
    });
    kube::Client::new(service, "default")
}

#[tokio::test]
async fn the_operator_lookup_reads_providers_and_secrets_from_the_api() {
    let lookup = serin_notify::KubeLookup::new(fake_api_server());
    let config = serin_notify::resolve_provider(&lookup, "flagger", "on-call", GUARD)
        .await
        .expect("resolved");
    assert_eq!(config.type_, "gchat");
    assert_eq!(config.address, "https://chat.example/hook");
    assert_eq!(config.token.as_deref(), Some("tok"));

    let err = serin_notify::resolve_provider(&lookup, "test", "on-call", GUARD)
        .await
        .expect_err("no such provider");
    assert_eq!(err.to_string(), "alert provider test/on-call: not found");
}

#[tokio::test]
async fn the_gate_link_in_the_alert_opens_serins_load_tester_gate() {
    let tester = serin_loadtester::server::LoadTester::new(Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let tester_addr = listener.local_addr().expect("addr");
    let server = tester.clone();
    tokio::spawn(async move {
        let _ = server.serve(listener, std::future::pending()).await;
    });
    let check_url = format!("http://{tester_addr}/gate/check");
    let client = serin_http_client::client(&Default::default()).expect("client");
    let check = || async {
        client
            .post(&check_url)
            .json(&json!({"name": "podinfo", "namespace": "test", "phase": "Progressing"}))
            .send()
            .await
            .expect("gate check")
            .status()
            .as_u16()
    };
    assert_eq!(check().await, 403, "a gate starts closed");

    let mut receiver = Receiver::start(Answer::Status(200)).await;
    let dispatcher = global(config("slack", receiver.url("/hook")));
    let canary = canary(json!([]));
    let webhook = serde_json::from_value(json!({
        "name": "gate", "type": "confirm-promotion", "url": check_url,
    }))
    .expect("webhook");
    let event = AlertEvent::waiting_for_approval(&webhook).expect("a gate");
    dispatcher.alert(&canary, event).await.expect("alert task");
    let body = receiver.next().await.body;

    // Do what the alert says: `curl -d '<json>' <url>`.
    let text = body["attachments"][0]["text"].as_str().expect("text");
    let command = text.split('`').nth(1).expect("a command in backquotes");
    let rest = command.strip_prefix("curl -d '").expect("curl -d");
    let (json_body, url) = rest.split_once("' ").expect("body and URL");
    assert_eq!(url, format!("http://{tester_addr}/gate/open"));
    let status = client
        .post(url)
        .header("content-type", "application/json")
        .body(json_body.to_string())
        .send()
        .await
        .expect("gate open")
        .status();
    assert!(status.is_success(), "{status}");
    assert_eq!(check().await, 200, "the gate is open for podinfo.test");
}

/// A receiver answering 500 with a body that never ends (chunked, up to 1 GiB): the
/// alert fails naming the 500, and serin stops reading after its 64 KiB cap instead of
/// reading on until its timeout.
#[tokio::test]
async fn an_endless_error_answer_is_read_only_up_to_the_cap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        // The request's headers and JSON body arrive in the first reads.
        let mut request = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.expect("read");
            assert!(n > 0, "the client closed before its request");
            request.extend_from_slice(&buf[..n]);
        }
        conn.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .expect("headers");
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
        let mut sent: u64 = 0;
        for _ in 0..16 * 1024 {
            if conn.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            sent += 64 * 1024;
        }
        sent
    });
    let mut cfg = config("slack", format!("http://{addr}/hook"));
    cfg.timeout = Duration::from_secs(20);
    let notifier = build_notifier(&cfg).expect("notifier");
    let dispatcher = Dispatcher::new(
        vec![notifier],
        Arc::new(InMemoryLookup::new()),
        AlertMetrics::new(),
        Duration::from_secs(20),
    );
    let report = tokio::time::timeout(
        GUARD,
        dispatcher.alert(&canary(json!([])), AlertEvent::promoted()),
    )
    .await
    .expect("dispatch within the guard time")
    .expect("alert task");
    let error = report.outcomes[0].result.clone().expect_err("failed");
    assert!(error.contains("500") && error.contains("xxxx"), "{error}");
    let sent = tokio::time::timeout(GUARD, server)
        .await
        .expect("the receiver sees the connection closed")
        .expect("receiver task");
    // 64 KiB read, plus what the loopback socket buffers held when serin hung up.
    assert!(
        sent < 16 * 1024 * 1024,
        "the receiver wrote {} MiB before serin stopped reading",
        sent / (1024 * 1024)
    );
}
