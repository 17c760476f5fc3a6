//! `harness eval --json PATH`: the evaluation report and its parts.
//!
//! Types only (serde); the harness fills them in, the gate reads them.
//!
//! May use: `export`, `model`.

use serde::{Deserialize, Serialize};

pub use crate::model::{Preprocess, WeightsInfo};

/// Top-level JSON written by `harness eval --json PATH`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Layout version, [`crate::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `efficientnet_b0` … `efficientnet_b7`, `efficientnet_lite0`.
    pub model: String,
    #[serde(default)]
    pub weights: WeightsInfo,
    #[serde(default)]
    pub dataset: DatasetInfo,
    pub settings: Settings,
    pub metrics: Metrics,
    /// Every class present in the dataset, by class index.
    #[serde(default)]
    pub per_class: Vec<ClassAccuracy>,
    /// Non-zero off-diagonal (true → predicted top-1) counts, sorted by
    /// count descending, then true index, then predicted index.
    #[serde(default)]
    pub confusion: Vec<ConfusionEntry>,
    /// Every evaluated image, in dataset order.
    pub samples: Vec<SampleResult>,
    /// Relative paths of evaluated images whose top-1 is wrong.
    #[serde(default)]
    pub misclassified: Vec<String>,
    /// Images that could not be read/decoded (not counted in metrics).
    #[serde(default)]
    pub failed: Vec<FailedSample>,
    #[serde(default)]
    pub performance: Performance,
    pub versions: Versions,
    /// GPU usage sampled during the run (NVML), or why there is none.
    #[serde(default)]
    pub gpu: crate::gpu::GpuMonitor,
    /// The model exported after the run (`eval --export`) and its parity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<crate::export::ExportReport>,
}

/// The evaluated dataset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatasetInfo {
    /// `--data` directory.
    pub root: String,
    /// Labels file, null for ImageFolder layout.
    pub labels_file: Option<String>,
    /// How the labels were found: `image-folder`, `labels-tsv`,
    /// `kaggle-csv` (`LOC_val_solution.csv`) or `devkit`
    /// (`ILSVRC2012_validation_ground_truth.txt`).
    pub layout: String,
    /// Images listed (after `--limit`).
    pub num_images: usize,
    /// Images decoded and classified.
    pub num_evaluated: usize,
    /// Images that failed to decode (see `failed`).
    pub num_failed: usize,
}

/// Run settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `cpu` or `cuda` (`cuda:0`).
    pub device: String,
    #[serde(default)]
    pub batch_size: usize,
    /// Decode/preprocess threads.
    #[serde(default)]
    pub workers: usize,
    /// Parameter/input dtype: `float32`, or `bfloat16` with `--autocast bf16`.
    #[serde(default)]
    pub dtype: String,
    /// `fp16` (CUDA autocast), `bf16` (model cast to bfloat16) or null.
    pub autocast: Option<String>,
    #[serde(default)]
    pub channels_last: bool,
    /// TF32 off, cuDNN deterministic, cuDNN benchmark off.
    #[serde(default)]
    pub deterministic: bool,
    /// Resize/crop/interpolation/mean/std actually used.
    #[serde(default)]
    pub preprocess: Preprocess,
    /// What ran the model: `libtorch`, or `onnxruntime` for an exported
    /// ONNX file.
    #[serde(default = "libtorch")]
    pub runtime: String,
}

fn libtorch() -> String {
    "libtorch".into()
}

impl Settings {
    /// Ran on a GPU (`settings.device` is `cuda…`).
    pub fn is_gpu(&self) -> bool {
        self.device.starts_with("cuda")
    }
}

/// Accuracy over evaluated images (failed ones excluded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Fraction in [0, 1].
    pub top1: f64,
    /// Fraction in [0, 1].
    pub top5: f64,
    pub correct_top1: usize,
    pub correct_top5: usize,
    pub evaluated: usize,
    /// Top-k accuracy for k = 1, 2, …, 10 (fractions in [0, 1]).
    #[serde(default)]
    pub topk: Vec<f64>,
}

/// Accuracy of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassAccuracy {
    pub index: usize,
    pub synset: String,
    pub name: String,
    /// Evaluated images with this label.
    pub n: usize,
    /// Of those, top-1 correct.
    pub correct: usize,
    /// `correct / n`.
    pub accuracy: f64,
}

/// A true → predicted count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfusionEntry {
    pub true_index: usize,
    pub true_synset: String,
    pub predicted_index: usize,
    pub predicted_synset: String,
    pub count: usize,
}

/// One prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Class index.
    #[serde(default)]
    pub index: usize,
    pub synset: String,
    /// Softmax probability.
    pub probability: f64,
}

/// Result for one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleResult {
    /// Path relative to the dataset root.
    pub path: String,
    /// True class index.
    #[serde(default)]
    pub label: usize,
    pub label_synset: String,
    /// Five most probable classes, most probable first.
    pub top5: Vec<Prediction>,
    /// top-1 == label.
    pub correct: bool,
    /// The model's input (the preprocessed crop) as a PNG, relative to the
    /// report's folder; made for the most confident mistakes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
}

impl SampleResult {
    /// The top-1 probability (0 for a sample without predictions): how
    /// sure the model was, what mistakes are ranked by.
    pub fn confidence(&self) -> f64 {
        self.top5.first().map_or(0.0, |p| p.probability)
    }
}

/// An image that could not be evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedSample {
    /// Path relative to the dataset root.
    pub path: String,
    pub error: String,
}

/// Timing and memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Performance {
    /// Whole evaluation (model load excluded).
    pub wall_seconds: f64,
    /// Evaluated images / wall seconds.
    pub images_per_second: f64,
    /// Wall time the decode/preprocess stage spent producing batches
    /// (overlaps with inference).
    pub preprocess_seconds: f64,
    /// Wall time in model forward passes (including host→device copy and
    /// synchronisation).
    pub inference_seconds: f64,
    /// Peak resident set size of the process (VmHWM), bytes.
    pub peak_host_rss_bytes: Option<u64>,
    /// CUDA only: max device memory in use (total − free from
    /// cudaMemGetInfo) sampled after each batch, bytes.
    pub peak_gpu_memory_bytes: Option<u64>,
    /// Images done (decoded or not) after each batch, by seconds since the
    /// start: the throughput over time.
    pub timeline: Vec<TimelinePoint>,
}

/// Progress after one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub seconds: f64,
    pub images: usize,
}

/// What ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    #[serde(default)]
    pub harness: String,
    pub torch: String,
    pub cuda_runtime: Option<String>,
    pub cudnn: Option<String>,
    /// `cpu` or the GPU name.
    pub device_name: String,
    /// The CUDA version the image's torch was built with (`12.4`), also on
    /// CPU runs; null for a CPU-only build.
    #[serde(default)]
    pub cuda_build: Option<String>,
    /// NVIDIA kernel driver version, when the run saw one.
    #[serde(default)]
    pub driver: Option<String>,
    /// onnxruntime's version when it ran the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnxruntime: Option<String>,
}
