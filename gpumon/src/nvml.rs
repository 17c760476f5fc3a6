//! [`Source`] on NVML (`nvml-wrapper`, which loads `libnvidia-ml.so.1` at
//! run time). Each figure is its own query; any error of one (mostly
//! `NotSupported`) leaves that figure `None`.
//!
//! May use: the crate root (`GpumonError`), `source`.

use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use report::GpuSample;

use crate::source::{DeviceInfo, Source};
use crate::GpumonError;

/// An initialised NVML.
pub struct NvmlSource {
    nvml: Nvml,
}

impl NvmlSource {
    /// Loads `libnvidia-ml.so.1` and initialises NVML.
    pub fn open() -> Result<NvmlSource, GpumonError> {
        Nvml::init()
            .map(|nvml| NvmlSource { nvml })
            .map_err(init_error)
    }
}

/// Why `nvmlInit` failed, in plain words.
fn init_error(e: NvmlError) -> GpumonError {
    match e {
        NvmlError::LibloadingError(e) => GpumonError::NotLoaded {
            detail: e.to_string(),
        },
        NvmlError::FailedToLoadSymbol(s) => GpumonError::Init {
            detail: format!("it lacks nvmlInit_v2 (a driver too old?): {s}"),
        },
        NvmlError::DriverNotLoaded => GpumonError::Init {
            detail: "the NVIDIA kernel driver is not running".into(),
        },
        NvmlError::NoPermission => GpumonError::Init {
            detail: "no permission to talk to the NVIDIA driver".into(),
        },
        e => GpumonError::Init {
            detail: e.to_string(),
        },
    }
}

impl Source for NvmlSource {
    fn devices(&mut self) -> Result<Vec<DeviceInfo>, GpumonError> {
        let count = self.nvml.device_count().map_err(|e| GpumonError::Query {
            what: "count the devices",
            detail: e.to_string(),
        })?;
        Ok((0..count)
            .map(|index| match self.nvml.device_by_index(index) {
                Ok(d) => DeviceInfo {
                    index,
                    name: d.name().unwrap_or_else(|e| format!("unknown ({e})")),
                    uuid: d.uuid().unwrap_or_default(),
                    memory_total_bytes: d.memory_info().ok().map(|m| m.total),
                },
                Err(e) => DeviceInfo {
                    index,
                    name: format!("unknown (NVML could not open it: {e})"),
                    ..DeviceInfo::default()
                },
            })
            .collect())
    }

    fn driver_version(&mut self) -> Option<String> {
        self.nvml.sys_driver_version().ok()
    }

    fn read(&mut self, index: u32) -> GpuSample {
        let Ok(d) = self.nvml.device_by_index(index) else {
            return GpuSample::default();
        };
        GpuSample {
            t: 0.0,
            memory_used_bytes: d.memory_info().ok().map(|m| m.used),
            utilization_percent: d.utilization_rates().ok().map(|u| u.gpu),
            temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
            // NVML reports milliwatts.
            power_watts: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
            sm_clock_mhz: d.clock_info(Clock::SM).ok(),
        }
    }
}
