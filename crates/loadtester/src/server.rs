//! The HTTP service: POST / runs a webhook's command, `/gate/*` and `/rollback/*` are
//! manual gates, `/healthz` and `/metrics` for the platform.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use tracing::{error, info, warn};

use crate::command::{self, Invocation};
use crate::gates::{GateKind, Gates};
use crate::hey::{self, HeyArgs};
use crate::metrics::Metrics;
use crate::payload::{self, WebhookPayload};
use crate::words::{self, parse_go_bool, parse_go_duration};

/// Flagger's load tester default for how long a command may run.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct Config {
    /// Allow `type: bash` and commands other than hey.
    pub enable_bash: bool,
    /// When not empty, a non-hey command must start with one of these, and `type: bash`
    /// is refused (a prefix cannot constrain a shell line).
    pub allow_cmd: Vec<String>,
    /// When set, every request needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// How long a command may run unless `metadata.timeout` says otherwise.
    pub command_timeout: Duration,
    /// Where hey may send load (`--allow-target`); see [`crate::targets`].
    pub allow_target: Vec<crate::targets::AllowedTarget>,
    /// Flagger's `-namespace-regexp`: when set, webhooks and gates only answer canaries
    /// whose namespace it matches (unanchored, as Go's `MatchString`); others get 403.
    pub namespace_regexp: Option<regex::Regex>,
    /// Flagger's answer to a `type: cmd` command: 202 at once, the command run in the
    /// background with only the log telling how it ended (`--background-cmd`).
    pub background_cmd: bool,
    /// The program `type: helm` and `type: helmv3` run (Flagger runs `helm` from PATH).
    pub helm: String,
    /// The program `type: kubectl` runs.
    pub kubectl: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enable_bash: false,
            allow_cmd: Vec::new(),
            token: None,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            allow_target: crate::targets::DEFAULT_ALLOWED_TARGETS
                .iter()
                .filter_map(|t| crate::targets::AllowedTarget::parse(t).ok())
                .collect(),
            namespace_regexp: None,
            background_cmd: false,
            helm: "helm".into(),
            kubectl: "kubectl".into(),
        }
    }
}

/// Compiles `--namespace-regexp` (Flagger's `-namespace-regexp`): empty means every
/// namespace, as in Flagger. The syntax is RE2's, which Go's regexp also uses.
pub fn namespace_regexp(text: &str) -> Result<Option<regex::Regex>, regex::Error> {
    if text.is_empty() {
        return Ok(None);
    }
    regex::Regex::new(text).map(Some)
}

/// The load tester: configuration, gates, running load tests and metrics. Cheap to clone.
#[derive(Clone)]
pub struct LoadTester {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    gates: Gates,
    metrics: Metrics,
    /// `name.namespace command` of every load test (and, with `--background-cmd`,
    /// command) running in the background.
    running: Mutex<HashSet<String>>,
}

/// Removes a background load test from the running set however its task ends.
struct RunningGuard {
    inner: Arc<Inner>,
    key: String,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        let mut running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        running.remove(&self.key);
    }
}

type Reply = (StatusCode, String);

fn reply(status: StatusCode, text: impl Into<String>) -> Reply {
    (status, text.into())
}

