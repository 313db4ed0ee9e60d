//! How the built-in hey sends its requests, as fast as the machine lets it.
//!
//! - The workers run on threads of their own, as many as the machine has CPUs (or
//!   `-cpus`) and never more than `-c`, each thread a single-threaded tokio runtime with
//!   its own epoll, like wrk's thread-per-core event loops: a worker's connection, its
//!   timer and its task stay on one core, nothing is stolen or woken across threads,
//!   and a load test does not compete with the service's own runtime. A thread's
//!   workers share nothing with other threads' until the run is over: each keeps its
//!   own statistics and its own copy of the request, and the `sent` counter is added to
//!   in batches (at least every [`FLUSH_EVERY`], and at every request under `-q`).
//! - A plain `http://` URL without a proxy (a canary's service, the usual case) goes
//!   through [`crate::http1`]: each worker owns its keep-alive connection and writes
//!   the same request bytes, serialized once, for every send, so a request costs two
//!   system calls and no allocation: no pool, no channels to a connection task, no
//!   URL parsing, no header map per request or answer. Everything else (https, `-x`
//!   proxies, a URL with user:password@, framing headers given with -H) and the hops of
//!   a redirect go through serin's reqwest client, one per thread, as before.
//!
//! What the user sees does not change: the same headers reach the target as through
//! reqwest (`accept: */*`, `host`), redirects are followed, errors read the same.

use std::net::IpAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::time::{MissedTickBehavior, Sleep};

use crate::hey::{HeyArgs, HeyError, MAX_SAMPLES, NO_TIMEOUT, Report, WorkerStats, build_report};
use crate::http1;

/// How stale the `sent` counter may be during an unlimited run.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// Runs a parsed hey command and returns the report; see [`crate::hey::run`].
pub(crate) async fn run(args: &HeyArgs, sent: &Counter) -> Result<Report, HeyError> {
    let direct = Direct::for_args(args);
    let threads = thread_count(args);

    // One client per thread, built before the clock starts.
    let clients = (0..threads)
        .map(|_| client(args))
        .collect::<Result<Vec<_>, _>>()?;

    let start = Instant::now();
    let stop_at = args.duration.map(|d| start + d);
    // Dropping `cancel` (the run's future dropped, e.g. on the webhook's timeout) ends
    // every thread's runtime and with it its workers and connections.
    let (cancel, cancelled) = watch::channel(());
    let mut results = Vec::with_capacity(threads);
    for (t, client) in clients.into_iter().enumerate() {
        let budgets = (t as u64..args.workers)
            .step_by(threads)
            .map(|i| {
                if stop_at.is_some() {
                    u64::MAX
                } else {
                    args.requests / args.workers + u64::from(i < args.requests % args.workers)
                }
            })
            .collect();
        let job = ThreadJob {
            shared: Shared {
                args: args.clone(),
                client,
                sent: sent.clone(),
                start,
                stop_at,
                max_samples: MAX_SAMPLES / args.workers.max(1) as usize,
            },
            direct: direct.as_ref().map(Direct::deep_copy),
            budgets,
            cancelled: cancelled.clone(),
        };
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("hey-{t}"))
            .spawn(move || {
                let _ = tx.send(job.run());
            })
            .map_err(|e| HeyError::Runtime(format!("cannot start a thread: {e}")))?;
        results.push(rx);
    }
    drop(cancelled);

    let mut all = WorkerStats::default();
    for rx in results {
        // A thread only ends by sending its stats; a panic would be a bug here.
        let Ok(stats) = rx.await else { continue };
        for s in stats? {
            all.merge(s);
        }
    }
    let total = start.elapsed().as_secs_f64();
    drop(cancel);
    Ok(build_report(all, total))
}

/// One thread per CPU, fewer with `-cpus` (hey's GOMAXPROCS; unlike Go's, it cannot
/// ask for more threads than CPUs, so a webhook cannot make the service start
/// thousands), and at most one per worker.
fn thread_count(args: &HeyArgs) -> usize {
    let machine = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpus = args
        .cpus
        .filter(|&c| c > 0)
        .map_or(machine, |c| c.min(machine));
    cpus.min(usize::try_from(args.workers).unwrap_or(usize::MAX))
        .max(1)
}

