//! GPU sampling through NVML for torchenv: one reading of every device
//! ([`snapshot`]), or a series per device while a run goes on
//! ([`Sampler`]), written as `report`'s [`GpuMonitor`].
//!
//! NVML is `libnvidia-ml.so.1`, loaded at run time through `nvml-wrapper`
//! (building needs no NVIDIA library). A machine without it, or without a
//! GPU, gets a [`GpumonError`] from [`snapshot`] and an unavailable
//! [`GpuMonitor`] with the reason from [`Sampler::finish`]: never a panic.
//! A figure a device does not report (NVML `NotSupported`, or any other
//! error of that one query) is `None`; it never fails the whole reading.
//!
//! [`source`] is the one seam: the series building ([`sampler`]) reads
//! devices through the [`Source`] trait, which [`nvml`] implements, so it is
//! tested against recorded readings.
//!
//! May use: `report`, `nvml-wrapper`, std; `xtask` and the harness use it.

pub mod nvml;
pub mod sampler;
pub mod source;

pub use report::{GpuMonitor, GpuSample, GpuSeries, GpuSummary};
pub use sampler::Sampler;
pub use source::{DeviceInfo, DeviceReading, Snapshot, Source};

/// The library NVML is loaded from (what the messages name).
pub const LIBRARY: &str = "libnvidia-ml.so.1";

/// Why NVML gave no reading. Every message names the library.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpumonError {
    /// `libnvidia-ml.so.1` is not on this machine or cannot be loaded.
    #[error(
        "NVML unavailable: libnvidia-ml.so.1 could not be loaded \
         (no NVIDIA driver on this machine or in this container?): {detail}"
    )]
    NotLoaded { detail: String },
    /// The library loaded but `nvmlInit` failed.
    #[error("NVML unavailable: libnvidia-ml.so.1 loaded but could not be initialised: {detail}")]
    Init { detail: String },
    /// NVML answered but shows no device.
    #[error("NVML unavailable: libnvidia-ml.so.1 shows no GPU")]
    NoDevice,
    /// A machine-wide query (the device count) failed.
    #[error("NVML (libnvidia-ml.so.1) could not {what}: {detail}")]
    Query { what: &'static str, detail: String },
}

/// One reading of every device NVML shows, and the driver version.
///
/// Fails only when NVML cannot be loaded or initialised, cannot count the
/// devices, or shows none; a figure a device lacks is `None`.
pub fn snapshot() -> Result<Snapshot, GpumonError> {
    Snapshot::read(&mut nvml::NvmlSource::open()?)
}

#[cfg(test)]
mod tests;
