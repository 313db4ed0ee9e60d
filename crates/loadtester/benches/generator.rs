//! Benchmark of the built-in hey, and the two programs `scripts/compare-loadgen.sh`
//! needs to compare it with the real hey and wrk on one target.
//!
//!     cargo bench -p serin-loadtester --bench generator -- [--duration 5s] [--connections 16] [--wrk-threads 1]
//!         the built-in hey, then wrk (Debian package `wrk`) when installed, against a
//!         target on 127.0.0.1 served by this process's own threads
//!     generator serve [--threads 2] [--max-secs 900]
//!         the target alone: a small hyper HTTP/1.1 server on 127.0.0.1 that answers
//!         every request with 12 bytes; prints its URL on the first line of stdout and
//!         serves until killed or --max-secs has passed
//!     generator hey [hey flags] URL
//!         the built-in hey on a command line, as `hey` would run it; prints hey's
//!         summary. Loopback URLs only
//!
//! Bounded: at most 60 s per tool in the comparison, loopback only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use serin_loadtester::HeyArgs;
use serin_loadtester::words::parse_go_duration;

const MAX_DURATION: Duration = Duration::from_secs(60);
const MAX_SERVE: Duration = Duration::from_secs(3600);
const BODY: &[u8] = b"hello, load\n";

fn main() -> anyhow::Result<()> {
    // cargo bench passes --bench to harness = false benches.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("hey") => hey(&args),
        _ => compare(&args),
    }
}

/// The target runs on its own runtime and threads.
fn start_target(threads: usize) -> anyhow::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("target")
        .enable_all()
        .build()?;
    let handle = std::thread::spawn(move || {
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("target listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = service_fn(|_req| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            BODY,
                        ))))
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    Ok((addr, handle))
}

fn serve(args: &[String]) -> anyhow::Result<()> {
    let mut threads = 2usize;
    let mut max = Duration::from_secs(900);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--threads" => threads = value()?.parse()?,
            "--max-secs" => max = Duration::from_secs(value()?.parse()?),
            other => bail!("unknown argument {other}"),
        }
    }
    if threads == 0 || threads > 64 || max.is_zero() || max > MAX_SERVE {
        bail!("--threads must be 1 to 64 and --max-secs 1 to 3600");
    }
    let (addr, _thread) = start_target(threads)?;
    println!("http://{addr}/");
    // Bounded: the caller stops it by pid; if it does not, it stops by itself.
    std::thread::sleep(max);
    Ok(())
}

/// hey's command line, run by the built-in hey on a runtime like the serin binary's.
fn hey(words: &[String]) -> anyhow::Result<()> {
    let args = HeyArgs::parse_words(words)?;
    let host = args.url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!(
            "the bench sends load to loopback addresses only, not {}",
            args.url
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(serin_loadtester::hey::run(&args, &Counter::default()))?;
    print!("\n{}", report.summary());
    Ok(())
}

struct Options {
    duration: Duration,
    connections: u64,
    wrk_threads: u64,
}

fn options(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        duration: Duration::from_secs(5),
        connections: 16,
        wrk_threads: 1,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--duration" => o.duration = parse_go_duration(value()?)?,
            "--connections" => o.connections = value()?.parse()?,
            "--wrk-threads" => o.wrk_threads = value()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    if o.duration.is_zero() || o.duration > MAX_DURATION {
        bail!("--duration must be between 1s and 60s");
    }
    if o.connections == 0 || o.connections > 1000 {
        bail!("--connections must be between 1 and 1000");
    }
    Ok(o)
}

fn run_wrk(o: &Options, url: &str) -> anyhow::Result<Option<(f64, String)>> {
    let out = match Command::new("wrk")
        .arg(format!("-t{}", o.wrk_threads.min(o.connections)))
        .arg(format!("-c{}", o.connections))
        .arg(format!("-d{}s", o.duration.as_secs().max(1)))
        .arg("--latency")
        .arg(url)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("cannot run wrk"),
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .context("no Requests/sec in wrk's output")?;
    Ok(Some((rps, text)))
}

fn compare(args: &[String]) -> anyhow::Result<()> {
    let o = options(args)?;
    let (addr, _target) = start_target(2)?;
    let url = format!("http://{addr}/");
    let secs = o.duration.as_secs_f64();
    println!(
        "target {url}, {} connections, {secs}s per tool, {} CPUs",
        o.connections,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let cmd = format!("hey -z {secs}s -c {} {url}", o.connections);
    let args = HeyArgs::parse_command(&cmd)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(serin_loadtester::hey::run(&args, &Counter::default()))?;
    println!("\n== built-in hey: {cmd}\n{}", report.summary());

    let wrk = run_wrk(&o, &url)?;
    if let Some((_, text)) = &wrk {
        println!(
            "== wrk -t{} -c{} -d{}s --latency {url}\n{text}",
            o.wrk_threads.min(o.connections),
            o.connections,
            o.duration.as_secs().max(1)
        );
    }

    let p = |pct: u8| {
        report
            .latency_distribution
            .iter()
            .find(|(q, _)| *q == pct)
            .map_or(0.0, |(_, s)| s * 1000.0)
    };
    println!("== result");
    println!(
        "built-in hey: {:>10.0} req/s  (p50 {:.3} ms, p99 {:.3} ms, errors {})",
        report.requests_per_sec,
        p(50),
        p(99),
        report.errors.values().sum::<u64>()
    );
    match wrk {
        Some((rps, _)) => {
            println!("wrk:          {rps:>10.0} req/s");
            println!(
                "built-in / wrk: {:.2}",
                report.requests_per_sec / rps.max(f64::MIN_POSITIVE)
            );
        }
        None => println!("wrk: not installed (apt-get install -y wrk), skipped"),
    }
    Ok(())
}
