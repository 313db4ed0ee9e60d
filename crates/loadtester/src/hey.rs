//! The built-in `hey`: parses a hey command line and runs it in process, so webhooks
//! written for Flagger's load tester (`hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/`)
//! need no hey binary. Semantics follow rakyll/hey: `-c` workers each send requests in a
//! loop, `-q` limits each worker's rate (so the total rate is `q * c`), `-z` runs for a
//! duration and then ignores `-n`, otherwise `-n` requests are shared by the workers.

use base64::Engine as _;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use crate::words::{WordsError, parse_go_duration, split};

const HEY_USER_AGENT: &str = "hey/0.0.1";
/// Like hey, latencies are kept for at most this many requests per run; counts and
/// averages still cover every request.
pub(crate) const MAX_SAMPLES: usize = 1_000_000;
/// A bound on workers so that a typo (`-c 1000000`) cannot exhaust the load tester.
const MAX_WORKERS: u64 = 10_000;
/// hey's `-t 0` means no timeout; a day is as good as forever for a webhook.
pub(crate) const NO_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeyError {
    #[error(transparent)]
    Words(#[from] WordsError),
    #[error("not a hey command: it starts with {0:?}")]
    NotHey(String),
    #[error("hey flag -{0} needs a value")]
    MissingValue(String),
    #[error("unknown hey flag -{0}")]
    UnknownFlag(String),
    #[error("hey flag -{flag} is not supported by the built-in hey: {why}")]
    Unsupported { flag: String, why: &'static str },
    #[error("invalid value {value:?} for hey flag -{flag}: {why}")]
    InvalidValue {
        flag: String,
        value: String,
        why: String,
    },
    #[error("hey needs a URL as its last argument")]
    MissingUrl,
    #[error("hey takes one URL, got more arguments: {0:?}")]
    ExtraArguments(Vec<String>),
    #[error("invalid URL {url:?}: {why}")]
    InvalidUrl { url: String, why: String },
    #[error("{0}")]
    Invalid(&'static str),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("cannot run the load test: {0}")]
    Runtime(String),
}

/// A parsed hey command line.
#[derive(Debug, Clone)]
pub struct HeyArgs {
    pub url: Url,
    /// `-n`: total requests when no duration is given.
    pub requests: u64,
    /// `-c`: concurrent workers.
    pub workers: u64,
    /// `-q`: requests per second per worker; `None` is unlimited.
    pub rate_per_worker: Option<f64>,
    /// `-z`: run for this long; overrides `-n`.
    pub duration: Option<Duration>,
    pub method: Method,
    /// Every header sent (Content-Type, User-Agent, -H, -A, -a, -host,...).
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `-t` seconds; `None` is no timeout (`-t 0`).
    pub timeout: Option<Duration>,
    pub disable_keepalive: bool,
    pub proxy: Option<String>,
    /// `-cpus`: at most this many threads run the workers (hey's GOMAXPROCS, capped at
    /// the machine's CPUs); `None` is one per CPU.
    pub cpus: Option<usize>,
}

fn is_hey_program(word: &str) -> bool {
    word.rsplit('/').next() == Some("hey")
}

/// Whether a command line is a hey invocation (its first word is `hey` or a path to it).
pub fn is_hey_command(words: &[String]) -> bool {
    words.first().is_some_and(|w| is_hey_program(w))
}

impl HeyArgs {
    /// Parses a full command line, `hey [flags] URL`.
    pub fn parse_command(line: &str) -> Result<Self, HeyError> {
        let words = split(line)?;
        Self::parse_words(&words)
    }

    /// Parses already split words; the first is the program name.
    pub fn parse_words(words: &[String]) -> Result<Self, HeyError> {
        let Some((program, args)) = words.split_first() else {
            return Err(HeyError::Words(WordsError::Empty));
        };
        if !is_hey_program(program) {
            return Err(HeyError::NotHey(program.clone()));
        }
        let mut n: u64 = 200;
        let mut c: u64 = 50;
        let mut q: f64 = 0.0;
        let mut z: Option<Duration> = None;
        let mut t: u64 = 20;
        let mut method = "GET".to_string();
        let mut extra_headers: Vec<String> = Vec::new();
        let mut body: Option<String> = None;
        let mut content_type = "text/html".to_string();
        let mut accept: Option<String> = None;
        let mut auth: Option<String> = None;
        let mut host: Option<String> = None;
        let mut user_agent: Option<String> = None;
        let mut disable_keepalive = false;
        let mut proxy: Option<String> = None;
        let mut cpus: Option<usize> = None;
        let mut positional: Vec<String> = Vec::new();

        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if arg == "--" {
                positional.extend(it.by_ref().cloned());
                break;
            }
            let Some(flag) = arg
                .strip_prefix("--")
                .or_else(|| arg.strip_prefix('-'))
                .filter(|f| !f.is_empty())
            else {
                positional.push(arg.clone());
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (flag.to_string(), None),
            };
            let invalid = |value: &str, why: String| HeyError::InvalidValue {
                flag: name.clone(),
                value: value.to_string(),
                why,
            };
            match name.as_str() {
                "disable-keepalive" | "disable-compression" | "disable-redirects" | "h2" => {
                    let on = match inline.as_deref() {
                        None => true,
                        Some(v) => crate::words::parse_go_bool(v)
                            .ok_or_else(|| invalid(v, "expected true or false".into()))?,
                    };
                    match name.as_str() {
                        "disable-keepalive" => disable_keepalive = on,
                        // The client never asks for compressed responses.
                        "disable-compression" => {}
                        "disable-redirects" if on => {
                            return Err(HeyError::Unsupported {
                                flag: name,
                                why: "redirects are always followed",
                            });
                        }
                        "h2" if on => {
                            return Err(HeyError::Unsupported {
                                flag: name,
                                why: "requests are sent over HTTP/1.1",
                            });
                        }
                        _ => {}
                    }
                    continue;
                }
                _ => {}
            }
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| HeyError::MissingValue(name.clone()))?,
            };
            match name.as_str() {
                "n" => n = value.parse().map_err(|e| invalid(&value, format!("{e}")))?,
                "c" => c = value.parse().map_err(|e| invalid(&value, format!("{e}")))?,
                "q" => {
                    q = value.parse().map_err(|e| invalid(&value, format!("{e}")))?;
                    if !q.is_finite() || q < 0.0 {
                        return Err(invalid(&value, "expected a rate of 0 or more".into()));
                    }
                }
                "z" => {
                    let d =
                        parse_go_duration(&value).map_err(|e| invalid(&value, e.to_string()))?;
                    z = (!d.is_zero()).then_some(d);
                }
                "t" => t = value.parse().map_err(|e| invalid(&value, format!("{e}")))?,
                "m" => method = value.to_ascii_uppercase(),
                "H" => extra_headers.push(value),
                "d" => body = Some(value),
                "T" => content_type = value,
                "A" => accept = Some(value),
                "a" => auth = Some(value),
                "host" => host = Some(value),
                "U" => user_agent = Some(value),
                "x" => proxy = Some(value),
                "cpus" => {
                    // As GOMAXPROCS: 0 leaves the default, one thread per CPU.
                    let n = value
                        .parse::<u32>()
                        .map_err(|e| invalid(&value, format!("{e}")))?;
                    cpus = (n > 0).then_some(n as usize);
                }
                "o" if value.is_empty() => {}
                "o" => {
                    return Err(HeyError::Unsupported {
                        flag: name,
                        why: "the summary is always written to the log",
                    });
                }
                "D" => {
                    return Err(HeyError::Unsupported {
                        flag: name,
                        why: "reading files from the load tester is not allowed, pass the body with -d",
                    });
                }
                "h" => {
                    return Err(HeyError::Unsupported {
                        flag: name,
                        why: "it is deprecated in hey, use -H",
                    });
                }
                _ => return Err(HeyError::UnknownFlag(name)),
            }
        }

        let url_text = match positional.as_slice() {
            [] => return Err(HeyError::MissingUrl),
            [url] => url.clone(),
            [_, rest @ ..] => return Err(HeyError::ExtraArguments(rest.to_vec())),
        };
        let url = Url::parse(&url_text).map_err(|e| HeyError::InvalidUrl {
            url: url_text.clone(),
            why: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HeyError::InvalidUrl {
                url: url_text,
                why: "only http and https are supported".into(),
            });
        }

        if c == 0 {
            return Err(HeyError::Invalid("-c cannot be smaller than 1"));
        }
        if c > MAX_WORKERS {
            return Err(HeyError::Invalid("-c cannot be larger than 10000"));
        }
        if z.is_none() {
            if n == 0 {
                return Err(HeyError::Invalid("-n cannot be smaller than 1"));
            }
            if n < c {
                return Err(HeyError::Invalid("-n cannot be less than -c"));
            }
        }
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| HeyError::InvalidValue {
            flag: "m".into(),
            value: method.clone(),
            why: e.to_string(),
        })?;

        let mut headers = HeaderMap::new();
        let set = |headers: &mut HeaderMap, flag: &str, name: &str, value: &str| {
            let invalid = |why: String| HeyError::InvalidValue {
                flag: flag.to_string(),
                value: value.to_string(),
                why,
            };
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| invalid(format!("bad header name: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| invalid(format!("bad header value: {e}")))?;
            headers.insert(name, value);
            Ok::<_, HeyError>(())
        };
        set(&mut headers, "T", "content-type", &content_type)?;
        for h in &extra_headers {
            let parsed = h.split_once(':').and_then(|(name, value)| {
                let name = name.trim_end();
                let ok = !name.is_empty()
                    && name
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
                let value = value.trim();
                (ok && !value.is_empty()).then_some((name, value))
            });
            let Some((name, value)) = parsed else {
                return Err(HeyError::InvalidValue {
                    flag: "H".into(),
                    value: h.clone(),
                    why: "expected \"Name: value\"".into(),
                });
            };
            set(&mut headers, "H", name, value)?;
        }
        if let Some(a) = &accept {
            set(&mut headers, "A", "accept", a)?;
        }
        if let Some(a) = &auth {
            let Some((user, pass)) = a
                .split_once(':')
                .filter(|(u, p)| !u.is_empty() && !p.is_empty())
            else {
                return Err(HeyError::InvalidValue {
                    flag: "a".into(),
                    value: "(hidden)".into(),
                    why: "expected username:password".into(),
                });
            };
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            set(
                &mut headers,
                "a",
                "authorization",
                &format!("Basic {token}"),
            )?;
        }
        let ua = match (&user_agent, headers.get(header::USER_AGENT)) {
            (Some(u), _) => format!("{u} {HEY_USER_AGENT}"),
            (None, Some(existing)) => {
                format!("{} {HEY_USER_AGENT}", existing.to_str().unwrap_or_default())
            }
            (None, None) => HEY_USER_AGENT.to_string(),
        };
        set(&mut headers, "U", "user-agent", &ua)?;
        if let Some(h) = &host {
            set(&mut headers, "host", "host", h)?;
        }
        if disable_keepalive {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }

        Ok(HeyArgs {
            url,
            requests: n,
            workers: c,
            rate_per_worker: (q > 0.0).then_some(q),
            duration: z,
            method,
            headers,
            body: Bytes::from(body.unwrap_or_default()),
            timeout: (t > 0).then(|| Duration::from_secs(t)),
            disable_keepalive,
            proxy,
            cpus,
        })
    }
}

/// What a run measured, the figures hey prints.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Wall time of the whole run.
    pub total_secs: f64,
    /// Requests sent, answered or not.
    pub requests: u64,
    /// Requests that got a response (any status).
    pub responses: u64,
    pub requests_per_sec: f64,
    pub fastest_secs: f64,
    pub slowest_secs: f64,
    pub average_secs: f64,
    /// Response bytes received.
    pub size_total_bytes: u64,
    /// (percentage, seconds) for 10, 25, 50, 75, 90, 95, 99.
    pub latency_distribution: Vec<(u8, f64)>,
    /// (upper bound in seconds, responses) over ten equal buckets fastest..slowest.
    pub histogram: Vec<(f64, u64)>,
    pub status_codes: BTreeMap<u16, u64>,
    /// Error text to how many requests failed with it.
    pub errors: BTreeMap<String, u64>,
}

