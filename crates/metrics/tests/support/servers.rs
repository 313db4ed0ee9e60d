//! Real servers for provider tests, each on a free loopback port in its own
//! temporary directory, stopped by pid when dropped:
//!
//! - [`Moto`]: moto's server mode (PyPI `moto[server]`), a stand-in for AWS that
//!   checks SigV4 signatures once IAM is set up (`INITIAL_NO_AUTH_ACTION_COUNT`),
//!   with CloudWatch metric data put through boto3 (installed with moto).
//! - [`Influxdb`]: `influxd` from Debian's `influxdb` package (1.x, InfluxQL).
//! - [`Graphite`]: `carbon-cache` (Debian's `graphite-carbon`) storing what is sent
//!   to its plaintext port, read back by graphite-web's render API (Debian's
//!   `graphite-web`) under Django's development server.
//!
//! Shared by serin-metrics' tests and serin's `query` command test (included there
//! with `#[path]`), so it uses std and tempfile only.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits (at most `limit`) until `check` holds; panics naming `what` and the log.
fn wait_for(what: &str, limit: Duration, log: &Path, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    for _ in 0..2000 {
        if check() {
            return;
        }
        if start.elapsed() > limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("{what} did not start within {limit:?}; its log:\n{log}");
}

/// A GET on loopback with the status code, std only.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

fn spawn(cmd: &mut Command, log: &Path, what: &str, package: &str) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({e}): install {package}"))
}

