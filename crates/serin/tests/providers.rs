//! `serin query` answering from real metric servers: CloudWatch on moto's server mode
//! (PyPI `moto[server]`), InfluxDB 1.x (Debian's `influxdb`) and graphite-web over
//! carbon-cache (Debian's `graphite-web`, `graphite-carbon`).

#[path = "../../metrics/tests/support/servers.rs"]
mod servers;

use std::path::Path;
use std::process::{Command, Output};

use servers::{Graphite, Influxdb, Moto};

fn canary(template: &str, variables: &str) -> String {
    format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  service: {{port: 9898}}
  analysis:
    interval: 1m
    threshold: 5
    metrics:
    - name: errors
      templateRef: {{name: {template}}}
      templateVariables: {{{variables}}}
      thresholdRange: {{max: 5}}
      interval: 1m
"#
    )
}

fn serin_query(dir: &Path, manifests: &str, env: &[(&str, &str)]) -> Output {
    let path = dir.join("manifests.yaml");
    std::fs::write(&path, manifests).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_serin"));
    cmd.arg("query")
        .arg("-f")
        .arg(&path)
        .args(["--canary", "podinfo", "--metric", "errors", "--show-query"])
        // Only what the test gives: no AWS settings of the machine.
        .env_remove("AWS_PROFILE")
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run serin")
}

fn printed(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn query_cloudwatch_on_moto_with_the_default_credential_chain() {
    let moto = Moto::start(3.25);
    let dir = tempfile::tempdir().unwrap();
    // Flagger's form: no Secret, credentials from the environment.
    let template = format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: cloudwatch-errors
  namespace: test
spec:
  provider:
    type: cloudwatch
    region: us-east-1
    address: {}
  query: |
    [{{"Id": "e1", "MetricStat": {{"Metric": {{"Namespace": "{{{{ variables.ns }}}}", "MetricName": "errors",
      "Dimensions": [{{"Name": "Service", "Value": "{{{{ target }}}}"}}]}}, "Period": 60, "Stat": "Maximum"}}}}]
---
"#,
        moto.url()
    );
    let manifests = format!("{template}{}", canary("cloudwatch-errors", "ns: Podinfo"));
    let keys = [
        ("AWS_ACCESS_KEY_ID", moto.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", moto.secret_access_key.as_str()),
    ];
    let out = serin_query(dir.path(), &manifests, &keys);
    let text = printed(&out);
    assert!(out.status.success(), "{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("\"Value\": \"podinfo\""),
        "the rendered query: {text}"
    );
    assert_eq!(stdout.lines().last(), Some("errors = 3.25"), "{text}");

    let out = serin_query(
        dir.path(),
        &manifests,
        &[
            ("AWS_ACCESS_KEY_ID", moto.access_key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", "wrong"),
        ],
    );
    let text = printed(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("CloudWatch") && text.contains("SignatureDoesNotMatch"),
        "{text}"
    );
}

#[test]
fn query_influxdb() {
    let influx = Influxdb::start();
    influx.execute("CREATE DATABASE telegraf");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    influx.write(
        "telegraf",
        &format!(
            "http_requests,service=podinfo errors=1.5 {}\nhttp_requests,service=podinfo errors=2.5 {}\n",
            now - 40,
            now - 20
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let template = format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: influx-errors
  namespace: test
spec:
  provider:
    type: influxdb
    address: {}?db=telegraf
  query: |
    SELECT sum("errors") FROM "http_requests"
    WHERE "service" = '{{{{ target }}}}' AND time > now() - 5m
---
"#,
        influx.url()
    );
    let out = serin_query(
        dir.path(),
        &format!("{template}{}", canary("influx-errors", "")),
        &[],
    );
    let text = printed(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().last(),
        Some("errors = 4"),
        "{text}"
    );
}

#[test]
fn query_graphite() {
    let graphite = Graphite::start();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    graphite.send(
        &format!(
            "test.podinfo.errors 6 {}\ntest.podinfo.errors 2 {}\n",
            now - 40,
            now - 20
        ),
        "test.podinfo.errors",
    );
    let dir = tempfile::tempdir().unwrap();
    let template = format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: graphite-errors
  namespace: test
spec:
  provider:
    type: graphite
    address: {}
  query: |
    target={{{{ namespace }}}}.{{{{ target }}}}.errors
    &from=-5min
---
"#,
        graphite.url()
    );
    let out = serin_query(
        dir.path(),
        &format!("{template}{}", canary("graphite-errors", "")),
        &[],
    );
    let text = printed(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().last(),
        Some("errors = 2"),
        "the last point: {text}"
    );
}