impl Report {
    /// The report in hey's summary layout, for `logCmdOutput: "true"` and the bench.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Summary:");
        let _ = writeln!(s, "  Total:\t{:.4} secs", self.total_secs);
        let _ = writeln!(s, "  Slowest:\t{:.4} secs", self.slowest_secs);
        let _ = writeln!(s, "  Fastest:\t{:.4} secs", self.fastest_secs);
        let _ = writeln!(s, "  Average:\t{:.4} secs", self.average_secs);
        let _ = writeln!(s, "  Requests/sec:\t{:.4}", self.requests_per_sec);
        if self.size_total_bytes > 0 && self.responses > 0 {
            let _ = writeln!(s, "  Total data:\t{} bytes", self.size_total_bytes);
            let _ = writeln!(
                s,
                "  Size/request:\t{} bytes",
                self.size_total_bytes / self.responses
            );
        }
        let _ = writeln!(s, "\nResponse time histogram:");
        let max = self.histogram.iter().map(|(_, c)| *c).max().unwrap_or(0);
        for (mark, count) in &self.histogram {
            let bar = (count * 40 + max / 2).checked_div(max).unwrap_or(0) as usize;
            let _ = writeln!(s, "  {mark:.3} [{count}]\t|{}", "■".repeat(bar));
        }
        let _ = writeln!(s, "\nLatency distribution:");
        for (p, secs) in &self.latency_distribution {
            let _ = writeln!(s, "  {p}% in {secs:.4} secs");
        }
        let _ = writeln!(s, "\nStatus code distribution:");
        for (code, n) in &self.status_codes {
            let _ = writeln!(s, "  [{code}]\t{n} responses");
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "\nError distribution:");
            for (e, n) in &self.errors {
                let _ = writeln!(s, "  [{n}]\t{e}");
            }
        }
        s
    }
}

