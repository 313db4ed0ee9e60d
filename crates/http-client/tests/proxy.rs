//! Proxies from the environment, as Go programs (Flagger) use them: a loopback
//! server stands in for the proxy and records the request lines it receives.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serin_http_client::{ClientOptions, ProxyEnv, client_with_env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An HTTP server on 127.0.0.1 that answers every request with `name` and the
/// request line it got, and remembers the request lines.
struct Recorder {
    url: String,
    lines: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn recorder(name: &'static str) -> Recorder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    let task = tokio::spawn(async move {
        for _ in 0..100 {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 8192];
            let mut len = 0;
            while len < buf.len() && !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => len += n,
                }
            }
            let head = String::from_utf8_lossy(&buf[..len]).to_string();
            let line = head.lines().next().unwrap_or_default().to_string();
            seen.lock().unwrap().push(line.clone());
            if line.starts_with("CONNECT") {
                let _ = conn
                    .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                    .await;
                continue;
            }
            let body = format!("{name}: {line}");
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes()).await;
        }
    });
    Recorder { url, lines, task }
}

fn options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(2),
        insecure_skip_verify: false,
        proxy: None,
    }
}

#[tokio::test]
async fn http_proxy_carries_plain_http_requests() {
    let proxy = recorder("proxy").await;
    let env = ProxyEnv {
        http: Some(proxy.url.clone()),
        ..Default::default()
    };
    let http = client_with_env(&options(), Some(&env)).unwrap();
    let body = http
        .get("http://slack.example.test/hooks/T1")
        .send()
        .await
        .expect("answered by the proxy")
        .text()
        .await
        .unwrap();
    assert_eq!(
        body,
        "proxy: GET http://slack.example.test/hooks/T1 HTTP/1.1"
    );
}

#[tokio::test]
async fn https_proxy_is_asked_to_tunnel_https_requests() {
    let proxy = recorder("proxy").await;
    let env = ProxyEnv {
        https: Some(proxy.url.clone()),
        ..Default::default()
    };
    let http = client_with_env(&options(), Some(&env)).unwrap();
    let result = http.get("https://api.example.test/v1/query").send().await;
    assert!(result.is_err(), "the stand-in proxy refuses the tunnel");
    assert_eq!(
        proxy.lines.lock().unwrap().as_slice(),
        ["CONNECT api.example.test:443 HTTP/1.1"]
    );
}

#[tokio::test]
async fn no_proxy_and_loopback_go_direct() {
    let proxy = recorder("proxy").await;
    let direct = recorder("direct").await;
    let env = ProxyEnv {
        http: Some(proxy.url.clone()),
        https: Some(proxy.url.clone()),
        no_proxy: Some("internal.example.test,.svc".into()),
    };
    let http = client_with_env(&options(), Some(&env)).unwrap();
    // Loopback is never proxied, as in Go.
    let body = http
        .get(format!("{}/hook", direct.url))
        .send()
        .await
        .expect("answered directly")
        .text()
        .await
        .unwrap();
    assert_eq!(body, "direct: GET /hook HTTP/1.1");
    // Hosts in NO_PROXY are not sent to the proxy (they do not resolve here).
    for url in [
        "http://internal.example.test/hook",
        "http://flagger-loadtester.test.svc/",
    ] {
        let _ = http.get(url).send().await;
    }
    assert!(
        proxy.lines.lock().unwrap().is_empty(),
        "{:?}",
        proxy.lines.lock().unwrap()
    );
    // Without the environment's proxies nothing goes to the proxy either.
    let plain = client_with_env(&options(), None).unwrap();
    let _ = plain.get("http://slack.example.test/").send().await;
    assert!(proxy.lines.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_explicit_proxy_wins_over_the_environment() {
    let env_proxy = recorder("env").await;
    let explicit = recorder("explicit").await;
    let env = ProxyEnv {
        http: Some(env_proxy.url.clone()),
        ..Default::default()
    };
    let http = client_with_env(
        &ClientOptions {
            proxy: Some(explicit.url.clone()),
            ..options()
        },
        Some(&env),
    )
    .unwrap();
    let body = http
        .get("http://teams.example.test/")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "explicit: GET http://teams.example.test/ HTTP/1.1");
    assert!(env_proxy.lines.lock().unwrap().is_empty());
}
