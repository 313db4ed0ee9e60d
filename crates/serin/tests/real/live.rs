//! Live Istio-style telemetry for the real tier: a loopback exporter whose request
//! counters and duration histograms grow with wall time at rates each test sets for
//! its own namespace, scraped every second by a real Prometheus (Debian's package).
//! serin's built-in checks then read live series, as they would from Istio.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Upper bounds (ms) of the duration histogram, as Istio's default buckets start.
const BOUNDS: [f64; 8] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// What one workload serves: requests per second answered 200 and 500, and the
/// latency every request takes (ms).
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub ok_per_s: f64,
    pub errors_per_s: f64,
    pub latency_ms: f64,
}

impl Rates {
    pub fn healthy() -> Self {
        Rates {
            ok_per_s: 20.0,
            errors_per_s: 0.0,
            latency_ms: 40.0,
        }
    }
    /// Half the requests fail: a success rate of 50%.
    pub fn failing() -> Self {
        Rates {
            ok_per_s: 10.0,
            errors_per_s: 10.0,
            latency_ms: 40.0,
        }
    }
}

#[derive(Default)]
struct Series {
    rates: Option<Rates>,
    ok: f64,
    errors: f64,
    buckets: [f64; BOUNDS.len()],
    above: f64,
}

#[derive(Default)]
struct State {
    /// (namespace, workload) -> counters.
    series: BTreeMap<(String, String), Series>,
    last: Option<Instant>,
}

impl State {
    fn advance(&mut self) {
        let now = Instant::now();
        let dt = self
            .last
            .map(|l| now.duration_since(l).as_secs_f64())
            .unwrap_or(0.0);
        self.last = Some(now);
        for s in self.series.values_mut() {
            let Some(r) = s.rates else { continue };
            s.ok += r.ok_per_s * dt;
            s.errors += r.errors_per_s * dt;
            let n = (r.ok_per_s + r.errors_per_s) * dt;
            match BOUNDS.iter().position(|b| r.latency_ms <= *b) {
                Some(i) => s.buckets[i] += n,
                None => s.above += n,
            }
        }
    }

    fn exposition(&mut self) -> String {
        self.advance();
        let mut out = String::from("# TYPE istio_requests_total counter\n");
        for ((ns, w), s) in &self.series {
            let l = format!(
                "reporter=\"destination\",destination_workload_namespace=\"{ns}\",destination_workload=\"{w}\""
            );
            out += &format!(
                "istio_requests_total{{{l},response_code=\"200\"}} {}\n",
                s.ok
            );
            out += &format!(
                "istio_requests_total{{{l},response_code=\"500\"}} {}\n",
                s.errors
            );
        }
        out += "# TYPE istio_request_duration_milliseconds histogram\n";
        for ((ns, w), s) in &self.series {
            let l = format!(
                "reporter=\"destination\",destination_workload_namespace=\"{ns}\",destination_workload=\"{w}\""
            );
            let mut cumulative = 0.0;
            for (b, n) in BOUNDS.iter().zip(s.buckets.iter()) {
                cumulative += n;
                out += &format!("istio_request_duration_milliseconds_bucket{{{l},le=\"{b}\"}} {cumulative}\n");
            }
            cumulative += s.above;
            out += &format!(
                "istio_request_duration_milliseconds_bucket{{{l},le=\"+Inf\"}} {cumulative}\n"
            );
            out += &format!("istio_request_duration_milliseconds_count{{{l}}} {cumulative}\n");
        }
        out
    }
}

/// The exporter and the Prometheus that scrapes it, one per test binary.
pub struct Telemetry {
    state: Arc<Mutex<State>>,
    prometheus_port: u16,
    _child: Mutex<Child>,
    _dir: tempfile::TempDir,
}

impl Telemetry {
    /// `http://127.0.0.1:PORT` of the Prometheus.
    pub fn prometheus_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.prometheus_port)
    }

    /// From now on `workload` in `namespace` serves at `rates`.
    pub fn set(&self, namespace: &str, workload: &str, rates: Rates) {
        let mut st = self.state.lock().unwrap();
        st.advance();
        st.series
            .entry((namespace.to_string(), workload.to_string()))
            .or_default()
            .rates = Some(rates);
    }
}

fn tool(name: &str) -> PathBuf {
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/bin")])
    {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} not found: install Debian's prometheus package (scripts/test.sh does)");
}

/// The shared telemetry, started on first use.
pub fn telemetry() -> &'static Telemetry {
    static T: OnceLock<Telemetry> = OnceLock::new();
    T.get_or_init(start)
}

fn start() -> Telemetry {
    let state = Arc::new(Mutex::new(State::default()));
    let listener = TcpListener::bind("127.0.0.1:0").expect("exporter listens");
    let exporter_port = listener.local_addr().unwrap().port();
    let st = state.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut line = String::new();
            // Read the request head (bounded: at most 100 lines).
            for _ in 0..100 {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let body = st.lock().unwrap().exposition();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1h\nscrape_configs:\n  - job_name: istio\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
        ),
    )
    .expect("config");
    for _attempt in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let mut child = crate::support::tied_to_this_process(&tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("prometheus starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut ready = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if crate::support::http_get(port, "/-/ready").is_some_and(|(code, _)| code == 200) {
                ready = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if ready {
            return Telemetry {
                state,
                prometheus_port: port,
                _child: Mutex::new(child),
                _dir: dir,
            };
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("Prometheus did not become ready in three tries");
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Ok(mut c) = self._child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
