//! `cargo xtask eval`: EfficientNet on the user's own data, in an
//! environment's container, and the report folder people look at.
//!
//! The container is the environment's own in one-shot mode (the gate's
//! path, `launch::plan::ContainerPlan::one_shot`): GPUs as the spec (or
//! `--gpus`) resolve, same shared memory, IPC and ulimits as `up`, no
//! network, the host user; the dataset, labels and weights mounted
//! read-only and the report folder read-write. The harness streams its
//! progress ([`progress`]) and writes `report.json` and the gallery's
//! thumbnails; the summary, plots and page are made here
//! ([`crate::report_view`]); the folder appears complete or not at all
//! ([`folder`]).
//!
//! May use: `build::image` (where the harness is), `docker`, `exit`,
//! `launch`, `report_view`, `spec`.

pub mod folder;
pub mod progress;

use std::path::{Path, PathBuf};

use crate::build::image::IMAGE_HARNESS;
use crate::docker::run::RunError;
use crate::docker::Docker;
use crate::exit;
use crate::launch::plan::{ContainerPlan, OneShot, Resources};
use crate::launch::{oneshot, LaunchError};
use crate::report_view::{self, ReportViewError};
use crate::spec::Env;
use folder::{FolderError, Staging};
use progress::EvalProgress;

/// Where the inputs and the report folder appear in the container.
const DATA: &str = "/data";
const LABELS: &str = "/labels";
const SYNSETS: &str = "/synsets";
const WEIGHTS: &str = "/weights";
const OUT: &str = "/out";

/// Label files found beside a flat dataset folder (the harness looks
/// inside it; the parent is not mounted, so it is looked at here).
const PARENT_LABELS: [&str; 2] = [
    "LOC_val_solution.csv",
    "ILSVRC2012_validation_ground_truth.txt",
];
/// The devkit's synset order, looked for next to a labels file.
const DEVKIT_SYNSETS: &str = "map_clsloc.txt";

/// Why an eval did not produce its report folder.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EvalError {
    #[error("dataset {path}: {what}")]
    #[diagnostic(code(torchenv::eval::dataset))]
    Input { path: PathBuf, what: String },
    #[error("weights {path} cannot be read: {source}")]
    #[diagnostic(code(torchenv::eval::weights))]
    Weights {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("weights {url}: {message}")]
    #[diagnostic(code(torchenv::eval::weights_url))]
    WeightsUrl { url: String, message: String },
    #[error("{model}: {message}")]
    #[diagnostic(code(torchenv::eval::harness), help("{detail}"))]
    Harness {
        model: String,
        /// The harness's exit code.
        code: i64,
        message: String,
        detail: String,
    },
    #[error("{model}: the harness wrote no readable report ({why})")]
    #[diagnostic(code(torchenv::eval::report))]
    Report { model: String, why: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Folder(#[from] FolderError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    View(#[from] ReportViewError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Launch(#[from] LaunchError),
}

impl EvalError {
    /// Bad input and an unwritable report folder are 2 (the harness's own
    /// usage code included); what the container or engine did is theirs.
    pub fn exit_code(&self) -> u8 {
        match self {
            EvalError::Input { .. }
            | EvalError::Weights { .. }
            | EvalError::WeightsUrl { .. }
            | EvalError::Folder(_)
            | EvalError::View(ReportViewError::Write { .. }) => exit::BAD_INPUT,
            EvalError::View(ReportViewError::Draw { .. }) => exit::FAILED,
            EvalError::Harness { code: 2, .. } => exit::BAD_INPUT,
            EvalError::Run(RunError::Docker(e)) if e.is_unreachable() => exit::DOCKER_UNREACHABLE,
            EvalError::Harness { .. } | EvalError::Report { .. } | EvalError::Run(_) => {
                exit::FAILED
            }
            EvalError::Launch(e) => e.exit_code(),
        }
    }
}

/// The dataset as given: a folder, and the labels files the harness needs.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub labels: Option<PathBuf>,
    pub synsets: Option<PathBuf>,
    /// Folders outside `root` that its symlinks point into: host folder →
    /// where the links lead in the container (mounted read-only there).
    pub link_targets: Vec<(PathBuf, String)>,
}

/// Container paths a dataset's links may not lead into (the image's own
/// system and the eval's mounts).
const RESERVED: [&str; 14] = [
    "/", "/bin", "/sbin", "/lib", "/lib64", "/usr", "/etc", "/opt", "/proc", "/sys", "/dev", OUT,
    LABELS, WEIGHTS,
];
/// At most this many folders outside the dataset are mounted for links.
const MAX_LINK_TARGETS: usize = 64;

