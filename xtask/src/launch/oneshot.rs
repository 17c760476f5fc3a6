//! One-shot runs of an environment's container (the gate's harness): a
//! [`ContainerPlan`] in one-shot mode run to completion by
//! `Docker::run_once` (which always removes the container), made again
//! without a ulimit the engine refuses — dropped and remembered for the
//! engine exactly as `up` does.
//!
//! May use: `docker`, `launch`, `launch::plan`.

use super::note;
use super::plan::{ContainerPlan, Mode};
use crate::docker::run::{RunError, RunOutput};
use crate::docker::{Docker, DockerError};

/// Runs the one-shot `plan` to completion and returns its exit code and
/// output; its container is removed whatever happens.
pub async fn run(
    docker: &Docker,
    plan: ContainerPlan,
    engine_id: &str,
) -> Result<RunOutput, RunError> {
    run_watching(docker, plan, engine_id, &mut |_| {}).await
}

/// [`run`], handing each stderr line to `on_stderr_line` as it arrives.
pub async fn run_watching(
    docker: &Docker,
    mut plan: ContainerPlan,
    engine_id: &str,
    on_stderr_line: &mut dyn FnMut(&str),
) -> Result<RunOutput, RunError> {
    debug_assert!(matches!(plan.mode, Mode::OneShot(_)));
    loop {
        let result = docker
            .run_once_watching(&plan.name, plan.body(), on_stderr_line)
            .await;
        if let Err(RunError::Docker(DockerError::UlimitRefused { name, .. })) = &result {
            if plan.drop_refused_ulimit(name, engine_id) {
                note(format!(
                    "the engine at {} may not raise the {name} ulimit (no CAP_SYS_RESOURCE?); running with its default",
                    docker.host
                ));
                continue;
            }
        }
        return result;
    }
}

/// `uid:gid` owning `dir`: a one-shot container run as them writes files
/// the caller owns.
pub fn owner(dir: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir).ok()?;
    Some(format!("{}:{}", m.uid(), m.gid()))
}

/// What a failed harness run said, its container paths put back as the
/// host's: its last `error: ` line (else words for its exit code) and its
/// last 15 lines (progress lines left out).
#[derive(Debug)]
pub struct HarnessSaid {
    pub message: String,
    pub tail: String,
}

impl HarnessSaid {
    /// Reads the harness's `stderr`; `mounts` are (container path, host
    /// path) pairs.
    pub fn read(stderr: &str, code: i64, mounts: &[(String, String)]) -> HarnessSaid {
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| report::ProgressEvent::parse(l).is_none())
            .collect();
        let message = lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .map_or_else(
                || match code {
                    137 => {
                        "the harness was killed (exit 137, SIGKILL: `docker kill` or out of memory)"
                            .to_string()
                    }
                    code => format!("the harness exited with code {code}"),
                },
                |m| host_paths(mounts, m),
            );
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        HarnessSaid {
            message,
            tail: host_paths(mounts, &tail),
        }
    }
}

/// Replaces the container's mount points in `text` by the host paths, in
/// one pass: a mount point counts only at the start of a path (after
/// whitespace, a quote or a bracket) and followed by `/`, the end, or
/// punctuation — never inside a host path already put back.
pub fn host_paths(mounts: &[(String, String)], text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut at_start = true;
    while let Some(c) = rest.chars().next() {
        let hit = at_start
            .then(|| {
                mounts.iter().find(|(m, _)| {
                    rest.starts_with(m.as_str())
                        && rest[m.len()..]
                            .chars()
                            .next()
                            .is_none_or(|n| !(n.is_alphanumeric() || matches!(n, '_' | '-')))
                })
            })
            .flatten();
        if let Some((m, host)) = hit {
            out.push_str(host);
            rest = &rest[m.len()..];
            at_start = false;
            continue;
        }
        out.push(c);
        at_start = c.is_whitespace() || matches!(c, '"' | '\'' | '(' | '[' | '`' | '=' | ':');
        rest = &rest[c.len_utf8()..];
    }
    out
}
