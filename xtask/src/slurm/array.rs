//! `ci --slurm`: the gate's job array written, submitted (once per GPU
//! type), followed until every task ended, and collected: each task's own
//! result file, or, for a task that wrote none (failed, timed out,
//! cancelled, node lost), a failed environment with Slurm's reason and
//! the end of the task's log. Never a pass without a result, never a wait
//! without end: `--max-wait` and Ctrl-C cancel what is left.
//!
//! May use: `gate`, `progress`, `slurm`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::script::{self, ArrayJob};
use super::state::TaskState;
use super::{Slurm, SlurmError};
use crate::gate::check::{EnvResult, Placement};
use crate::progress::Progress;

/// One submission of the array: all environments on one kind of node.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Appended to each environment's name in the results (`ENV@h100`);
    /// `None` for a single submission.
    pub label: Option<String>,
    /// Options given to `sbatch` for this submission (`--gres=gpu:h100:1`).
    pub sbatch_args: Vec<String>,
}

/// How the array is followed.
#[derive(Debug, Clone)]
pub struct Follow {
    /// How often the queue is read.
    pub poll: Duration,
    /// Cancel whatever has not ended after this long.
    pub max_wait: Option<Duration>,
}

/// What became of one submission.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub variant: Variant,
    pub job_id: String,
}

/// What `ci --slurm --dry-run` prints: the script, then the `sbatch`
/// command line of each submission.
pub fn dry_run(job: &ArrayJob, variants: &[Variant]) -> String {
    let mut s = job.render();
    let script_path = job.workdir.join("gate.sbatch");
    s.push_str(&format!(
        "\n# written to {}, submitted as:\n",
        script_path.display()
    ));
    for v in variants {
        let mut words = vec!["sbatch".to_string(), "--parsable".to_string()];
        words.extend(v.sbatch_args.iter().map(|a| script::quote(a)));
        words.push(script::quote(&script_path.to_string_lossy()));
        s.push_str(&format!("# {}\n", words.join(" ")));
    }
    s
}

/// Writes the script into the job's work folder, submits it once per
/// variant, follows every task to its end and returns one result per
/// environment and variant (in that order). A failed submission cancels
/// the ones before it.
pub async fn run(
    slurm: &Slurm,
    job: &ArrayJob,
    variants: &[Variant],
    follow: &Follow,
    progress: &Progress,
) -> Result<Vec<EnvResult>, SlurmError> {
    std::fs::create_dir_all(&job.workdir).map_err(SlurmError::io(format!(
        "creating {}",
        job.workdir.display()
    )))?;
    let script_path = job.workdir.join("gate.sbatch");
    std::fs::write(&script_path, job.render())
        .map_err(SlurmError::io(format!("writing {}", script_path.display())))?;
    let mut submitted: Vec<Submitted> = Vec::new();
    for v in variants {
        match slurm.submit(&script_path, &v.sbatch_args) {
            Ok(job_id) => {
                progress.println(format!(
                    "slurm: submitted job array {job_id}{} ({} task(s)), script {}",
                    v.label
                        .as_ref()
                        .map(|l| format!(" for {l}"))
                        .unwrap_or_default(),
                    job.envs.len(),
                    script_path.display()
                ));
                submitted.push(Submitted {
                    variant: v.clone(),
                    job_id,
                });
            }
            Err(e) => {
                for s in &submitted {
                    let _ = slurm.cancel(&s.job_id);
                }
                return Err(e);
            }
        }
    }
    let stopped = follow_jobs(slurm, job, &submitted, follow, progress).await?;
    collect(slurm, job, &submitted, stopped.as_deref())
}

