//! `cargo xtask eval [ENV] --data DIR`: EfficientNet on the user's own
//! data in an environment's container, one report folder per model.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::path::PathBuf;

use super::{Ctx, Run};
use crate::build::{ensure_env_image, weights};
use crate::error::{Error, Result};
use crate::eval::folder::default_target;
use crate::eval::progress::EvalProgress;
use crate::eval::{self, Dataset, Finished, Request};
use crate::progress::Progress;
use crate::spec::{Env, Gpus, Spec, MODELS};

/// Evaluate EfficientNet on your own ImageNet-labelled images in an
/// environment's container and write a report folder per model:
/// report.json, summary.md, PNG plots and index.html (opens from disk).
///
/// The dataset, labels and weights are mounted read-only, the report folder
/// read-write; no network; run as you. Exit 0 done, 2 bad input (missing or
/// empty dataset, labels naming absent files, unreadable weights, an
/// unwritable report folder), 6 GPUs asked for but unavailable.
#[derive(clap::Args)]
pub struct Eval {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
    /// Dataset folder: ImageFolder (synset-named class folders), or a flat
    /// folder of images with Kaggle's LOC_val_solution.csv or the devkit's
    /// ILSVRC2012_validation_ground_truth.txt in it or beside it.
    #[arg(long)]
    data: PathBuf,
    /// Labels file: LOC_val_solution.csv, ILSVRC2012_validation_ground_truth.txt,
    /// or TSV lines `relative/path<TAB>synset-or-class-index`.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// The devkit's synset order (map_clsloc.txt) for its ground truth ids
    /// (default: map_clsloc.txt next to the labels file).
    #[arg(long)]
    synsets: Option<PathBuf>,
    /// Models, repeated or comma-separated (default: the environment's
    /// `harness.models`).
    #[arg(long, value_delimiter = ',')]
    model: Vec<String>,
    /// Weights: a .pth/.safetensors file, or an http(s) URL with --sha256
    /// (downloaded here once; the container has no network). Default: the
    /// locked weights of the model. Only with one model.
    #[arg(long)]
    weights: Option<String>,
    /// sha256 of the weights (required for a URL, checked when given).
    #[arg(long)]
    sha256: Option<String>,
    /// auto = CUDA when the container sees a GPU.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// GPUs for the container, in the words of the spec's `gpus:`: all,
    /// none, auto, a count (`2`), device ids (`device=1` or `0,1`, or UUIDs)
    /// or CDI names (`nvidia.com/gpu=0`); default: the environment's.
    #[arg(long)]
    gpus: Option<Gpus>,
    /// Images per forward pass (default: the harness's, 32).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Decode/preprocess threads (default: the container's CPUs).
    #[arg(long)]
    workers: Option<usize>,
    /// Mixed precision: fp16 (CUDA autocast) or bf16 (model in bfloat16).
    #[arg(long, value_enum)]
    autocast: Option<AutocastArg>,
    /// Convolutions in channels-last layout (always on for the CPU).
    #[arg(long)]
    channels_last: bool,
    /// TF32 off, cuDNN deterministic, cuDNN benchmark off.
    #[arg(long)]
    deterministic: bool,
    /// Only the first N images (sorted by path).
    #[arg(long)]
    limit: Option<usize>,
    /// Report folder (default: <workspace>/reports/<UTC time>-<model>/, where
    /// JupyterLab shows it). With several models, one folder per model in it.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print one JSON object per model on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// Evaluate an exported ONNX file (`cargo xtask export`) with
    /// onnxruntime on the CPU instead of the harness's network: same
    /// preprocessing, same report. The model is --model, else the one its
    /// FILE.parity.json names.
    #[arg(long, conflicts_with_all = ["weights", "sha256", "autocast", "channels_last", "export"])]
    onnx: Option<PathBuf>,
    /// After the evaluation, export the model (onnx or torchscript) into the
    /// report folder and check its parity on the first 64 images; the
    /// report shows the result.
    #[arg(long, value_enum)]
    export: Option<ExportArg>,
    /// Evaluate in this image instead of the environment's own (built if
    /// needed).
    #[arg(long, env = "TORCHENV_IMAGE")]
    image: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportArg {
    Onnx,
    Torchscript,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AutocastArg {
    Bf16,
    Fp16,
}

impl Run for Eval {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let mut env = spec.env(self.env.as_deref())?.clone();
        if let Some(g) = &self.gpus {
            env.gpus = g.clone();
        }
        let models = self.models(&env)?;
        let dataset = Dataset::resolve(&self.data, self.labels.as_deref(), self.synsets.as_deref())
            .map_err(eval_error)?;
        let weights: Vec<(PathBuf, String)> = match &self.onnx {
            Some(file) => vec![onnx_file(file)?],
            None => models
                .iter()
                .map(|m| weights_for(ctx, m, self.weights.as_deref(), self.sha256.as_deref()))
                .collect::<Result<_>>()?,
        };
        let now = std::time::SystemTime::now();
        ctx.block_on(async {
            let docker = ctx.docker().await?;
            let resources = eval::resources(&docker, &env, self.device_word())
                .await
                .map_err(eval_error)?;
            let image = self.image(ctx, &docker, &spec, &env).await?;
            for (model, (weights, source)) in models.iter().zip(weights) {
                let req = Request {
                    env: env.clone(),
                    image: image.clone(),
                    resources: resources.clone(),
                    dataset: dataset.clone(),
                    model: model.clone(),
                    weights,
                    weights_source: source,
                    onnx: self.onnx.is_some(),
                    options: self.harness_options(),
                    out: self.out_for(&env, model, models.len(), now),
                };
                let mut display = EvalProgress::new(model, self.json);
                let done = eval::run(&docker, &req, &mut display)
                    .await
                    .map_err(eval_error)?;
                self.print(&done);
            }
            Ok(())
        })
    }
}

fn eval_error(e: eval::EvalError) -> Error {
    Error::from(e)
}

/// `--onnx FILE` as an absolute path that can be read.
fn onnx_file(file: &std::path::Path) -> Result<(PathBuf, String)> {
    let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    std::fs::File::open(&abs).map_err(|source| {
        Error::from(eval::EvalError::Weights {
            path: abs.clone(),
            source,
        })
    })?;
    Ok((abs, file.display().to_string()))
}

/// The model an exported file was made from, as its parity report says.
fn onnx_model(file: &std::path::Path) -> Result<String> {
    let sidecar = report::parity_path(file);
    let text = std::fs::read_to_string(&sidecar).map_err(|e| Error::Usage {
        message: format!(
            "--onnx {}: pass --model (no parity report {} to read it from: {e})",
            file.display(),
            sidecar.display()
        ),
        help: Some(
            "the model whose preprocessing the file expects, e.g. --model efficientnet_lite0"
                .into(),
        ),
    })?;
    let report = report::parse_export(&text).map_err(|why| Error::Usage {
        message: format!("{}: {why}", sidecar.display()),
        help: Some("pass --model".into()),
    })?;
    Ok(report.model)
}

/// The weights of `model` on this machine and as the user named them:
/// `weights` (a file, or a URL downloaded here once with its `sha256`), else
/// the locked weights of the model. `eval` and `export` share it.
pub(super) fn weights_for(
    ctx: &Ctx,
    model: &str,
    weights: Option<&str>,
    sha256: Option<&str>,
) -> Result<(PathBuf, String)> {
    match weights {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            let sha = sha256.ok_or_else(|| Error::Usage {
                message: format!("--weights {url}: a URL needs --sha256"),
                help: Some("pass the sha256 of the file the URL serves".into()),
            })?;
            let path = weights::url_weights(url, sha).map_err(|e| {
                Error::from(eval::EvalError::WeightsUrl {
                    url: url.to_string(),
                    message: e.to_string(),
                })
            })?;
            Ok((path, url.to_string()))
        }
        Some(path) => {
            let p = PathBuf::from(path);
            let abs = std::path::absolute(&p).unwrap_or(p);
            Ok((abs, path.to_string()))
        }
        None => {
            let path = weights::weights_path(&ctx.lock()?, model)?;
            Ok((path.clone(), path.display().to_string()))
        }
    }
}

