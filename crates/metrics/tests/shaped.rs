//! Providers that cannot run here (hosted services), against loopback servers shaped
//! on each service's documented API: its paths, headers, request and answer bodies
//! and error answers. Each test names the document it follows.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serin_metrics::factory::build;
use serin_metrics::{ProviderError, ProviderSettings};

/// One request a shaped server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    headers: HeaderMap,
    body: String,
}

type Reply = Arc<dyn Fn(&Seen) -> (u16, &'static str, String) + Send + Sync>;

struct Shaped {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Shaped {
    /// A loopback server answering every request with `reply`.
    async fn start(
        reply: impl Fn(&Seen) -> (u16, &'static str, String) + Send + Sync + 'static,
    ) -> Self {
        let reply: Reply = Arc::new(reply);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let app = axum::Router::new().fallback(move |request: Request| {
            let reply = reply.clone();
            let recorded = recorded.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                let seen = Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    query: url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                        .into_owned()
                        .collect(),
                    headers: parts.headers.clone(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let (status, content_type, text) = reply(&seen);
                recorded.lock().unwrap().push(seen);
                Response::builder()
                    .status(StatusCode::from_u16(status).unwrap())
                    .header("content-type", content_type)
                    .body(Body::from(text))
                    .unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Shaped { url, seen }
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

fn settings(type_: &str, address: &str, secret: &[(&str, &str)]) -> ProviderSettings {
    ProviderSettings {
        type_: type_.into(),
        address: Some(address.into()),
        secret: Some(
            secret
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        ),
        secret_name: Some("provider-credentials".into()),
        timeout: Duration::from_secs(5),
        interval: Duration::from_secs(60),
        evaluation_time: Some(1_700_000_000.0),
        ..Default::default()
    }
}

fn header(seen: &Seen, name: &str) -> String {
    seen.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Datadog API reference, "Metrics: Query timeseries points" (GET /api/v1/query,
/// headers DD-API-KEY and DD-APPLICATION-KEY, answer `series[].pointlist` of
/// `[timestamp ms, value]`) and "Authentication: Validate API key"
/// (GET /api/v1/validate), https://docs.datadoghq.com/api/latest/metrics/ and
/// https://docs.datadoghq.com/api/latest/authentication/.
#[tokio::test]
async fn datadog_query_and_validation() {
    let server = Shaped::start(|seen| {
        if header(seen, "dd-api-key") != "api-key" {
            return (403, "application/json", r#"{"errors":["Forbidden"]}"#.into());
        }
        match (seen.path.as_str(), seen.query.get("query").map(String::as_str)) {
            ("/api/v1/validate", _) => (200, "application/json", r#"{"valid":true}"#.into()),
            ("/api/v1/query", Some("sum:errors{service:podinfo}.as_count()")) => (
                200,
                "application/json",
                r#"{"status":"ok","res_type":"time_series","series":[{"metric":"errors","pointlist":[[1699999400000.0,2.5],[1699999460000.0,4.0]]}]}"#.into(),
            ),
            ("/api/v1/query", Some("sum:nothing{*}")) => (
                200,
                "application/json",
                r#"{"status":"ok","res_type":"time_series","series":[]}"#.into(),
            ),
            ("/api/v1/query", _) => (
                400,
                "application/json",
                r#"{"errors":["Error parsing query: unable to parse sum:bad{: Rule 'scope_expr' didn't match"]}"#.into(),
            ),
            _ => (404, "text/plain", "not found".into()),
        }
    })
    .await;
    let dd = build(&settings(
        "datadog",
        &server.url,
        &[
            ("datadog_api_key", "api-key"),
            ("datadog_application_key", "app-key"),
        ],
    ))
    .unwrap();
    dd.is_online().await.unwrap();
    assert_eq!(server.last().path, "/api/v1/validate");
    assert_eq!(header(&server.last(), "dd-application-key"), "app-key");

    let value = dd
        .run_query("sum:errors{service:podinfo}.as_count()")
        .await
        .unwrap();
    assert_eq!(
        value, 2.5,
        "the first point of the first series, as Flagger reads it"
    );
    let seen = server.last();
    // Ten metric intervals back from now.
    assert_eq!(seen.query["from"], "1699999400");
    assert_eq!(seen.query["to"], "1700000000");

    let none = dd.run_query("sum:nothing{*}").await.unwrap_err();
    assert!(none.is_no_data(), "{none}");
    assert!(none.to_string().contains("Datadog"), "{none}");
    let bad = dd.run_query("sum:bad{").await.unwrap_err().to_string();
    assert!(
        bad.contains("Datadog") && bad.contains("HTTP 400") && bad.contains("scope_expr"),
        "{bad}"
    );

    let wrong = build(&settings(
        "datadog",
        &server.url,
        &[
            ("datadog_api_key", "wrong"),
            ("datadog_application_key", "app-key"),
        ],
    ))
    .unwrap();
    let err = wrong.is_online().await.unwrap_err().to_string();
    assert!(err.contains("Datadog") && err.contains("403"), "{err}");

    let missing = build(&settings(
        "datadog",
        &server.url,
        &[("datadog_api_key", "k")],
    ))
    .err()
    .expect("a missing key is an error")
    .to_string();
    assert!(missing.contains("datadog_application_key"), "{missing}");
}

/// New Relic "Query Insights event data via API": GET
/// /v1/accounts/{account}/query?nrql=..., header X-Query-Key, answer
/// `{"results":[{"result": N}]}`, errors `{"error": "..."}`,
/// https://docs.newrelic.com/docs/apis/insights-apis/query-insights-event-data-api/.
#[tokio::test]
async fn newrelic_nrql_since_the_metric_interval() {
    let server = Shaped::start(|seen| {
        if header(seen, "x-query-key") != "query-key" {
            return (
                403,
                "application/json",
                r#"{"error":"Invalid query key"}"#.into(),
            );
        }
        if seen.path != "/v1/accounts/1234567/query" {
            return (
                404,
                "application/json",
                r#"{"error":"Account not found"}"#.into(),
            );
        }
        let nrql = seen.query.get("nrql").cloned().unwrap_or_default();
        if nrql.starts_with("SELECT filter(") {
            (
                200,
                "application/json",
                r#"{"results":[{"result":1.25}],"metadata":{}}"#.into(),
            )
        } else if nrql.starts_with("SELECT average(") {
            (
                200,
                "application/json",
                r#"{"results":[{"average":null}]}"#.into(),
            )
        } else if nrql.starts_with("SELECT * FROM Metric") {
            (
                200,
                "application/json",
                r#"{"results":[{"events":[]}]}"#.into(),
            )
        } else {
            (
                400,
                "application/json",
                r#"{"error":"NRQL Syntax Error: Error at line 1 position 1"}"#.into(),
            )
        }
    })
    .await;
    let nr = build(&settings(
        "newrelic",
        &server.url,
        &[
            ("newrelic_account_id", "1234567"),
            ("newrelic_query_key", "query-key"),
        ],
    ))
    .unwrap();
    nr.is_online().await.unwrap();
    let q = "SELECT filter(sum(errors), WHERE status >= 500) / sum(requests) * 100 FROM Metric";
    assert_eq!(nr.run_query(q).await.unwrap(), 1.25);
    assert_eq!(
        server.last().query["nrql"],
        format!("{q} SINCE 60 seconds ago")
    );
    let none = nr
        .run_query("SELECT average(duration) FROM Transaction")
        .await
        .unwrap_err();
    assert!(
        none.is_no_data() && none.to_string().contains("New Relic"),
        "{none}"
    );
    let bad = nr.run_query("SELEKT").await.unwrap_err().to_string();
    assert!(
        bad.contains("New Relic") && bad.contains("NRQL Syntax Error"),
        "{bad}"
    );
}

/// Dynatrace "Metrics API v2 - GET metric data points": GET /api/v2/metrics/query
/// with metricSelector, resolution, from and to (ms), header
/// `Authorization: Api-Token ...`, answer `result[].data[].values`, errors
/// `{"error":{"code":..,"message":..}}`; "GET metrics" for the check,
/// https://docs.dynatrace.com/docs/dynatrace-api/environment-api/metric-v2/get-data-points.
#[tokio::test]
async fn dynatrace_metric_selector() {
    let server = Shaped::start(|seen| {
        if header(seen, "authorization") != "Api-Token dt0c01.token" {
            return (401, "application/json", r#"{"error":{"code":401,"message":"Missing authorization parameter."}}"#.into());
        }
        match seen.path.as_str() {
            "/api/v2/metrics" => (200, "application/json", r#"{"totalCount":1,"metrics":[]}"#.into()),
            "/api/v2/metrics/query" => match seen.query.get("metricSelector").map(String::as_str) {
                Some("builtin:service.response.time:avg") => (
                    200,
                    "application/json",
                    r#"{"totalCount":2,"resolution":"Inf","result":[{"metricId":"builtin:service.response.time:avg","data":[{"dimensions":["A"],"timestamps":[1700000000000],"values":[120.5]},{"dimensions":["B"],"timestamps":[1700000000000],"values":[88.0]}]}]}"#.into(),
                ),
                Some("builtin:service.errors.total.rate") => (
                    200,
                    "application/json",
                    r#"{"totalCount":1,"result":[{"metricId":"x","data":[{"dimensions":[],"timestamps":[1],"values":[null]}]}]}"#.into(),
                ),
                _ => (400, "application/json", r#"{"error":{"code":400,"message":"The metric selector is invalid."}}"#.into()),
            },
            _ => (404, "text/plain", String::new()),
        }
    })
    .await;
    let dt = build(&settings(
        "dynatrace",
        &server.url,
        &[("dynatrace_token", "dt0c01.token")],
    ))
    .unwrap();
    dt.is_online().await.unwrap();
    assert_eq!(server.last().query["pageSize"], "1");
    let v = dt
        .run_query("builtin:service.response.time:avg")
        .await
        .unwrap();
    assert_eq!(
        v, 88.0,
        "the first value of the last series, as Flagger reads it"
    );
    let seen = server.last();
    assert_eq!(seen.query["resolution"], "Inf");
    assert_eq!(seen.query["from"], "1699999400000");
    assert_eq!(seen.query["to"], "1700000000000");
    let none = dt
        .run_query("builtin:service.errors.total.rate")
        .await
        .unwrap_err();
    assert!(
        none.is_no_data() && none.to_string().contains("Dynatrace"),
        "{none}"
    );
    let bad = dt.run_query("nope(").await.unwrap_err().to_string();
    assert!(
        bad.contains("Dynatrace") && bad.contains("metric selector is invalid"),
        "{bad}"
    );
    let no_address = build(&ProviderSettings {
        address: None,
        ..settings("dynatrace", "", &[("dynatrace_token", "t")])
    });
    assert!(no_address.is_err());
}

/// Cloud Monitoring API v3 "projects.timeSeries.query" (POST
/// /v3/projects/{project}/timeSeries:query, `{"query": MQL}`, answer
/// `timeSeriesData[].pointData[].values[].doubleValue`, errors
/// `{"error":{"code","message","status"}}`),
/// https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.timeSeries/query,
/// with the token of "Using OAuth 2.0 for Server to Server Applications" (a JWT
/// signed RS256 by the service account key, POSTed to its token_uri),
/// https://developers.google.com/identity/protocols/oauth2/service-account.
#[tokio::test]
async fn stackdriver_mql_with_a_service_account_key() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("key.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key_path)
        .output()
        .expect("openssl (Debian's openssl package)");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let pem = std::fs::read_to_string(&key_path).unwrap();
    let server = Shaped::start(|seen| match seen.path.as_str() {
        "/token" => {
            let form: BTreeMap<String, String> =
                url::form_urlencoded::parse(seen.body.as_bytes()).into_owned().collect();
            let jwt = form.get("assertion").cloned().unwrap_or_default();
            if form.get("grant_type").map(String::as_str)
                == Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
                && jwt.split('.').count() == 3
            {
                (200, "application/json", r#"{"access_token":"ya29.token","expires_in":3599,"token_type":"Bearer"}"#.into())
            } else {
                (400, "application/json", r#"{"error":"invalid_grant"}"#.into())
            }
        }
        "/v3/projects/my-project/timeSeries:query" => {
            if header(seen, "authorization") != "Bearer ya29.token" {
                return (401, "application/json", r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#.into());
            }
            let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap_or_default();
            match body["query"].as_str().unwrap_or_default() {
                "" => (400, "application/json", r#"{"error":{"code":400,"message":"Query is empty.","status":"INVALID_ARGUMENT"}}"#.into()),
                q if q.starts_with("fetch k8s_container") => (
                    200,
                    "application/json",
                    r#"{"timeSeriesDescriptor":{"pointDescriptors":[{"key":"value.ratio","valueType":"DOUBLE"}]},"timeSeriesData":[{"labelValues":[],"pointData":[{"values":[{"doubleValue":0.93}],"timeInterval":{"startTime":"2023-11-14T22:12:20Z","endTime":"2023-11-14T22:13:20Z"}}]}]}"#.into(),
                ),
                q if q.starts_with("fetch gce_instance") => (200, "application/json", r#"{"timeSeriesDescriptor":{}}"#.into()),
                _ => (400, "application/json", r#"{"error":{"code":400,"message":"Line 1: Syntax error","status":"INVALID_ARGUMENT"}}"#.into()),
            }
        }
        _ => (404, "text/plain", String::new()),
    })
    .await;
    let key = serde_json::json!({
        "type": "service_account", "project_id": "my-project",
        "private_key": pem, "client_email": "serin@my-project.iam.gserviceaccount.com",
        "token_uri": format!("{}/token", server.url)
    })
    .to_string();
    let sd = build(&settings(
        "stackdriver",
        &server.url,
        &[("project", "my-project"), ("serviceAccountKey", &key)],
    ))
    .unwrap();
    sd.is_online().await.unwrap();
    let q = "fetch k8s_container | metric 'istio.io/service/server/request_count' | ratio";
    assert_eq!(sd.run_query(q).await.unwrap(), 0.93);
    let none = sd
        .run_query("fetch gce_instance | metric x")
        .await
        .unwrap_err();
    assert!(
        none.is_no_data() && none.to_string().contains("Stackdriver"),
        "{none}"
    );
    let bad = sd.run_query("fetch (").await.unwrap_err().to_string();
    assert!(
        bad.contains("Stackdriver") && bad.contains("INVALID_ARGUMENT"),
        "{bad}"
    );
    let missing = build(&settings(
        "stackdriver",
        &server.url,
        &[("serviceAccountKey", &key)],
    ));
    assert!(missing.err().unwrap().to_string().contains("project"));
}

/// Splunk Observability "SignalFlow API": execute a program over HTTP (POST
/// /v2/signalflow/execute with start, stop and immediate, the program as text, header
/// X-SF-Token), answered as server-sent events (`control-message`, `metadata`,
/// `data` with `{"data":[{"tsId":..,"value":..}]}`); "GET /v2/metric" for the check,
/// https://dev.splunk.com/observability/reference/api/signalflow/latest.
#[tokio::test]
async fn splunk_signalflow_over_server_sent_events() {
    let server = Shaped::start(|seen| {
        if header(seen, "x-sf-token") != "sf-token" {
            return (401, "application/json", r#"{"code":401,"message":"Unauthorized"}"#.into());
        }
        match seen.path.as_str() {
            "/v2/metric" => (200, "application/json", r#"{"count":1,"results":[]}"#.into()),
            "/v2/signalflow/execute" => {
                let one = |ts: &str, v: &str, t: i64| {
                    format!("event: data\nid: data-{t}\ndata: {{\ndata:   \"data\" : [ {{\ndata:     \"tsId\" : \"{ts}\",\ndata:     \"value\" : {v}\ndata:   }} ],\ndata:   \"logicalTimestampMs\" : {t}\ndata: }}\n\n")
                };
                let start = "event: control-message\ndata: {\ndata:   \"event\" : \"STREAM_START\",\ndata:   \"timestampMs\" : 1700000000000\ndata: }\n\n";
                let end = "event: control-message\ndata: {\ndata:   \"event\" : \"END_OF_CHANNEL\"\ndata: }\n\n";
                let body = match seen.body.as_str() {
                    p if p.contains("errors") => format!("{start}{}{}{end}", one("AAAA", "3.5", 1), one("AAAA", "4.5", 2)),
                    p if p.contains("many") => format!("{start}{}{}{end}", one("AAAA", "1", 1), one("BBBB", "2", 2)),
                    _ => format!("{start}{end}"),
                };
                (200, "text/event-stream", body)
            }
            _ => (404, "text/plain", String::new()),
        }
    })
    .await;
    // The stream host is the API host with "api" replaced by "stream": loopback has
    // neither, so both are the shaped server.
    let sp = build(&settings(
        "splunk",
        &server.url,
        &[("sf_token_key", "sf-token")],
    ))
    .unwrap();
    sp.is_online().await.unwrap();
    let v = sp
        .run_query("data('errors', filter=filter('service', 'podinfo')).sum().publish()")
        .await
        .unwrap();
    assert_eq!(v, 4.5, "the last data point");
    let seen = server.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.query["immediate"], "true");
    assert_eq!(seen.query["stop"], "1700000000000");
    assert_eq!(seen.query["start"], "1699999400000");
    let many = sp.run_query("data('many').publish()").await.unwrap_err();
    assert!(
        matches!(many, ProviderError::SeveralSeries { count: 2, .. }),
        "{many}"
    );
    let none = sp.run_query("data('none').publish()").await.unwrap_err();
    assert!(
        none.is_no_data() && none.to_string().contains("Splunk"),
        "{none}"
    );
}

/// The Kubernetes external metrics API (`external.metrics.k8s.io/v1beta1`,
/// k8s.io/metrics pkg/apis/external_metrics: GET
/// /apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}?labelSelector=...,
/// answer an ExternalMetricValueList whose items carry a quantity `value`), reached at
/// `provider.address` with the Secret's bearer token, as Flagger allows.
#[tokio::test]
async fn external_metrics_api() {
    let server = Shaped::start(|seen| {
        if header(seen, "authorization") != "Bearer sa-token" {
            return (401, "application/json", r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#.into());
        }
        let list = |items: &str| format!(r#"{{"kind":"ExternalMetricValueList","apiVersion":"external.metrics.k8s.io/v1beta1","metadata":{{}},"items":[{items}]}}"#);
        match seen.path.as_str() {
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/test/queue-depth"
                if seen.query.get("labelSelector").map(String::as_str) == Some("app=podinfo") =>
            {
                (200, "application/json", list(r#"{"metricName":"queue-depth","metricLabels":{"app":"podinfo"},"timestamp":"2023-11-14T22:13:20Z","value":"1500m"}"#))
            }
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/kube-system/dummy-metric"
            | "/apis/external.metrics.k8s.io/v1beta1/namespaces/test/empty" => (200, "application/json", list("")),
            _ => (404, "application/json", r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}"#.into()),
        }
    })
    .await;
    let ext = build(&settings(
        "externalmetrics",
        &server.url,
        &[("token", "sa-token")],
    ))
    .unwrap();
    ext.is_online().await.unwrap();
    let v = ext
        .run_query("test/queue-depth?labelSelector=app%3Dpodinfo")
        .await
        .unwrap();
    assert_eq!(v, 1.5);
    let none = ext.run_query("test/empty").await.unwrap_err();
    assert!(
        none.is_no_data() && none.to_string().contains("external metrics"),
        "{none}"
    );
    let missing = ext.run_query("test/unknown").await.unwrap_err().to_string();
    assert!(missing.contains("404"), "{missing}");
}
