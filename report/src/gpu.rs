//! GPU usage during a run, as sampled from NVML: a time series per device
//! and its summary (peak memory, mean utilization, …).
//!
//! Types and the summary arithmetic only; the sampling (NVML through
//! `nvml-wrapper`) is the `gpumon` crate's.
//!
//! May use: nothing else of the crate.

use serde::{Deserialize, Serialize};

/// What was sampled during a run, or why nothing was.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GpuMonitor {
    /// NVML answered and at least one device was sampled.
    pub available: bool,
    /// Why nothing was sampled (no NVML library, no device, …).
    pub reason: Option<String>,
    /// Sampling interval, milliseconds.
    pub interval_ms: u64,
    /// NVML's driver version, when it answered.
    pub driver_version: Option<String>,
    /// Every device NVML showed the run.
    pub devices: Vec<GpuSeries>,
}

/// One device's samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GpuSeries {
    /// NVML index (inside a container: among the devices it was given).
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub memory_total_bytes: Option<u64>,
    pub samples: Vec<GpuSample>,
    pub summary: GpuSummary,
}

/// One reading of one device. A figure the device does not report (NVML
/// `NotSupported`, e.g. power on some boards) is null.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GpuSample {
    /// Seconds since sampling started.
    pub t: f64,
    pub memory_used_bytes: Option<u64>,
    /// Percent of time a kernel ran over NVML's last sample period.
    pub utilization_percent: Option<u32>,
    pub temperature_c: Option<u32>,
    pub power_watts: Option<f64>,
    pub sm_clock_mhz: Option<u32>,
}

/// A device's series in a few numbers; each is null when no sample had
/// the figure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GpuSummary {
    pub samples: usize,
    pub peak_memory_bytes: Option<u64>,
    pub mean_utilization_percent: Option<f64>,
    pub max_temperature_c: Option<u32>,
    pub mean_power_watts: Option<f64>,
    pub peak_power_watts: Option<f64>,
    pub max_sm_clock_mhz: Option<u32>,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

fn max_f64(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
}

/// The summary of `samples` (figures a sample lacks are left out of that
/// figure's mean or maximum, not counted as zero).
pub fn summarize(samples: &[GpuSample]) -> GpuSummary {
    GpuSummary {
        samples: samples.len(),
        peak_memory_bytes: samples.iter().filter_map(|s| s.memory_used_bytes).max(),
        mean_utilization_percent: mean(
            samples
                .iter()
                .filter_map(|s| s.utilization_percent.map(f64::from)),
        ),
        max_temperature_c: samples.iter().filter_map(|s| s.temperature_c).max(),
        mean_power_watts: mean(samples.iter().filter_map(|s| s.power_watts)),
        peak_power_watts: max_f64(samples.iter().filter_map(|s| s.power_watts)),
        max_sm_clock_mhz: samples.iter().filter_map(|s| s.sm_clock_mhz).max(),
    }
}

impl GpuMonitor {
    /// Why nothing was sampled; None when something was.
    pub fn why_unavailable(&self) -> Option<&str> {
        (!self.available).then(|| {
            self.reason
                .as_deref()
                .unwrap_or("GPU usage was not sampled")
        })
    }

    /// Nothing sampled, and why.
    pub fn unavailable(reason: impl Into<String>) -> GpuMonitor {
        GpuMonitor {
            available: false,
            reason: Some(reason.into()),
            ..GpuMonitor::default()
        }
    }
}
