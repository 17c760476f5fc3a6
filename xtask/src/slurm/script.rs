//! The gate's `sbatch` script: one job array, one task per environment,
//! each task running `check ENV --no-build --result FILE` on its node.
//! Pure text from [`ArrayJob`]; `ci --slurm --dry-run` prints it.
//!
//! May use: nothing else of the crate.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Everything the script says.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayJob {
    /// Slurm's `--job-name`.
    pub name: String,
    /// One array task per environment, in this order.
    pub envs: Vec<String>,
    /// Shared folder for the tasks' logs and results (absolute).
    pub workdir: PathBuf,
    /// The checkout the tasks run in (absolute, on shared storage).
    pub checkout: PathBuf,
    /// The torchenv (xtask) binary the tasks run (absolute).
    pub program: PathBuf,
    pub spec: PathBuf,
    pub lock: PathBuf,
    /// Arguments `check` gets besides the env, `--no-build` and `--result`
    /// (`--device`, `--expect-gpus`, `--baselines`, `--weights`).
    pub check_args: Vec<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// `--time` as Slurm takes it (`30`, `1:00:00`, `0-2`).
    pub time: Option<String>,
    /// `--gres`, e.g. `gpu:1`.
    pub gres: Option<String>,
    /// Shell lines each task runs before the check (`module load …`).
    pub setup: Vec<String>,
}

/// The task's log: `<workdir>/task-<job>_<task>.log`.
pub fn log_path(workdir: &Path, job: &str, task: u32) -> PathBuf {
    workdir.join(format!("task-{job}_{task}.log"))
}

/// The task's result: `<workdir>/result-<job>_<task>.json`.
pub fn result_path(workdir: &Path, job: &str, task: u32) -> PathBuf {
    workdir.join(format!("result-{job}_{task}.json"))
}

/// `s` as one word of a POSIX shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

impl ArrayJob {
    /// The script. `#SBATCH` lines carry the job's options; options given
    /// to `sbatch` itself (e.g. `--gres` per GPU type) override them.
    pub fn render(&self) -> String {
        let mut s = String::from("#!/bin/bash\n");
        s.push_str("# torchenv gate: one array task per environment, written by `cargo xtask ci --slurm`.\n");
        let _ = writeln!(s, "#SBATCH --job-name={}", quote(&self.name));
        let _ = writeln!(s, "#SBATCH --array=0-{}", self.envs.len().saturating_sub(1));
        let _ = writeln!(
            s,
            "#SBATCH --output={}",
            path(&self.workdir.join("task-%A_%a.log"))
        );
        for (flag, value) in [
            ("partition", &self.partition),
            ("account", &self.account),
            ("time", &self.time),
            ("gres", &self.gres),
        ] {
            if let Some(v) = value {
                let _ = writeln!(s, "#SBATCH --{flag}={}", quote(v));
            }
        }
        s.push_str("set -euo pipefail\n");
        let envs: Vec<String> = self.envs.iter().map(|e| quote(e)).collect();
        let _ = writeln!(s, "envs=({})", envs.join(" "));
        s.push_str("env=${envs[$SLURM_ARRAY_TASK_ID]}\n");
        let _ = writeln!(
            s,
            "result={}/result-${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}.json",
            path(&self.workdir)
        );
        s.push_str("echo \"torchenv: $env on $(hostname) (job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID})\"\n");
        let _ = writeln!(s, "cd {}", path(&self.checkout));
        for line in &self.setup {
            let _ = writeln!(s, "{line}");
        }
        s.push_str(concat!(
            "# The allocation's GPUs (host indexes) instead of the spec's `gpus:`; none without a GPU allocation.\n",
            "devices=${SLURM_STEP_GPUS:-${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-}}}\n",
            "gpus=none\n",
            "if [ -n \"$devices\" ]; then gpus=device=$devices; fi\n",
        ));
        let mut cmd = vec![
            "exec".to_string(),
            path(&self.program),
            "--spec".into(),
            path(&self.spec),
            "--lock".into(),
            path(&self.lock),
            "check".into(),
            "\"$env\"".into(),
            "--no-build".into(),
            "--result".into(),
            "\"$result\"".into(),
        ];
        cmd.extend(self.check_args.iter().map(|a| quote(a)));
        cmd.extend(["--gpus".to_string(), "\"$gpus\"".to_string()]);
        let _ = writeln!(s, "{}", cmd.join(" "));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_plain_words_and_escapes_the_rest() {
        assert_eq!(quote("pytorch-2.6"), "pytorch-2.6");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(quote(""), "''");
    }
}
