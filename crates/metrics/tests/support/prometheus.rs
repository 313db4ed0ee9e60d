//! A real Prometheus server for tests, with known Istio traffic backfilled by
//! `promtool tsdb create-blocks-from openmetrics` before it starts.
//!
//! The binary comes from Debian's `prometheus` package: `prometheus` and `promtool`
//! are looked up on PATH, then in /usr/bin. Each server gets a free loopback port
//! and its own temporary directory, so tests run in parallel and never share state.
//!
//! Shared by serin-metrics' tests and serin's `query` command test (included there
//! with `#[path]`), so it uses std and tempfile only.

#![allow(dead_code)]

use base64::Engine as _;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Unix time (seconds) the known traffic ends at; queries are evaluated here.
pub const EVALUATION_TIME: i64 = 1_700_000_000;
/// Seconds between two backfilled samples, like a scrape interval.
pub const STEP: i64 = 15;
/// How much history is backfilled before [`EVALUATION_TIME`].
pub const HISTORY: i64 = 20 * 60;

/// A labelled request counter growing at a constant rate (requests per second).
#[derive(Debug, Clone)]
pub struct RequestSeries {
    pub reporter: &'static str,
    pub namespace: &'static str,
    pub workload: &'static str,
    pub response_code: &'static str,
    pub per_second: f64,
}

/// A duration histogram of one workload: requests per second falling into each
/// bucket (not cumulative), by upper bound in milliseconds.
#[derive(Debug, Clone)]
pub struct DurationHistogram {
    pub reporter: &'static str,
    pub namespace: &'static str,
    pub workload: &'static str,
    /// (upper bound in ms, requests per second in (previous bound, bound]).
    pub buckets: Vec<(f64, f64)>,
    /// Requests per second above the last bound.
    pub above: f64,
}

/// An application's own `http_request_duration_seconds` histogram, as scraped
/// from one pod (Prometheus' pod labels `kubernetes_namespace`,
/// `kubernetes_pod_name`), for one status code.
#[derive(Debug, Clone)]
pub struct PodHistogram {
    pub namespace: &'static str,
    pub pod: &'static str,
    pub status: &'static str,
    /// (upper bound in seconds, requests per second in (previous bound, bound]).
    pub buckets: Vec<(f64, f64)>,
}

/// The traffic backfilled into the test Prometheus.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub requests: Vec<RequestSeries>,
    pub durations: Vec<DurationHistogram>,
    /// The application's HTTP histogram (the kubernetes provider's built-ins).
    pub http: Vec<PodHistogram>,
}

impl Traffic {
    /// The canary `podinfo` in `test` answers 200 and 404 (successes) and 500, 503
    /// (failures); traffic that the built-in checks must NOT count is around it:
    /// the same workload seen by the source reporter, the primary, and a workload
    /// of the same name in another namespace. `idle` has series that never grow.
    pub fn istio() -> Self {
        let r = |reporter, namespace, workload, response_code, per_second| RequestSeries {
            reporter,
            namespace,
            workload,
            response_code,
            per_second,
        };
        let requests = vec![
            r("destination", "test", "podinfo", "200", 37.0),
            r("destination", "test", "podinfo", "404", 4.0),
            r("destination", "test", "podinfo", "500", 5.0),
            r("destination", "test", "podinfo", "503", 1.0),
            r("source", "test", "podinfo", "500", 30.0),
            r("destination", "test", "podinfo-primary", "200", 100.0),
            r("destination", "prod", "podinfo", "500", 50.0),
            r("destination", "test", "idle", "200", 0.0),
            r("destination", "test", "idle", "500", 0.0),
        ];
        let bounds = [
            5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
        ];
        let canary_counts = [10.0, 15.0, 10.0, 5.0, 3.0, 2.0, 1.0, 0.5, 0.5, 0.0];
        let fast_counts = [100.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let slow_counts = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 30.0];
        let h = |reporter, namespace, workload, counts: [f64; 10]| DurationHistogram {
            reporter,
            namespace,
            workload,
            buckets: bounds.iter().copied().zip(counts).collect(),
            above: 0.0,
        };
        let durations = vec![
            h("destination", "test", "podinfo", canary_counts),
            h("source", "test", "podinfo", slow_counts),
            h("destination", "test", "podinfo-primary", fast_counts),
            h("destination", "prod", "podinfo", slow_counts),
        ];
        // The canary's pods answer 200 and 500; its primary's pods and a namespace
        // of the same name answer only 500, which the built-ins must not count.
        let p = |namespace, pod, status, counts: [f64; 4]| PodHistogram {
            namespace,
            pod,
            status,
            buckets: [0.1, 0.25, 0.5, 1.0].into_iter().zip(counts).collect(),
        };
        let http = vec![
            p(
                "test",
                "podinfo-6d8f9c7b5-x2k4q",
                "200",
                [6.0, 4.0, 1.0, 0.0],
            ),
            p(
                "test",
                "podinfo-6d8f9c7b5-9zt7m",
                "200",
                [4.0, 3.0, 0.0, 0.0],
            ),
            p(
                "test",
                "podinfo-6d8f9c7b5-x2k4q",
                "500",
                [1.0, 1.0, 0.0, 0.0],
            ),
            p(
                "test",
                "podinfo-primary-7c9f8d6b4-abcde",
                "500",
                [0.0, 0.0, 0.0, 40.0],
            ),
            p(
                "prod",
                "podinfo-6d8f9c7b5-x2k4q",
                "500",
                [0.0, 0.0, 0.0, 40.0],
            ),
        ];
        Traffic {
            requests,
            durations,
            http,
        }
    }

