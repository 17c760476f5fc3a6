//! Command line (clap derive; doc comments are the help text).
//!
//! May use: `eval`, `export`, `models`, `preprocess`.

use crate::eval::Autocast;
use crate::export::{Batch, Format};
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
    Eval(Box<EvalArgs>),
    /// Export the model (ONNX or TorchScript) and prove it computes what the
    /// harness measures: the same preprocessed images through both, max
    /// |Δlogit| within --tolerance and the same top-1 on every image.
    ///
    /// Writes --out and `<out>.parity.json`, both renamed into place only
    /// when parity passed (nothing is left behind otherwise). Exit codes:
    /// 0 exported; 2 usage, weights, images or output path; 5 parity failed.
    Export(Box<ExportArgs>),
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
    /// CUDA when libtorch sees a GPU, else the CPU.
    Auto,
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
    /// Dataset root: ImageFolder with synset-named class directories, or a
    /// flat folder of images with a labels file (found in it or its parent
    /// when --labels is not given).
    #[arg(long)]
    pub data: PathBuf,
    /// Labels file: Kaggle's `LOC_val_solution.csv`, the devkit's
    /// `ILSVRC2012_validation_ground_truth.txt`, or TSV lines
    /// `relative/path<TAB>synset-or-class-index`.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// The devkit's synset order for its ground truth ids: `map_clsloc.txt`
    /// (`n02119789 1 kit_fox`) or 1000 synsets in id order (default:
    /// `map_clsloc.txt` next to the labels or in --data).
    #[arg(long)]
    pub synsets: Option<PathBuf>,
    /// Model architecture.
    #[arg(long, value_enum)]
    pub model: ModelKind,
    /// Weights: local .pth (zip or legacy pickle) / .safetensors, or an
    /// http(s) URL (then --sha256 is required; cached under
    /// ${TORCHENV_CACHE:-~/.cache/torchenv}/weights/<sha256>).
    #[arg(long, required_unless_present = "onnx", conflicts_with = "onnx")]
    pub weights: Option<String>,
    /// Evaluate this ONNX file with onnxruntime on the CPU instead of the
    /// harness's network: same preprocessing (--model's), same report. The
    /// file's `torchenv.model` metadata, when it has one, must be --model.
    #[arg(long, conflicts_with_all = ["autocast", "channels_last"])]
    pub onnx: Option<PathBuf>,
    /// After the evaluation, export the model into --out (`model.onnx` or
    /// `model.pt`) and check its parity on the first --export-images
    /// images; the report shows the result.
    #[arg(long, value_enum, requires = "out", conflicts_with = "onnx")]
    pub export: Option<Format>,
    /// Images the --export parity check runs on.
    #[arg(long, default_value_t = 64)]
    pub export_images: usize,
    /// Expected sha256 of the weights file (verified when given).
    #[arg(long)]
    pub sha256: Option<String>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
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
    /// Report folder: `report.json` and `thumbs/` (the model's input of the
    /// most confident mistakes, as PNG).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Thumbnails of at most this many mistakes in --out.
    #[arg(long, default_value_t = 48)]
    pub gallery: usize,
    /// Print progress as JSON lines on stderr (`{"event":"batch",…}`).
    #[arg(long)]
    pub progress: bool,
    /// GPU sampling interval (NVML) in milliseconds; 0 turns it off.
    #[arg(long, default_value_t = 500)]
    pub monitor_interval_ms: u64,
    /// Evaluate only the first N images (after sorting).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Debug: write the logits of evaluated images (dataset order) as .npy.
    #[arg(long, hide = true)]
    pub dump_logits: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: PresetOverrides,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Model architecture.
    #[arg(long, value_enum)]
    pub model: ModelKind,
    /// Weights: local .pth (zip or legacy pickle) / .safetensors, or an
    /// http(s) URL (then --sha256 is required).
    #[arg(long)]
    pub weights: String,
    /// Expected sha256 of the weights file (verified when given).
    #[arg(long)]
    pub sha256: Option<String>,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Onnx)]
    pub format: Format,
    /// ONNX opset (9 to 20: what the TorchScript-based exporter writes).
    #[arg(long, default_value_t = 17)]
    pub opset: u32,
    /// ONNX batch dimension: `dynamic` (any batch size) or a fixed size.
    #[arg(long, default_value = "dynamic")]
    pub batch: Batch,
    /// Images to check parity on (every image under it, sorted, up to
    /// --parity-images).
    #[arg(long)]
    pub parity_data: PathBuf,
    #[arg(long, default_value_t = 64)]
    pub parity_images: usize,
    /// Largest |Δlogit| allowed between the exported file and the harness.
    #[arg(long, default_value_t = 1e-4)]
    pub tolerance: f64,
    /// Decode/preprocess and onnxruntime threads (default: available CPUs).
    #[arg(long)]
    pub workers: Option<usize>,
}
