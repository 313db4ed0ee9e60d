//! Providers against real servers: CloudWatch's GetMetricData on moto's server mode
//! (PyPI `moto[server]`, checking SigV4 signatures), InfluxDB 1.x (Debian's
//! `influxdb`, InfluxQL) and graphite-web's render API over carbon-cache (Debian's
//! `graphite-web` and `graphite-carbon`).

#[path = "support/servers.rs"]
mod servers;

use std::time::Duration;

use serin_api::load::{Object, parse_documents, to_object};
use serin_api::{Canary, MetricTemplate};
use serin_metrics::ProviderSettings;
use serin_metrics::check::{CheckOutcome, ProviderContext, check_provider_online, run_check};
use serin_metrics::factory::build;
use servers::{Graphite, Influxdb, Moto};

fn load(yaml: &str) -> (Canary, Vec<MetricTemplate>) {
    let mut canary = None;
    let mut templates = Vec::new();
    for doc in parse_documents("test", yaml).expect("YAML") {
        match to_object(&doc).expect("object") {
            Object::Canary(c) => canary = Some(*c),
            Object::MetricTemplate(t) => templates.push(*t),
            _ => {}
        }
    }
    (canary.expect("a Canary"), templates)
}

fn secret(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

const CLOUDWATCH: &str = r#"
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: cloudwatch-errors
  namespace: test
spec:
  provider:
    type: cloudwatch
    region: us-east-1
    address: MOTO_URL
    secretRef:
      name: aws-keys
  query: |
    [
      {
        "Id": "e1",
        "MetricStat": {
          "Metric": {
            "Namespace": "Podinfo",
            "MetricName": "{{ variables.metric }}",
            "Dimensions": [{"Name": "Service", "Value": "{{ target }}"}]
          },
          "Period": 60,
          "Stat": "Maximum"
        }
      }
    ]
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis:
    interval: 1m
    threshold: 5
    metrics:
    - name: errors
      templateRef: {name: cloudwatch-errors}
      templateVariables: {metric: errors}
      thresholdRange: {max: 5}
      interval: 1m
    - name: nothing
      templateRef: {name: cloudwatch-errors}
      templateVariables: {metric: nothing}
      thresholdRange: {max: 5}
      interval: 1m
"#;

#[tokio::test]
async fn cloudwatch_get_metric_data_on_moto_with_signed_requests() {
    let moto = Moto::start(7.5);
    let (canary, templates) = load(&CLOUDWATCH.replace("MOTO_URL", &moto.url()));
    let metrics = canary.analysis().unwrap().metrics.clone();
    let keys = secret(&[
        ("aws_access_key_id", &moto.access_key_id),
        ("aws_secret_access_key", &moto.secret_access_key),
    ]);
    let context = ProviderContext::default();

    check_provider_online(
        &canary,
        &metrics[0],
        Some(&templates[0]),
        Some(&keys),
        &context,
    )
    .await
    .expect("moto answers the availability check");
    let check = run_check(
        &canary,
        &metrics[0],
        Some(&templates[0]),
        Some(&keys),
        &context,
    )
    .await;
    assert_eq!(
        check.value,
        Some(7.5),
        "the newest point: {:?}",
        check.outcome
    );
    assert_eq!(
        check.outcome,
        CheckOutcome::Halt("Halt podinfo.test advancement errors 7.50 > 5".into())
    );

    let none = run_check(
        &canary,
        &metrics[1],
        Some(&templates[0]),
        Some(&keys),
        &context,
    )
    .await;
    let CheckOutcome::Halt(text) = none.outcome else {
        panic!("no data must not pass")
    };
    assert!(
        text.starts_with("Halt advancement no values found for custom metric: nothing")
            && text.contains("CloudWatch"),
        "{text}"
    );

    // moto checks the signature: a wrong secret is refused, by the check as well.
    let wrong = secret(&[
        ("aws_access_key_id", &moto.access_key_id),
        ("aws_secret_access_key", "not-the-secret"),
    ]);
    let check = run_check(
        &canary,
        &metrics[0],
        Some(&templates[0]),
        Some(&wrong),
        &context,
    )
    .await;
    let CheckOutcome::Halt(text) = check.outcome else {
        panic!("a refused request must not pass")
    };
    assert!(
        text.contains("CloudWatch")
            && text.contains("403")
            && text.contains("SignatureDoesNotMatch"),
        "{text}"
    );
    let offline = check_provider_online(
        &canary,
        &metrics[0],
        Some(&templates[0]),
        Some(&wrong),
        &context,
    )
    .await
    .unwrap_err();
    assert!(
        offline.contains("cloudwatch in metric template cloudwatch-errors.test not available"),
        "{offline}"
    );
}

#[tokio::test]
async fn influxdb_1x_influxql() {
    let influx = Influxdb::start();
    influx.execute("CREATE DATABASE telegraf");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut lines = String::new();
    for (i, v) in [2.0, 4.0, 9.0].iter().enumerate() {
        lines.push_str(&format!(
            "http_requests,service=podinfo errors={v} {}\n",
            now - 30 * (i as u64 + 1)
        ));
        lines.push_str(&format!(
            "http_requests,service=frontend errors=100 {}\n",
            now - 30 * (i as u64 + 1)
        ));
    }
    influx.write("telegraf", &lines);
    let provider = build(&ProviderSettings {
        type_: "influxdb".into(),
        address: Some(format!("{}?db=telegraf", influx.url())),
        timeout: Duration::from_secs(5),
        interval: Duration::from_secs(60),
        ..Default::default()
    })
    .unwrap();
    provider.is_online().await.unwrap();
    let q = "SELECT mean(\"errors\") FROM \"http_requests\" WHERE \"service\" = 'podinfo' AND time > now() - 5m";
    assert_eq!(provider.run_query(q).await.unwrap(), 5.0);
    let per_service = "SELECT mean(\"errors\") FROM \"http_requests\" WHERE time > now() - 5m GROUP BY \"service\"";
    let err = provider
        .run_query(per_service)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("InfluxDB") && err.contains("2 series"),
        "{err}"
    );
    let none = provider
        .run_query("SELECT mean(\"errors\") FROM \"http_requests\" WHERE \"service\" = 'none'")
        .await
        .unwrap_err();
    assert!(
        none.is_no_data() && none.to_string().contains("InfluxDB"),
        "{none}"
    );
    let bad = provider
        .run_query("SELECT FROM")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("InfluxDB") && bad.contains("error parsing query"),
        "{bad}"
    );
}

