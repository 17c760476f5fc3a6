//! `cargo xtask export [ENV] --model M --out FILE`: the model as an ONNX
//! (or TorchScript) file, written in the environment's container, with its
//! parity proven.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::path::PathBuf;

use super::eval::weights_for;
use super::{Ctx, Run};
use crate::build::ensure_env_image;
use crate::error::{Error, Result};
use crate::export::{self, Request};
use crate::progress::Progress;
use crate::spec::MODELS;

/// Export a model as ONNX (or TorchScript) with the environment's own
/// PyTorch, in its container with no network, and prove that the file
/// computes what the harness measures: the parity images go through the
/// harness's model and through the file (onnxruntime, CPU); the largest
/// |Δlogit| must be within --tolerance and every top-1 the same.
///
/// Writes FILE and FILE.parity.json (the file's sha256, input and output,
/// opset, versions, parity figures), renamed into place only when
/// everything passed. Exit 0 exported; 2 bad input (unknown model,
/// unreadable or corrupt weights, an output path that cannot be written,
/// no parity images); 1 parity failed or the container failed.
#[derive(clap::Args)]
pub struct Export {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
    /// The model architecture (efficientnet_b0 … b7, efficientnet_lite0).
    #[arg(long)]
    model: String,
    /// Weights: a .pth/.safetensors file, or an http(s) URL with --sha256.
    /// Default: the locked weights of the model.
    #[arg(long)]
    weights: Option<String>,
    /// sha256 of the weights (required for a URL, checked when given).
    #[arg(long)]
    sha256: Option<String>,
    /// The file to write (its folder must exist).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = FormatArg::Onnx)]
    format: FormatArg,
    /// ONNX opset, 9 to 20 (the TorchScript-based exporter's range).
    #[arg(long, default_value_t = 17)]
    opset: u32,
    /// ONNX batch dimension: `dynamic` (input `batch`×3×H×W) or a fixed
    /// size.
    #[arg(long, default_value = "dynamic", value_parser = parse_batch)]
    batch: String,
    /// Images parity is checked on, every one under the folder (default:
    /// the environment's `harness.dataset`, the fixture images).
    #[arg(long)]
    parity_data: Option<PathBuf>,
    /// At most this many parity images (sorted by path).
    #[arg(long, default_value_t = 64)]
    parity_images: usize,
    /// Largest |Δlogit| allowed between the file and the harness.
    #[arg(long, default_value_t = 1e-4)]
    tolerance: f64,
    /// Print the parity report (JSON) on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// Export in this image instead of the environment's own.
    #[arg(long, env = "TORCHENV_IMAGE")]
    image: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FormatArg {
    Onnx,
    Torchscript,
}

fn parse_batch(s: &str) -> std::result::Result<String, String> {
    match s.parse::<u32>() {
        _ if s == "dynamic" => Ok(s.into()),
        Ok(n) if n > 0 => Ok(s.into()),
        _ => Err(format!("`{s}`: expected `dynamic` or a batch size ≥ 1")),
    }
}

impl Run for Export {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let env = spec.env(self.env.as_deref())?.clone();
        if !MODELS.contains(&self.model.as_str()) {
            return Err(Error::Usage {
                message: format!("--model {}: not a model the harness knows", self.model),
                help: Some(format!("one of {}", MODELS.join(", "))),
            });
        }
        if !(9..=20).contains(&self.opset) {
            return Err(Error::Usage {
                message: format!(
                    "--opset {}: the TorchScript-based ONNX exporter writes opsets 9 to 20",
                    self.opset
                ),
                help: None,
            });
        }
        if self.parity_images == 0 || self.tolerance.is_nan() || self.tolerance < 0.0 {
            return Err(Error::Usage {
                message: "--parity-images must be ≥ 1 and --tolerance ≥ 0".into(),
                help: None,
            });
        }
        let (weights, weights_source) = weights_for(
            ctx,
            &self.model,
            self.weights.as_deref(),
            self.sha256.as_deref(),
        )?;
        let parity_data = self
            .parity_data
            .clone()
            .unwrap_or_else(|| env.harness.dataset.clone());
        let parity_data = std::path::absolute(&parity_data).unwrap_or(parity_data);
        let out = std::path::absolute(&self.out).unwrap_or_else(|_| self.out.clone());
        ctx.block_on(async {
            let docker = ctx.docker().await?;
            let resources = export::resources(&docker, &env).await?;
            let image = match &self.image {
                Some(i) => i.clone(),
                None => {
                    let lock = ctx.lock()?;
                    ensure_env_image(&docker, &spec, &lock, &env, None, &Progress::new())
                        .await?
                        .tag
                }
            };
            let req = Request {
                env: env.clone(),
                image,
                resources,
                model: self.model.clone(),
                weights,
                weights_source,
                format: match self.format {
                    FormatArg::Onnx => "onnx".into(),
                    FormatArg::Torchscript => "torchscript".into(),
                },
                opset: self.opset,
                batch: self.batch.clone(),
                parity_data,
                parity_images: self.parity_images,
                tolerance: self.tolerance,
                out,
            };
            let done = export::run(&docker, &req).await?;
            self.print(&done);
            Ok(())
        })
    }
}

impl Export {
    fn print(&self, done: &export::Exported) {
        let r = &done.report;
        if self.json {
            println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
            return;
        }
        println!(
            "{}: {} written to {} ({} bytes, sha256 {})",
            r.model,
            r.format,
            done.out.display(),
            r.bytes,
            r.sha256
        );
        println!("  {}  →  {}", r.input.describe(), r.output.describe());
        if let Some(opset) = r.opset {
            println!("  opset {opset}, torch {}", r.versions.torch);
        }
        println!("  {}", r.parity.summary());
        println!("  parity report: {}", done.parity_json.display());
    }
}