/// Reads the queue until no task of the jobs is queued or running. On
/// `max_wait` or Ctrl-C it cancels the jobs and says why (the tasks then
/// end as `CANCELLED`, with that reason).
async fn follow_jobs(
    slurm: &Slurm,
    job: &ArrayJob,
    submitted: &[Submitted],
    follow: &Follow,
    progress: &Progress,
) -> Result<Option<String>, SlurmError> {
    let total = (job.envs.len() * submitted.len()) as u64;
    let bar = progress.counter("slurm", total);
    let started = Instant::now();
    let mut seen: BTreeMap<(String, u32), String> = BTreeMap::new();
    let mut failures = 0;
    loop {
        let mut left = 0;
        let mut read_all = true;
        for s in submitted {
            match slurm.queued(&s.job_id) {
                Ok(tasks) => {
                    left += tasks.len();
                    for t in tasks {
                        report_change(&mut seen, &s.job_id, job, &t, &bar);
                    }
                }
                // A busy controller: try again, but not forever.
                Err(e) => {
                    failures += 1;
                    read_all = false;
                    if failures > 10 {
                        cancel_all(slurm, submitted);
                        bar.fail("the queue could not be read");
                        return Err(e);
                    }
                }
            }
        }
        bar.set_length(total);
        let done = total.saturating_sub(left as u64);
        bar.inc(done.saturating_sub(bar.position()));
        if read_all && left == 0 {
            bar.finish(&format!("{total} task(s) ended"));
            return Ok(None);
        }
        if let Some(max) = follow.max_wait {
            if started.elapsed() > max {
                cancel_all(slurm, submitted);
                bar.fail("--max-wait reached");
                return Ok(Some(format!(
                    "not ended after --max-wait {} s; cancelled",
                    max.as_secs()
                )));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(follow.poll) => {}
            _ = tokio::signal::ctrl_c() => {
                cancel_all(slurm, submitted);
                bar.fail("interrupted");
                return Ok(Some("interrupted (Ctrl-C); cancelled".into()));
            }
        }
    }
}

fn cancel_all(slurm: &Slurm, submitted: &[Submitted]) {
    for s in submitted {
        let _ = slurm.cancel(&s.job_id);
    }
}

/// A line when a task changes state or node.
fn report_change(
    seen: &mut BTreeMap<(String, u32), String>,
    job_id: &str,
    job: &ArrayJob,
    t: &TaskState,
    bar: &crate::progress::Task,
) {
    let now = if t.node.is_empty() {
        t.state.clone()
    } else {
        format!("{} on {}", t.state, t.node)
    };
    let key = (job_id.to_string(), t.task);
    if seen.get(&key) != Some(&now) {
        let env = job.envs.get(t.task as usize).map_or("?", String::as_str);
        bar.log(&format!("{job_id}_{} {env}: {now}", t.task));
        seen.insert(key, now);
    }
}

/// One result per environment and submission: the task's result file
/// when it wrote one, else a failed environment saying why.
fn collect(
    slurm: &Slurm,
    job: &ArrayJob,
    submitted: &[Submitted],
    stopped: Option<&str>,
) -> Result<Vec<EnvResult>, SlurmError> {
    let mut results = Vec::new();
    for s in submitted {
        let states: BTreeMap<u32, TaskState> = slurm
            .tasks(&s.job_id)?
            .into_iter()
            .map(|t| (t.task, t))
            .collect();
        for (i, env) in job.envs.iter().enumerate() {
            let task = i as u32;
            let state = states.get(&task).cloned().unwrap_or(TaskState {
                task,
                state: "UNKNOWN".into(),
                ..TaskState::default()
            });
            let mut result = task_result(&job.workdir, &s.job_id, env, &state, stopped);
            if let Some(label) = &s.variant.label {
                result.env = labelled(env, label);
            }
            result.placement = Some(Placement {
                scheduler: "slurm".into(),
                job: format!("{}_{task}", s.job_id),
                node: state.node.clone(),
                state: state.state.clone(),
            });
            results.push(result);
        }
    }
    Ok(results)
}

/// An environment's name in the results of a labelled submission.
pub fn labelled(env: &str, label: &str) -> String {
    format!("{env}@{label}")
}

/// The task's own result, or a failed environment with Slurm's end state
/// and the last lines of the task's log.
fn task_result(
    workdir: &Path,
    job_id: &str,
    env: &str,
    state: &TaskState,
    stopped: Option<&str>,
) -> EnvResult {
    let file = script::result_path(workdir, job_id, state.task);
    let read = std::fs::read(&file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<EnvResult>(&b).map_err(|e| e.to_string()));
    match read {
        Ok(r) if r.env == env => r,
        Ok(r) => EnvResult::not_checked(
            env,
            "slurm",
            &format!(
                "{} holds the result of `{}`, not of `{env}`",
                file.display(),
                r.env
            ),
            0.0,
        ),
        Err(why) => {
            let log = script::log_path(workdir, job_id, state.task);
            let mut text = format!(
                "Slurm task {job_id}_{}{}: {}, no result",
                state.task,
                if state.node.is_empty() {
                    String::new()
                } else {
                    format!(" on {}", state.node)
                },
                state.describe_end()
            );
            if let Some(s) = stopped {
                text.push_str(&format!(" ({s})"));
            }
            text.push_str(&format!("\n{}: {why}\n", file.display()));
            text.push_str(&log_tail(&log));
            EnvResult::not_checked(env, "slurm", &text, seconds(&state.elapsed))
        }
    }
}

/// The last lines of a task's log, for the failure's detail.
fn log_tail(log: &PathBuf) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(20)..];
            format!("last lines of {}:\n{}", log.display(), tail.join("\n"))
        }
        Err(e) => format!("{}: {e}", log.display()),
    }
}

