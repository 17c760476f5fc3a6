//! `cargo xtask check`: run `harness cuda` and `harness eval` for each model
//! of an environment — in its container (the product path) or, for tests,
//! with a harness binary on the host — and judge the results against the
//! baselines.
//!
//! The container is the one `up` would create, in its one-shot mode
//! (`launch::plan::ContainerPlan::one_shot`): the same GPU requests
//! (`gpus:` resolved against the daemon by `launch::plan::Resources`), the
//! same shared memory, IPC and ulimits; plus the harness command, no ports,
//! no network, dataset and weights read-only and one output folder
//! read-write.
//!
//! May use: `build::image` (where the harness is), `docker`, `gate::baseline`, `gate::compare`, `gate::report`, `launch`, `spec`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::baseline::{Accuracy, SnapFile, Store, Stored, Versions};
use super::compare::{self, Comparison};
use super::report::{self, CudaReport};
use crate::docker::Docker;
use crate::launch::plan::{ContainerPlan, OneShot, Resources};
use crate::launch::{oneshot, LaunchError};
use crate::spec::Env;

/// Where the dataset, weights and output appear inside the container.
const DATA: &str = "/data";
const WEIGHTS: &str = "/weights";
const OUT: &str = "/out";
pub use crate::build::image::IMAGE_HARNESS;

/// `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    Cpu,
    Cuda,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }

    /// The default: CUDA when GPUs are expected, else CPU.
    pub fn default_for(expect_gpus: u32) -> Device {
        if expect_gpus > 0 {
            Device::Cuda
        } else {
            Device::Cpu
        }
    }
}

/// What `env`'s containers get from the daemon, resolved exactly as `up`
/// does ([`Resources::resolve`]: `auto` without an NVIDIA runtime or CDI
/// devices is no GPU, `none` is none, an explicit request the daemon cannot
/// serve is `LaunchError::GpuUnavailable`). A check on CUDA (or expecting
/// GPUs) in an environment that resolves to no GPU is
/// [`LaunchError::NoGpus`], never a silent request for all GPUs.
pub async fn container_resources(
    docker: &Docker,
    env: &Env,
    device: Device,
    expect_gpus: u32,
) -> Result<Resources, LaunchError> {
    let needs_gpus = device == Device::Cuda || expect_gpus > 0;
    let wanted = match expect_gpus {
        0 => format!("check --device {}", device.as_str()),
        n => format!("check --device {} --expect-gpus {n}", device.as_str()),
    };
    Resources::resolve_for_run(docker, env, needs_gpus, &wanted, "gate").await
}

/// How the harness runs.
pub enum Runner {
    /// In a one-shot container of `image`, the environment's container in
    /// one-shot mode with `resources`.
    Container {
        docker: Docker,
        image: String,
        resources: Resources,
    },
    /// A harness binary on this machine; `env` is added to its environment
    /// (e.g. `LD_LIBRARY_PATH` to a venv's torch/lib).
    Host {
        harness: PathBuf,
        env: Vec<(String, String)>,
    },
}

/// What `check` needs besides the environment.
pub struct CheckOptions {
    pub device: Device,
    pub expect_gpus: u32,
    /// The weights file of each model.
    pub weights: BTreeMap<String, PathBuf>,
    pub store: Store,
    /// Keep each model's report folder (`report.json` and the gallery's
    /// thumbnails) as `<reports>/<model>/`; None: a temporary folder.
    pub reports: Option<PathBuf>,
}

/// One check of an environment: `cuda`, a model's eval, cross-env agreement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    pub name: String,
    pub outcome: Outcome,
    /// One line.
    pub message: String,
    /// The diff, or the harness's output.
    pub detail: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Pass,
    /// The run differs from its baseline beyond tolerance, or has none.
    Fail,
    /// The check could not run (harness crashed, no weights, …).
    Error,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Pass
    }
}

/// The verdict of one model in one environment, for the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
    pub model: String,
    pub run: Option<Accuracy>,
    pub comparison: Option<Comparison>,
    /// `pass`, `REGRESSION`, `no baseline`, `error`.
    pub verdict: String,
    /// The harness's report, when it wrote one.
    pub report: Option<Box<report::EvalReport>>,
}

/// Everything `check` found for one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvResult {
    pub env: String,
    pub cases: Vec<CaseResult>,
    pub models: Vec<ModelResult>,
    pub versions: Option<Versions>,
    pub cuda: Option<CudaReport>,
    /// Not failures: version changes, pending files written, …
    pub notices: Vec<String>,
    /// Where a scheduler ran the check (`ci --slurm`); `None` when it ran
    /// here.
    #[serde(default)]
    pub placement: Option<Placement>,
}