impl Dataset {
    /// Checks what the harness cannot see from inside the container: the
    /// folder exists, the labels files exist, and a label file beside the
    /// folder (not mounted) is found and passed on.
    pub fn resolve(
        root: &Path,
        labels: Option<&Path>,
        synsets: Option<&Path>,
    ) -> Result<Dataset, EvalError> {
        let input = |path: &Path, what: &str| EvalError::Input {
            path: path.to_path_buf(),
            what: what.to_string(),
        };
        let root = std::fs::canonicalize(root).map_err(|e| input(root, &format!("{e}")))?;
        if !root.is_dir() {
            return Err(input(&root, "not a folder"));
        }
        // Bind mounts need absolute host paths.
        let file = |f: &Path| match std::fs::canonicalize(f) {
            Ok(abs) if abs.is_file() => Ok(abs),
            _ => Err(input(f, "labels file not found")),
        };
        let mut labels = labels.map(file).transpose()?;
        let synsets = synsets.map(file).transpose()?;
        if labels.is_none() && !has_subfolders(&root) && !has_label_file(&root) {
            labels = root.parent().and_then(|p| {
                PARENT_LABELS
                    .iter()
                    .map(|n| p.join(n))
                    .find(|f| f.is_file())
            });
        }
        let synsets = synsets.or_else(|| {
            let beside = labels.as_ref()?.parent()?.join(DEVKIT_SYNSETS);
            beside.is_file().then_some(beside)
        });
        let link_targets = link_targets(&root)?;
        Ok(Dataset {
            root,
            labels,
            synsets,
            link_targets,
        })
    }
}

/// The folders outside `root` that the symlinks in it and in its
/// sub-folders lead to, as (host folder, container folder): a link
/// resolves in the container as it does on the host once its target's
/// folder is mounted where the link, read from `/data`, points.
fn link_targets(root: &Path) -> Result<Vec<(PathBuf, String)>, EvalError> {
    let mut found: Vec<(PathBuf, String)> = Vec::new();
    let mut visit = |host: &Path, container: &str| -> Result<(), EvalError> {
        let Ok(text) = std::fs::read_link(host) else {
            return Ok(());
        };
        let (host_target, container_target) = if text.is_absolute() {
            (text.clone(), normalize(&text.display().to_string()))
        } else {
            let c_dir = container.rsplit_once('/').map_or("/", |(d, _)| d);
            (
                host.parent().unwrap_or(root).join(&text),
                normalize(&format!("{c_dir}/{}", text.display())),
            )
        };
        if container_target == DATA || container_target.starts_with(&format!("{DATA}/")) {
            return Ok(());
        }
        let c_dir = container_target
            .rsplit_once('/')
            .map_or("/".to_string(), |(d, _)| {
                if d.is_empty() {
                    "/".into()
                } else {
                    d.into()
                }
            });
        // A dangling link is left to the harness (an unreadable image).
        let Some(h_dir) = host_target
            .parent()
            .and_then(|d| std::fs::canonicalize(d).ok())
        else {
            return Ok(());
        };
        if found.iter().any(|(_, c)| *c == c_dir) {
            return Ok(());
        }
        if RESERVED
            .iter()
            .any(|r| c_dir == *r || (*r != "/" && c_dir.starts_with(&format!("{r}/"))))
            || c_dir == DATA
        {
            return Err(EvalError::Input {
                path: host.to_path_buf(),
                what: format!(
                    "links into {c_dir}, which the container needs for itself; link to a copy elsewhere"
                ),
            });
        }
        found.push((h_dir, c_dir));
        if found.len() > MAX_LINK_TARGETS {
            return Err(EvalError::Input {
                path: root.to_path_buf(),
                what: format!(
                    "its links lead into more than {MAX_LINK_TARGETS} folders outside it; link fewer folders or copy the images"
                ),
            });
        }
        Ok(())
    };
    for (host, container, is_dir) in entries(root, DATA) {
        if is_dir {
            for (h, c, _) in entries(&host, &container) {
                visit(&h, &c)?;
            }
        } else {
            visit(&host, &container)?;
        }
    }
    Ok(found)
}

/// (host path, container path, is a real folder) of `dir`'s entries.
fn entries(dir: &Path, container: &str) -> Vec<(PathBuf, String, bool)> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    read.flatten()
        .map(|e| {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let name = e.file_name().to_string_lossy().into_owned();
            (e.path(), format!("{container}/{name}"), is_dir)
        })
        .collect()
}

/// `/a/./b/../c` → `/a/c` (lexically, as the kernel walks a link's path
/// when no component is itself a link).
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn has_subfolders(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .is_ok_and(|mut it| it.any(|e| e.is_ok_and(|e| e.file_type().is_ok_and(|t| t.is_dir()))))
}

fn has_label_file(dir: &Path) -> bool {
    PARENT_LABELS.iter().any(|n| dir.join(n).is_file())
}

/// One model's eval in one environment.
#[derive(Debug, Clone)]
pub struct Request {
    pub env: Env,
    pub image: String,
    pub resources: Resources,
    pub dataset: Dataset,
    pub model: String,
    /// The weights file on this machine.
    pub weights: PathBuf,
    /// The weights as the user named them (path or URL), for the report.
    pub weights_source: String,
    /// `weights` is an exported ONNX file, run with onnxruntime (`--onnx`).
    pub onnx: bool,
    /// Harness options passed as they are (`--device`, `--batch-size`, …).
    pub options: Vec<String>,
    /// The report folder to make.
    pub out: PathBuf,
}

