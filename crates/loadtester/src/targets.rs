//! Where `hey` may send load: the `--allow-target` list of host names, domains and
//! address ranges. Anyone who can create a Canary chooses the URL, so without a list
//! the load tester could be aimed at the cloud metadata service (169.254.169.254) or
//! any internal host.

use std::net::IpAddr;

use ipnet::IpNet;

/// The default list: every name under the cluster's service domain (`svc`,
/// `svc.cluster.local`) and the private address ranges (RFC 1918 and fd00::/8), where
/// pod and service ranges live. Loopback, link-local (169.254.169.254, the cloud
/// metadata service) and public addresses are not in it.
pub const DEFAULT_ALLOWED_TARGETS: [&str; 6] = [
    ".svc",
    ".svc.cluster.local",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fd00::/8",
];

/// One entry of the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedTarget {
    /// An address range (`10.0.0.0/8`) or one address (`127.0.0.1`).
    Range(IpNet),
    /// A domain, written with a leading dot: the names under it.
    Domain(String),
    /// One host name.
    Host(String),
}

impl AllowedTarget {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        if s.is_empty() {
            return Err("an empty --allow-target".into());
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Self::Range(net));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Range(IpNet::from(ip)));
        }
        if s.contains('/') {
            return Err(format!("--allow-target {s:?} is not an address range"));
        }
        Ok(match s.strip_prefix('.') {
            Some(domain) => Self::Domain(domain.to_string()),
            None => Self::Host(s),
        })
    }
}

fn in_ranges(ip: &IpAddr, allowed: &[AllowedTarget]) -> bool {
    allowed
        .iter()
        .any(|a| matches!(a, AllowedTarget::Range(net) if net.contains(ip)))
}

fn describe(allowed: &[AllowedTarget]) -> String {
    allowed
        .iter()
        .map(|a| match a {
            AllowedTarget::Range(n) => n.to_string(),
            AllowedTarget::Domain(d) => format!(".{d}"),
            AllowedTarget::Host(h) => h.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a host may not be the target of a load test, or `None` when it may. A name is
/// allowed when it matches a host or domain entry, or when every address it resolves
/// to is in an allowed range (so `podinfo-canary.test`, found through the pod's DNS
/// search path, is allowed by the default list); an address when it is in a range.
pub async fn refusal(host: &str, allowed: &[AllowedTarget]) -> Option<String> {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let why = match host.parse::<IpAddr>() {
        Ok(ip) if in_ranges(&ip, allowed) => return None,
        Ok(_) => "it is in none of the allowed ranges".to_string(),
        Err(_) => {
            let named = allowed.iter().any(|a| match a {
                AllowedTarget::Host(h) => *h == host,
                AllowedTarget::Domain(d) => host.ends_with(&format!(".{d}")),
                AllowedTarget::Range(_) => false,
            });
            if named {
                return None;
            }
            let lookup = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                tokio::net::lookup_host((host.as_str(), 0)),
            )
            .await;
            match lookup {
                Ok(Ok(addrs)) => {
                    let ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
                    if !ips.is_empty() && ips.iter().all(|ip| in_ranges(ip, allowed)) {
                        return None;
                    }
                    let ips: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
                    format!(
                        "it matches no allowed name and resolves to {}",
                        if ips.is_empty() {
                            "no address".to_string()
                        } else {
                            ips.join(", ")
                        }
                    )
                }
                Ok(Err(e)) => format!("it matches no allowed name and does not resolve: {e}"),
                Err(_) => "it matches no allowed name and does not resolve within 5s".into(),
            }
        }
    };
    Some(format!(
        "load test target {host} is not allowed: {why}, outside the --allow-target list ({}); start the load tester with --allow-target {host} to allow it",
        describe(allowed)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Vec<AllowedTarget> {
        entries
            .iter()
            .map(|e| AllowedTarget::parse(e).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn the_default_allows_cluster_services_and_private_ranges_only() {
        let d = list(&DEFAULT_ALLOWED_TARGETS);
        for ok in [
            "podinfo-canary.test.svc",
            "podinfo-canary.test.svc.cluster.local",
            "10.96.0.10",
            "192.168.1.20",
        ] {
            assert_eq!(refusal(ok, &d).await, None, "{ok}");
        }
        for bad in [
            "169.254.169.254",
            "127.0.0.1",
            "localhost",
            "[::1]",
            "8.8.8.8",
        ] {
            let why = refusal(bad, &d).await;
            assert!(why.is_some(), "{bad}");
        }
        let why = refusal("169.254.169.254", &d).await.unwrap();
        assert!(why.contains("--allow-target 169.254.169.254"), "{why}");
        let why = refusal("localhost", &d).await.unwrap();
        assert!(
            why.contains("resolves to 127.0.0.1") || why.contains("::1"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn ranges_hosts_and_domains() {
        let l = list(&[
            "10.96.0.0/12",
            "127.0.0.1",
            "api.example.com",
            ".internal.example",
        ]);
        assert_eq!(refusal("10.100.1.2", &l).await, None);
        assert_eq!(refusal("127.0.0.1", &l).await, None);
        assert_eq!(refusal("api.example.com", &l).await, None);
        assert_eq!(refusal("x.internal.example", &l).await, None);
        assert!(refusal("10.0.0.1", &l).await.is_some());
        assert!(AllowedTarget::parse("10.0.0.0/99").is_err());
    }
}