impl LoadTester {
    pub fn new(config: Config) -> Self {
        LoadTester {
            inner: Arc::new(Inner {
                config,
                gates: Gates::default(),
                metrics: Metrics::default(),
                running: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// The routes, with the token check when a token is configured.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", post(handle_task))
            .route("/healthz", any(|| async { "OK" }))
            .route("/metrics", get(handle_metrics))
            .route(
                "/gate/approve",
                any(|| async { (StatusCode::OK, "Approved") }),
            )
            .route(
                "/gate/halt",
                any(|| async { (StatusCode::FORBIDDEN, "Forbidden") }),
            )
            .route(
                "/gate/check",
                any(|s: State<LoadTester>, b: Bytes| gate_check(s, b, GateKind::Gate)),
            )
            .route(
                "/gate/open",
                any(|s: State<LoadTester>, b: Bytes| gate_set(s, b, GateKind::Gate, true)),
            )
            .route(
                "/gate/close",
                any(|s: State<LoadTester>, b: Bytes| gate_set(s, b, GateKind::Gate, false)),
            )
            .route(
                "/rollback/check",
                any(|s: State<LoadTester>, b: Bytes| gate_check(s, b, GateKind::Rollback)),
            )
            .route(
                "/rollback/open",
                any(|s: State<LoadTester>, b: Bytes| gate_set(s, b, GateKind::Rollback, true)),
            )
            .route(
                "/rollback/close",
                any(|s: State<LoadTester>, b: Bytes| gate_set(s, b, GateKind::Rollback, false)),
            )
            .layer(middleware::from_fn_with_state(self.clone(), require_token))
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Load tests (and background commands) running, as `name.namespace command`.
    pub fn running(&self) -> Vec<String> {
        let running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<String> = running.iter().cloned().collect();
        v.sort();
        v
    }

    /// The Prometheus text exposition of the load tester's metrics.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.encode()
    }

    fn start_load_test(
        &self,
        payload: &WebhookPayload,
        cmd: &str,
        args: HeyArgs,
        opts: RunOptions,
    ) -> Reply {
        let canary = payload.canary();
        if let Some(d) = args.duration
            && d > opts.timeout
        {
            // Refused rather than silently cut: the canary would be analysed under a
            // load that stops long before the duration the user asked for.
            return reply(
                StatusCode::BAD_REQUEST,
                format!(
                    "hey -z {d:?} is longer than the command timeout {:?} (metadata.timeout, or the load tester's --timeout): it would be cut short; shorten -z or raise the timeout",
                    opts.timeout
                ),
            );
        }
        let key = format!("{canary} {cmd}");
        {
            let mut running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
            if !running.insert(key.clone()) {
                info!(canary = %canary, cmd = %cmd, "command skipped, {cmd} is already running");
                return reply(StatusCode::OK, format!("already running: {cmd}"));
            }
        }
        let guard = RunningGuard {
            inner: self.inner.clone(),
            key,
        };
        self.inner.metrics.command_started("hey");
        info!(canary = %canary, cmd = %cmd, "load test starting {cmd}");
        let started = reply(StatusCode::OK, format!("load test started: {cmd}"));
        let cmd = cmd.to_string();
        tokio::spawn(async move {
            let metrics = &guard.inner.metrics;
            let run = hey::run(&args, &metrics.load_requests);
            match tokio::time::timeout(opts.timeout, run).await {
                Err(_) => {
                    metrics.command_failed("hey");
                    warn!(canary = %canary, cmd = %cmd, "load test stopped: it ran longer than the timeout {:?}", opts.timeout);
                }
                Ok(Err(e)) => {
                    metrics.command_failed("hey");
                    error!(canary = %canary, cmd = %cmd, "load test failed: {e}");
                }
                Ok(Ok(report)) => {
                    if report.requests > 0 && report.responses == 0 {
                        metrics.command_failed("hey");
                    }
                    let p = |pct: u8| {
                        report
                            .latency_distribution
                            .iter()
                            .find(|(q, _)| *q == pct)
                            .map_or(0.0, |(_, s)| *s)
                    };
                    let status_codes =
                        serde_json::to_string(&report.status_codes).unwrap_or_default();
                    let errors = serde_json::to_string(&report.errors).unwrap_or_default();
                    info!(
                        canary = %canary,
                        cmd = %cmd,
                        requests = report.requests,
                        responses = report.responses,
                        requests_per_sec = report.requests_per_sec,
                        total_secs = report.total_secs,
                        average_secs = report.average_secs,
                        fastest_secs = report.fastest_secs,
                        slowest_secs = report.slowest_secs,
                        p50_secs = p(50),
                        p90_secs = p(90),
                        p95_secs = p(95),
                        p99_secs = p(99),
                        status_codes = %status_codes,
                        errors = %errors,
                        "load test finished {cmd}: {} requests, {:.2} requests/sec, p99 {:.4}s, status codes {status_codes}",
                        report.requests, report.requests_per_sec, p(99),
                    );
                    if opts.log_output {
                        info!(canary = %canary, cmd = %cmd, "{}", report.summary());
                    }
                }
            }
            drop(guard);
        });
        started
    }

    fn command_allowed(&self, is_bash: bool, cmd: &str, program: &str) -> Result<(), Reply> {
        let config = &self.inner.config;
        if !config.enable_bash {
            let text = if is_bash {
                "bash commands are disabled: start the load tester with --enable-bash to run \
                 metadata.type: bash (add --allow-cmd PREFIX to allow only some commands)"
                    .to_string()
            } else {
                format!(
                    "only hey commands run by default, `{program}` is not hey: start the load \
                     tester with --enable-bash to run other commands (add --allow-cmd PREFIX \
                     to allow only some)"
                )
            };
            return Err(reply(StatusCode::FORBIDDEN, text));
        }
        if !config.allow_cmd.is_empty() && is_bash {
            // A prefix cannot constrain a shell line (`echo x; id`): with an allow-list
            // only commands run without a shell, where the prefix is the program.
            return Err(reply(
                StatusCode::FORBIDDEN,
                "type: bash is refused while --allow-cmd is set: a prefix cannot constrain \
                 a shell line; send the command as type: cmd (run without a shell) or start \
                 the load tester without --allow-cmd",
            ));
        }
        if !config.allow_cmd.is_empty()
            && !config.allow_cmd.iter().any(|p| cmd.starts_with(p.as_str()))
        {
            return Err(reply(
                StatusCode::FORBIDDEN,
                format!(
                    "command not allowed: it starts with none of the --allow-cmd prefixes {:?}; \
                     add a prefix that matches it with --allow-cmd to run it",
                    config.allow_cmd
                ),
            ));
        }
        Ok(())
    }

    async fn run_command(
        &self,
        payload: &WebhookPayload,
        cmd: &str,
        invocation: Invocation,
        kind: &'static str,
        opts: RunOptions,
    ) -> Reply {
        let canary = payload.canary();
        self.inner.metrics.command_started(kind);
        info!(canary = %canary, cmd = %cmd, "{kind} command {cmd}");
        match command::run(&invocation, opts.timeout).await {
            Ok(out) => {
                if opts.log_output {
                    info!(canary = %canary, cmd = %cmd, output = %out.output, "{}", out.output);
                }
                info!(canary = %canary, cmd = %cmd, "command finished {cmd}");
                let body = if opts.return_output {
                    out.output
                } else {
                    String::new()
                };
                reply(StatusCode::OK, body)
            }
            Err(e) => {
                self.inner.metrics.command_failed(kind);
                error!(canary = %canary, cmd = %cmd, "command failed {cmd}: {e}");
                reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("command {cmd} failed: {e}"),
                )
            }
        }
    }
}

impl LoadTester {
    /// Flagger's `helm`, `helmv3` and `kubectl` task types: the program with
    /// `metadata.cmd`'s words as its arguments, waited for. As in Flagger the words are
    /// split at whitespace only (Go's `strings.Fields`: quotes reach the program as
    /// written) and no shell is involved. Like any command other than hey they need
    /// `--enable-bash`, and with `--allow-cmd` the line `helm ARGS` / `kubectl ARGS`
    /// must start with one of the prefixes.
    async fn run_tool(
        &self,
        payload: &WebhookPayload,
        task: TaskType,
        cmd: &str,
        opts: RunOptions,
    ) -> Reply {
        let config = &self.inner.config;
        let (name, program) = match task {
            TaskType::Helm => ("helm", config.helm.as_str()),
            _ => ("kubectl", config.kubectl.as_str()),
        };
        let args: Vec<String> = cmd.split_whitespace().map(String::from).collect();
        let line = format!("{name} {}", args.join(" "));
        if let Err(r) = self.command_allowed(false, &line, name) {
            warn!(canary = %payload.canary(), cmd = %line, "command refused: {}", r.1);
            return r;
        }
        let mut words = Vec::with_capacity(args.len() + 1);
        words.push(program.to_string());
        words.extend(args);
        self.run_command(payload, &line, Invocation::Direct(words), name, opts)
            .await
    }

    /// `--background-cmd`: Flagger's answer to a `type: cmd` command, 202 at once while
    /// it runs in the background (with the same timeout, process group and output cap
    /// as a waited-for command; how it ended is only logged and counted). The same
    /// command for the same canary is not started again while it runs.
    fn start_background_command(
        &self,
        payload: &WebhookPayload,
        cmd: &str,
        invocation: Invocation,
        opts: RunOptions,
    ) -> Reply {
        let canary = payload.canary();
        let key = format!("{canary} {cmd}");
        {
            let mut running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
            if !running.insert(key.clone()) {
                info!(canary = %canary, cmd = %cmd, "command skipped, {cmd} is already running");
                return reply(StatusCode::ACCEPTED, format!("already running: {cmd}"));
            }
        }
        let guard = RunningGuard {
            inner: self.inner.clone(),
            key,
        };
        let lt = self.clone();
        let payload = payload.clone();
        let line = cmd.to_string();
        tokio::spawn(async move {
            let _guard = guard;
            lt.run_command(&payload, &line, invocation, "cmd", opts)
                .await;
        });
        reply(
            StatusCode::ACCEPTED,
            format!("command started in the background: {cmd}"),
        )
    }

    /// Flagger's `-namespace-regexp`: a canary whose namespace the expression does not
    /// match (anywhere in it, as Go's `MatchString`) is answered 403, before anything
    /// else is looked at.
    fn namespace_allowed(&self, payload: &WebhookPayload) -> Result<(), Reply> {
        match &self.inner.config.namespace_regexp {
            Some(re) if !re.is_match(&payload.namespace) => {
                warn!(
                    canary = %payload.canary(),
                    "refused: namespace {} does not match --namespace-regexp {}",
                    payload.namespace,
                    re.as_str()
                );
                Err(reply(
                    StatusCode::FORBIDDEN,
                    format!(
                        "Forbidden: namespace {:?} does not match the load tester's \
                         --namespace-regexp {:?}",
                        payload.namespace,
                        re.as_str()
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// `metadata.type`: what runs the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskType {
    /// The default: hey in process, any other program without a shell.
    Cmd,
    /// `bash -c`.
    Bash,
    /// Flagger's `helm` and `helmv3` (both run helm 3).
    Helm,
    /// Flagger's `kubectl`.
    Kubectl,
}

impl TaskType {
    fn parse(value: Option<&str>) -> Result<TaskType, Reply> {
        match value {
            None | Some("" | "cmd") => Ok(TaskType::Cmd),
            Some("bash") => Ok(TaskType::Bash),
            Some("helm" | "helmv3") => Ok(TaskType::Helm),
            Some("kubectl") => Ok(TaskType::Kubectl),
            Some(other) => Err(bad_request(format!(
                "unknown task type metadata.type {other:?}: the load tester runs cmd (the \
                 default), bash, helm, helmv3 and kubectl"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct RunOptions {
    timeout: Duration,
    log_output: bool,
    return_output: bool,
}

fn bad_request(text: impl Into<String>) -> Reply {
    reply(StatusCode::BAD_REQUEST, text)
}

fn bool_metadata(payload: &WebhookPayload, key: &str) -> Result<bool, Reply> {
    match payload.metadata.get(key) {
        None => Ok(false),
        Some(v) => parse_go_bool(v).ok_or_else(|| {
            bad_request(format!(
                "metadata.{key} must be \"true\" or \"false\", got {v:?}"
            ))
        }),
    }
}

async fn handle_task(State(lt): State<LoadTester>, body: Bytes) -> Reply {
    let payload = match payload::parse(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(format!("invalid webhook payload: {e}")),
    };
    if let Err(r) = lt.namespace_allowed(&payload) {
        return r;
    }
    if payload.metadata.is_empty() {
        return bad_request("metadata not found in payload: put the command in metadata.cmd");
    }
    let Some(cmd) = payload
        .metadata
        .get("cmd")
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
    else {
        return bad_request("metadata.cmd is missing: it holds the command to run");
    };
    let task = match TaskType::parse(payload.metadata.get("type").map(String::as_str)) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let timeout = match payload.metadata.get("timeout") {
        None => lt.inner.config.command_timeout,
        Some(t) => match parse_go_duration(t) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => return bad_request("metadata.timeout must be more than 0"),
            Err(e) => return bad_request(format!("metadata.timeout: {e}")),
        },
    };
    let opts = match (
        bool_metadata(&payload, "logCmdOutput"),
        bool_metadata(&payload, "returnCmdOutput"),
    ) {
        (Ok(log_output), Ok(return_output)) => RunOptions {
            timeout,
            log_output,
            return_output,
        },
        (Err(r), _) | (_, Err(r)) => return r,
    };

    match task {
        TaskType::Bash => {
            if let Err(r) = lt.command_allowed(true, cmd, "bash") {
                warn!(canary = %payload.canary(), cmd = %cmd, "command refused: {}", r.1);
                return r;
            }
            return lt
                .run_command(
                    &payload,
                    cmd,
                    Invocation::Bash(cmd.to_string()),
                    "bash",
                    opts,
                )
                .await;
        }
        TaskType::Helm | TaskType::Kubectl => return lt.run_tool(&payload, task, cmd, opts).await,
        TaskType::Cmd => {}
    }
    let words = match words::split(cmd) {
        Ok(w) => w,
        Err(e) => return bad_request(format!("cannot run metadata.cmd: {e}")),
    };
    let background = lt.inner.config.background_cmd;
    if hey::is_hey_command(&words) {
        return match HeyArgs::parse_words(&words) {
            Ok(args) => {
                let host = args.url.host_str().unwrap_or_default().to_string();
                if let Some(why) =
                    crate::targets::refusal(&host, &lt.inner.config.allow_target).await
                {
                    warn!(canary = %payload.canary(), cmd = %cmd, "load test refused: {why}");
                    return reply(StatusCode::FORBIDDEN, why);
                }
                let (status, text) = lt.start_load_test(&payload, cmd, args, opts);
                if background && status == StatusCode::OK {
                    // Flagger's answer to every `type: cmd` command.
                    (StatusCode::ACCEPTED, text)
                } else {
                    (status, text)
                }
            }
            Err(e) => bad_request(format!("invalid hey command: {e}")),
        };
    }
    if let Err(r) = lt.command_allowed(false, cmd, &words[0]) {
        warn!(canary = %payload.canary(), cmd = %cmd, "command refused: {}", r.1);
        return r;
    }
    if background {
        return lt.start_background_command(&payload, cmd, Invocation::Direct(words), opts);
    }
    lt.run_command(&payload, cmd, Invocation::Direct(words), "cmd", opts)
        .await
}

async fn handle_metrics(State(lt): State<LoadTester>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        lt.metrics_text(),
    )
        .into_response()
}

fn gate_payload(body: &[u8]) -> Result<WebhookPayload, Reply> {
    payload::parse(body).map_err(|e| bad_request(format!("invalid webhook payload: {e}")))
}

fn gate_label(kind: GateKind) -> &'static str {
    match kind {
        GateKind::Gate => "gate",
        GateKind::Rollback => "rollback",
    }
}

async fn gate_check(State(lt): State<LoadTester>, body: Bytes, kind: GateKind) -> Reply {
    let payload = match gate_payload(&body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(r) = lt.namespace_allowed(&payload) {
        return r;
    }
    let canary = payload.canary();
    let open = lt.inner.gates.is_open(kind, &canary);
    info!(canary = %canary, "{canary} {} check: approved {open}", gate_label(kind));
    if open {
        reply(StatusCode::OK, "Approved")
    } else {
        reply(StatusCode::FORBIDDEN, "Forbidden")
    }
}

async fn gate_set(State(lt): State<LoadTester>, body: Bytes, kind: GateKind, open: bool) -> Reply {
    let payload = match gate_payload(&body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(r) = lt.namespace_allowed(&payload) {
        return r;
    }
    let canary = payload.canary();
    lt.inner.gates.set(kind, &canary, open);
    let what = if open { "opened" } else { "closed" };
    info!(canary = %canary, "{canary} {} {what}", gate_label(kind));
    reply(
        StatusCode::ACCEPTED,
        format!("{} {what} for {canary}", gate_label(kind)),
    )
}

/// Compares without an early exit so the token cannot be guessed byte by byte from timings.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn require_token(State(lt): State<LoadTester>, request: Request, next: Next) -> Response {
    if let Some(expected) = &lt.inner.config.token {
        let ok = bearer_token(request.headers())
            .is_some_and(|given| same_secret(given.as_bytes(), expected.as_bytes()));
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "unauthorized: this load tester requires the header Authorization: Bearer <token>",
            )
                .into_response();
        }
    }
    next.run(request).await
}