/// A finished eval.
#[derive(Debug)]
pub struct Finished {
    pub out: PathBuf,
    pub report: report::EvalReport,
}

/// Runs `req` and makes its report folder.
pub async fn run(
    docker: &Docker,
    req: &Request,
    display: &mut EvalProgress,
) -> Result<Finished, EvalError> {
    std::fs::File::open(&req.weights).map_err(|source| EvalError::Weights {
        path: req.weights.clone(),
        source,
    })?;
    let staging = Staging::create(&req.out)?;
    let plan = plan(req, staging.path());
    let ran = oneshot::run_watching(docker, plan, &req.resources.engine_id, &mut |line| {
        display.line(line)
    })
    .await;
    display.finish();
    let ran = ran?;
    if ran.exit_code != 0 {
        return Err(harness_failed(req, ran.exit_code, &ran.stderr));
    }
    let report_path = staging.path().join("report.json");
    let mut report = std::fs::read_to_string(&report_path)
        .map_err(|e| e.to_string())
        .and_then(|text| report::parse_eval(&text))
        .map_err(|why| EvalError::Report {
            model: req.model.clone(),
            why,
        })?;
    // The report names what the user gave, not the container's mounts.
    report.weights.source = req.weights_source.clone();
    report.dataset.root = req.dataset.root.display().to_string();
    report.dataset.labels_file = report
        .dataset
        .labels_file
        .map(|l| oneshot::host_paths(&mount_map(req), &l));
    let json = serde_json::to_vec_pretty(&report).map_err(|e| EvalError::Report {
        model: req.model.clone(),
        why: e.to_string(),
    })?;
    report_view::files::write_atomic(&staging.path().join("report.json"), &json)?;
    report_view::write_folder(&report, staging.path())?;
    let out = staging.commit()?;
    Ok(Finished { out, report })
}

/// The one-shot container of `req`, writing into `staging`.
fn plan(req: &Request, staging: &Path) -> ContainerPlan {
    let ds = &req.dataset;
    let mut inputs = vec![(ds.root.clone(), DATA.to_string())];
    inputs.extend(ds.link_targets.iter().cloned());
    let mut cmd: Vec<String> = [IMAGE_HARNESS, "eval", "--progress", "--data", DATA]
        .map(String::from)
        .to_vec();
    let mut mount = |host: &Path, dir: &str, flag: &str| {
        let name = host
            .file_name()
            .map_or("file".into(), |n| n.to_string_lossy().into_owned());
        let target = format!("{dir}/{name}");
        inputs.push((host.to_path_buf(), target.clone()));
        cmd.extend([flag.to_string(), target]);
    };
    if let Some(l) = &ds.labels {
        mount(l, LABELS, "--labels");
    }
    if let Some(s) = &ds.synsets {
        mount(s, SYNSETS, "--synsets");
    }
    let flag = if req.onnx { "--onnx" } else { "--weights" };
    mount(&req.weights, WEIGHTS, flag);
    cmd.extend(["--model".into(), req.model.clone()]);
    cmd.extend(["--out".into(), OUT.into()]);
    cmd.extend(req.options.iter().cloned());
    let job = OneShot {
        cmd,
        inputs,
        output: (staging.to_path_buf(), OUT.to_string()),
        user: oneshot::owner(staging),
        purpose: "eval".into(),
    };
    ContainerPlan::one_shot(req.image.clone(), &req.env, &req.resources, job)
}

/// The harness's error, its container paths put back as the host's.
fn harness_failed(req: &Request, code: i64, stderr: &str) -> EvalError {
    let said = oneshot::HarnessSaid::read(stderr, code, &mount_map(req));
    EvalError::Harness {
        model: req.model.clone(),
        code,
        message: said.message,
        detail: format!("the harness's last output:\n{}", said.tail),
    }
}

/// The container's mount points and the host paths they stand for.
fn mount_map(req: &Request) -> Vec<(String, String)> {
    let ds = &req.dataset;
    let mut pairs: Vec<(String, String)> = vec![
        (DATA.into(), ds.root.display().to_string()),
        (OUT.into(), req.out.display().to_string()),
    ];
    let mut file = |host: Option<&PathBuf>, dir: &str| {
        if let Some(h) = host {
            let name = h
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned());
            pairs.push((format!("{dir}/{name}"), h.display().to_string()));
        }
    };
    file(ds.labels.as_ref(), LABELS);
    file(ds.synsets.as_ref(), SYNSETS);
    file(Some(&req.weights), WEIGHTS);
    pairs
}

/// The resources of an eval's container; `--device cuda` in an
/// environment that resolves to no GPU is refused before anything runs.
pub async fn resources(docker: &Docker, env: &Env, device: &str) -> Result<Resources, EvalError> {
    let wanted = format!("eval --device {device}");
    let needs_gpus = device == "cuda";
    Ok(Resources::resolve_for_run(docker, env, needs_gpus, &wanted, "eval").await?)
}

#[cfg(test)]
mod tests;