    /// The canary's pods' HTTP histogram, summed over pods and status codes, with
    /// bounds in milliseconds, and its success rate.
    pub fn http_canary(&self) -> (DurationHistogram, f64) {
        let pods: Vec<_> = self
            .http
            .iter()
            .filter(|h| h.namespace == "test" && !h.pod.starts_with("podinfo-primary"))
            .collect();
        let mut buckets: Vec<(f64, f64)> = pods[0]
            .buckets
            .iter()
            .map(|(b, _)| (b * 1000.0, 0.0))
            .collect();
        let (mut ok, mut all) = (0.0, 0.0);
        for h in &pods {
            for (i, (_, c)) in h.buckets.iter().enumerate() {
                buckets[i].1 += c;
                all += c;
                if !h.status.starts_with('5') {
                    ok += c;
                }
            }
        }
        let histogram = DurationHistogram {
            reporter: "destination",
            namespace: "test",
            workload: "podinfo",
            buckets,
            above: 0.0,
        };
        (histogram, ok / all * 100.0)
    }

    /// Percentage of non-5xx requests the destination reporter saw at a workload.
    pub fn success_rate(&self, namespace: &str, workload: &str) -> f64 {
        let series: Vec<_> = self
            .requests
            .iter()
            .filter(|s| {
                s.reporter == "destination" && s.namespace == namespace && s.workload == workload
            })
            .collect();
        let total: f64 = series.iter().map(|s| s.per_second).sum();
        let ok: f64 = series
            .iter()
            .filter(|s| !s.response_code.starts_with('5'))
            .map(|s| s.per_second)
            .sum();
        ok / total * 100.0
    }

    /// The histogram of a workload as the destination reporter saw it.
    pub fn histogram(&self, namespace: &str, workload: &str) -> &DurationHistogram {
        self.durations
            .iter()
            .find(|h| {
                h.reporter == "destination" && h.namespace == namespace && h.workload == workload
            })
            .expect("the traffic has this histogram")
    }

