//! The operator's own health on the real control plane: /readyz follows the real API
//! server through a restart, and SIGTERM hands the leader Lease to the other replica
//! before the old lease would have expired.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

const MINUTE: Duration = Duration::from_secs(60);

/// The API server's URL, as the operator's kubeconfig names it.
fn server_url() -> String {
    std::fs::read_to_string(&cluster().operator_kubeconfig)
        .expect("operator kubeconfig")
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("server: ")
                .map(|s| s.trim().to_string())
        })
        .expect("a server line")
        .trim_end_matches('/')
        .to_string()
}

fn readyz(op: &Operator) -> Option<(u16, String)> {
    http_get(op.port, "/readyz")
}

#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn readyz_is_503_while_the_api_server_is_down_and_200_once_it_is_back() {
    // The API server is the cluster's: no other test runs while it restarts.
    let _alone = alone();
    let dir = std::env::var("SERIN_REAL_CLUSTER_DIR")
        .expect("SERIN_REAL_CLUSTER_DIR (scripts/test.sh sets it)");
    let ns = Namespace::new("readyz");
    let n = ns.name.as_str();
    let op = Operator::start(n, &[]);
    wait_for("ready", MINUTE, || {
        readyz(&op).filter(|(code, _)| *code == 200).map(|_| ())
    });
    let server = server_url();
    let pid = std::fs::read_to_string(Path::new(&dir).join("kube-apiserver.pid"))
        .expect("the API server's pid file");
    let pid = pid.trim().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let killed = Instant::now();
    // Every answer of /readyz from the kill until the API server is back (the
    // supervisor starts it again on the same etcd data) and the operator is ready.
    let mut seen: Vec<(Duration, u16, String)> = Vec::new();
    let mut back = None;
    let deadline = killed + 3 * MINUTE;
    loop {
        assert!(
            Instant::now() < deadline,
            "not ready again within 3 minutes of the kill: {seen:#?}"
        );
        if let Some((code, body)) = readyz(&op)
            && seen.last().is_none_or(|l| l.1 != code || l.2 != body)
        {
            seen.push((killed.elapsed(), code, body));
        }
        if back.is_none()
            && std::fs::read_to_string(Path::new(&dir).join("kube-apiserver.pid"))
                .is_ok_and(|p| p.trim() != pid)
            && run_bounded(
                std::process::Command::new(KUBECTL)
                    .env("KUBECONFIG", &cluster().kubeconfig)
                    .args(["get", "--raw", "/readyz", "--request-timeout=2s"]),
                Duration::from_secs(10),
            )
            .ok()
        {
            back = Some(killed.elapsed());
        }
        // Done once the server is back and /readyz says 200 after a 503, or has said
        // 200 all along for 30 s after the server came back.
        let ready_again = seen.last().is_some_and(|l| l.1 == 200)
            && (seen.len() > 1 || back.is_some_and(|b| killed.elapsed() > b + MINUTE / 2));
        if back.is_some() && ready_again {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("API server back after {back:?}; /readyz answers: {seen:#?}");
    let unavailable: Vec<&(Duration, u16, String)> = seen.iter().filter(|s| s.1 == 503).collect();
    assert!(!unavailable.is_empty(), "/readyz never said 503: {seen:#?}");
    // Each 503 says why, each reason naming the server (unreachable, or a watch on it).
    for (_, _, body) in &unavailable {
        let reasons: Vec<&str> = body
            .trim_start_matches("not ready: ")
            .lines()
            .filter(|l| !l.is_empty())
            .collect();
        assert!(!reasons.is_empty(), "{body}");
        for r in reasons {
            assert!(
                r.starts_with(&format!("API server {server} "))
                    || (r.contains(" watch (") && r.contains(&format!("({server}/"))),
                "{r}"
            );
        }
    }
    // The failed requests' log lines named the server and the request.
    let logs = op.logs();
    let request = format!("GET {server}/apis/flagger.app/v1beta1/namespaces/{n}/canaries?watch");
    assert!(
        logs.contains(&request) || logs.contains(&format!("GET {server}/version")),
        "no log line names {request}:\n{}",
        tail(&logs, 30)
    );
    assert!(logs.contains("not ready: "), "{}", tail(&logs, 30));
}

/// A Lease time (`2026-12-02T07:00:00.123456Z`) in milliseconds since the epoch.
fn millis(v: &serde_json::Value) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn sigterm_hands_the_lease_to_the_other_replica_before_it_expires() {
    // The Lease `serin-leader` in serin-system is shared by every leader-election test.
    let _alone = alone();
    let ns = Namespace::new("release");
    let n = ns.name.as_str();
    let elect = [
        "--leader-elect",
        "--leader-election-namespace",
        OPERATOR_NAMESPACE,
    ];
    let a = Operator::start(n, &elect);
    let b = Operator::start(n, &elect);
    let lease = || get(OPERATOR_NAMESPACE, "lease/serin-leader");
    let holder_pid = |l: &serde_json::Value| {
        l["spec"]["holderIdentity"]
            .as_str()
            .and_then(|h| h.rsplit('_').next())
            .and_then(|p| p.parse::<u32>().ok())
    };
    let (a_pid, b_pid) = (a.proc.pid, b.proc.pid);
    let held = wait_for("a leader among the two", MINUTE, || {
        let l = lease()?;
        let pid = holder_pid(&l)?;
        (pid == a_pid || pid == b_pid).then_some(l)
    });
    let leader_is_a = holder_pid(&held) == Some(a_pid);
    // The old lease runs at least until this renewal plus its duration.
    let renewed = millis(&held["spec"]["renewTime"]).expect("renewTime");
    let duration = held["spec"]["leaseDurationSeconds"]
        .as_i64()
        .expect("leaseDurationSeconds")
        * 1000;
    let (mut leader, follower) = if leader_is_a { (a, b) } else { (b, a) };
    let follower_pid = follower.proc.pid;
    leader.proc.signal("TERM");
    let taken = wait_for("the other replica to hold the lease", MINUTE, || {
        let l = lease()?;
        (holder_pid(&l) == Some(follower_pid)).then_some(l)
    });
    let acquired = millis(&taken["spec"]["acquireTime"]).expect("acquireTime");
    assert!(
        acquired < renewed + duration,
        "taken over at {acquired} ms, not before the old lease expired at {} ms: {taken}",
        renewed + duration
    );
    assert_eq!(taken["spec"]["leaseDurationSeconds"], 15, "{taken}");
    wait_for("the new leader's report", MINUTE, || {
        follower
            .logs()
            .contains("became the leader as ")
            .then_some(())
    });
    wait_for("the old leader to exit", MINUTE, || {
        (!leader.proc.alive()).then_some(())
    });
    assert!(
        leader.logs().contains("released the leader lease as "),
        "{}",
        tail(&leader.logs(), 20)
    );
}