/// Where a scheduler ran an environment's check: shown in the summary and
/// as JUnit properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The scheduler, e.g. `slurm`.
    pub scheduler: String,
    /// The job as the scheduler names it, e.g. `1234_0` (array job 1234,
    /// task 0).
    pub job: String,
    /// The node it ran on (empty when it never started).
    pub node: String,
    /// The scheduler's final state, e.g. `COMPLETED`, `TIMEOUT`.
    pub state: String,
}

impl EnvResult {
    pub fn passed(&self) -> bool {
        self.cases.iter().all(CaseResult::passed)
    }

    /// An environment whose checks could not run: one `case` in error,
    /// its message the first line of `why`.
    pub fn not_checked(env: &str, case: &str, why: &str, seconds: f64) -> EnvResult {
        EnvResult {
            env: env.to_string(),
            cases: vec![CaseResult {
                name: case.to_string(),
                outcome: Outcome::Error,
                message: why.lines().next().unwrap_or_default().to_string(),
                detail: why.to_string(),
                seconds,
            }],
            models: Vec::new(),
            versions: None,
            cuda: None,
            notices: Vec::new(),
            placement: None,
        }
    }
}

/// A harness invocation's outcome.
struct Ran {
    exit_code: i64,
    stdout: String,
    stderr: String,
}

/// The harness arguments; paths are given as host paths and mapped for the
/// container.
enum Arg {
    Lit(String),
    Data,
    Weights(PathBuf),
    Out(String),
}

impl Runner {
    async fn harness(&self, env: &Env, out_dir: &Path, args: &[Arg]) -> Result<Ran, String> {
        match self {
            Runner::Host { harness, env: vars } => {
                let mut cmd = tokio::process::Command::new(harness);
                for a in args {
                    match a {
                        Arg::Lit(s) => cmd.arg(s),
                        Arg::Data => cmd.arg(&env.harness.dataset),
                        Arg::Weights(p) => cmd.arg(p),
                        Arg::Out(f) => cmd.arg(out_dir.join(f)),
                    };
                }
                cmd.envs(vars.iter().map(|(k, v)| (k, v)))
                    .kill_on_drop(true)
                    .stdin(std::process::Stdio::null());
                log_command(&format!("{} {}", harness.display(), show(args)));
                let out = cmd
                    .output()
                    .await
                    .map_err(|e| format!("running {}: {e}", harness.display()))?;
                Ok(Ran {
                    exit_code: out.status.code().map_or(-1, i64::from),
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                })
            }
            Runner::Container {
                docker,
                image,
                resources,
            } => {
                let plan = one_shot_plan(image, env, resources, out_dir, args);
                log_command(&format!("docker run {image} harness {}", show(args)));
                let out = oneshot::run(docker, plan, &resources.engine_id)
                    .await
                    .map_err(|e| format!("{e}"))?;
                Ok(Ran {
                    exit_code: out.exit_code,
                    stdout: out.stdout,
                    stderr: host_paths(&out.stderr, args),
                })
            }
        }
    }
}

/// The gate's container for one harness run: the environment's container
/// in one-shot mode, host paths of `args` mapped to their mounts.
fn one_shot_plan(
    image: &str,
    env: &Env,
    resources: &Resources,
    out_dir: &Path,
    args: &[Arg],
) -> ContainerPlan {
    let mut inputs = vec![(env.harness.dataset.clone(), DATA.to_string())];
    let mut cmd = vec![IMAGE_HARNESS.to_string()];
    for a in args {
        cmd.push(match a {
            Arg::Lit(s) => s.clone(),
            Arg::Data => DATA.into(),
            Arg::Weights(p) => {
                let target = weights_target(p);
                inputs.push((p.clone(), target.clone()));
                target
            }
            Arg::Out(f) => format!("{OUT}/{f}"),
        });
    }
    let job = OneShot {
        cmd,
        inputs,
        output: (out_dir.to_path_buf(), OUT.to_string()),
        user: oneshot::owner(out_dir),
        purpose: "gate".into(),
    };
    ContainerPlan::one_shot(image.to_string(), env, resources, job)
}

/// Where the weights file `p` is mounted in the container.
fn weights_target(p: &Path) -> String {
    let name = p
        .file_name()
        .map_or("weights".into(), |n| n.to_string_lossy().into_owned());
    format!("{WEIGHTS}/{name}")
}

