//! The evaluation report: JSON schema (consumed by the regression gate's
//! snapshots; keep it stable, bump [`SCHEMA_VERSION`] on incompatible
//! changes) and the human-readable table.

use serde::Serialize;

/// Version of the [`EvalReport`] JSON layout.
pub const SCHEMA_VERSION: u32 = 1;

/// Top-level JSON written by `harness eval --json PATH`.
#[derive(Debug, Serialize)]
pub struct EvalReport {
    /// Layout version, currently 1.
    pub schema_version: u32,
    /// `efficientnet_b0` … `efficientnet_b7`, `efficientnet_lite0`.
    pub model: String,
    pub weights: WeightsInfo,
    pub dataset: DatasetInfo,
    pub settings: Settings,
    pub metrics: Metrics,
    /// Every class present in the dataset, by class index.
    pub per_class: Vec<ClassAccuracy>,
    /// Non-zero off-diagonal (true → predicted top-1) counts, sorted by
    /// count descending, then true index, then predicted index.
    pub confusion: Vec<ConfusionEntry>,
    /// Every evaluated image, in dataset order.
    pub samples: Vec<SampleResult>,
    /// Relative paths of evaluated images whose top-1 is wrong.
    pub misclassified: Vec<String>,
    /// Images that could not be read/decoded (not counted in metrics).
    pub failed: Vec<FailedSample>,
    pub performance: Performance,
    pub versions: Versions,
}

/// Which weights were evaluated.
#[derive(Debug, Serialize)]
pub struct WeightsInfo {
    /// Path or URL as given on the command line.
    pub source: String,
    /// sha256 of the weights file (lowercase hex).
    pub sha256: String,
    /// `torch-zip`, `torch-legacy` or `safetensors`.
    pub format: String,
}

/// The evaluated dataset.
#[derive(Debug, Serialize)]
pub struct DatasetInfo {
    /// `--data` directory.
    pub root: String,
    /// `--labels` file, null for ImageFolder layout.
    pub labels_file: Option<String>,
    /// Images listed (after `--limit`).
    pub num_images: usize,
    /// Images decoded and classified.
    pub num_evaluated: usize,
    /// Images that failed to decode (see `failed`).
    pub num_failed: usize,
}

/// Run settings.
#[derive(Debug, Serialize)]
pub struct Settings {
    /// `cpu` or `cuda` (`cuda:0`).
    pub device: String,
    pub batch_size: usize,
    /// Decode/preprocess threads.
    pub workers: usize,
    /// Parameter/input dtype: `float32`, or `bfloat16` with `--autocast bf16`.
    pub dtype: String,
    /// `fp16` (CUDA autocast), `bf16` (model cast to bfloat16) or null.
    pub autocast: Option<String>,
    pub channels_last: bool,
    /// TF32 off, cuDNN deterministic, cuDNN benchmark off.
    pub deterministic: bool,
    /// Resize/crop/interpolation/mean/std actually used.
    pub preprocess: crate::preprocess::Preset,
}

/// Accuracy over evaluated images (failed ones excluded).
#[derive(Debug, Serialize)]
pub struct Metrics {
    /// Fraction in [0, 1].
    pub top1: f64,
    /// Fraction in [0, 1].
    pub top5: f64,
    pub correct_top1: usize,
    pub correct_top5: usize,
    pub evaluated: usize,
}

/// Accuracy of one class.
#[derive(Debug, Serialize)]
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
#[derive(Debug, Serialize)]
pub struct ConfusionEntry {
    pub true_index: usize,
    pub true_synset: String,
    pub predicted_index: usize,
    pub predicted_synset: String,
    pub count: usize,
}

/// One prediction.
#[derive(Debug, Serialize, Clone)]
pub struct Prediction {
    pub index: usize,
    pub synset: String,
    /// Softmax probability.
    pub probability: f64,
}

