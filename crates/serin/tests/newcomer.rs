//! What a newcomer types first: the README's render command on its own fixture (a
//! Canary alone, its target stood in), `-f/--filename` on every command that reads
//! manifests, the demo's last line, and `serin demo --print-manifests`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Every command here finishes in seconds; one that hangs is killed and fails.
const LIMIT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn seed_canary() -> PathBuf {
    repo().join("tests/fixtures/seeds/istio-guide/podinfo-canary.yaml")
}

/// Runs serin with `args` in `dir`, `stdin` on its standard input, within [`LIMIT`].
fn serin_in(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_serin"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serin runs");
    let mut input = child.stdin.take().expect("stdin");
    let text = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serin {args:?} did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

fn serin(args: &[&str]) -> Output {
    serin_in(&repo(), args, "")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn explain(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

fn yaml_stream(s: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Option<Value>>(s)
        .unwrap_or_else(|e| panic!("not a YAML stream ({e}):\n{s}"))
        .into_iter()
        .flatten()
        .collect()
}

// 1. render stands in a missing target, as simulate does, and says so.

/// The README's render command, found in the README itself, run from the repo root
/// exactly as written, prints the HTTPRoute the README shows.
#[test]
fn the_readmes_render_command_prints_the_readmes_http_route() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let at = readme
        .find("`serin render -f tests/fixtures/gateway-api/")
        .expect("the README shows its render command on the Gateway API fixture");
    let command = readme[at + 1..]
        .split('`')
        .next()
        .expect("a closing backquote");
    let yaml_at = at + readme[at..].find("```yaml\n").expect("then a YAML block") + 8;
    let shown = &readme[yaml_at..yaml_at + readme[yaml_at..].find("```").expect("block end")];
    let shown = yaml_stream(shown).remove(0);

    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let out = serin(&args);
    assert!(out.status.success(), "{command}: {}", explain(&out));
    let objects = yaml_stream(&text(&out.stdout));
    let route = objects
        .iter()
        .find(|o| o["kind"] == "HTTPRoute")
        .unwrap_or_else(|| panic!("no HTTPRoute: {}", explain(&out)));
    assert_eq!(route, &shown, "{command} prints what the README shows");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "serin render: using a stand-in deployment test/podinfo (podinfo 6.0.0 stand-in): the files do not define it"
        ),
        "{stderr}"
    );
}

/// A Canary alone renders on the stand-ins simulate uses: the same podinfo image and
/// port, one stderr line per stand-in; given its target, no stand-in and no line.
#[test]
fn render_stands_in_a_missing_target_like_simulate_and_says_so() {
    let canary = seed_canary();
    let canary = canary.to_str().expect("utf-8");
    let out = serin(&["render", "-f", canary]);
    assert!(out.status.success(), "{}", explain(&out));
    let objects = yaml_stream(&text(&out.stdout));
    let names: Vec<String> = objects
        .iter()
        .map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"]))
        .collect();
    for want in [
        "Deployment/\"podinfo-primary\"",
        "HorizontalPodAutoscaler/\"podinfo-primary\"",
        "VirtualService/\"podinfo\"",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    let primary = &objects[0];
    let container = &primary["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/stefanprodan/podinfo:6.0.0");
    assert_eq!(container["ports"][0]["containerPort"], 9898);
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "serin render: using a stand-in deployment test/podinfo (podinfo 6.0.0 stand-in): the files do not define it",
            "serin render: using a stand-in horizontalpodautoscaler test/podinfo (stand-in): the files do not define it",
        ]
    );

    // simulate names the same stand-ins, in the same words.
    let sim = serin(&[
        "simulate",
        "-f",
        canary,
        "--metric",
        "request-success-rate=99",
        "--metric",
        "request-duration=100",
    ]);
    let sim_err = text(&sim.stderr);
    for line in &lines {
        let note = line.strip_prefix("serin render: ").unwrap();
        assert!(sim_err.contains(&format!("simulate: {note}")), "{sim_err}");
    }

    // With its target and HPA in the input nothing is stood in.
    let podinfo = repo().join("crates/operator/tests/data/podinfo.yaml");
    let out = serin(&["render", "-f", podinfo.to_str().unwrap(), "-f", canary]);
    assert!(out.status.success(), "{}", explain(&out));
    assert!(out.stderr.is_empty(), "{}", explain(&out));
}

// 2. -f/--filename everywhere (and simulate's old --file).

