//! `harness export`: what was exported and the proof that it computes what
//! the harness measured (written next to the exported file as
//! `<file>.parity.json`, and into an eval report run with `--export`).
//!
//! May use: `model` (the weights and preprocessing types).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Preprocess, WeightsInfo};

/// The exported model and its parity check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportReport {
    /// Layout version, [`crate::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `efficientnet_b0` … `efficientnet_lite0`.
    pub model: String,
    /// `onnx` or `torchscript`.
    pub format: String,
    /// The exported file's name (it lies next to this report).
    pub file: String,
    /// sha256 of the exported file (lowercase hex).
    pub sha256: String,
    pub bytes: u64,
    /// ONNX opset (null for TorchScript).
    pub opset: Option<u32>,
    /// The model's input and output as the file declares them.
    pub input: TensorSpec,
    pub output: TensorSpec,
    /// The weights that were exported.
    pub weights: WeightsInfo,
    /// The preprocessing the model expects (the harness's preset).
    pub preprocess: Preprocess,
    /// What wrote and what checked the file.
    pub versions: ExportVersions,
    pub parity: Parity,
}

/// One input or output of the exported model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    /// Sizes; a named dimension (`batch`) is dynamic.
    pub shape: Vec<Dim>,
    /// `float32`.
    pub dtype: String,
}

/// A tensor dimension: a size, or the name of a dynamic one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(u64),
    Dynamic(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Dynamic(name) => f.write_str(name),
        }
    }
}

impl TensorSpec {
    /// `input: float32[batch, 3, 224, 224]`.
    pub fn describe(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(Dim::to_string).collect();
        format!("{}: {}[{}]", self.name, self.dtype, dims.join(", "))
    }
}

/// Versions of what exported and what checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportVersions {
    pub harness: String,
    /// The image's PyTorch (traced through its libtorch, exported by its
    /// `torch.onnx`).
    pub torch: String,
    /// The `onnx` package that checked the file (ONNX only).
    pub onnx: Option<String>,
    /// The onnxruntime that ran the parity check (ONNX only).
    pub onnxruntime: Option<String>,
}

/// The exported file against the harness's own model, on the same
/// preprocessed images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parity {
    /// What ran the exported file: `onnxruntime 1.32.0 (CPUExecutionProvider, graph optimization extended)` or
    /// `libtorch (TorchScript)`.
    pub runtime: String,
    /// The reference: the harness's model on the CPU in float32.
    pub reference: String,
    /// Folder the images came from.
    pub images_root: String,
    /// Images compared.
    pub images: usize,
    /// Parity images that could not be decoded (not compared), with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
    /// Largest |logit difference| over every image and class.
    pub max_abs_logit_diff: f64,
    /// Mean |logit difference| over every image and class.
    pub mean_abs_logit_diff: f64,
    /// Largest |softmax probability difference|.
    pub max_abs_prob_diff: f64,
    /// Images whose top-1 class is the same in both.
    pub top1_agree: usize,
    /// Images whose top-1 class differs (relative paths).
    pub top1_disagree: Vec<String>,
    /// The bound on `max_abs_logit_diff`.
    pub tolerance: f64,
    /// Within the tolerance and the same top-1 on every image.
    pub passed: bool,
}

impl Parity {
    /// One line for people: `parity on 15 images: max |Δlogit| 3.1e-6 …`.
    pub fn summary(&self) -> String {
        let skipped = match self.unreadable.len() {
            0 => String::new(),
            n => format!(" ({n} unreadable left out)"),
        };
        format!(
            "parity on {} images{skipped} ({} vs {}): max |Δlogit| {:.2e} (tolerance {:.0e}), mean {:.2e}, max |Δp| {:.2e}, top-1 agrees on {}/{} — {}",
            self.images,
            self.runtime,
            self.reference,
            self.max_abs_logit_diff,
            self.tolerance,
            self.mean_abs_logit_diff,
            self.max_abs_prob_diff,
            self.top1_agree,
            self.images,
            if self.passed { "passed" } else { "FAILED" }
        )
    }
}

/// Where the parity report of an exported `file` lies: `<file>.parity.json`.
pub fn parity_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".parity.json");
    file.with_file_name(name)
}
