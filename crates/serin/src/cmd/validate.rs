use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use serin_api::load::{Chunk, DocumentChunks, LoadError};
use serin_api::validate::{CHECKED_KINDS, Severity, validate_owned_document};

/// Checks every Canary, MetricTemplate and AlertProvider in the files. Exit 0 when
/// there are no errors (warnings allowed), 1 on errors, 2 when a file cannot be read.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    manifests: super::Manifests,
}

/// Documents handed to the workers at a time: the memory `validate` holds is that
/// many documents' text and values, whatever the size of the input.
const BATCH: usize = 1024;

/// What the documents of one batch (or of a worker's share of one) gave.
#[derive(Default)]
struct Tally {
    /// The finding lines, as printed.
    out: String,
    documents: usize,
    checked: usize,
    errors: usize,
    warnings: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.out.push_str(&other.out);
        self.documents += other.documents;
        self.checked += other.checked;
        self.errors += other.errors;
        self.warnings += other.warnings;
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let files = args.manifests.files;
    // The checks are CPU work on documents read one batch at a time: the batch is
    // parsed and checked by a worker per core, and printed in input order.
    tokio::task::spawn_blocking(move || validate_files(&files)).await?
}

fn validate_files(files: &[std::path::PathBuf]) -> anyhow::Result<ExitCode> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut total = Tally::default();
    let mut stdout = std::io::stdout().lock();
    for path in files {
        let chunks = match DocumentChunks::open(path) {
            Ok(c) => c,
            Err(e) => return Ok(cannot_read(&mut stdout, e)),
        };
        let mut batch = Vec::with_capacity(BATCH);
        let mut chunks = chunks.peekable();
        while chunks.peek().is_some() {
            batch.clear();
            let mut read_error = None;
            for chunk in chunks.by_ref() {
                match chunk {
                    Ok(c) => batch.push(c),
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                }
                if batch.len() == BATCH {
                    break;
                }
            }
            let (mut tally, parse_error) = check_batch(&batch, workers);
            // Printed now, not kept: only the counts add up across batches.
            stdout.write_all(std::mem::take(&mut tally.out).as_bytes())?;
            total.add(tally);
            if let Some(e) = parse_error.or(read_error) {
                return Ok(cannot_read(&mut stdout, e));
            }
        }
    }
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    writeln!(
        stdout,
        "{} in {}: {} checked, {}, {}",
        plural(total.documents, "document"),
        plural(files.len(), "file"),
        total.checked,
        plural(total.errors, "error"),
        plural(total.warnings, "warning")
    )?;
    Ok(if total.errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A file that cannot be read or parsed: what came before it is printed, then the
/// error, and the exit code is 2.
fn cannot_read(stdout: &mut std::io::StdoutLock<'_>, e: LoadError) -> ExitCode {
    let _ = stdout.flush();
    eprintln!("{e}");
    ExitCode::from(2)
}

/// Checks a batch on up to `workers` threads, each a contiguous share, and joins their
/// output in input order. The first document that does not parse ends the batch: the
/// tally then holds the documents before it.
fn check_batch(batch: &[Chunk], workers: usize) -> (Tally, Option<LoadError>) {
    let share = batch.len().div_ceil(workers.max(1)).max(1);
    let results: Vec<(Tally, Option<LoadError>)> = if batch.len() <= share {
        vec![check_share(batch)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .chunks(share)
                .map(|part| scope.spawn(move || check_share(part)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a validate worker panicked"))
                .collect()
        })
    };
    let mut tally = Tally::default();
    for (part, error) in results {
        tally.add(part);
        if error.is_some() {
            return (tally, error);
        }
    }
    (tally, None)
}

fn check_share(chunks: &[Chunk]) -> (Tally, Option<LoadError>) {
    let mut tally = Tally::default();
    for chunk in chunks {
        let docs = match chunk.parse() {
            Ok(d) => d,
            Err(e) => return (tally, Some(e)),
        };
        for doc in docs {
            tally.documents += 1;
            if doc.is_flagger() && CHECKED_KINDS.contains(&doc.kind()) {
                tally.checked += 1;
            }
            let object = match doc.namespace() {
                Some(ns) => format!("{}/{}/{}", doc.kind(), ns, doc.name()),
                None => format!("{}/{}", doc.kind(), doc.name()),
            };
            for f in validate_owned_document(doc.value) {
                let severity = match f.severity {
                    Severity::Error => {
                        tally.errors += 1;
                        "error"
                    }
                    Severity::Warning => {
                        tally.warnings += 1;
                        "warning"
                    }
                };
                let path = if f.path.is_empty() { "." } else { &f.path };
                let _ = writeln!(
                    tally.out,
                    "{}: {object}: {path}: {severity}: {}",
                    doc.source, f.message
                );
            }
        }
    }
    (tally, None)
}
