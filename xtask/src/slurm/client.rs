//! The one client of Slurm's commands (`sbatch`, `squeue`, `scontrol`,
//! `sacct`, `scancel`), run through `process`. Which cluster is the
//! commands' own business: `SLURM_CONF` or the node's configuration.
//!
//! May use: `process`, `slurm`.

use std::path::Path;
use std::process::Command;

use super::state::{self, TaskState};
use super::SlurmError;
use crate::process::{run_quiet, ProcessError};

/// Slurm's command-line tools.
#[derive(Debug, Clone, Default)]
pub struct Slurm;

impl Slurm {
    fn run(&self, program: &str, args: &[&str], what: &str) -> Result<String, SlurmError> {
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(std::process::Stdio::null());
        match run_quiet(cmd, what) {
            Ok(out) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            Err(ProcessError::Spawn { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(SlurmError::NotInstalled {
                    tool: program.to_string(),
                })
            }
            Err(e) => Err(SlurmError::Command(Box::new(e))),
        }
    }

    /// Submits `script` (`sbatch --parsable`, `extra` options before it,
    /// overriding its `#SBATCH` lines); the job id.
    pub fn submit(&self, script: &Path, extra: &[String]) -> Result<String, SlurmError> {
        let script = script.to_string_lossy();
        let mut args: Vec<&str> = vec!["--parsable"];
        args.extend(extra.iter().map(String::as_str));
        args.push(&script);
        let out = self.run("sbatch", &args, "submitting the gate's job array")?;
        // `1234` or `1234;cluster`.
        let id = out.trim().split(';').next().unwrap_or_default().to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(SlurmError::NoJobId {
                output: out.trim().to_string(),
            });
        }
        Ok(id)
    }

    /// The job's tasks still queued or running (none once all ended).
    pub fn queued(&self, job: &str) -> Result<Vec<TaskState>, SlurmError> {
        let out = self.run(
            "squeue",
            &["-h", "-r", "-j", job, "-o", state::SQUEUE_FORMAT],
            "reading the queue",
        )?;
        Ok(state::parse_squeue(&out))
    }

    /// Every task of the job as Slurm last saw it: from the controller
    /// while it remembers the job (`MinJobAge`), else from accounting.
    pub fn tasks(&self, job: &str) -> Result<Vec<TaskState>, SlurmError> {
        let controller = self.run("scontrol", &["show", "job", "-o", job], "reading the job");
        if let Ok(out) = &controller {
            let tasks = state::parse_scontrol(out);
            if !tasks.is_empty() {
                return Ok(tasks);
            }
        }
        let accounting = self.run(
            "sacct",
            &["-j", job, "-X", "-n", "-P", "-o", state::SACCT_FORMAT],
            "reading the job's accounting",
        );
        match accounting {
            Ok(out) if !state::parse_sacct(&out).is_empty() => Ok(state::parse_sacct(&out)),
            _ => Err(SlurmError::JobUnknown {
                job: job.to_string(),
            }),
        }
    }

    /// Cancels the job (every task).
    pub fn cancel(&self, job: &str) -> Result<(), SlurmError> {
        self.run("scancel", &[job], "cancelling the job")
            .map(|_| ())
    }
}
