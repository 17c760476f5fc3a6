//! `cargo xtask export`: the model teams deploy, written in an
//! environment's container by that image's own PyTorch, with proven
//! parity (the harness's `export`: trace → TorchScript → `torch.onnx`, then
//! onnxruntime against the harness on the parity images).
//!
//! The container is the one-shot container of `eval` and the gate: no
//! network, the host user, the weights and the parity images mounted
//! read-only, and one read-write folder: a staging folder beside the
//! output file. The file and `<file>.parity.json` are renamed from there
//! into place only when the harness succeeded, so a failed or interrupted
//! export leaves the output path as it was.
//!
//! May use: `build::image` (where the harness is), `docker`, `exit`,
//! `launch`, `spec`.

use std::path::{Path, PathBuf};

use crate::build::image::IMAGE_HARNESS;
use crate::docker::run::RunError;
use crate::docker::Docker;
use crate::exit;
use crate::launch::oneshot::{self, HarnessSaid};
use crate::launch::plan::{ContainerPlan, OneShot, Resources};
use crate::launch::LaunchError;
use crate::spec::Env;

const WEIGHTS: &str = "/weights";
const DATA: &str = "/data";
const OUT: &str = "/out";

/// Why an export did not produce its file.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ExportError {
    #[error("--out {path}: {what}")]
    #[diagnostic(code(torchenv::export::out))]
    Output { path: PathBuf, what: String },
    #[error("weights {path} cannot be read: {source}")]
    #[diagnostic(code(torchenv::export::weights))]
    Weights {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parity images {path}: {what}")]
    #[diagnostic(code(torchenv::export::images))]
    Images { path: PathBuf, what: String },
    #[error("{model}: {message}")]
    #[diagnostic(code(torchenv::export::harness), help("{detail}"))]
    Harness {
        model: String,
        /// The harness's exit code: 2 bad input, 5 parity failed.
        code: i64,
        message: String,
        detail: String,
    },
    #[error("{model}: the harness wrote no readable parity report ({why})")]
    #[diagnostic(code(torchenv::export::report))]
    Report { model: String, why: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Launch(#[from] LaunchError),
}

impl ExportError {
    /// Bad input and an unusable output path are 2 (the harness's own
    /// usage code included); a parity failure and what the container or
    /// engine did are theirs.
    pub fn exit_code(&self) -> u8 {
        match self {
            ExportError::Output { .. }
            | ExportError::Weights { .. }
            | ExportError::Images { .. }
            | ExportError::Harness { code: 2, .. } => exit::BAD_INPUT,
            ExportError::Run(RunError::Docker(e)) if e.is_unreachable() => exit::DOCKER_UNREACHABLE,
            ExportError::Harness { .. } | ExportError::Report { .. } | ExportError::Run(_) => {
                exit::FAILED
            }
            ExportError::Launch(e) => e.exit_code(),
        }
    }
}

/// One export.
#[derive(Debug, Clone)]
pub struct Request {
    pub env: Env,
    pub image: String,
    pub resources: Resources,
    pub model: String,
    /// The weights file on this machine.
    pub weights: PathBuf,
    /// The weights as the user named them, for the report.
    pub weights_source: String,
    /// `onnx` or `torchscript`.
    pub format: String,
    pub opset: u32,
    /// `dynamic` or a batch size.
    pub batch: String,
    /// Folder of parity images.
    pub parity_data: PathBuf,
    pub parity_images: usize,
    pub tolerance: f64,
    /// The file to write.
    pub out: PathBuf,
}

/// A finished export: the file and its report, in place.
#[derive(Debug)]
pub struct Exported {
    pub out: PathBuf,
    pub parity_json: PathBuf,
    pub report: report::ExportReport,
}

/// Checks `req`'s inputs and output path, runs the harness and puts the
/// file and its report in place.
pub async fn run(docker: &Docker, req: &Request) -> Result<Exported, ExportError> {
    std::fs::File::open(&req.weights).map_err(|source| ExportError::Weights {
        path: req.weights.clone(),
        source,
    })?;
    if !req.parity_data.is_dir() {
        return Err(ExportError::Images {
            path: req.parity_data.clone(),
            what: "not a folder".into(),
        });
    }
    let (staging, name) = staging_beside(&req.out)?;
    let plan = plan(req, staging.path(), &name);
    let ran = oneshot::run_watching(docker, plan, &req.resources.engine_id, &mut |line| {
        if !line.trim().is_empty() {
            eprintln!("  {line}");
        }
    })
    .await?;
    if ran.exit_code != 0 {
        let said = HarnessSaid::read(&ran.stderr, ran.exit_code, &mount_map(req, &name));
        return Err(ExportError::Harness {
            model: req.model.clone(),
            code: ran.exit_code,
            message: said.message,
            detail: format!("the harness's last output:\n{}", said.tail),
        });
    }
    let staged = staging.path().join(&name);
    let staged_json = report::parity_path(&staged);
    let mut report = std::fs::read_to_string(&staged_json)
        .map_err(|e| e.to_string())
        .and_then(|text| report::parse_export(&text))
        .map_err(|why| ExportError::Report {
            model: req.model.clone(),
            why,
        })?;
    report.weights.source = req.weights_source.clone();
    report.parity.images_root = req.parity_data.display().to_string();
    let json = serde_json::to_vec_pretty(&report).map_err(|e| ExportError::Report {
        model: req.model.clone(),
        why: e.to_string(),
    })?;
    let output = |e: std::io::Error| ExportError::Output {
        path: req.out.clone(),
        what: e.to_string(),
    };
    std::fs::write(&staged_json, json).map_err(output)?;
    std::fs::rename(&staged, &req.out).map_err(output)?;
    let parity_json = report::parity_path(&req.out);
    std::fs::rename(&staged_json, &parity_json).map_err(output)?;
    Ok(Exported {
        out: req.out.clone(),
        parity_json,
        report,
    })
}

/// A folder beside `out` (same file system: the final renames are atomic)
/// that the container writes into, removed when dropped; and the file name.
fn staging_beside(out: &Path) -> Result<(tempfile::TempDir, String), ExportError> {
    let bad = |what: String| ExportError::Output {
        path: out.to_path_buf(),
        what,
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| bad("names no file (give a file name such as model.onnx)".into()))?;
    if out.is_dir() {
        return Err(bad("is a folder; name the file to write".into()));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(bad(format!("folder {} does not exist", parent.display())));
    }
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.export-"))
        .tempdir_in(&parent)
        .map_err(|e| bad(format!("cannot write in {}: {e}", parent.display())))?;
    Ok((staging, name))
}

/// The one-shot container of `req`, writing `name` into `staging`.
fn plan(req: &Request, staging: &Path, name: &str) -> ContainerPlan {
    let weights_in = container_file(&req.weights, WEIGHTS);
    let cmd: Vec<String> = [
        IMAGE_HARNESS,
        "export",
        "--model",
        &req.model,
        "--weights",
        &weights_in,
        "--out",
        &format!("{OUT}/{name}"),
        "--format",
        &req.format,
        "--opset",
        &req.opset.to_string(),
        "--batch",
        &req.batch,
        "--parity-data",
        DATA,
        "--parity-images",
        &req.parity_images.to_string(),
        "--tolerance",
        &req.tolerance.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let job = OneShot {
        cmd,
        inputs: vec![
            (req.weights.clone(), weights_in),
            (req.parity_data.clone(), DATA.to_string()),
        ],
        output: (staging.to_path_buf(), OUT.to_string()),
        user: oneshot::owner(staging),
        purpose: "export".into(),
    };
    ContainerPlan::one_shot(req.image.clone(), &req.env, &req.resources, job)
}

/// `/weights/<file name>`.
fn container_file(host: &Path, dir: &str) -> String {
    let name = host
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy().into_owned());
    format!("{dir}/{name}")
}

/// The container's mount points and the host paths they stand for.
fn mount_map(req: &Request, name: &str) -> Vec<(String, String)> {
    vec![
        (
            container_file(&req.weights, WEIGHTS),
            req.weights.display().to_string(),
        ),
        (DATA.into(), req.parity_data.display().to_string()),
        (format!("{OUT}/{name}"), req.out.display().to_string()),
        (OUT.into(), staging_word(&req.out)),
    ]
}

fn staging_word(out: &Path) -> String {
    out.parent()
        .map_or_else(|| ".".into(), |p| p.display().to_string())
}

/// The resources of an export's container: the CPU is enough (parity is
/// checked on the CPU), so no GPU is asked for.
pub async fn resources(docker: &Docker, env: &Env) -> Result<Resources, ExportError> {
    let mut env = env.clone();
    env.gpus = crate::spec::Gpus::None;
    Ok(Resources::resolve_for_run(docker, &env, false, "export", "export").await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_path_must_name_a_file_in_a_folder_that_exists() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/m.onnx");
        let e = staging_beside(&missing).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert_eq!(e.exit_code(), exit::BAD_INPUT);
        let e = staging_beside(dir.path()).unwrap_err();
        assert!(e.to_string().contains("is a folder"), "{e}");
        let (staging, name) = staging_beside(&dir.path().join("m.onnx")).unwrap();
        assert_eq!(name, "m.onnx");
        assert_eq!(staging.path().parent(), Some(dir.path()));
        drop(staging);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
