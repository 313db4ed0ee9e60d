//! Running a webhook's command as a child process: without a shell for `type: cmd`,
//! through `bash -c` for `type: bash`, always with a timeout.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// At most this much of a command's output is kept for the response and the log.
const MAX_OUTPUT: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// stdout followed by stderr, truncated to 64 KiB.
    pub output: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("cannot start {program}: {reason}")]
    Start { program: String, reason: String },
    #[error("command failed ({status}): {output}")]
    Failed { status: String, output: String },
    #[error("command timed out after {0:?} and was killed")]
    TimedOut(Duration),
}

/// How to start the process.
#[derive(Debug, Clone)]
pub enum Invocation {
    /// Program and arguments, no shell.
    Direct(Vec<String>),
    /// A command line for `bash -c`.
    Bash(String),
}

pub async fn run(
    invocation: &Invocation,
    timeout: Duration,
) -> Result<CommandOutput, CommandError> {
    let mut command = match invocation {
        Invocation::Direct(words) => {
            let Some((program, args)) = words.split_first() else {
                return Err(CommandError::Start {
                    program: String::new(),
                    reason: "the command is empty".into(),
                });
            };
            let mut c = Command::new(program);
            c.args(args);
            c
        }
        Invocation::Bash(line) => {
            let mut c = Command::new("bash");
            c.arg("-c").arg(line);
            c
        }
    };
    let program = match invocation {
        Invocation::Direct(words) => words.first().cloned().unwrap_or_default(),
        Invocation::Bash(_) => "bash".to_string(),
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A timed out command is killed when its future is dropped.
        .kill_on_drop(true);
    let child = command.spawn().map_err(|e| CommandError::Start {
        program: program.clone(),
        reason: e.to_string(),
    })?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => return Err(CommandError::TimedOut(timeout)),
        Ok(Err(e)) => {
            return Err(CommandError::Start {
                program,
                reason: e.to_string(),
            });
        }
        Ok(Ok(o)) => o,
    };
    let mut bytes = output.stdout;
    bytes.extend_from_slice(&output.stderr);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if text.len() > MAX_OUTPUT {
        let mut cut = MAX_OUTPUT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n... (output truncated)");
    }
    if output.status.success() {
        Ok(CommandOutput { output: text })
    } else {
        Err(CommandError::Failed {
            status: output.status.to_string(),
            output: text,
        })
    }
}
