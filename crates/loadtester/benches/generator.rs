//! Benchmark: requests per second of the built-in hey against `wrk` (Debian package
//! `wrk`), both hitting the same in-process axum target on 127.0.0.1.
//!
//!     cargo bench -p serin-loadtester --bench generator -- [--duration 5s] [--connections 16] [--wrk-threads 1]
//!
//! Bounded: at most 60 s per tool, loopback only. Without wrk installed, only the
//! built-in generator is measured.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use prometheus_client::metrics::counter::Counter;
use serin_loadtester::HeyArgs;
use serin_loadtester::words::parse_go_duration;

const MAX_DURATION: Duration = Duration::from_secs(60);

struct Options {
    duration: Duration,
    connections: u64,
    wrk_threads: u64,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        duration: Duration::from_secs(5),
        connections: 16,
        wrk_threads: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--duration" => o.duration = parse_go_duration(&value()?)?,
            "--connections" => o.connections = value()?.parse()?,
            "--wrk-threads" => o.wrk_threads = value()?.parse()?,
            // cargo bench passes --bench to harness = false benches.
            "--bench" => {}
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

/// The target runs on its own runtime and threads, shared by both generators.
fn start_target() -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("target runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("target listener");
            let app = axum::Router::new().fallback(|| async { "hello, load\n" });
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok(addr)
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = options()?;
    let addr = start_target()?;
    let url = format!("http://{addr}/");
    let secs = o.duration.as_secs_f64();
    println!(
        "target {url}, {} connections, {secs}s per tool, {} CPUs",
        o.connections,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let cmd = format!("hey -z {secs}s -c {} {url}", o.connections);
    let args = HeyArgs::parse_command(&cmd)?;
    let report = serin_loadtester::hey::run(&args, &Counter::default()).await?;
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

    println!("== result");
    println!(
        "built-in hey: {:>10.0} req/s  (p50 {:.3} ms, p99 {:.3} ms, errors {})",
        report.requests_per_sec,
        report
            .latency_distribution
            .iter()
            .find(|(p, _)| *p == 50)
            .map_or(0.0, |(_, s)| s * 1000.0),
        report
            .latency_distribution
            .iter()
            .find(|(p, _)| *p == 99)
            .map_or(0.0, |(_, s)| s * 1000.0),
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