/// Result for one image.
#[derive(Debug, Serialize)]
pub struct SampleResult {
    /// Path relative to the dataset root.
    pub path: String,
    /// True class index.
    pub label: usize,
    pub label_synset: String,
    /// Five most probable classes, most probable first.
    pub top5: Vec<Prediction>,
    /// top-1 == label.
    pub correct: bool,
}

/// An image that could not be evaluated.
#[derive(Debug, Serialize)]
pub struct FailedSample {
    pub path: String,
    pub error: String,
}

/// Timing and memory.
#[derive(Debug, Serialize)]
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
}

/// What ran.
#[derive(Debug, Serialize)]
pub struct Versions {
    pub harness: String,
    pub torch: String,
    pub cuda_runtime: Option<String>,
    pub cudnn: Option<String>,
    /// `cpu` or the GPU name.
    pub device_name: String,
}

/// Peak RSS (`VmHWM` of /proc/self/status) in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The readable summary printed on stdout.
pub fn render(r: &EvalReport) -> String {
    let mut s = String::new();
    s += &format!("model        {}\n", r.model);
    s += &format!(
        "weights      {} ({}, sha256 {})\n",
        r.weights.source, r.weights.format, r.weights.sha256
    );
    s += &format!(
        "dataset      {} ({} images, {} evaluated, {} failed)\n",
        r.dataset.root, r.dataset.num_images, r.dataset.num_evaluated, r.dataset.num_failed
    );
    s += &format!(
        "settings     device={} batch={} workers={} dtype={} autocast={} channels_last={} deterministic={}\n",
        r.settings.device,
        r.settings.batch_size,
        r.settings.workers,
        r.settings.dtype,
        r.settings.autocast.as_deref().unwrap_or("off"),
        r.settings.channels_last,
        r.settings.deterministic
    );
    s += &format!(
        "versions     harness {} torch {} cuda {} cudnn {} on {}\n",
        r.versions.harness,
        r.versions.torch,
        r.versions.cuda_runtime.as_deref().unwrap_or("-"),
        r.versions.cudnn.as_deref().unwrap_or("-"),
        r.versions.device_name
    );
    s += &format!(
        "top-1        {:.2}% ({}/{})\ntop-5        {:.2}% ({}/{})\n",
        100.0 * r.metrics.top1,
        r.metrics.correct_top1,
        r.metrics.evaluated,
        100.0 * r.metrics.top5,
        r.metrics.correct_top5,
        r.metrics.evaluated
    );
    let p = &r.performance;
    s += &format!(
        "throughput   {:.1} img/s (wall {:.2}s, preprocess {:.2}s, inference {:.2}s)\n",
        p.images_per_second, p.wall_seconds, p.preprocess_seconds, p.inference_seconds
    );
    s += &format!(
        "memory       peak RSS {:.0} MiB{}\n",
        p.peak_host_rss_bytes.unwrap_or(0) as f64 / 1048576.0,
        p.peak_gpu_memory_bytes.map_or(String::new(), |b| format!(
            ", peak GPU {:.0} MiB",
            b as f64 / 1048576.0
        ))
    );
    s += "\nper class\n  synset     n  correct  acc%    name\n";
    for c in &r.per_class {
        s += &format!(
            "  {} {:>3} {:>8} {:>6.1}  {}\n",
            c.synset,
            c.n,
            c.correct,
            100.0 * c.accuracy,
            c.name
        );
    }
    if !r.confusion.is_empty() {
        s += "\nconfusions (true -> predicted: count)\n";
        for c in r.confusion.iter().take(20) {
            s += &format!(
                "  {} -> {}: {}\n",
                c.true_synset, c.predicted_synset, c.count
            );
        }
    }
    if !r.misclassified.is_empty() {
        s += &format!("\nmisclassified ({})\n", r.misclassified.len());
        for m in &r.misclassified {
            s += &format!("  {m}\n");
        }
    }
    if !r.failed.is_empty() {
        s += &format!("\nfailed ({})\n", r.failed.len());
        for f in &r.failed {
            s += &format!("  {}: {}\n", f.path, f.error);
        }
    }
    s
}
