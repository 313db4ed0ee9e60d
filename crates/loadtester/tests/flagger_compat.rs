//! What Flagger's load tester accepts and serin's must too: the `helm`, `helmv3` and
//! `kubectl` task types (with the real kubectl, /usr/bin/kubectl, and the real helm that
//! scripts/peers.sh builds from its Go module, both against serin's sandbox served on
//! loopback), `-namespace-regexp`, and Flagger's background answer to `type: cmd` as an
//! opt-in mode.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use serin_loadtester::server::namespace_regexp;
use serin_loadtester::{Config, LoadTester};
use serin_sandbox::{Sandbox, SandboxOptions, ServeHandle};
use tokio::net::TcpListener;

async fn start_loadtester(config: Config) -> (String, LoadTester) {
    let lt = LoadTester::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = lt.clone();
    tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
    (format!("http://{addr}"), lt)
}

fn enabled() -> Config {
    Config {
        enable_bash: true,
        ..Config::default()
    }
}

async fn post(url: &str, body: &serde_json::Value) -> (StatusCode, String) {
    let client = serin_http_client::client(&serin_http_client::ClientOptions::default()).unwrap();
    let resp = client.post(url).json(body).send().await.unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

fn hook(namespace: &str, metadata: serde_json::Value) -> serde_json::Value {
    json!({"name": "podinfo", "namespace": namespace, "phase": "Progressing",
           "checksum": "abc", "metadata": metadata})
}

/// serin's sandbox on loopback with a `test` namespace, and the flags that point
/// kubectl (and helm) at it without touching the user's home.
struct Cluster {
    _sandbox: Sandbox,
    _server: ServeHandle,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let mut options = SandboxOptions::default();
        options.namespaces.push("test".into());
        let sandbox = Sandbox::new(options);
        let server = sandbox.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        sandbox
            .write_kubeconfig(&dir.path().join("kubeconfig"), server.addr())
            .unwrap();
        Cluster {
            _sandbox: sandbox,
            _server: server,
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// kubectl's flags for this sandbox, appended to a `type: kubectl` command.
    fn kubectl_flags(&self) -> String {
        format!(
            "--kubeconfig={} --cache-dir={}",
            self.path("kubeconfig"),
            self.path("kube-cache")
        )
    }

    /// helm's flags for this sandbox, its repository files kept in the test's directory.
    fn helm_flags(&self) -> String {
        format!(
            "--kubeconfig={} --repository-config={} --repository-cache={} --registry-config={}",
            self.path("kubeconfig"),
            self.path("helm/repositories.yaml"),
            self.path("helm/cache"),
            self.path("helm/registry.json")
        )
    }
}

#[tokio::test]
async fn kubectl_tasks_run_the_real_kubectl_with_the_words_as_arguments() {
    let cluster = Cluster::start().await;
    let (lt_url, lt) = start_loadtester(enabled()).await;
    let k = cluster.kubectl_flags();
    let (status, text) = post(
        &lt_url,
        &hook(
            "test",
            json!({"type": "kubectl", "returnCmdOutput": "true",
                   "cmd": format!("create configmap lt-probe -n test --from-literal=answer=42 --from-literal=quoted='x' {k}")}),
        ),
    )
    .await;
    assert_eq!(
        (status, text.trim()),
        (StatusCode::OK, "configmap/lt-probe created")
    );
    // Read back by another kubectl task: the object is in the sandbox. As in Flagger
    // the words are split at whitespace only, so `'x'` reached kubectl with its quotes
    // and a jsonpath needs no quoting.
    let (status, text) = post(
        &lt_url,
        &hook(
            "test",
            json!({"type": "kubectl", "returnCmdOutput": "true",
                   "cmd": format!("get configmap lt-probe -n test -o jsonpath={{.data.answer}}/{{.data.quoted}} {k}")}),
        ),
    )
    .await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "42/'x'"));
    // Without returnCmdOutput the answer is empty, as in Flagger.
    let (status, text) = post(
        &lt_url,
        &hook(
            "test",
            json!({"type": "kubectl", "cmd": format!("get configmap lt-probe -n test {k}")}),
        ),
    )
    .await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, ""));
    let m = lt.metrics_text();
    assert!(
        m.contains(r#"serin_loadtester_commands_total{kind="kubectl"} 3"#),
        "{m}"
    );
}

