//! The parts of the harness's JSON reports the gate reads
//! (`harness eval --json PATH`, `harness cuda --json`; schema version 1,
//! see `harness/src/report.rs` and `harness/src/cuda.rs`). Unknown fields
//! are ignored so the harness can add to its reports freely.

use serde::{Deserialize, Serialize};

/// Report layout the gate understands.
pub const SCHEMA_VERSION: u32 = 1;

/// `harness eval --json PATH`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct EvalReport {
    pub schema_version: u32,
    pub model: String,
    pub settings: Settings,
    pub metrics: Metrics,
    pub samples: Vec<Sample>,
    #[serde(default)]
    pub failed: Vec<Failed>,
    pub versions: Versions,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Settings {
    /// `cpu` or `cuda` (`cuda:0`).
    pub device: String,
}

impl Settings {
    pub fn is_gpu(&self) -> bool {
        self.device.starts_with("cuda")
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Metrics {
    /// Fraction in [0, 1].
    pub top1: f64,
    /// Fraction in [0, 1].
    pub top5: f64,
    pub correct_top1: usize,
    pub correct_top5: usize,
    pub evaluated: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Sample {
    /// Relative to the dataset root.
    pub path: String,
    pub label_synset: String,
    /// Most probable first.
    pub top5: Vec<Prediction>,
    pub correct: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Prediction {
    pub synset: String,
    pub probability: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Failed {
    pub path: String,
    pub error: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Versions {
    pub torch: String,
    pub cuda_runtime: Option<String>,
    pub cudnn: Option<String>,
    /// `cpu` or the GPU name.
    pub device_name: String,
}

/// `harness cuda --json`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct CudaReport {
    pub schema_version: u32,
    pub cuda_available: bool,
    pub device_count: i64,
    pub cuda_runtime_version: Option<String>,
    pub cudnn_version: Option<String>,
    pub no_gpu_reason: Option<String>,
    pub exit_code: i32,
    pub verdict: String,
}

/// Parses an eval report, refusing layouts the gate does not know.
pub fn parse_eval(json: &str) -> Result<EvalReport, String> {
    let report: EvalReport =
        serde_json::from_str(json).map_err(|e| format!("not a harness eval report: {e}"))?;
    if report.schema_version != SCHEMA_VERSION {
        return Err(format!(
            "eval report schema_version {} (the gate reads {SCHEMA_VERSION})",
            report.schema_version
        ));
    }
    Ok(report)
}

/// Parses the output of `harness cuda --json`.
pub fn parse_cuda(json: &str) -> Result<CudaReport, String> {
    let report: CudaReport =
        serde_json::from_str(json).map_err(|e| format!("not a harness cuda report: {e}"))?;
    if report.schema_version != SCHEMA_VERSION {
        return Err(format!(
            "cuda report schema_version {} (the gate reads {SCHEMA_VERSION})",
            report.schema_version
        ));
    }
    Ok(report)
}
