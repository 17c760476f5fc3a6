//! Command line (clap derive; doc comments are the help text).
//!
//! May use: `eval`, `models`, `preprocess`.

use crate::eval::Autocast;
use crate::models::ModelKind;
use crate::preprocess::Interpolation;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// torchenv harness: CUDA check and EfficientNet ImageNet evaluation,
/// linked against the image's own libtorch.
#[derive(Debug, Parser)]
#[command(name = "harness", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check CUDA: versions, devices, a real matmul and copy on every GPU.
    ///
    /// Exit codes: 0 consistent (also: no GPU and none expected);
    /// 2 usage/IO error; 3 fewer usable GPUs than --expect-gpus (the message
    /// says why: no driver, libcuda not found, CUDA not available);
    /// 4 a declared version (TORCHENV_TORCH_VERSION, TORCHENV_CUDA_VERSION,
    /// TORCHENV_CUDNN_VERSION) disagrees with the runtime; 5 a GPU
    /// computation was wrong. Precedence when several apply: 5, 3, 4.
    Cuda {
        /// Print the JSON report instead of the text summary.
        #[arg(long)]
        json: bool,
        /// Fail (exit 3) unless at least this many GPUs pass the checks.
        #[arg(long, default_value_t = 0)]
        expect_gpus: u32,
    },
    /// Evaluate an EfficientNet on an ImageNet-labelled image set.
    ///
    /// Exit codes: 0 done (corrupt images are listed, not fatal); 2 usage,
    /// I/O, weights or empty-dataset error.
    Eval(EvalArgs),
    /// Debug: write the preprocessed NCHW float32 tensor of images as .npy.
    #[command(hide = true)]
    Preprocess {
        #[arg(long, value_enum)]
        model: ModelKind,
        /// Output .npy file.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        overrides: PresetOverrides,
        /// Images, in order.
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Debug: run the model on a preprocessed NCHW float32 .npy tensor and
    /// write the logits as .npy.
    #[command(hide = true)]
    Forward {
        #[arg(long, value_enum)]
        model: ModelKind,
        /// Weights file (.pth zip or legacy, .safetensors).
        #[arg(long)]
        weights: PathBuf,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

/// Device to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

/// Overrides of the model's eval preprocessing preset.
#[derive(Debug, Clone, clap::Args)]
pub struct PresetOverrides {
    /// Resize shorter side to this (default: the model's preset).
    #[arg(long)]
    pub resize: Option<u32>,
    /// Center crop size (default: the model's preset).
    #[arg(long)]
    pub crop: Option<u32>,
    /// Resampling filter (default: the model's preset).
    #[arg(long, value_enum)]
    pub interpolation: Option<Interpolation>,
    /// Resize without antialiasing (what torch tensors do with
    /// `antialias=False`); for showing that the gate catches it.
    #[arg(long, env = "TORCHENV_HARNESS_NO_ANTIALIAS")]
    pub no_antialias: bool,
    /// Normalization instead of the model's own: `imagenet` (mean/std) or
    /// `inception` (to [-1, 1]); for showing that the gate catches it.
    #[arg(long, value_enum, env = "TORCHENV_HARNESS_NORMALIZATION")]
    pub normalization: Option<Normalization>,
}

/// Input normalizations the presets use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Normalization {
    /// torchvision: ImageNet mean/std.
    Imagenet,
    /// TensorFlow/Inception: (x - 127) / 128, roughly [-1, 1].
    Inception,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Dataset root: ImageFolder with synset-named class directories, or the
    /// base directory of the paths in --labels.
    #[arg(long)]
    pub data: PathBuf,
    /// Labels file: lines `relative/path<TAB>synset-or-class-index`.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Model architecture.
    #[arg(long, value_enum)]
    pub model: ModelKind,
    /// Weights: local .pth (zip or legacy pickle) / .safetensors, or an
    /// http(s) URL (then --sha256 is required; cached under
    /// ${TORCHENV_CACHE:-~/.cache/torchenv}/weights/<sha256>).
    #[arg(long)]
    pub weights: String,
    /// Expected sha256 of the weights file (verified when given).
    #[arg(long)]
    pub sha256: Option<String>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Decode/preprocess threads (default: available CPUs).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Run convolutions in channels-last memory layout (always on for CPU).
    #[arg(long)]
    pub channels_last: bool,
    /// Mixed precision: fp16 = CUDA autocast, bf16 = model cast to bfloat16.
    #[arg(long, value_enum)]
    pub autocast: Option<Autocast>,
    /// TF32 off, cuDNN deterministic, cuDNN benchmark off.
    #[arg(long)]
    pub deterministic: bool,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Evaluate only the first N images (after sorting).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Debug: write the logits of evaluated images (dataset order) as .npy.
    #[arg(long, hide = true)]
    pub dump_logits: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: PresetOverrides,
}