/// `text` (the harness's messages) naming the weights files by their host
/// paths instead of their mount points, so an error names the file the
/// user gave.
fn host_paths(text: &str, args: &[Arg]) -> String {
    args.iter().fold(text.to_string(), |text, a| match a {
        Arg::Weights(p) => text.replace(&weights_target(p), &p.display().to_string()),
        _ => text,
    })
}

/// How a harness run ended, in words: exit 137 is a SIGKILL from outside
/// (`docker kill`, the out-of-memory killer), not a harness failure.
fn ended(code: i64) -> String {
    match code {
        137 => "was killed (exit 137, SIGKILL: `docker kill` or out of memory)".into(),
        code => format!("exited {code}"),
    }
}

fn show(args: &[Arg]) -> String {
    args.iter()
        .map(|a| match a {
            Arg::Lit(s) => s.clone(),
            Arg::Data => "<dataset>".into(),
            Arg::Weights(p) => p.display().to_string(),
            Arg::Out(f) => format!("<out>/{f}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn log_command(line: &str) {
    eprintln!("gate: $ {line}");
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Where the harness writes: a kept folder, or a temporary one.
enum OutDir {
    Kept(PathBuf),
    Temp(tempfile::TempDir),
}

impl OutDir {
    fn new(kept: Option<&Path>) -> std::io::Result<OutDir> {
        match kept {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                Ok(OutDir::Kept(dir.to_path_buf()))
            }
            None => Ok(OutDir::Temp(
                tempfile::Builder::new()
                    .prefix("torchenv-gate-")
                    .tempdir()?,
            )),
        }
    }

    fn path(&self) -> &Path {
        match self {
            OutDir::Kept(p) => p,
            OutDir::Temp(t) => t.path(),
        }
    }
}

/// Runs every check of `env` and judges it; never stops at the first
/// failure, so one run reports everything.
pub async fn check_env(runner: &Runner, env: &Env, opts: &CheckOptions) -> EnvResult {
    let mut result = EnvResult {
        env: env.name.clone(),
        cases: Vec::new(),
        models: Vec::new(),
        versions: None,
        cuda: None,
        notices: Vec::new(),
        placement: None,
    };
    let out_dir = match OutDir::new(opts.reports.as_deref()) {
        Ok(d) => d,
        Err(e) => {
            result.cases.push(CaseResult {
                name: "setup".into(),
                outcome: Outcome::Error,
                message: format!("cannot create an output folder: {e}"),
                detail: String::new(),
                seconds: 0.0,
            });
            return result;
        }
    };
    // 1. harness cuda
    let case = cuda_case(runner, env, opts, out_dir.path(), &mut result).await;
    result.cases.push(case);
    // 2. the versions baseline decides which probability tolerance applies.
    let stored_versions = stored_versions(env, opts, &mut result);
    // 3. harness eval per model
    for model in &env.harness.models {
        let started = Instant::now();
        let (mut case, model_result) = eval_model(
            runner,
            env,
            opts,
            model,
            out_dir.path(),
            stored_versions.as_ref(),
            &mut result,
        )
        .await;
        case.seconds = started.elapsed().as_secs_f64();
        result.cases.push(case);
        result.models.push(model_result);
    }
    // 4. versions: a change is a notice (and a pending snapshot), not a failure.
    judge_versions(env, opts, stored_versions.as_ref(), &mut result);
    result
}

/// `harness cuda --json`: passes when the harness and its report say so;
/// the report is kept in `result`.
async fn cuda_case(
    runner: &Runner,
    env: &Env,
    opts: &CheckOptions,
    out_dir: &Path,
    result: &mut EnvResult,
) -> CaseResult {
    let started = Instant::now();
    let args = [
        Arg::Lit("cuda".into()),
        Arg::Lit("--json".into()),
        Arg::Lit("--expect-gpus".into()),
        Arg::Lit(opts.expect_gpus.to_string()),
    ];
    let ran = match runner.harness(env, out_dir, &args).await {
        Err(e) => return error_case("cuda", e, started),
        Ok(ran) => ran,
    };
    let cuda = match report::parse_cuda(&ran.stdout) {
        Err(e) => {
            return error_case(
                "cuda",
                format!(
                    "harness cuda {} without a report ({e})\n{}",
                    ended(ran.exit_code),
                    tail(&ran.stderr, 30)
                ),
                started,
            )
        }
        Ok(cuda) => cuda,
    };
    let ok = ran.exit_code == 0 && cuda.exit_code == 0;
    let message = format!(
        "{} (exit {}; CUDA runtime {}, cuDNN {}, {} device(s))",
        cuda.verdict,
        ran.exit_code,
        cuda.cuda_runtime_version.as_deref().unwrap_or("-"),
        cuda.cudnn_version.as_deref().unwrap_or("-"),
        cuda.device_count
    );
    result.cuda = Some(cuda);
    CaseResult {
        name: "cuda".into(),
        outcome: if ok { Outcome::Pass } else { Outcome::Fail },
        message,
        detail: ran.stdout,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The stored versions baseline of `env`; unreadable is a notice and
/// counts as missing.
fn stored_versions(env: &Env, opts: &CheckOptions, result: &mut EnvResult) -> Option<Versions> {
    let versions_name = Store::versions_name(&env.name);
    match opts.store.read(&versions_name) {
        Ok(Stored::Found(f)) => match Versions::from_yaml(&f.body) {
            Ok(v) => Some(v),
            Err(e) => {
                result.notices.push(format!(
                    "{}: unreadable ({e}); treated as missing",
                    opts.store.path(&versions_name).display()
                ));
                None
            }
        },
        Ok(Stored::Missing) => None,
        Err(e) => {
            result.notices.push(e);
            None
        }
    }
}

/// Compares the run's versions with the stored ones: none stored is a
/// failed `versions` case (and a pending snapshot), a change is a notice.
fn judge_versions(
    env: &Env,
    opts: &CheckOptions,
    stored_versions: Option<&Versions>,
    result: &mut EnvResult,
) {
    // The eval report has no CUDA/cuDNN versions on CPU; `harness cuda` does.
    if let (Some(v), Some(c)) = (result.versions.as_mut(), result.cuda.as_ref()) {
        v.cuda = v.cuda.take().or_else(|| c.cuda_runtime_version.clone());
        v.cudnn = v.cudnn.take().or_else(|| c.cudnn_version.clone());
    }
    let Some(current) = result.versions.clone() else {
        return;
    };
    let versions_name = Store::versions_name(&env.name);
    let snap = SnapFile {
        expression: format!("versions of {}", env.name),
        body: current.to_yaml(),
    };
    let Some(stored) = stored_versions else {
        let case = match opts.store.write_new(&versions_name, &snap) {
            Ok(path) => CaseResult {
                name: "versions".into(),
                outcome: Outcome::Fail,
                message: format!("no versions baseline; wrote {}", path.display()),
                detail: format!("{}\n{ACCEPT_HINT}\n", current.to_yaml()),
                seconds: 0.0,
            },
            Err(e) => error_case("versions", e, Instant::now()),
        };
        result.cases.push(case);
        return;
    };
    let changes = stored.changes(&current);
    if changes.is_empty() {
        if let Err(e) = opts.store.remove_new(&versions_name) {
            result.notices.push(e);
        }
        return;
    }
    let written = opts.store.write_new(&versions_name, &snap);
    result.notices.push(format!(
        "versions changed: {}{}",
        changes.join(", "),
        match written {
            Ok(p) => format!(" (wrote {}; {ACCEPT_HINT})", p.display()),
            Err(e) => format!(" (could not write the pending snapshot: {e})"),
        }
    ));
}

/// How to accept pending baselines (see fixtures/baselines/README.md).
pub const ACCEPT_HINT: &str =
    "review and accept with `cargo insta review` (or `cargo insta accept`) from the repository root";

fn error_case(name: &str, message: String, started: Instant) -> CaseResult {
    let first = message.lines().next().unwrap_or_default().to_string();
    CaseResult {
        name: name.into(),
        outcome: Outcome::Error,
        message: first,
        detail: message,
        seconds: started.elapsed().as_secs_f64(),
    }
}

async fn eval_model(
    runner: &Runner,
    env: &Env,
    opts: &CheckOptions,
    model: &str,
    out_dir: &Path,
    stored_versions: Option<&Versions>,
    result: &mut EnvResult,
) -> (CaseResult, ModelResult) {
    let case_name = format!("eval {model}");
    let now = Instant::now();
    let errored = |message: String| {
        (
            error_case(&case_name, message, now),
            ModelResult {
                model: model.to_string(),
                run: None,
                comparison: None,
                verdict: "error".into(),
                report: None,
            },
        )
    };
    let Some(weights) = opts.weights.get(model) else {
        return errored(format!("no weights file for {model}"));
    };
    let args = [
        Arg::Lit("eval".into()),
        Arg::Lit("--data".into()),
        Arg::Data,
        Arg::Lit("--model".into()),
        Arg::Lit(model.into()),
        Arg::Lit("--weights".into()),
        Arg::Weights(weights.clone()),
        Arg::Lit("--device".into()),
        Arg::Lit(opts.device.as_str().into()),
        Arg::Lit("--deterministic".into()),
        Arg::Lit("--out".into()),
        Arg::Out(model.into()),
    ];
    let ran = match runner.harness(env, out_dir, &args).await {
        Ok(r) => r,
        Err(e) => return errored(e),
    };
    if ran.exit_code != 0 {
        // The harness's own `error: …` line says what was wrong (a bad
        // weights file, by the path the user gave).
        let why = ran
            .stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .map_or(String::new(), |e| format!(": {e}"));
        return errored(format!(
            "harness eval {}{why}\n{}",
            ended(ran.exit_code),
            tail(&ran.stderr, 30)
        ));
    }
    let path = out_dir.join(model).join("report.json");
    let report = match std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e}", path.display()))
        .and_then(|t| report::parse_eval(&t))
    {
        Ok(r) => r,
        Err(e) => return errored(format!("harness eval wrote no usable report: {e}")),
    };
    if result.versions.is_none() {
        result.versions = Some(Versions::from_report(
            &env.name,
            &report.settings.device,
            &report.versions,
        ));
    }
    let run = Accuracy::from_report(&env.name, &report);
    let gpu = report.settings.is_gpu() || stored_versions.is_some_and(Versions::is_gpu);
    let (case, comparison, verdict) = judge(&opts.store, env, &run, gpu);
    (
        CaseResult {
            name: case_name,
            ..case
        },
        ModelResult {
            model: model.to_string(),
            run: Some(run),
            comparison,
            verdict,
            report: Some(Box::new(report)),
        },
    )
}

/// Compares `run` with its stored baseline; writes `<name>.snap.new` when
/// they disagree (or no baseline exists) and removes a stale one when they
/// agree.
pub fn judge(
    store: &Store,
    env: &Env,
    run: &Accuracy,
    gpu: bool,
) -> (CaseResult, Option<Comparison>, String) {
    let name = Store::accuracy_name(&env.name, &run.model);
    let snap = SnapFile {
        expression: format!("harness eval of {} in {}", run.model, env.name),
        body: run.to_yaml(),
    };
    let case = |outcome, message: String, detail: String| CaseResult {
        name: format!("eval {}", run.model),
        outcome,
        message,
        detail,
        seconds: 0.0,
    };
    let pending = |store: &Store| match store.write_new(&name, &snap) {
        Ok(p) => format!("wrote {}; {ACCEPT_HINT}", p.display()),
        Err(e) => format!("could not write the pending snapshot: {e}"),
    };
    let base = match store.read(&name) {
        Ok(Stored::Found(f)) => match Accuracy::from_yaml(&f.body) {
            Ok(b) => b,
            Err(e) => {
                let note = pending(store);
                return (
                    case(
                        Outcome::Fail,
                        format!(
                            "baseline {} is unreadable: {e}",
                            store.path(&name).display()
                        ),
                        note,
                    ),
                    None,
                    "bad baseline".into(),
                );
            }
        },
        Ok(Stored::Missing) => {
            let note = pending(store);
            return (
                case(
                    Outcome::Fail,
                    format!(
                        "no baseline {} for {} in {}",
                        store.path(&name).display(),
                        run.model,
                        env.name
                    ),
                    format!(
                        "top-1 {:.2}%, top-5 {:.2}% over {} images\n{note}\n",
                        run.metrics.top1_pct(),
                        run.metrics.top5_pct(),
                        run.metrics.evaluated
                    ),
                ),
                None,
                "no baseline".into(),
            );
        }
        Err(e) => return (case(Outcome::Error, e.clone(), e), None, "error".into()),
    };
    let comparison = compare::compare(&base, run, &env.harness.tolerances, gpu);
    let mut diff = compare::render(&comparison);
    if comparison.passed() {
        if let Err(e) = store.remove_new(&name) {
            diff += &format!("{e}\n");
        }
        let message = format!(
            "top-1 {:.2}%, {} flip(s), max |Δp| {}",
            comparison.top1.1,
            comparison.flips.len(),
            comparison
                .max_prob
                .as_ref()
                .map_or("-".into(), |m| format!("{:.4}", m.delta))
        );
        (
            case(Outcome::Pass, message, diff),
            Some(comparison),
            "pass".into(),
        )
    } else {
        diff += &format!("  {}\n", pending(store));
        let message = comparison.failures.join("; ");
        (
            case(Outcome::Fail, message, diff),
            Some(comparison),
            "REGRESSION".into(),
        )
    }
}
