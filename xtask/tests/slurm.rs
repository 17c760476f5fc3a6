//! The gate as a Slurm job array, against a real single-node Slurm
//! (Debian's `slurm-wlm` + `munge`, started by `cargo xtask slurm start`
//! in a temporary folder, as README documents) and the real environment
//! images: the array's summary and JUnit equal the local gate's, and a
//! task cancelled with `scancel`, one past its `--time` and one on a node
//! without its image each end as a failed environment with the reason,
//! the run exiting non-zero.
//!
//! `cargo xtask test` runs them after its gate stage, which built every
//! environment's image and wrote the local gate's output to
//! `TORCHENV_TEST_CI_OUT`, and installs Slurm and munge first. Without it
//! they fail (never pass vacuously).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{repo, text, var};

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// A single-node Slurm in a temporary folder, stopped on drop.
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(XTASK)
            .args(["slurm", "start", "--dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "slurm start: {}", text(&out));
        Cluster { dir }
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// `cargo xtask ARGS` with this cluster's `SLURM_CONF`, from the
    /// repository root.
    fn xtask(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(XTASK);
        cmd.args(args)
            .current_dir(repo())
            .env("SLURM_CONF", self.conf())
            .env_remove("TORCHENV_IMAGE")
            .env_remove("TORCHENV_HOST_HARNESS")
            .stdin(Stdio::null());
        cmd
    }

    /// A Slurm command on this cluster.
    fn slurm(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .env("SLURM_CONF", self.conf())
            .output()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(XTASK)
            .args(["slurm", "stop", "--dir"])
            .arg(self.dir.path())
            .output();
    }
}

/// Every environment of the repository's spec that `ci` runs by default,
/// comma-separated.
fn all_envs() -> String {
    let spec = xtask::spec::Spec::load(&repo().join(xtask::spec::SPEC_FILE)).unwrap();
    spec.environments
        .values()
        .filter(|e| e.harness.ci)
        .map(|e| e.name.clone())
        .collect::<Vec<_>>()
        .join(",")
}

/// JUnit without times and Slurm properties.
fn junit_comparable(s: &str) -> String {
    s.lines()
        .filter(|l| !l.contains("<property name=\"slurm."))
        .map(|l| {
            let mut out = String::new();
            let mut rest = l;
            while let Some(i) = rest.find(" time=\"") {
                out.push_str(&rest[..i]);
                let after = &rest[i + 7..];
                rest = &after[after.find('"').unwrap() + 1..];
            }
            out.push_str(rest);
            out
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The summary without the "where each environment ran" section.
fn summary_comparable(s: &str) -> String {
    const HEADING: &str = "\n## Where each environment ran\n";
    match s.find(HEADING) {
        None => s.to_string(),
        Some(i) => {
            let rest = &s[i + HEADING.len()..];
            let end = rest.find("\n## ").unwrap_or(rest.len());
            format!("{}{}", &s[..i], &rest[end..])
        }
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_array_gives_the_local_gates_summary_and_junit() {
    let local = PathBuf::from(var("TORCHENV_TEST_CI_OUT"));
    let cluster = Cluster::start();
    let out = tempfile::tempdir().unwrap();
    let envs = all_envs();
    let started = Instant::now();
    let run = cluster
        .xtask(&["ci", "--slurm", "--device", "cpu", "--envs", &envs, "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    eprintln!("ci --slurm took {:.1} s", started.elapsed().as_secs_f64());
    assert!(run.status.success(), "ci --slurm: {}", text(&run));
    let summary = read(&out.path().join("summary.md"));
    let junit = read(&out.path().join("junit.xml"));
    // One array task per environment, each with its job id and node.
    let names: Vec<&str> = envs.split(',').collect();
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let node = node.trim().split('.').next().unwrap();
    let rows: Vec<&str> = summary
        .lines()
        .filter(|l| l.contains("| slurm |"))
        .collect();
    assert_eq!(rows.len(), names.len(), "{summary}");
    let mut jobs = Vec::new();
    for (i, env) in names.iter().enumerate() {
        let row = rows
            .iter()
            .find(|r| r.starts_with(&format!("| {env} |")))
            .unwrap_or_else(|| panic!("no Slurm row for {env}:\n{summary}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (job, task) = cells[3].split_once('_').unwrap();
        assert_eq!(task, i.to_string(), "{row}");
        assert_eq!(cells[4], node, "{row}");
        assert_eq!(cells[5], "COMPLETED", "{row}");
        jobs.push(job.to_string());
        assert!(junit.contains(&format!(
            "<property name=\"slurm.job\" value=\"{}\"",
            cells[3]
        )));
    }
    jobs.dedup();
    assert_eq!(jobs.len(), 1, "one job array: {summary}");
    // Otherwise what a local `cargo xtask ci` on the same images wrote.
    assert_eq!(
        summary_comparable(&summary),
        summary_comparable(&read(&local.join("summary.md"))),
        "summary.md differs from the local gate's"
    );
    assert_eq!(
        junit_comparable(&junit),
        junit_comparable(&read(&local.join("junit.xml"))),
        "junit.xml differs from the local gate's"
    );
    // The report folders the summary links were written here too.
    for env in &names {
        assert!(out
            .path()
            .join(env)
            .join("efficientnet_lite0/index.html")
            .is_file());
    }
}

/// The summary's Slurm row of `env`: (job, node, state).
fn slurm_row(summary: &str, env: &str) -> (String, String, String) {
    let row = summary
        .lines()
        .find(|l| l.starts_with(&format!("| {env} | slurm |")))
        .unwrap_or_else(|| panic!("no Slurm row for {env}:\n{summary}"));
    let cells: Vec<String> = row.split('|').map(|c| c.trim().to_string()).collect();
    (cells[3].clone(), cells[4].clone(), cells[5].clone())
}

/// The env's failure line in the summary.
fn failed_because(summary: &str, env: &str, why: &str) {
    assert!(
        summary.contains("**FAIL**"),
        "the run must fail:\n{summary}"
    );
    let found = summary.lines().any(|l| l.contains(env) && l.contains(why));
    assert!(found, "{env} must fail with `{why}`:\n{summary}");
}

/// The default environment: its image is on this engine.
fn default_env() -> String {
    let spec = xtask::spec::Spec::load(&repo().join(xtask::spec::SPEC_FILE)).unwrap();
    spec.env(None).unwrap().name.clone()
}

#[test]
fn a_task_past_its_time_limit_is_a_failed_env() {
    let cluster = Cluster::start();
    let out = tempfile::tempdir().unwrap();
    let env = default_env();
    // The task sleeps before its check, past its one-minute limit (Slurm's
    // least): Slurm ends it (TIMEOUT) at its next sweep.
    let run = cluster
        .xtask(&["ci", "--slurm", "--device", "cpu", "--envs", &env])
        .args(["--time", "1", "--setup", "sleep 300", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(!run.status.success(), "{}", text(&run));
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let summary = read(&out.path().join("summary.md"));
    let (_, node, state) = slurm_row(&summary, &env);
    assert_eq!(state, "TIMEOUT", "{summary}");
    assert!(!node.is_empty());
    failed_because(&summary, &env, "TIMEOUT");
    let junit = read(&out.path().join("junit.xml"));
    assert!(junit.contains("errors=\"1\""), "{junit}");
}

#[test]
fn a_cancelled_task_is_a_failed_env_and_the_run_ends() {
    let cluster = Cluster::start();
    let out = tempfile::tempdir().unwrap();
    let env = default_env();
    let mut child = cluster
        .xtask(&["ci", "--slurm", "--device", "cpu", "--envs", &env])
        .args(["--setup", "sleep 300", "--poll", "1", "--out"])
        .arg(out.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Cancel the task once it runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let q = cluster.slurm("squeue", &["-h", "-r", "-o", "%i %T"]);
        let q = String::from_utf8_lossy(&q.stdout).into_owned();
        if let Some(line) = q.lines().find(|l| l.ends_with(" RUNNING")) {
            break line.split_whitespace().next().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "the task never ran: {q}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let cancel = cluster.slurm("scancel", &[&job]);
    assert!(cancel.status.success(), "{}", text(&cancel));
    // The run ends on its own (no hang), non-zero.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ci --slurm still runs 60 s after its only task was cancelled");
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let output = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(1), "{}", text(&output));
    let summary = read(&out.path().join("summary.md"));
    let (shown, _, state) = slurm_row(&summary, &env);
    assert_eq!(shown, job, "{summary}");
    assert_eq!(state, "CANCELLED", "{summary}");
    failed_because(&summary, &env, "CANCELLED");
}

#[test]
fn a_node_without_the_image_is_a_failed_env_naming_the_node() {
    let cluster = Cluster::start();
    let out = tempfile::tempdir().unwrap();
    // The default environment under a name no image on this engine has
    // (the lock's inputs do not include the name): a spec and lock beside
    // the repository's images/ and fixtures/.
    let env = default_env();
    let renamed = format!("{env}-elsewhere");
    let dir = tempfile::tempdir().unwrap();
    for f in [xtask::spec::SPEC_FILE, xtask::lock::LOCK_FILE] {
        let text = read(&repo().join(f)).replace(&env, &renamed);
        std::fs::write(dir.path().join(f), text).unwrap();
    }
    for d in ["images", "fixtures"] {
        std::os::unix::fs::symlink(repo().join(d), dir.path().join(d)).unwrap();
    }
    let spec = dir.path().join(xtask::spec::SPEC_FILE);
    let run = cluster
        .xtask(&[
            "ci", "--slurm", "--device", "cpu", "--envs", &renamed, "--spec",
        ])
        .arg(&spec)
        .arg("--lock")
        .arg(dir.path().join(xtask::lock::LOCK_FILE))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let summary = read(&out.path().join("summary.md"));
    let (_, node, state) = slurm_row(&summary, &renamed);
    assert_eq!(state, "FAILED", "{summary}");
    failed_because(&summary, &renamed, "has no image of");
    assert!(
        summary.contains(&format!("on {node})")),
        "names the node: {summary}"
    );
    // Nothing was built for it.
    let images = Command::new("docker")
        .args(["images", "-q", &format!("torchenv/{renamed}")])
        .output()
        .unwrap();
    assert!(images.stdout.is_empty(), "{}", text(&images));
}

#[test]
fn dry_run_prints_the_script_and_submits_nothing() {
    let cluster = Cluster::start();
    let out = tempfile::tempdir().unwrap();
    let envs = all_envs();
    let run = cluster
        .xtask(&[
            "ci",
            "--slurm",
            "--dry-run",
            "--envs",
            &envs,
            "--time",
            "30",
        ])
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    let script = String::from_utf8_lossy(&run.stdout);
    assert!(script.starts_with("#!/bin/bash\n"), "{script}");
    assert!(script.contains(&format!(
        "#SBATCH --array=0-{}",
        envs.split(',').count() - 1
    )));
    assert!(script.contains("#SBATCH --time=30"));
    let q = cluster.slurm("squeue", &["-h"]);
    assert!(q.stdout.is_empty(), "nothing submitted: {}", text(&q));
    assert!(!out.path().join("slurm").exists());
}

#[test]
fn a_node_without_the_build_cache_finds_the_image_by_its_labels() {
    // What a task runs on a node that never built anything: an empty
    // cache, so the image's tag (which names the harness build) cannot be
    // computed; the image on the engine is found by its labels and base
    // layers instead, checked, and nothing is built or fetched.
    let cache = tempfile::tempdir().unwrap();
    let result = cache.path().join("result.json");
    let env = default_env();
    let run = Command::new(XTASK)
        .current_dir(repo())
        .env("TORCHENV_CACHE", cache.path())
        .env_remove("TORCHENV_IMAGE")
        .args(["check", &env, "--no-build", "--device", "cpu", "--weights"])
        .arg(format!(
            "efficientnet_lite0={}",
            var("TORCHENV_TEST_WEIGHTS")
        ))
        .arg("--result")
        .arg(&result)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    let found: xtask::gate::EnvResult =
        serde_json::from_slice(&std::fs::read(&result).unwrap()).unwrap();
    assert!(found.passed(), "{found:?}");
    assert_eq!(found.env, env);
    let left: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        // `engines/`: what this engine refused before (a few bytes).
        .filter(|n| n != "result.json" && n != "engines")
        .collect();
    assert!(left.is_empty(), "nothing built or fetched: {left:?}");
}
