pub mod alert;
pub mod crds;
pub mod dashboard;
pub mod demo;
pub mod loadtester;
pub mod operator;
pub mod query;
pub mod render;
pub mod request;
pub mod sandbox;
pub mod simulate;
pub mod status;
pub mod validate;
pub mod view;

/// The manifest files of every command that reads them, spelt as kubectl spells
/// them (`-f`/`--filename`); `--file`, simulate's first spelling, still works.
#[derive(clap::Args)]
pub struct Manifests {
    /// A file of multi-document YAML; `-` reads standard input. Repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        alias = "file",
        value_name = "FILE",
        required = true
    )]
    pub files: Vec<std::path::PathBuf>,
}