    /// The traffic as an OpenMetrics text for `promtool`: samples every [`STEP`]
    /// seconds over [`HISTORY`], counters starting well above zero so that rate()
    /// never extrapolates to a counter start.
    pub fn openmetrics(&self) -> String {
        let times: Vec<i64> = (0..=HISTORY / STEP)
            .map(|i| EVALUATION_TIME - HISTORY + i * STEP)
            .collect();
        let mut out = String::new();
        out.push_str("# TYPE istio_requests counter\n");
        for s in &self.requests {
            let labels = format!(
                "reporter=\"{}\",destination_workload_namespace=\"{}\",destination_workload=\"{}\",response_code=\"{}\"",
                s.reporter, s.namespace, s.workload, s.response_code
            );
            write_counter(
                &mut out,
                "istio_requests_total",
                &labels,
                s.per_second,
                &times,
            );
        }
        out.push_str("# TYPE istio_request_duration_milliseconds histogram\n");
        for h in &self.durations {
            let base = format!(
                "reporter=\"{}\",destination_workload_namespace=\"{}\",destination_workload=\"{}\"",
                h.reporter, h.namespace, h.workload
            );
            let mut cumulative = 0.0;
            for (bound, count) in &h.buckets {
                cumulative += count;
                let labels = format!("{base},le=\"{bound}\"");
                write_counter(
                    &mut out,
                    "istio_request_duration_milliseconds_bucket",
                    &labels,
                    cumulative,
                    &times,
                );
            }
            let labels = format!("{base},le=\"+Inf\"");
            write_counter(
                &mut out,
                "istio_request_duration_milliseconds_bucket",
                &labels,
                cumulative + h.above,
                &times,
            );
        }
        out.push_str("# TYPE http_request_duration_seconds_bucket unknown\n");
        for h in &self.http {
            let base = format!(
                "kubernetes_namespace=\"{}\",kubernetes_pod_name=\"{}\",status=\"{}\"",
                h.namespace, h.pod, h.status
            );
            let mut cumulative = 0.0;
            for (bound, count) in &h.buckets {
                cumulative += count;
                let labels = format!("{base},le=\"{bound}\"");
                write_gauge_like(
                    &mut out,
                    "http_request_duration_seconds_bucket",
                    &labels,
                    cumulative,
                    &times,
                );
            }
            let labels = format!("{base},le=\"+Inf\"");
            write_gauge_like(
                &mut out,
                "http_request_duration_seconds_bucket",
                &labels,
                cumulative,
                &times,
            );
        }
        out.push_str("# TYPE http_request_duration_seconds_count unknown\n");
        for h in &self.http {
            let labels = format!(
                "kubernetes_namespace=\"{}\",kubernetes_pod_name=\"{}\",status=\"{}\"",
                h.namespace, h.pod, h.status
            );
            let total: f64 = h.buckets.iter().map(|(_, c)| c).sum();
            write_gauge_like(
                &mut out,
                "http_request_duration_seconds_count",
                &labels,
                total,
                &times,
            );
        }
        out.push_str("# EOF\n");
        out
    }
}

/// A counter written under a family of unknown type (its samples carry the
/// family's own name, as OpenMetrics wants for `_bucket` and `_count` series).
fn write_gauge_like(out: &mut String, name: &str, labels: &str, per_second: f64, times: &[i64]) {
    write_counter(out, name, labels, per_second, times);
}

fn write_counter(out: &mut String, name: &str, labels: &str, per_second: f64, times: &[i64]) {
    let start = times.first().copied().unwrap_or(0);
    for t in times {
        let value = 1000.0 + per_second * (t - start) as f64;
        let _ = writeln!(out, "{name}{{{labels}}} {value} {t}");
    }
}

/// The q-quantile of a histogram the way PromQL's histogram_quantile estimates it:
/// linear interpolation inside the bucket that holds the rank.
pub fn interpolated_quantile(q: f64, h: &DurationHistogram) -> f64 {
    let total: f64 = h.buckets.iter().map(|(_, c)| c).sum::<f64>() + h.above;
    let rank = q * total;
    let mut lower_bound = 0.0;
    let mut below = 0.0;
    for (bound, count) in &h.buckets {
        if below + count >= rank && *count > 0.0 {
            return lower_bound + (bound - lower_bound) * (rank - below) / count;
        }
        below += count;
        lower_bound = *bound;
    }
    lower_bound
}

/// The bucket bounds that hold the true q-quantile of the traffic.
pub fn quantile_bucket(q: f64, h: &DurationHistogram) -> (f64, f64) {
    let total: f64 = h.buckets.iter().map(|(_, c)| c).sum::<f64>() + h.above;
    let rank = q * total;
    let mut lower_bound = 0.0;
    let mut below = 0.0;
    for (bound, count) in &h.buckets {
        if below + count >= rank && *count > 0.0 {
            return (lower_bound, *bound);
        }
        below += count;
        lower_bound = *bound;
    }
    (lower_bound, f64::INFINITY)
}

