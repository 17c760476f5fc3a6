//! What a report says was run: the weights and the preprocessing (shared by
//! eval and export reports).
//!
//! May use: nothing else of the crate.

use serde::{Deserialize, Serialize};

/// Which weights were evaluated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WeightsInfo {
    /// Path or URL as given on the command line.
    pub source: String,
    /// sha256 of the weights file (lowercase hex).
    pub sha256: String,
    /// `torch-zip`, `torch-legacy`, `safetensors`, or `onnx` (an exported
    /// model evaluated with onnxruntime).
    pub format: String,
}

/// Eval preprocessing actually used: PIL `Resize(resize)` (shorter side) →
/// `CenterCrop(crop)` → `ToTensor` → `Normalize(mean, std)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Preprocess {
    /// Shorter side after resize.
    pub resize: u32,
    /// Square center crop size (model input size).
    pub crop: u32,
    /// PIL resampling filter: `bilinear` or `bicubic`.
    pub interpolation: String,
    /// Per-channel mean, on the [0, 1] scale.
    pub mean: [f32; 3],
    /// Per-channel std, on the [0, 1] scale.
    pub std: [f32; 3],
    /// Resampling filter widened when downscaling (PIL always does).
    pub antialias: bool,
}
