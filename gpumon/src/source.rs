//! The seam between NVML and the series: the [`Source`] trait, what a
//! device is ([`DeviceInfo`]), and one reading of all of them
//! ([`Snapshot`]).
//!
//! May use: the crate root (`GpumonError`), `report`.

use report::{GpuMonitor, GpuSample, GpuSeries};

use crate::GpumonError;

/// Where readings come from: NVML ([`crate::nvml::NvmlSource`]), or
/// recorded readings in tests.
pub trait Source {
    /// The devices to read, in index order. An error means none can be
    /// read (the caller reports it as the reason).
    fn devices(&mut self) -> Result<Vec<DeviceInfo>, GpumonError>;
    /// The driver version, when the source knows it.
    fn driver_version(&mut self) -> Option<String>;
    /// One reading of the device with this index; a figure it lacks is
    /// `None`. `t` is left 0: the caller stamps it.
    fn read(&mut self, index: u32) -> GpuSample;
}

/// What stays the same about a device while it is sampled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceInfo {
    /// NVML index (inside a container: among the devices it was given).
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub memory_total_bytes: Option<u64>,
}

/// One device and its reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceReading {
    pub device: DeviceInfo,
    pub sample: GpuSample,
}

/// One reading of every device (`t` = 0).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub driver_version: Option<String>,
    pub devices: Vec<DeviceReading>,
}

impl Snapshot {
    /// Reads every device of `source` once; no device is
    /// [`GpumonError::NoDevice`].
    pub fn read<S: Source>(source: &mut S) -> Result<Snapshot, GpumonError> {
        let devices = source.devices()?;
        if devices.is_empty() {
            return Err(GpumonError::NoDevice);
        }
        let devices = devices
            .into_iter()
            .map(|device| DeviceReading {
                sample: source.read(device.index),
                device,
            })
            .collect();
        Ok(Snapshot {
            driver_version: source.driver_version(),
            devices,
        })
    }

    /// The snapshot as a one-sample [`GpuMonitor`] (for JSON output).
    pub fn into_monitor(self) -> GpuMonitor {
        GpuMonitor {
            available: true,
            reason: None,
            interval_ms: 0,
            driver_version: self.driver_version,
            devices: self
                .devices
                .into_iter()
                .map(|r| series(r.device, vec![r.sample]))
                .collect(),
        }
    }
}

/// A device's series of `samples`, with their summary.
pub(crate) fn series(device: DeviceInfo, samples: Vec<GpuSample>) -> GpuSeries {
    GpuSeries {
        index: device.index,
        name: device.name,
        uuid: device.uuid,
        memory_total_bytes: device.memory_total_bytes,
        summary: report::gpu::summarize(&samples),
        samples,
    }
}