impl Eval {
    /// `--model`, or the environment's models; each one the harness knows.
    fn models(&self, env: &Env) -> Result<Vec<String>> {
        let models = match &self.onnx {
            Some(file) if self.model.is_empty() => vec![onnx_model(file)?],
            _ if self.model.is_empty() => env.harness.models.clone(),
            _ => self.model.clone(),
        };
        if self.onnx.is_some() && models.len() > 1 {
            return Err(Error::Usage {
                message: format!(
                    "--onnx names one file but {} models are given",
                    models.len()
                ),
                help: Some("pass the one --model the file was exported from".into()),
            });
        }
        if let Some(bad) = models.iter().find(|m| !MODELS.contains(&m.as_str())) {
            return Err(Error::Usage {
                message: format!("--model {bad}: not a model the harness knows"),
                help: Some(format!("one of {}", MODELS.join(", "))),
            });
        }
        if self.weights.is_some() && models.len() > 1 {
            return Err(Error::Usage {
                message: format!(
                    "--weights names one file but {} models are evaluated ({})",
                    models.len(),
                    models.join(", ")
                ),
                help: Some("pass one --model with --weights".into()),
            });
        }
        Ok(models)
    }

    fn device_word(&self) -> &'static str {
        match self.device {
            DeviceArg::Auto => "auto",
            DeviceArg::Cpu => "cpu",
            DeviceArg::Cuda => "cuda",
        }
    }

    /// The image to run: `--image`, or the environment's (built if missing).
    async fn image(
        &self,
        ctx: &Ctx,
        docker: &crate::docker::Docker,
        spec: &Spec,
        env: &Env,
    ) -> Result<String> {
        if let Some(i) = &self.image {
            return Ok(i.clone());
        }
        let lock = ctx.lock()?;
        let progress = Progress::new();
        Ok(ensure_env_image(docker, spec, &lock, env, None, &progress)
            .await?
            .tag)
    }

    /// The harness options that pass through unchanged.
    fn harness_options(&self) -> Vec<String> {
        let mut o = vec!["--device".to_string(), self.device_word().to_string()];
        let mut opt = |flag: &str, v: Option<String>| {
            if let Some(v) = v {
                o.extend([flag.to_string(), v]);
            }
        };
        opt("--batch-size", self.batch_size.map(|v| v.to_string()));
        opt(
            "--export",
            self.export.map(|e| match e {
                ExportArg::Onnx => "onnx".into(),
                ExportArg::Torchscript => "torchscript".into(),
            }),
        );
        opt("--workers", self.workers.map(|v| v.to_string()));
        opt("--limit", self.limit.map(|v| v.to_string()));
        opt("--sha256", self.sha256.clone());
        opt(
            "--autocast",
            self.autocast.map(|a| match a {
                AutocastArg::Bf16 => "bf16".into(),
                AutocastArg::Fp16 => "fp16".into(),
            }),
        );
        for (on, flag) in [
            (self.channels_last, "--channels-last"),
            (self.deterministic, "--deterministic"),
        ] {
            if on {
                o.push(flag.into());
            }
        }
        o
    }

    fn out_for(
        &self,
        env: &Env,
        model: &str,
        models: usize,
        now: std::time::SystemTime,
    ) -> PathBuf {
        match &self.out {
            Some(dir) if models > 1 => dir.join(model),
            Some(dir) => dir.clone(),
            None => default_target(&env.workspace, model, now),
        }
    }

    fn print(&self, done: &Finished) {
        let r = &done.report;
        if self.json {
            let line = serde_json::json!({
                "model": r.model,
                "out": done.out,
                "report": done.out.join("report.json"),
                "index": done.out.join("index.html"),
                "top1": r.metrics.top1,
                "top5": r.metrics.top5,
                "evaluated": r.metrics.evaluated,
                "failed": r.dataset.num_failed,
                "images_per_second": r.performance.images_per_second,
                "device": r.settings.device,
                "versions": r.versions,
            });
            println!("{line}");
            return;
        }
        println!(
            "{}: top-1 {:.2}%  top-5 {:.2}%  ({} images, {} unreadable)  {:.1} img/s on {}",
            r.model,
            100.0 * r.metrics.top1,
            100.0 * r.metrics.top5,
            r.metrics.evaluated,
            r.dataset.num_failed,
            r.performance.images_per_second,
            r.versions.device_name
        );
        println!("  report: {}", done.out.join("index.html").display());
    }
}