/// Stops a child by its pid and reaps it.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// moto's server with an IAM user whose keys sign every request after setup.
pub struct Moto {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Puts CloudWatch data (Namespace `Podinfo`, metric `errors`, dimension
/// `Service=podinfo`: one point a minute over the last ten minutes, the newest
/// `VALUE`, each older one 1 more)
/// with the keys of a new IAM user, and prints those keys.
const MOTO_SETUP: &str = r#"
import boto3, datetime, json, sys
url, now, value = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
setup = dict(endpoint_url=url, region_name="us-east-1",
             aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **setup)
iam.create_user(UserName="serin")
iam.put_user_policy(UserName="serin", PolicyName="cloudwatch", PolicyDocument=json.dumps(
    {"Version": "2012-10-17",
     "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="serin")["AccessKey"]
cw = boto3.client("cloudwatch", endpoint_url=url, region_name="us-east-1",
                  aws_access_key_id=key["AccessKeyId"],
                  aws_secret_access_key=key["SecretAccessKey"])
for i in range(10):
    cw.put_metric_data(Namespace="Podinfo", MetricData=[{
        "MetricName": "errors", "Unit": "Count", "Value": value + i,
        "Dimensions": [{"Name": "Service", "Value": "podinfo"}],
        "Timestamp": datetime.datetime.fromtimestamp(now - 30 - 60 * i, datetime.timezone.utc)}])
print(key["AccessKeyId"])
print(key["SecretAccessKey"])
"#;

impl Moto {
    /// Starts moto and puts the `errors` metric of the last ten minutes, the newest
    /// point `value`.
    pub fn start(value: f64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = dir.path().join("moto.log");
        let mut child = spawn(
            Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                // The IAM setup is free; every request after it must be signed.
                .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
                .current_dir(dir.path()),
            &log,
            "moto_server",
            "the PyPI package moto[server]",
        );
        wait_for("moto_server", Duration::from_secs(60), &log, || {
            http_status(port, "/moto-api/").is_some()
        });
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let out = Command::new("python3")
            .args([
                "-c",
                MOTO_SETUP,
                &format!("http://127.0.0.1:{port}"),
                &now.to_string(),
                &value.to_string(),
            ])
            .output()
            .expect("python3");
        if !out.status.success() {
            stop(&mut child);
            panic!(
                "moto setup failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let access_key_id = lines.next().unwrap_or_default().to_string();
        let secret_access_key = lines.next().unwrap_or_default().to_string();
        Moto {
            child,
            _dir: dir,
            port,
            access_key_id,
            secret_access_key,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// InfluxDB 1.x with its data in a temporary directory.
pub struct Influxdb {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl Influxdb {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let rpc = free_port();
        let d = dir.path().display();
        let config = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n\
             [monitor]\n  store-enabled = false\n"
        );
        let config_path = dir.path().join("influxdb.conf");
        std::fs::write(&config_path, config).expect("write config");
        let log = dir.path().join("influxd.log");
        let bin = if Path::new("/usr/bin/influxd").exists() {
            "/usr/bin/influxd"
        } else {
            "influxd"
        };
        let child = spawn(
            Command::new(bin)
                .arg("run")
                .arg("-config")
                .arg(&config_path),
            &log,
            "influxd",
            "Debian's influxdb package",
        );
        wait_for("influxd", Duration::from_secs(30), &log, || {
            http_status(port, "/ping") == Some(204)
        });
        Influxdb {
            child,
            _dir: dir,
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs an InfluxQL statement (CREATE DATABASE...).
    pub fn execute(&self, statement: &str) {
        let body = format!("q={}", urlencode(statement));
        let status = post(
            self.port,
            "/query",
            "application/x-www-form-urlencoded",
            &body,
        );
        assert_eq!(status, Some(200), "{statement}");
    }

    /// Writes points in line protocol to a database.
    pub fn write(&self, db: &str, lines: &str) {
        let status = post(
            self.port,
            &format!("/write?db={db}&precision=s"),
            "text/plain",
            lines,
        );
        assert_eq!(status, Some(204), "write {lines}");
    }
}

impl Drop for Influxdb {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn post(port: u16, path: &str, content_type: &str, body: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// carbon-cache and graphite-web's render API.
pub struct Graphite {
    carbon: Child,
    web: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
    line_port: u16,
}

impl Graphite {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let t = dir.path().display().to_string();
        for sub in ["whisper", "log", "conf", "lists"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("dirs");
        }
        let (line_port, pickle_port, query_port, port) =
            (free_port(), free_port(), free_port(), free_port());
        let carbon_conf = format!(
            "[cache]\nSTORAGE_DIR = {t}/\nLOCAL_DATA_DIR = {t}/whisper/\nWHITELISTS_DIR = {t}/lists/\n\
             CONF_DIR = {t}/conf/\nLOG_DIR = {t}/log/\nPID_DIR = {t}/\nENABLE_LOGROTATION = False\nUSER =\n\
             MAX_CACHE_SIZE = inf\nMAX_UPDATES_PER_SECOND = inf\nMAX_CREATES_PER_MINUTE = inf\n\
             LINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {line_port}\n\
             ENABLE_UDP_LISTENER = False\nPICKLE_RECEIVER_INTERFACE = 127.0.0.1\n\
             PICKLE_RECEIVER_PORT = {pickle_port}\nCACHE_QUERY_INTERFACE = 127.0.0.1\n\
             CACHE_QUERY_PORT = {query_port}\nLOG_LISTENER_CONN_SUCCESS = False\n"
        );
        std::fs::write(dir.path().join("conf/carbon.conf"), carbon_conf).expect("carbon.conf");
        std::fs::write(
            dir.path().join("conf/storage-schemas.conf"),
            "[default]\npattern = .*\nretentions = 10s:1d\n",
        )
        .expect("storage-schemas.conf");
        // graphite-web reads its settings from this module (GRAPHITE_SETTINGS_MODULE).
        std::fs::write(
            dir.path().join("serin_graphite.py"),
            format!(
                "SECRET_KEY = 'serin-test'\nSTORAGE_DIR = '{t}'\nWHISPER_DIR = '{t}/whisper'\n\
                 LOG_DIR = '{t}/log'\nINDEX_FILE = '{t}/index'\n\
                 CARBONLINK_HOSTS = ['127.0.0.1:{query_port}']\n\
                 DATABASES = {{'default': {{'NAME': '{t}/graphite.db', 'ENGINE': 'django.db.backends.sqlite3'}}}}\n"
            ),
        )
        .expect("settings");
        let carbon_log = dir.path().join("carbon.log");
        let carbon = spawn(
            Command::new("/usr/bin/carbon-cache")
                .arg(format!("--config={t}/conf/carbon.conf"))
                .args(["--nodaemon", "start"]),
            &carbon_log,
            "carbon-cache",
            "Debian's graphite-carbon package",
        );
        let web_log = dir.path().join("graphite-web.log");
        let web = spawn(
            Command::new("/usr/bin/django-admin")
                .args(["runserver", &format!("127.0.0.1:{port}"), "--noreload"])
                .env("GRAPHITE_SETTINGS_MODULE", "serin_graphite")
                .env("DJANGO_SETTINGS_MODULE", "graphite.settings")
                .env("PYTHONPATH", &t),
            &web_log,
            "graphite-web",
            "Debian's graphite-web package",
        );
        let g = Graphite {
            carbon,
            web,
            _dir: dir,
            port,
            line_port,
        };
        wait_for("carbon-cache", Duration::from_secs(30), &carbon_log, || {
            TcpStream::connect(("127.0.0.1", line_port)).is_ok()
        });
        wait_for("graphite-web", Duration::from_secs(30), &web_log, || {
            http_status(port, "/render?target=none&format=json") == Some(200)
        });
        g
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends `metric value timestamp` lines to carbon's plaintext port and waits (at
    /// most ten seconds) until the render API returns `metric` with data.
    pub fn send(&self, lines: &str, metric: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.line_port)).expect("carbon line port");
        s.write_all(lines.as_bytes()).expect("send to carbon");
        drop(s);
        let path = format!("/render?target={metric}&from=-10min&format=json");
        let start = Instant::now();
        for _ in 0..200 {
            if http_body(self.port, &path).is_some_and(|b| has_data_point(&b)) {
                return;
            }
            if start.elapsed() > Duration::from_secs(10) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("carbon did not store {metric} within 10s");
    }
}

impl Drop for Graphite {
    fn drop(&mut self) {
        stop(&mut self.web);
        stop(&mut self.carbon);
    }
}

/// The body of a GET on loopback, std only.
pub fn http_body(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// A render answer with a data point that is not null: `[` then a number.
fn has_data_point(body: &str) -> bool {
    let b = body.as_bytes();
    b.windows(2)
        .any(|w| w[0] == b'[' && (w[1].is_ascii_digit() || w[1] == b'-'))
}
