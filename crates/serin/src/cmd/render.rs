use std::process::ExitCode;

use serin_api::load::read_files;
use serin_api::stand_in::stand_ins;
use serin_operator::labels::LabelOptions;
use serin_operator::render::{RenderOptions, render};
use serin_sandbox::{Sandbox, SandboxOptions};

/// Prints, as a YAML stream, every object serin would create for the Canaries in the
/// files, given the targets, HPAs, ConfigMaps and Secrets in the same files. A
/// target or HPA the files lack is stood in by podinfo's, as `serin simulate` does
/// ([`serin_api::stand_in`]), with a line on stderr naming it. The objects are made
/// by the operator's own code against an empty in-process API server, so they are
/// what a cluster would get. Exit 0 on success, 1 when a Canary cannot be rendered,
/// 2 when a file cannot be read.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    manifests: super::Manifests,
    /// The namespace of objects that name none.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Labels that select a workload's pods, in the order they are looked for.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "app,name,app.kubernetes.io/name"
    )]
    selector_labels: Vec<String>,
    /// Prefixes of the target's labels and annotations copied to the primary (`*`: all).
    #[arg(long, value_delimiter = ',')]
    include_label_prefix: Vec<String>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut docs = match read_files(&args.manifests.files) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("serin render: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if !docs.iter().any(|d| d.is_flagger() && d.kind() == "Canary") {
        eprintln!("serin render: no Canary in the input");
        return Ok(ExitCode::SUCCESS);
    }
    for stand_in in stand_ins(&docs, &args.namespace) {
        eprintln!("serin render: {}", stand_in.note());
        docs.push(stand_in.document);
    }
    let options = RenderOptions {
        default_namespace: args.namespace,
        labels: LabelOptions {
            selector_labels: args.selector_labels,
            include_label_prefix: args.include_label_prefix,
        },
    };
    let sandbox = Sandbox::new(SandboxOptions::default());
    let objects = match render(sandbox.client(), &docs, &options).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("serin render: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut out = String::new();
    for object in &objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(object)?);
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