fn client(args: &HeyArgs) -> Result<reqwest::Client, HeyError> {
    serin_http_client::client_without_env_proxy(&serin_http_client::ClientOptions {
        timeout: args.timeout.unwrap_or(NO_TIMEOUT),
        // hey never verifies certificates: load tests hit in-cluster services.
        insecure_skip_verify: true,
        proxy: args.proxy.clone(),
    })
    .map_err(|e| HeyError::Client(e.to_string()))
}

/// What a thread's workers share, all on that thread.
struct Shared {
    args: HeyArgs,
    /// The thread's own reqwest client, so that its pooled connections live on the
    /// runtime that polls them.
    client: reqwest::Client,
    sent: Counter,
    start: Instant,
    stop_at: Option<Instant>,
    max_samples: usize,
}

struct ThreadJob {
    shared: Shared,
    direct: Option<Direct>,
    budgets: Vec<u64>,
    cancelled: watch::Receiver<()>,
}

impl ThreadJob {
    fn run(self) -> Result<Vec<WorkerStats>, HeyError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| HeyError::Runtime(format!("cannot start a runtime: {e}")))?;
        let ThreadJob {
            shared,
            direct,
            budgets,
            mut cancelled,
        } = self;
        Ok(rt.block_on(async move {
            let shared = Arc::new(shared);
            let mut workers = tokio::task::JoinSet::new();
            for budget in budgets {
                let direct = direct.as_ref().map(Direct::deep_copy);
                workers.spawn(worker(shared.clone(), direct, budget));
            }
            let collect = async {
                let mut all = Vec::new();
                while let Some(joined) = workers.join_next().await {
                    if let Ok(stats) = joined {
                        all.push(stats);
                    }
                }
                all
            };
            tokio::select! {
                all = collect => all,
                _ = cancelled.changed() => Vec::new(),
            }
        }))
    }
}

async fn worker(shared: Arc<Shared>, mut direct: Option<Direct>, budget: u64) -> WorkerStats {
    let args = &shared.args;
    let mut stats = WorkerStats::default();
    let start = tokio::time::Instant::from_std(shared.start);
    // Like hey, the first request waits one period. Ticks missed while the machine or
    // the target was slow are caught up, so a run sends q * c * z requests as asked; a
    // worker has one request in flight at most, so catching up never exceeds -c.
    let mut ticker = args.rate_per_worker.map(|q| {
        let period = Duration::from_secs_f64(1.0 / q);
        let mut t = tokio::time::interval_at(start + period, period);
        t.set_missed_tick_behavior(MissedTickBehavior::Burst);
        t
    });
    let stop = shared
        .stop_at
        .map_or(start + NO_TIMEOUT * 365, tokio::time::Instant::from_std);
    // One timer per worker, moved forward for each request (cheap: tokio only
    // re-registers it when it fires).
    let mut timer = match (&direct, args.timeout) {
        (Some(_), Some(t)) => Some((Box::pin(tokio::time::sleep(t)), t)),
        _ => None,
    };
    let mut unsent = 0u64;
    let mut flushed = shared.start;
    for _ in 0..budget {
        if let Some(t) = ticker.as_mut() {
            // As in hey, a tick due at or before the end of the run is still sent, so
            // `-z 2s -q 10` sends 20 requests per worker, not 19.
            let due = tokio::select! {
                biased;
                due = t.tick() => due,
                _ = tokio::time::sleep_until(stop) => break,
            };
            if due > stop {
                break;
            }
        }
        let began = Instant::now();
        if ticker.is_none() && shared.stop_at.is_some_and(|s| began >= s) {
            break;
        }
        stats.requests += 1;
        unsent += 1;
        if ticker.is_some() || began.duration_since(flushed) >= FLUSH_EVERY {
            shared.sent.inc_by(unsent);
            unsent = 0;
            flushed = began;
        }
        let outcome = match direct.as_mut() {
            Some(d) => match timer.as_mut() {
                Some((sleep, t)) => {
                    sleep
                        .as_mut()
                        .reset(tokio::time::Instant::from_std(began + *t));
                    d.send_within(&shared, sleep.as_mut()).await
                }
                None => d.send(&shared).await,
            },
            None => {
                let mut request = shared
                    .client
                    .request(args.method.clone(), args.url.clone())
                    .headers(args.headers.clone());
                if !args.body.is_empty() {
                    request = request.body(args.body.clone());
                }
                via_reqwest(request).await
            }
        };
        match outcome {
            Ok((status, len)) => {
                let secs = began.elapsed().as_secs_f64();
                stats.responses += 1;
                stats.latency_sum += secs;
                stats.bytes += len;
                if stats.latencies.len() < shared.max_samples {
                    stats.latencies.push(secs);
                }
                *stats.status_codes.entry(status).or_default() += 1;
            }
            Err(e) => *stats.errors.entry(e).or_default() += 1,
        }
    }
    shared.sent.inc_by(unsent);
    stats
}

