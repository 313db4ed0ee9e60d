//! Running a webhook's command as a child process: without a shell for `type: cmd`,
//! through `bash -c` for `type: bash`, always with a timeout.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// At most this much of a command's output (of stdout and of stderr, while they stream,
/// and of both together) is kept for the response and the log.
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
        // Its own process group, so that a timed out command is killed with every
        // process it started (a shell's children, `sleep`s in a pipeline...).
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| CommandError::Start {
        program: program.clone(),
        reason: e.to_string(),
    })?;
    let group = child.id();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let collect = async {
        // Both streams are read as they come and only their first 64 KiB kept, so a
        // command printing gigabytes costs 128 KiB; the rest is read and dropped (so
        // the command does not block on a full pipe).
        let (out, err) = tokio::join!(capped(stdout), capped(stderr));
        let status = child.wait().await;
        (out, err, status)
    };
    let (out, err, status) = match tokio::time::timeout(timeout, collect).await {
        Err(_) => {
            kill_group(group);
            return Err(CommandError::TimedOut(timeout));
        }
        Ok(r) => r,
    };
    let status = status.map_err(|e| CommandError::Start {
        program,
        reason: e.to_string(),
    })?;
    let (mut bytes, mut cut) = out;
    bytes.extend_from_slice(&err.0);
    cut |= err.1;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if text.len() > MAX_OUTPUT {
        let mut at = MAX_OUTPUT;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        cut = true;
    }
    if cut {
        text.push_str("\n... (output truncated)");
    }
    if status.success() {
        Ok(CommandOutput { output: text })
    } else {
        Err(CommandError::Failed {
            status: status.to_string(),
            output: text,
        })
    }
}

/// Reads a stream to its end, keeping its first `MAX_OUTPUT` bytes; true when more
/// came.
async fn capped(stream: Option<impl tokio::io::AsyncRead + Unpin>) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let mut kept = Vec::new();
    let mut cut = false;
    let Some(mut stream) = stream else {
        return (kept, cut);
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_OUTPUT - kept.len();
                kept.extend_from_slice(&buf[..n.min(room)]);
                cut |= n > room;
            }
        }
    }
    (kept, cut)
}

/// Sends SIGKILL to the process group `pgid` (the command and what it started). Called
/// only while the command's own process is not yet reaped, so the group id is still
/// its own.
fn kill_group(pgid: Option<u32>) {
    if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0) {
        // SAFETY: kill(2) with a negative pid signals a process group; it touches no
        // memory of ours. The group is the one the command was started in.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}
