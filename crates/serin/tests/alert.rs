//! `serin alert test` as a user runs it: an AlertProvider and its Secret in files,
//! a chat service played by a receiver on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

struct Request {
    path: String,
    body: serde_json::Value,
}

/// Answers `requests` HTTP requests with `status` and `body`, sending what it got
/// on the returned channel.
fn receiver(status: u16, body: &'static str, requests: usize) -> (String, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..requests {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut raw = vec![0; length];
            let _ = reader.read_exact(&mut raw);
            let _ = tx.send(Request {
                path,
                body: serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null),
            });
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (format!("http://{addr}"), rx)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path
}

fn alert_test(files: &[&Path], extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_serin"));
    cmd.args(["alert", "test"]);
    for f in files {
        cmd.arg("-f").arg(f);
    }
    cmd.args(extra);
    cmd.output().expect("serin runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A Slack provider whose address lives in a Secret in another file.
fn provider_files(dir: &Path, base: &str) -> (PathBuf, PathBuf) {
    let provider = write(
        dir,
        "provider.yaml",
        "apiVersion: flagger.app/v1beta1\n\
         kind: AlertProvider\n\
         metadata:\n  name: on-call\n  namespace: flagger\n\
         spec:\n  type: slack\n  channel: on-call-alerts\n  username: serin\n  \
         address: https://hooks.slack.com/services/not-this-one\n  \
         secretRef:\n    name: on-call-url\n",
    );
    let secret = write(
        dir,
        "secret.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: on-call-url\n  namespace: flagger\n\
             stringData:\n  address: {base}/services/T0/B0/secret\n"
        ),
    );
    (provider, secret)
}

#[test]
fn a_2xx_answer_exits_0_and_prints_status_and_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (base, requests) = receiver(200, "ok", 1);
    let (provider, secret) = provider_files(dir.path(), &base);
    let out = alert_test(
        &[&provider, &secret],
        &["--provider", "on-call", "--message", "hello from the test"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("status: 200"), "{text}");
    assert!(text.contains("body: ok"), "{text}");
    assert!(
        !text.contains("/services/T0"),
        "the webhook path is a secret: {text}"
    );

    let request = requests
        .recv_timeout(Duration::from_secs(30))
        .expect("the receiver got the alert");
    assert_eq!(request.path, "/services/T0/B0/secret");
    assert_eq!(request.body["channel"], "on-call-alerts");
    assert_eq!(request.body["username"], "serin");
    let attachment = &request.body["attachments"][0];
    assert_eq!(attachment["text"], "hello from the test");
    assert_eq!(attachment["author_name"], "on-call.flagger");
    assert_eq!(attachment["color"], "good");
}

#[test]
fn a_500_answer_exits_1_and_prints_status_and_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (base, requests) = receiver(500, "no_service", 1);
    let (provider, secret) = provider_files(dir.path(), &base);
    let out = alert_test(
        &[&provider, &secret],
        &[
            "--provider",
            "on-call",
            "--namespace",
            "flagger",
            "--severity",
            "error",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("status: 500"), "{text}");
    assert!(text.contains("body: no_service"), "{text}");
    let request = requests
        .recv_timeout(Duration::from_secs(30))
        .expect("the receiver got the alert");
    assert_eq!(request.body["attachments"][0]["color"], "danger");
}

#[test]
fn objects_without_namespace_and_data_in_base64_work_with_any_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (base, requests) = receiver(200, "1", 1);
    let address = format!("{base}/webhookb2/x");
    let encoded = base64(address.as_bytes());
    let file = write(
        dir.path(),
        "all.yaml",
        &format!(
            "apiVersion: flagger.app/v1beta1\nkind: AlertProvider\nmetadata:\n  name: teams\n\
             spec:\n  type: msteams\n  secretRef:\n    name: teams-url\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata:\n  name: teams-url\ndata:\n  address: {encoded}\n"
        ),
    );
    let out = alert_test(&[&file], &["--provider", "teams", "-n", "apps"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let request = requests
        .recv_timeout(Duration::from_secs(30))
        .expect("the receiver got the alert");
    assert_eq!(request.path, "/webhookb2/x");
    assert_eq!(request.body["@type"], "MessageCard");
    assert_eq!(
        request.body["sections"][0]["activitySubtitle"],
        "teams.apps"
    );
}

#[test]
fn an_unreachable_service_or_a_missing_provider_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let (provider, secret) = provider_files(dir.path(), &format!("http://127.0.0.1:{port}"));
    let out = alert_test(&[&provider, &secret], &["--provider", "on-call"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("error: cannot send slack alert"),
        "{}",
        stdout(&out)
    );

    let out = alert_test(&[&provider, &secret], &["--provider", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no AlertProvider named \"nobody\""), "{err}");
    assert!(err.contains("flagger/on-call"), "{err}");

    let out = alert_test(
        &[&dir.path().join("missing.yaml")],
        &["--provider", "on-call"],
    );
    assert_eq!(out.status.code(), Some(2));
}

fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
