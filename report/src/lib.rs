//! The harness's reports, one definition for writer and readers.
//!
//! Holds the JSON layouts of `harness eval --json PATH` ([`EvalReport`]) and
//! `harness cuda --json` ([`CudaReport`]), `harness export`'s parity report
//! ([`ExportReport`]), their [`SCHEMA_VERSION`], the
//! readers the regression gate uses ([`parse_eval`], [`parse_cuda`]), the
//! ImageNet-1k class table ([`imagenet`]), the GPU usage series ([`gpu`]) and
//! the progress lines of a running eval ([`progress`]). The harness builds and writes
//! these types; xtask's gate (and anything later) reads them.
//!
//! May use serde and serde_json only: no libtorch, nothing of the harness or
//! of xtask, so both can depend on it.
//!
//! Writing: field names and order are the JSON's; keep them stable and bump
//! [`SCHEMA_VERSION`] on incompatible changes. Reading: unknown fields are
//! ignored (the harness may add to its reports freely), the fields the gate
//! reads are required, and every other field takes its default when it is
//! missing, so a report that carries only what the gate needs still parses.

pub mod cuda;
pub mod eval;
pub mod export;
pub mod gpu;
pub mod imagenet;
pub mod model;
pub mod progress;

pub use cuda::{CudaReport, DeviceCheck, TorchInfo, VersionCheck};
pub use eval::{
    ClassAccuracy, ConfusionEntry, DatasetInfo, EvalReport, FailedSample, Metrics, Performance,
    Prediction, Preprocess, SampleResult, Settings, TimelinePoint, Versions, WeightsInfo,
};
pub use export::{parity_path, Dim, ExportReport, ExportVersions, Parity, TensorSpec};
pub use gpu::{GpuMonitor, GpuSample, GpuSeries, GpuSummary};
pub use progress::ProgressEvent;

/// Version of the [`EvalReport`] and [`CudaReport`] JSON layouts.
pub const SCHEMA_VERSION: u32 = 1;

/// Parses an eval report, refusing layouts of another schema version.
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

/// Parses an export's parity report (`<file>.parity.json`).
pub fn parse_export(json: &str) -> Result<ExportReport, String> {
    let report: ExportReport =
        serde_json::from_str(json).map_err(|e| format!("not a harness export report: {e}"))?;
    if report.schema_version != SCHEMA_VERSION {
        return Err(format!(
            "export report schema_version {} (this torchenv reads {SCHEMA_VERSION})",
            report.schema_version
        ));
    }
    Ok(report)
}

/// Parses the output of `harness cuda --json`, refusing layouts of another
/// schema version.
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

#[cfg(test)]
mod tests;
