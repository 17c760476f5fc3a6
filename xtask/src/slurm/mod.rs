//! Slurm: the regression gate as a job array on a cluster (`ci --slurm`),
//! and a single-node Slurm on this machine to try it and to test it
//! (`slurm start|stop`).
//!
//! - [`script`]: the `sbatch` script (one task per environment);
//! - [`client`]: the one client of Slurm's commands;
//! - [`state`]: what those commands say of each task;
//! - [`array`]: submit, follow with a progress display, and collect each
//!   task's result (or the reason it has none) as the gate's `EnvResult`;
//! - [`local`]: munge + slurmctld + slurmd from a generated `slurm.conf`
//!   in one folder, no systemd.
//!
//! May use: `gate`, `process`, `progress`.

pub mod array;
pub mod client;
pub mod local;
pub mod script;
pub mod state;

pub use client::Slurm;

use crate::process::ProcessError;

/// Why Slurm could not do what the gate asked.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SlurmError {
    #[error("`{tool}` is not installed")]
    #[diagnostic(
        code(torchenv::slurm::missing),
        help("on a cluster's login node Slurm's client tools are there; on this machine `apt-get install slurm-wlm munge`, then `cargo xtask slurm start`")
    )]
    NotInstalled { tool: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Command(Box<ProcessError>),
    #[error("sbatch printed no job id: `{output}`")]
    #[diagnostic(code(torchenv::slurm::submit))]
    NoJobId { output: String },
    #[error("Slurm knows no job {job} (neither the controller nor accounting)")]
    #[diagnostic(
        code(torchenv::slurm::unknown_job),
        help("the controller forgets a finished job after MinJobAge; without accounting (slurmdbd) its end cannot be read")
    )]
    JobUnknown { job: String },
    #[error("the local Slurm did not come up: {why}")]
    #[diagnostic(code(torchenv::slurm::local), help("its logs are in {dir}/log"))]
    LocalStart { why: String, dir: String },
    #[error("{context}: {source}")]
    #[diagnostic(code(torchenv::slurm::io))]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl SlurmError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SlurmError {
        let context = context.into();
        move |source| SlurmError::Io { context, source }
    }
}
