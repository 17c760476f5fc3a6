//! Running host programs: the one place that spawns a process, logs its
//! command line and turns a failure into a [`ProcessError`] that names the
//! command and ends with its last output lines.
//!
//! Four ways to run, by what the caller needs of the output:
//! - [`run_logged`]: output goes straight to the terminal (cargo builds);
//! - [`run_captured`]: output is kept and returned (pip resolving, venvs);
//! - [`run_streaming`]: each line is shown on a progress task as it comes,
//!   the last lines are kept for the error (mmdebstrap, apt-get, pip download);
//! - [`run_lines`]: each line is handed to the caller as it comes (reading
//!   the harness's progress events while it runs).
//!
//! May use: `progress`. Nothing else of the crate.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitStatus, Output, Stdio};

use crate::progress::Task;

/// How many output lines a failure keeps.
pub const TAIL_LINES: usize = 20;

/// A host program could not be started, or exited unsuccessfully.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ProcessError {
    #[error("{what}: {source}")]
    #[diagnostic(code(torchenv::process::spawn))]
    Spawn {
        /// `running <command line>`, `waiting for <command line>`.
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed ({status}): {command}{}", tail_text(tail))]
    #[diagnostic(code(torchenv::process::failed))]
    Failed {
        /// What the command was for ("building the harness for torch 2.6.0").
        what: String,
        status: ExitStatus,
        command: String,
        /// The last lines of its output (empty when it went to the terminal).
        tail: Vec<String>,
        #[help]
        help: Option<String>,
    },
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("\n{}", tail.join("\n"))
    }
}

impl ProcessError {
    /// For a program that exited unsuccessfully: its last output lines and a
    /// closing `(<command> exited with <status>)` line, for an error of the
    /// caller's own that says what failed. A program that could not be
    /// started or waited for stays this error.
    pub fn failed_tail(self) -> Result<Vec<String>, ProcessError> {
        match self {
            ProcessError::Failed {
                mut tail,
                status,
                command,
                ..
            } => {
                tail.push(format!("({command} exited with {status})"));
                Ok(tail)
            }
            spawn => Err(spawn),
        }
    }

    /// The same failure with a hint how to fix it.
    pub fn with_help(mut self, hint: impl Into<String>) -> Self {
        if let ProcessError::Failed { help, .. } = &mut self {
            *help = Some(hint.into());
        }
        self
    }
}

/// The command line as a user would type it.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// [`describe`] for logs: a command with many arguments (a wheel list) is
/// cut after the first few, saying how many were left out.
pub fn describe_short(cmd: &Command) -> String {
    const SHOWN: usize = 12;
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if args.len() <= SHOWN {
        return describe(cmd);
    }
    format!(
        "{} {} … (+{} more arguments)",
        cmd.get_program().to_string_lossy(),
        args[..SHOWN].join(" "),
        args.len() - SHOWN
    )
}

/// `cargo` (the one running us, else from `PATH`) with no standard input:
/// nothing it runs needs input (its rustc probes read their source from
/// stdin and expect it empty).
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs a step with inherited output, logging the command before it runs
/// and again if it fails (its first line may have scrolled away).
pub fn run_logged(mut cmd: Command, what: &str) -> Result<(), ProcessError> {
    eprintln!("==> {what}\n  $ {}", describe_short(&cmd));
    let status = cmd.status().map_err(|source| ProcessError::Spawn {
        what: format!("running {}", describe(&cmd)),
        source,
    })?;
    check(status, what, &cmd, Vec::new())
}

/// Runs `cmd` with its output captured, logging it first; a failure carries
/// the last lines of its standard error.
pub fn run_captured(cmd: Command, what: &str) -> Result<Output, ProcessError> {
    eprintln!("  $ {}", describe_short(&cmd));
    run_quiet(cmd, what)
}

/// [`run_captured`] without logging the command: for a query repeated
/// every few seconds (a scheduler's queue).
pub fn run_quiet(mut cmd: Command, what: &str) -> Result<Output, ProcessError> {
    let output = cmd.output().map_err(|source| ProcessError::Spawn {
        what: format!("running {}", describe(&cmd)),
        source,
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(TAIL_LINES)..]
        .iter()
        .map(|l| l.to_string())
        .collect();
    check(output.status, what, &cmd, tail)?;
    Ok(output)
}

/// Runs `cmd` (whose stdout/stderr the caller set to piped), showing each
/// output line on `task`. On a non-zero exit the error keeps the last
/// [`TAIL_LINES`] lines.
pub fn run_streaming(cmd: Command, what: &str, task: &Task) -> Result<(), ProcessError> {
    run_lines(cmd, what, |l| task.line(l))
}

/// Runs `cmd` with its stdout and stderr piped, handing each output line
/// to `on_line` as it arrives (on this thread). On a non-zero exit the
/// error keeps the last [`TAIL_LINES`] lines.
pub fn run_lines(
    mut cmd: Command,
    what: &str,
    mut on_line: impl FnMut(&str),
) -> Result<(), ProcessError> {
    let line = describe(&cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ProcessError::Spawn {
            what: format!("starting {line}"),
            source,
        })?;
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let threads: Vec<_> = readers
        .into_iter()
        .map(|r| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(|l| l.ok()) {
                    let _ = tx.send(line);
                }
            })
        })
        .collect();
    drop(tx);
    let mut tail = VecDeque::new();
    for l in rx {
        on_line(&l);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(l);
    }
    for t in threads {
        let _ = t.join();
    }
    let status = child.wait().map_err(|source| ProcessError::Spawn {
        what: format!("waiting for {line}"),
        source,
    })?;
    check(status, what, &cmd, tail.into())
}

fn check(
    status: ExitStatus,
    what: &str,
    cmd: &Command,
    tail: Vec<String>,
) -> Result<(), ProcessError> {
    if status.success() {
        return Ok(());
    }
    Err(ProcessError::Failed {
        what: what.to_string(),
        status,
        command: describe(cmd),
        tail,
        help: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_command_and_keep_the_tail() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "for i in $(seq 1 30); do echo line$i >&2; done; exit 3",
        ]);
        let err = run_captured(cmd, "counting").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("counting failed ("), "{text}");
        assert!(text.contains("sh -c for i in"), "{text}");
        assert!(text.contains("line30") && text.contains("line11"), "{text}");
        assert!(!text.contains("line10\n"), "{text}");
    }

    #[test]
    fn each_line_is_handed_over_as_it_comes() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo one >&2; echo two; echo three >&2"]);
        let mut seen = Vec::new();
        run_lines(cmd, "a step", |l| seen.push(l.to_string())).unwrap();
        seen.sort();
        assert_eq!(seen, ["one", "three", "two"]);
    }

    #[test]
    fn streaming_keeps_the_last_lines() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let progress = crate::progress::Progress::plain();
        let task = progress.spinner("test");
        match run_streaming(cmd, "a step", &task).unwrap_err() {
            ProcessError::Failed { tail, what, .. } => {
                assert_eq!(what, "a step");
                let mut tail = tail;
                tail.sort();
                assert_eq!(tail, ["err", "out"]);
            }
            other => panic!("{other:?}"),
        }
        let missing = Command::new("/nonexistent/program");
        assert!(matches!(
            run_logged(missing, "nothing"),
            Err(ProcessError::Spawn { .. })
        ));
    }
}