/// Slurm's `[D-]HH:MM:SS` (or `MM:SS`) in seconds; 0 when unreadable.
fn seconds(elapsed: &str) -> f64 {
    let (days, rest) = match elapsed.split_once('-') {
        Some((d, r)) => (d.parse::<f64>().unwrap_or(0.0), r),
        None => (0.0, elapsed),
    };
    let secs = rest
        .split(':')
        .try_fold(0.0, |acc, p| p.parse::<f64>().map(|v| acc * 60.0 + v))
        .unwrap_or(0.0);
    days * 86400.0 + secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_prints_the_script_and_each_submission() {
        let job = ArrayJob {
            name: "torchenv-gate".into(),
            envs: vec!["pytorch-2.6-cuda12.4".into(), "pytorch-2.11".into()],
            workdir: "/shared/ci out/slurm".into(),
            checkout: "/shared/torchenv".into(),
            program: "/shared/torchenv/target/debug/xtask".into(),
            spec: "/shared/torchenv/environments.yaml".into(),
            lock: "/shared/torchenv/environments.lock".into(),
            check_args: vec![
                "--device".into(),
                "cuda".into(),
                "--expect-gpus".into(),
                "1".into(),
            ],
            partition: Some("gpu".into()),
            account: Some("ml-team".into()),
            time: Some("1:00:00".into()),
            gres: Some("gpu:1".into()),
            setup: vec!["module load docker".into()],
        };
        let variants = ["a100", "h100"].map(|t| Variant {
            label: Some(t.into()),
            sbatch_args: vec![format!("--gres=gpu:{t}:1")],
        });
        insta::assert_snapshot!(dry_run(&job, &variants));
    }

    #[test]
    fn slurm_durations_in_seconds() {
        assert_eq!(seconds("00:01:03"), 63.0);
        assert_eq!(seconds("1:05"), 65.0);
        assert_eq!(seconds("1-00:00:01"), 86401.0);
        assert_eq!(seconds(""), 0.0);
    }

    #[test]
    fn a_task_without_result_fails_with_the_reason_and_its_log() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            script::log_path(dir.path(), "7", 1),
            "torchenv: e on vm\nslurmstepd: error: *** JOB 9 CANCELLED AT … DUE TO TIME LIMIT ***\n",
        )
        .unwrap();
        let state = TaskState {
            task: 1,
            state: "TIMEOUT".into(),
            node: "vm".into(),
            reason: "TimeLimit".into(),
            exit: "0:15".into(),
            elapsed: "00:01:02".into(),
        };
        let r = task_result(dir.path(), "7", "e", &state, None);
        assert!(!r.passed());
        assert_eq!(r.cases[0].name, "slurm");
        assert_eq!(
            r.cases[0].message,
            "Slurm task 7_1 on vm: TIMEOUT (TimeLimit), exit 0:15, after 00:01:02, no result"
        );
        assert!(r.cases[0].detail.contains("DUE TO TIME LIMIT"));
        assert_eq!(r.cases[0].seconds, 62.0);
    }

    #[test]
    fn a_result_of_another_environment_is_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let other = EnvResult::not_checked("other", "build", "x", 0.0);
        std::fs::write(
            script::result_path(dir.path(), "7", 0),
            serde_json::to_vec(&other).unwrap(),
        )
        .unwrap();
        let state = TaskState {
            task: 0,
            state: "COMPLETED".into(),
            ..TaskState::default()
        };
        let r = task_result(dir.path(), "7", "e", &state, None);
        assert!(r.cases[0].message.contains("not of `e`"));
    }
}