#[tokio::test]
async fn graphite_render_api_over_carbon() {
    let graphite = Graphite::start();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    graphite.send(
        &format!(
            "podinfo.errors 4 {}\npodinfo.errors 9 {}\nfrontend.errors 100 {}\n",
            now - 40,
            now - 20,
            now - 20
        ),
        "podinfo.errors",
    );
    let provider = build(&ProviderSettings {
        type_: "graphite".into(),
        address: Some(graphite.url()),
        timeout: Duration::from_secs(5),
        interval: Duration::from_secs(60),
        ..Default::default()
    })
    .unwrap();
    provider.is_online().await.unwrap();
    // Flagger's query form: the render API's parameters, over several lines.
    let v = provider
        .run_query("target=podinfo.errors\n&from=-5min")
        .await
        .unwrap();
    assert_eq!(v, 9.0, "the last non-null point");
    let none = provider
        .run_query("target=nothing.here&from=-5min")
        .await
        .unwrap_err();
    assert!(
        none.is_no_data() && none.to_string().contains("Graphite"),
        "{none}"
    );
    let bad = provider
        .run_query("target=noSuchFunction(podinfo.errors)&from=-5min")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("Graphite") && bad.contains("HTTP 400") && bad.contains("unknown function"),
        "{bad}"
    );
}