#[derive(Default)]
pub(crate) struct WorkerStats {
    pub(crate) latencies: Vec<f64>,
    pub(crate) latency_sum: f64,
    pub(crate) requests: u64,
    pub(crate) responses: u64,
    pub(crate) bytes: u64,
    pub(crate) status_codes: BTreeMap<u16, u64>,
    pub(crate) errors: BTreeMap<String, u64>,
}

impl WorkerStats {
    pub(crate) fn merge(&mut self, other: WorkerStats) {
        self.latencies.extend(other.latencies);
        self.latency_sum += other.latency_sum;
        self.requests += other.requests;
        self.responses += other.responses;
        self.bytes += other.bytes;
        for (k, v) in other.status_codes {
            *self.status_codes.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

/// Runs a parsed hey command against its URL and returns the report.
/// `sent` counts every request as it is sent (the load tester's metric; during an
/// unlimited run it is added to in batches, at least every 50 ms).
pub async fn run(args: &HeyArgs, sent: &Counter) -> Result<Report, HeyError> {
    crate::generator::run(args, sent).await
}

pub(crate) fn build_report(mut stats: WorkerStats, total_secs: f64) -> Report {
    stats.latencies.sort_by(f64::total_cmp);
    let lats = &stats.latencies;
    let fastest = lats.first().copied().unwrap_or(0.0);
    let slowest = lats.last().copied().unwrap_or(0.0);
    let latency_distribution = if lats.is_empty() {
        Vec::new()
    } else {
        [10u8, 25, 50, 75, 90, 95, 99]
            .iter()
            .map(|&p| {
                // Nearest rank: the smallest latency at or above p% of the samples.
                let rank = (f64::from(p) / 100.0 * lats.len() as f64).ceil() as usize;
                (p, lats[rank.clamp(1, lats.len()) - 1])
            })
            .collect()
    };
    let histogram = if lats.is_empty() {
        Vec::new()
    } else {
        let width = (slowest - fastest) / 10.0;
        let mut buckets: Vec<(f64, u64)> = (0..=10)
            .map(|i| (fastest + width * f64::from(i), 0))
            .collect();
        let mut b = 0;
        for &l in lats {
            while b < 10 && l > buckets[b].0 {
                b += 1;
            }
            buckets[b].1 += 1;
        }
        buckets
    };
    Report {
        total_secs,
        requests: stats.requests,
        responses: stats.responses,
        requests_per_sec: if total_secs > 0.0 {
            stats.requests as f64 / total_secs
        } else {
            0.0
        },
        fastest_secs: fastest,
        slowest_secs: slowest,
        average_secs: if stats.responses > 0 {
            stats.latency_sum / stats.responses as f64
        } else {
            0.0
        },
        size_total_bytes: stats.bytes,
        latency_distribution,
        histogram,
        status_codes: stats.status_codes,
        errors: stats.errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<HeyArgs, HeyError> {
        HeyArgs::parse_command(line)
    }

    #[test]
    fn parses_the_seed_command_with_hey_defaults() {
        let a = parse("hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/").unwrap();
        assert_eq!(a.duration, Some(Duration::from_secs(60)));
        assert_eq!(a.rate_per_worker, Some(10.0));
        assert_eq!(a.workers, 2);
        assert_eq!(a.method, Method::GET);
        assert_eq!(a.timeout, Some(Duration::from_secs(20)));
        assert_eq!(a.headers["content-type"], "text/html");
        assert_eq!(a.headers["user-agent"], "hey/0.0.1");
        assert_eq!(a.url.as_str(), "http://podinfo-canary.test:9898/");

        let d = parse("/usr/local/bin/hey -z 3s -n 5 -c 1 http://x/").unwrap();
        assert_eq!(d.duration, Some(Duration::from_secs(3)), "-z overrides -n");
        let d = parse("/usr/local/bin/hey http://x/").unwrap();
        assert_eq!((d.requests, d.workers, d.duration), (200, 50, None));
    }

    #[test]
    fn parses_every_supported_flag() {
        let a = parse(
            "hey -n 30 -c=3 -m post -H 'X-A: 1' -H 'User-Agent: me' -d '{\"k\":1}' \
             -T application/json -t 0 -disable-keepalive -host example.com -A text/plain \
             -a user:pw -x http://proxy:3128 -cpus 2 --disable-compression https://h/p",
        )
        .unwrap();
        assert_eq!(a.requests, 30);
        assert_eq!(a.workers, 3);
        assert_eq!(a.method, Method::POST);
        assert_eq!(a.headers["x-a"], "1");
        assert_eq!(a.headers["user-agent"], "me hey/0.0.1");
        assert_eq!(a.headers["content-type"], "application/json");
        assert_eq!(a.headers["host"], "example.com");
        assert_eq!(a.headers["accept"], "text/plain");
        assert_eq!(a.headers["authorization"], "Basic dXNlcjpwdw==");
        assert_eq!(a.headers["connection"], "close");
        assert_eq!(a.body, Bytes::from_static(b"{\"k\":1}"));
        assert_eq!(a.timeout, None);
        assert!(a.disable_keepalive);
        assert_eq!(a.proxy.as_deref(), Some("http://proxy:3128"));
        assert_eq!(a.cpus, Some(2));
        assert_eq!(
            parse("hey -cpus 0 http://x/").unwrap().cpus,
            None,
            "GOMAXPROCS(0)"
        );
    }

    #[test]
    fn refuses_bad_command_lines_clearly() {
        let err = |l: &str| parse(l).unwrap_err().to_string();
        assert_eq!(err("hey"), "hey needs a URL as its last argument");
        assert_eq!(err("hey -n 1 -c 2 http://x/"), "-n cannot be less than -c");
        assert_eq!(
            err("hey -c 0 -z 1s http://x/"),
            "-c cannot be smaller than 1"
        );
        assert_eq!(err("hey -k http://x/"), "unknown hey flag -k");
        assert_eq!(err("hey http://x/ -z"), "hey flag -z needs a value");
        assert!(err("hey -z 1 http://x/").contains("a unit is missing"));
        assert!(err("hey -q -1 http://x/").contains("expected a rate"));
        assert!(err("hey -H nocolon http://x/").contains("expected \"Name: value\""));
        assert!(err("hey ftp://x/").contains("only http and https"));
        assert!(err("hey -D /etc/passwd http://x/").contains("not supported"));
        assert!(err("hey http://x/ http://y/").contains("one URL"));
        assert!(err("hey http://x/ | tee").contains("shell syntax"));
        assert_eq!(
            err("curl http://x/"),
            "not a hey command: it starts with \"curl\""
        );
    }

    #[test]
    fn report_percentiles_and_histogram_cover_every_sample() {
        let stats = WorkerStats {
            latencies: (1..=100).map(|i| f64::from(i) / 1000.0).collect(),
            latency_sum: (1..=100).map(|i| f64::from(i) / 1000.0).sum(),
            requests: 101,
            responses: 100,
            status_codes: BTreeMap::from([(200, 90), (503, 10)]),
            errors: BTreeMap::from([("connect".to_string(), 1)]),
            ..WorkerStats::default()
        };
        let r = build_report(stats, 2.0);
        assert_eq!(r.latency_distribution[2], (50, 0.050));
        assert_eq!(r.latency_distribution[6], (99, 0.099));
        assert_eq!(r.histogram.iter().map(|(_, c)| c).sum::<u64>(), 100);
        assert_eq!(r.requests_per_sec, 50.5);
        let text = r.summary();
        assert!(text.contains("Requests/sec:\t50.5000"), "{text}");
        assert!(text.contains("[503]\t10 responses"), "{text}");
        assert!(text.contains("99% in 0.0990 secs"), "{text}");
        assert!(text.contains("[1]\tconnect"), "{text}");
    }
}
