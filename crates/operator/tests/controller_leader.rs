//! Leader election on a Lease: one candidate holds it; another takes over only once
//! the holder stops renewing.

use std::time::Duration;

use serin_api::clock::Clock;
use serin_operator::leader::LeaderElection;
use serin_sandbox::{Sandbox, SandboxOptions};

#[tokio::test(start_paused = true)]
async fn one_replica_leads_and_another_takes_over_when_it_stops() {
    let sandbox = Sandbox::new(SandboxOptions::default());
    let client = sandbox.client();
    let clock = Clock::system();
    let a = LeaderElection::new(client.clone(), "default", "serin-leader", "a", clock);
    let b = LeaderElection::new(client.clone(), "default", "serin-leader", "b", clock);
    assert!(
        a.try_acquire().await.expect("api"),
        "the first candidate leads"
    );
    assert!(!b.try_acquire().await.expect("api"), "the second waits");
    let (renewal, lost) = a.clone().keep();
    // While a renews, b never gets the lease.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!b.try_acquire().await.expect("api"));
        assert!(*lost.borrow(), "a still leads");
    }
    renewal.abort();
    // a stopped (crash): b takes over once the lease expires, not before.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!b.try_acquire().await.expect("api"));
    tokio::time::timeout(Duration::from_secs(60), b.acquire())
        .await
        .expect("b leads after the lease expired");
    assert!(!a.try_acquire().await.expect("api"), "a lost the lease");
}
