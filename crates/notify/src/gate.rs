//! Gate links: a canary held by a confirm-* gate of serin's (or Flagger's) load
//! tester says in its alert which endpoint opens the gate.

/// The `/gate/open` endpoint beside a load tester's `/gate/check` URL, `None` for
/// any other webhook URL (which serin cannot open for the user).
pub fn gate_open_url(check_url: &str) -> Option<String> {
    let mut url = url::Url::parse(check_url).ok()?;
    let path = url.path().trim_end_matches('/');
    let base = path.strip_suffix("/gate/check")?;
    let open = format!("{base}/gate/open");
    url.set_path(&open);
    url.set_query(None);
    url.set_fragment(None);
    Some(url.to_string())
}

/// The command that opens the gate for one canary, as the load tester expects it.
pub fn gate_open_command(open_url: &str, name: &str, namespace: &str) -> String {
    let body = serde_json::json!({ "name": name, "namespace": namespace });
    format!("curl -d '{body}' {open_url}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_urls_map_to_open_urls() {
        assert_eq!(
            gate_open_url("http://flagger-loadtester.test/gate/check").as_deref(),
            Some("http://flagger-loadtester.test/gate/open")
        );
        assert_eq!(
            gate_open_url("http://loadtester.test:8080/prefix/gate/check/?x=1").as_deref(),
            Some("http://loadtester.test:8080/prefix/gate/open")
        );
    }

    #[test]
    fn other_urls_have_no_gate() {
        for url in [
            "http://flagger-loadtester.test/",
            "http://flagger-loadtester.test/gate/approve",
            "http://flagger-loadtester.test/gate/halt",
            "http://flagger-loadtester.test/rollback/check",
            "not a url",
        ] {
            assert_eq!(gate_open_url(url), None, "{url}");
        }
    }

    #[test]
    fn the_command_names_the_canary() {
        assert_eq!(
            gate_open_command("http://lt.test/gate/open", "podinfo", "test"),
            r#"curl -d '{"name":"podinfo","namespace":"test"}' http://lt.test/gate/open"#
        );
    }
}
