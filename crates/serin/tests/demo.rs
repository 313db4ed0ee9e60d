//! `serin demo` runs the seeds' walkthrough with no cluster: a promotion, then a
//! rollback.

use std::process::Command;

#[test]
fn demo_promotes_then_rolls_back() {
    let out = Command::new(env!("CARGO_BIN_EXE_serin"))
        .args(["demo", "--speed", "1000000", "--color", "never"])
        .output()
        .expect("serin runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = [
        "Initialization done! podinfo.test",
        "virtualservice.networking.istio.io/podinfo",
        "New revision detected! Scaling up podinfo.test",
        "Advance podinfo.test canary weight 50",
        "primary  50% [██████████░░░░░░░░░░]  50% canary",
        "Promotion completed! Scaling down podinfo.test",
        "Halt podinfo.test advancement success rate 69.17% < 99%",
        "Rolling back podinfo.test failed checks threshold reached 5",
        "Canary failed! Scaling down podinfo.test",
        "result: the new version promoted (canary phase Succeeded), the faulty one rolled back (canary phase Failed)",
    ];
    let mut at = 0;
    for want in expected {
        let found = stdout[at..].find(want);
        assert!(found.is_some(), "missing (in order) {want:?} in:\n{stdout}");
        at += found.unwrap_or_default() + want.len();
    }
    assert!(!stdout.contains("\x1b["), "--color never prints no escapes");
}