#[tokio::test]
async fn a_failing_or_hanging_kubectl_task_is_a_500_with_its_output() {
    let cluster = Cluster::start().await;
    let (lt_url, lt) = start_loadtester(enabled()).await;
    let k = cluster.kubectl_flags();
    let (status, text) = post(
        &lt_url,
        &hook(
            "test",
            json!({"type": "kubectl", "cmd": format!("get configmap nosuch -n test {k}")}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
    assert!(text.contains(r#"configmaps "nosuch" not found"#), "{text}");
    assert!(
        text.starts_with("command kubectl get configmap nosuch"),
        "{text}"
    );
    // Shell syntax is no shell's: `;echo` stays in kubectl's arguments, and so does
    // INJECTED, which kubectl looks up as a namespace.
    let (status, text) = post(
        &lt_url,
        &hook(
            "test",
            json!({"type": "kubectl", "cmd": format!("get namespaces -o name;echo INJECTED {k}")}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
    assert!(
        text.contains(r#"namespaces "INJECTED" not found"#),
        "{text}"
    );
    // metadata.timeout bounds it: kubectl waits for a deletion that never comes.
    let (status, text) = post(
        &lt_url,
        &hook(
            "test",
            json!({"type": "kubectl", "timeout": "1s",
                   "cmd": format!("wait --for=delete namespace/test --timeout=10m {k}")}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
    assert!(text.contains("timed out after 1s"), "{text}");
    let m = lt.metrics_text();
    assert!(
        m.contains(r#"serin_loadtester_commands_failed_total{kind="kubectl"} 3"#),
        "{m}"
    );
}

#[tokio::test]
async fn helm_and_kubectl_tasks_need_enable_bash_and_follow_allow_cmd() {
    // Off by default, like every command that is not hey.
    let (lt_url, lt) = start_loadtester(Config::default()).await;
    for typ in ["helm", "helmv3", "kubectl"] {
        let (status, text) = post(
            &lt_url,
            &hook("test", json!({"type": typ, "cmd": "version"})),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{typ}: {text}");
        assert!(text.contains("--enable-bash"), "{typ}: {text}");
    }
    assert!(!lt.metrics_text().contains("kind=\"kubectl\""));

    // With --allow-cmd the line checked is the program's name and its arguments, the
    // same line a `type: cmd` command would be.
    let (lt_url, _lt) = start_loadtester(Config {
        enable_bash: true,
        allow_cmd: vec!["kubectl version ".into()],
        ..Config::default()
    })
    .await;
    let (status, text) = post(
        &lt_url,
        &hook(
            "test",
            json!({"type": "kubectl", "cmd": "version  --client -o json", "returnCmdOutput": "true"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("clientVersion"), "{text}");
    let (status, text) = post(
        &lt_url,
        &hook(
            "test",
            json!({"cmd": "kubectl version --client -o json", "returnCmdOutput": "true"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("clientVersion"), "{text}");
    for (typ, cmd) in [
        ("kubectl", "delete namespace test"),
        ("helmv3", "version"),
        ("helm", "kubectl version"),
    ] {
        let (status, text) = post(&lt_url, &hook("test", json!({"type": typ, "cmd": cmd}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{typ} {cmd}: {text}");
        assert!(text.contains("--allow-cmd"), "{text}");
    }
}

/// The helm binary scripts/peers.sh builds: `SERIN_HELM`, or the newest
/// `helm-*/helm` in serin's cache.
fn helm_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SERIN_HELM") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "SERIN_HELM={} is not a file", p.display());
        return Some(p);
    }
    let cache = std::env::var_os("SERIN_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| Path::new(&d).join("serin")))
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/serin")))?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("helm-"))
        .map(|e| e.path().join("helm"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

#[tokio::test]
async fn helm_and_helmv3_tasks_run_the_real_helm() {
    let Some(helm) = helm_binary() else {
        eprintln!(
            "SKIPPED helm_and_helmv3_tasks_run_the_real_helm: no helm binary (SERIN_HELM is \
             unset and serin's cache has no helm-*/helm); scripts/peers.sh builds it, and \
             the real tier's loadtester::flagger_task_types_against_the_api_server runs \
             helm unconditionally"
        );
        return;
    };
    let cluster = Cluster::start().await;
    let chart = cluster.dir.path().join("chart");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: probe\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(chart.join("values.yaml"), "answer: \"41\"\n").unwrap();
    std::fs::write(
        chart.join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-probe\ndata:\n  answer: {{ .Values.answer | quote }}\n",
    )
    .unwrap();
    let (lt_url, lt) = start_loadtester(Config {
        helm: helm.display().to_string(),
        ..enabled()
    })
    .await;
    let h = cluster.helm_flags();
    let (status, text) = post(
        &lt_url,
        &hook(
            "test",
            json!({"type": "helmv3", "returnCmdOutput": "true",
                   "cmd": format!("install lt {} -n test --set answer=42 {h}", chart.display())}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("STATUS: deployed"), "{text}");
    // `helm` is the same task type in Flagger.
    let (status, text) = post(
        &lt_url,
        &hook(
            "test",
            json!({"type": "helm", "returnCmdOutput": "true",
                   "cmd": format!("list -n test -o json {h}")}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let releases: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(releases[0]["name"], "lt", "{releases}");
    assert_eq!(releases[0]["status"], "deployed", "{releases}");
    // What the release made is in the sandbox.
    let (status, text) = post(
        &lt_url,
        &hook(
            "test",
            json!({"type": "kubectl", "returnCmdOutput": "true",
                   "cmd": format!("get configmap lt-probe -n test -o jsonpath={{.data.answer}} {}", cluster.kubectl_flags())}),
        ),
    )
    .await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "42"));
    let (status, text) = post(
        &lt_url,
        &hook(
            "test",
            json!({"type": "helmv3", "cmd": format!("status nosuch -n test {h}")}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
    assert!(text.contains("release: not found"), "{text}");
    // Uninstalled: the release's objects are gone.
    let (status, text) = post(
        &lt_url,
        &hook(
            "test",
            json!({"type": "helmv3", "cmd": format!("uninstall lt -n test {h}")}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, text) = post(
        &lt_url,
        &hook(
            "test",
            json!({"type": "kubectl", "cmd": format!("get configmap lt-probe -n test {}", cluster.kubectl_flags())}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
    assert!(text.contains("not found"), "{text}");
    let m = lt.metrics_text();
    assert!(
        m.contains(r#"serin_loadtester_commands_total{kind="helm"} 4"#),
        "{m}"
    );
    assert!(
        m.contains(r#"serin_loadtester_commands_failed_total{kind="helm"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn namespace_regexp_answers_403_outside_the_namespaces_it_matches() {
    let (lt_url, lt) = start_loadtester(Config {
        namespace_regexp: namespace_regexp("^test").unwrap(),
        ..enabled()
    })
    .await;
    let echo = json!({"cmd": "echo ran", "returnCmdOutput": "true"});
    let (status, text) = post(&lt_url, &hook("prod", echo.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.starts_with("Forbidden"), "{text}");
    assert!(text.contains("--namespace-regexp"), "{text}");
    // Checked before the metadata, as in Flagger.
    let (status, _) = post(&lt_url, &json!({"name": "podinfo", "namespace": "prod"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!lt.metrics_text().contains("kind=\"cmd\""), "nothing ran");
    // Matched anywhere unless anchored: `^test` takes test-2.
    for ns in ["test", "test-2"] {
        let (status, text) = post(&lt_url, &hook(ns, echo.clone())).await;
        assert_eq!((status, text.as_str()), (StatusCode::OK, "ran\n"), "{ns}");
    }
    // Gates and rollback gates of other namespaces are refused too (a refused check
    // reads as closed); approve and halt take no canary.
    let prod = json!({"name": "podinfo", "namespace": "prod"});
    let test = json!({"name": "podinfo", "namespace": "test"});
    for path in [
        "/gate/open",
        "/rollback/open",
        "/gate/close",
        "/rollback/close",
    ] {
        let (status, _) = post(&format!("{lt_url}{path}"), &prod).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        let (status, _) = post(&format!("{lt_url}{path}"), &test).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}");
    }
    post(&format!("{lt_url}/gate/open"), &test).await;
    let (status, _) = post(&format!("{lt_url}/gate/check"), &test).await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = post(&format!("{lt_url}/gate/check"), &prod).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(text.contains("--namespace-regexp"), "{text}");
    let (status, _) = post(&format!("{lt_url}/gate/approve"), &prod).await;
    assert_eq!(status, StatusCode::OK);

    // Unanchored, as Go's MatchString.
    let (lt_url, _lt) = start_loadtester(Config {
        namespace_regexp: namespace_regexp("team-a").unwrap(),
        ..enabled()
    })
    .await;
    let (status, _) = post(&lt_url, &hook("apps-team-a-dev", echo.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post(&lt_url, &hook("team-b", echo.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Flagger's chart passes `-namespace-regexp=` when unset: every namespace.
    assert!(namespace_regexp("").unwrap().is_none());
    assert!(namespace_regexp("(").is_err());
}

#[tokio::test]
async fn background_cmd_answers_202_at_once_and_still_bounds_the_command() {
    let (lt_url, lt) = start_loadtester(Config {
        background_cmd: true,
        ..enabled()
    })
    .await;
    // Answered while the command still runs.
    let (status, text) = post(&lt_url, &hook("test", json!({"cmd": "sleep 300"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert!(text.contains("started in the background"), "{text}");
    assert_eq!(lt.running(), vec!["podinfo.test sleep 300".to_string()]);
    // The same command for the same canary is not started twice.
    let (status, text) = post(&lt_url, &hook("test", json!({"cmd": "sleep 300"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(text.contains("already running"), "{text}");
    let m = lt.metrics_text();
    assert!(
        m.contains(r#"serin_loadtester_commands_total{kind="cmd"} 1"#),
        "{m}"
    );

    // A failing command still passes the webhook (Flagger's behaviour); the failure is
    // logged and counted when it ends. The timeout still stops a command.
    let (status, _) = post(
        &lt_url,
        &hook("test", json!({"cmd": "ls /no/such/dir/serin"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = post(
        &lt_url,
        &hook("other", json!({"cmd": "sleep 300", "timeout": "500ms"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = lt.metrics_text();
        if m.contains(r#"serin_loadtester_commands_failed_total{kind="cmd"} 2"#) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lt.running(), vec!["podinfo.test sleep 300".to_string()]);

    // What is refused is still refused at once, and bash still waits, as in Flagger.
    let (status, text) = post(&lt_url, &hook("test", json!({"cmd": "ls | wc -l"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let (status, text) = post(
        &lt_url,
        &hook("test", json!({"type": "bash", "cmd": "echo out; exit 3"})),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
    assert!(text.contains("out"), "{text}");
    let (lt_url, _lt) = start_loadtester(Config {
        background_cmd: true,
        ..Config::default()
    })
    .await;
    let (status, _) = post(&lt_url, &hook("test", json!({"cmd": "sleep 300"}))).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "bash is still off by default"
    );
}