/// Sends a request through reqwest and reads the whole response.
async fn via_reqwest(request: reqwest::RequestBuilder) -> Result<(u16, u64), String> {
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.bytes().await {
                Ok(b) => Ok((status, b.len() as u64)),
                Err(e) => Err(reqwest_error_text(&e)),
            }
        }
        Err(e) => Err(reqwest_error_text(&e)),
    }
}

/// A short, stable text for an error, so that errors group like hey's distribution.
fn reqwest_error_text(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "reading the response"
    } else {
        "request"
    };
    error_text(what, e, true)
}

/// `what: root cause`; with `skip_self`, `what` alone when the error has no cause.
fn error_text(what: &str, e: &(dyn std::error::Error + 'static), skip_self: bool) -> String {
    let mut root = e;
    while let Some(next) = root.source() {
        root = next;
    }
    if skip_self && std::ptr::addr_eq(root, e) {
        what.to_string()
    } else {
        format!("{what}: {root}")
    }
}

/// A plain `http://` target, reached without reqwest; see the module's documentation.
struct Direct {
    /// For a redirect's next hop.
    url: Url,
    /// The host to resolve, unless it is an address.
    host: String,
    ip: Option<IpAddr>,
    port: u16,
    method: Method,
    /// For a redirect's next hop: hey's headers and body.
    headers: HeaderMap,
    body: Bytes,
    /// The request as it goes on the wire: hey's headers, then `accept: */*` and
    /// `host` as reqwest adds them.
    request: http1::Request,
    conn: Option<http1::Connection<TcpStream>>,
}

impl Direct {
    fn for_args(args: &HeyArgs) -> Option<Direct> {
        let url = &args.url;
        let framed_by_user = args.headers.contains_key(header::CONTENT_LENGTH)
            || args.headers.contains_key(header::TRANSFER_ENCODING);
        if url.scheme() != "http"
            || args.proxy.as_deref().is_some_and(|p| !p.is_empty())
            || !url.username().is_empty()
            || url.password().is_some()
            // hyper's own rules for these; rare enough to leave to it.
            || framed_by_user
            || args.method == Method::CONNECT
        {
            return None;
        }
        let host = url.host_str()?.to_string();
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        let port = url.port_or_known_default()?;
        let mut target = url.path().to_string();
        if let Some(q) = url.query() {
            target.push('?');
            target.push_str(q);
        }
        let mut headers = args.headers.clone();
        if !headers.contains_key(header::ACCEPT) {
            headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        }
        if !headers.contains_key(header::HOST) {
            let authority = match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.clone(),
            };
            headers.insert(header::HOST, HeaderValue::from_str(&authority).ok()?);
        }
        let request = http1::Request::new(&args.method, &target, &headers, &args.body);
        Some(Direct {
            url: url.clone(),
            host,
            ip,
            port,
            method: args.method.clone(),
            headers: args.headers.clone(),
            body: args.body.clone(),
            request,
            conn: None,
        })
    }

    /// A copy for another worker, with its own request bytes (in its own cache lines)
    /// and no connection.
    fn deep_copy(&self) -> Direct {
        Direct {
            url: self.url.clone(),
            host: self.host.clone(),
            ip: self.ip,
            port: self.port,
            method: self.method.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
            request: self.request.clone(),
            conn: None,
        }
    }

    /// [`Direct::send`] within hey's `-t`: on timeout the connection is dropped.
    async fn send_within(
        &mut self,
        shared: &Shared,
        deadline: Pin<&mut Sleep>,
    ) -> Result<(u16, u64), String> {
        let outcome = {
            let send = pin!(self.send(shared));
            tokio::select! {
                biased;
                outcome = send => Some(outcome),
                _ = deadline => None,
            }
        };
        outcome.unwrap_or_else(|| {
            self.conn = None;
            Err("timeout".to_string())
        })
    }

    /// Sends one request on the worker's connection (opened first when there is none)
    /// and reads the whole answer.
    async fn send(&mut self, shared: &Shared) -> Result<(u16, u64), String> {
        // Bounded: as Go's transport does, a request that finds its kept-alive
        // connection closed by the server before any answer is sent once more on a new
        // one when it can be replayed or was not written.
        for attempt in 0..2 {
            if self.conn.is_none() {
                self.conn = Some(self.connect().await?);
            }
            let conn = self.conn.as_mut().expect("connected above");
            let reused = conn.served > 0;
            match conn.exchange(&self.request).await {
                Ok(r) => {
                    if !r.keep_alive {
                        self.conn = None;
                    }
                    return match r.location {
                        Some(location) => {
                            self.follow(shared, r.status, &location, r.body_len).await
                        }
                        None => Ok((r.status, r.body_len)),
                    };
                }
                Err(f) => {
                    self.conn = None;
                    let retry = attempt == 0
                        && reused
                        && !f.answered
                        && (self.request.replayable || !f.written);
                    if !retry {
                        let what = if f.in_body {
                            "reading the response"
                        } else {
                            "request"
                        };
                        return Err(format!("{what}: {}", f.cause));
                    }
                }
            }
        }
        unreachable!("the second attempt returns")
    }

    async fn connect(&self) -> Result<http1::Connection<TcpStream>, String> {
        let connect_error = |e: std::io::Error| error_text("connect", &e, false);
        let stream = match self.ip {
            Some(ip) => TcpStream::connect((ip, self.port)).await,
            None => {
                let mut last = None;
                let mut found = None;
                for addr in tokio::net::lookup_host((self.host.as_str(), self.port))
                    .await
                    .map_err(connect_error)?
                {
                    match TcpStream::connect(addr).await {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                found.ok_or_else(|| {
                    last.unwrap_or_else(|| std::io::Error::other("no address found"))
                })
            }
        }
        .map_err(connect_error)?;
        // As Go's and reqwest's dialers do.
        let _ = stream.set_nodelay(true);
        Ok(http1::Connection::new(stream))
    }

    /// Follows a redirect as reqwest would (the method and body rules of 301, 302,
    /// 303, 307 and 308, no credentials to another host, a Referer): the next hops go
    /// through reqwest, which follows any further redirect itself.
    async fn follow(
        &self,
        shared: &Shared,
        status: u16,
        location: &[u8],
        len: u64,
    ) -> Result<(u16, u64), String> {
        // A Location that is not a URL is not followed: the redirect is the answer.
        let Some(next) = std::str::from_utf8(location)
            .ok()
            .and_then(|l| self.url.join(l).ok())
        else {
            return Ok((status, len));
        };
        let mut method = self.method.clone();
        let mut headers = self.headers.clone();
        let mut body = Some(self.body.clone());
        let drop_payload = match status {
            301 | 302 => method == Method::POST,
            303 => true,
            _ => false,
        };
        if drop_payload {
            if method != Method::HEAD {
                method = Method::GET;
            }
            body = None;
            for h in [
                header::CONTENT_TYPE,
                header::CONTENT_LENGTH,
                header::CONTENT_ENCODING,
                header::TRANSFER_ENCODING,
            ] {
                headers.remove(h);
            }
        }
        let cross_host = next.host_str() != self.url.host_str()
            || next.port_or_known_default() != self.url.port_or_known_default()
            || next.scheme() != self.url.scheme();
        if cross_host {
            for h in [
                header::AUTHORIZATION,
                header::COOKIE,
                HeaderName::from_static("cookie2"),
                header::PROXY_AUTHORIZATION,
                header::WWW_AUTHENTICATE,
            ] {
                headers.remove(h);
            }
        }
        let mut referer = self.url.clone();
        referer.set_fragment(None);
        if let Ok(v) = HeaderValue::from_str(referer.as_str()) {
            headers.insert(header::REFERER, v);
        }
        let mut request = shared.client.request(method, next).headers(headers);
        if let Some(b) = body.filter(|b| !b.is_empty()) {
            request = request.body(b);
        }
        via_reqwest(request).await
    }
}