#[test]
fn every_command_that_reads_manifests_takes_f_and_filename() {
    let canary = seed_canary();
    let canary = canary.to_str().expect("utf-8");
    let podinfo = repo().join("crates/operator/tests/data/podinfo.yaml");
    let podinfo = podinfo.to_str().expect("utf-8");
    let metrics = [
        "--metric",
        "request-success-rate=99",
        "--metric",
        "request-duration=100",
    ];
    for flag in ["-f", "--filename", "--file"] {
        let out = serin(&["validate", flag, canary]);
        assert!(out.status.success(), "validate {flag}: {}", explain(&out));
        assert!(text(&out.stdout).contains("1 checked, 0 errors"));

        // With the target in the input: this is about the flag, not the stand-ins.
        let out = serin(&["render", flag, podinfo, flag, canary]);
        assert!(out.status.success(), "render {flag}: {}", explain(&out));
        assert!(text(&out.stdout).contains("kind: VirtualService"));

        let mut args = vec!["simulate", flag, canary];
        args.extend(metrics);
        let out = serin(&args);
        assert!(out.status.success(), "simulate {flag}: {}", explain(&out));
        assert!(text(&out.stdout).contains("result: Succeeded after"));

        // query and alert test read the files before they reach out to anything.
        let out = serin(&[
            "query",
            flag,
            canary,
            "--canary",
            "nosuch",
            "--metric",
            "request-success-rate",
        ]);
        assert!(
            text(&out.stderr).contains("no Canary named nosuch in the given files"),
            "query {flag}: {}",
            explain(&out)
        );
        let out = serin(&["alert", "test", flag, canary, "--provider", "nosuch"]);
        assert!(
            text(&out.stderr).contains("no AlertProvider named \"nosuch\" in the files"),
            "alert test {flag}: {}",
            explain(&out)
        );
    }
}

// 3 and 4. The demo: its last line, and the manifests it runs.

/// `--print-manifests` prints the manifests the demo applies: a YAML stream that
/// `kubectl apply -f -` takes (every document has apiVersion, kind and a name),
/// `serin validate -f -` accepts, and that `serin simulate` runs with no stand-in.
#[test]
fn the_demo_prints_the_manifests_it_runs() {
    let out = serin(&["demo", "--print-manifests"]);
    assert!(out.status.success(), "{}", explain(&out));
    let printed = text(&out.stdout);
    assert_eq!(
        printed,
        include_str!("../../simulate/src/demo/podinfo.yaml"),
        "the very file the demo embeds and applies"
    );
    let docs = yaml_stream(&printed);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Canary"
        ]
    );
    for d in &docs {
        assert!(d["apiVersion"].is_string() && d["metadata"]["name"].is_string());
    }

    let validated = serin_in(&repo(), &["validate", "-f", "-"], &printed);
    assert!(validated.status.success(), "{}", explain(&validated));
    assert!(
        text(&validated.stdout).contains("4 documents in 1 file: 1 checked, 0 errors, 0 warnings"),
        "{}",
        explain(&validated)
    );

    // What the demo shows comes from these manifests: the image podinfo starts at,
    // and a canary that runs to completion on them with nothing stood in.
    let image = docs[1]["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    let demo = serin(&["demo", "--speed", "1000000", "--color", "never"]);
    assert!(
        text(&demo.stdout).contains(&format!("1. A new version: {image} → ")),
        "{}",
        explain(&demo)
    );
    let sim = serin_in(
        &repo(),
        &[
            "simulate",
            "-f",
            "-",
            "--metric",
            "request-success-rate=99.92",
            "--metric",
            "request-duration=312",
        ],
        &printed,
    );
    assert!(sim.status.success(), "{}", explain(&sim));
    assert!(!text(&sim.stderr).contains("stand-in"), "{}", explain(&sim));
}

/// The last line says the faulty version was rolled back and that Failed is the
/// canary's phase, not the rollback's outcome.
#[test]
fn the_demos_last_line_says_the_canary_was_rolled_back() {
    let out = serin(&["demo", "--speed", "1000000", "--color", "never"]);
    assert!(out.status.success(), "{}", explain(&out));
    let stdout = text(&out.stdout);
    let result = stdout
        .lines()
        .find(|l| l.starts_with("result: "))
        .unwrap_or_else(|| panic!("no result line in\n{stdout}"));
    assert!(
        result.starts_with(
            "result: the new version promoted (canary phase Succeeded), the faulty one rolled back (canary phase Failed), "
        ) && result.ends_with(" of rollout time"),
        "{result}"
    );
    assert!(!result.contains("rollback Failed"), "{result}");
}
