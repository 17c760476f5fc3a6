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