/// Finds a tool of the `prometheus` Debian package: PATH first, then /usr/bin.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let p = Path::new("/usr/bin").join(name);
        p.is_file().then_some(p)
    })
}

fn require_tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| {
        panic!(
            "{name} not found on PATH or in /usr/bin: install Debian's prometheus package \
             (apt-get install -y prometheus)"
        )
    })
}

/// A Prometheus server process on 127.0.0.1, killed when dropped.
pub struct Prometheus {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Backfills `traffic` and starts Prometheus on a free loopback port, waiting
    /// (bounded) until it answers /-/ready.
    pub fn start(traffic: &Traffic) -> Self {
        Self::start_with(traffic, None, None)
    }

    /// Like [`start`](Self::start), with a `--web.config.file` body (TLS, basic
    /// auth) and the user and password readiness checks must send.
    pub fn start_with(
        traffic: &Traffic,
        web_config: Option<&str>,
        basic_auth: Option<(&str, &str)>,
    ) -> Self {
        Self::start_configured(traffic, web_config, basic_auth, "")
    }

    /// Like [`start`](Self::start), also scraping `/metrics` of each `host:port` in
    /// `targets` every second (job `serin`).
    pub fn start_scraping(traffic: &Traffic, targets: &[String]) -> Self {
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let scrape = format!(
            "scrape_configs:\n  - job_name: serin\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: [{list}]\n"
        );
        Self::start_configured(traffic, None, None, &scrape)
    }

    fn start_configured(
        traffic: &Traffic,
        web_config: Option<&str>,
        basic_auth: Option<(&str, &str)>,
        scrape: &str,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let data = dir.path().join("data");
        let input = dir.path().join("traffic.om");
        std::fs::write(&input, traffic.openmetrics()).expect("write OpenMetrics input");
        let out = Command::new(require_tool("promtool"))
            .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
            .arg(&input)
            .arg(&data)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global:\n  evaluation_interval: 1h\n{scrape}"),
        )
        .expect("write config");
        let web = web_config.map(|body| {
            let p = dir.path().join("web.yml");
            std::fs::write(&p, body).expect("write web config");
            p
        });
        let scheme = if web_config.is_some_and(|w| w.contains("tls_server_config")) {
            "https"
        } else {
            "http"
        };

        // A port can be taken between choosing and binding it: retry a few times.
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(require_tool("prometheus"));
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--storage.tsdb.retention.time=100y")
                .arg("--log.level=warn")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(dir.path().join("prometheus.log")).expect("log file"),
                ));
            if let Some(web) = &web {
                cmd.arg(format!("--web.config.file={}", web.display()));
            }
            let mut child = cmd.spawn().expect("start prometheus");
            let authorization = basic_auth.map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            });
            match wait_ready(
                &mut child,
                port,
                dir.path(),
                scheme == "https",
                authorization.as_deref(),
            ) {
                Ok(()) => {
                    return Prometheus {
                        child: Some(child),
                        port,
                        dir,
                    };
                }
                Err(e) => {
                    last_error = e;
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        panic!("Prometheus did not become ready: {last_error}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server; its port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls /-/ready every 100 ms for at most 30 s. With TLS, an open port is enough
/// (the test's own client checks the rest).
fn wait_ready(
    child: &mut Child,
    port: u16,
    dir: &Path,
    tls: bool,
    authorization: Option<&str>,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
            return Err(format!("prometheus exited with {status}: {log}"));
        }
        if tls {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
        } else {
            match http_get(port, "/-/ready", authorization) {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => last = format!("HTTP {status}: {body}"),
                Err(e) => last = e.to_string(),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("not ready within 30s: {last}"))
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A minimal HTTP/1.0 GET on loopback, for readiness checks without a client crate.
fn http_get(port: u16, path: &str, authorization: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    Ok((status, body))
}
