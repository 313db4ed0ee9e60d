use std::process::ExitCode;

use serin_api::load::read_files;
use serin_api::validate::{CHECKED_KINDS, Severity, validate_document};

/// Checks every Canary, MetricTemplate and AlertProvider in the files. Exit 0 when
/// there are no errors (warnings allowed), 1 on errors, 2 when a file cannot be read.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    manifests: super::Manifests,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let docs = match read_files(&args.manifests.files) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let (mut errors, mut warnings, mut checked) = (0, 0, 0);
    for doc in &docs {
        if doc.is_flagger() && CHECKED_KINDS.contains(&doc.kind()) {
            checked += 1;
        }
        let object = match doc.namespace() {
            Some(ns) => format!("{}/{}/{}", doc.kind(), ns, doc.name()),
            None => format!("{}/{}", doc.kind(), doc.name()),
        };
        for f in validate_document(doc) {
            let severity = match f.severity {
                Severity::Error => {
                    errors += 1;
                    "error"
                }
                Severity::Warning => {
                    warnings += 1;
                    "warning"
                }
            };
            let path = if f.path.is_empty() { "." } else { &f.path };
            println!(
                "{}: {object}: {path}: {severity}: {}",
                doc.source, f.message
            );
        }
    }
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    println!(
        "{} in {}: {} checked, {}, {}",
        plural(docs.len(), "document"),
        plural(args.manifests.files.len(), "file"),
        checked,
        plural(errors, "error"),
        plural(warnings, "warning")
    );
    Ok(if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
