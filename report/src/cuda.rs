//! `harness cuda --json`: is the GPU usable, do the declared versions match
//! the runtime, did a real computation give the right answer.
//!
//! Types only (serde); the harness runs the checks and fills them in, the
//! gate reads them.
//!
//! May use: nothing else of the crate.

use serde::{Deserialize, Serialize};

/// JSON report of `harness cuda --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CudaReport {
    /// Layout version, [`crate::SCHEMA_VERSION`].
    pub schema_version: u32,
    #[serde(default)]
    pub harness_version: String,
    /// Loaded libtorch: version, CUDA it was built for, location.
    #[serde(default)]
    pub torch: TorchInfo,
    /// `torch.cuda.is_available()` equivalent.
    pub cuda_available: bool,
    /// Devices libtorch sees.
    pub device_count: i64,
    /// `cudaRuntimeGetVersion` (e.g. `12.4`), when libcudart is loadable.
    pub cuda_runtime_version: Option<String>,
    /// `cuDriverGetVersion`: highest CUDA API the driver supports.
    pub cuda_driver_api_version: Option<String>,
    /// NVIDIA kernel driver version (e.g. `550.54.15`).
    pub nvidia_driver_version: Option<String>,
    /// `cudnnGetVersion` (e.g. `9.1.0`), when libcudnn is loadable.
    pub cudnn_version: Option<String>,
    /// Why no GPU is usable (no driver, libcuda missing, …); null if usable.
    pub no_gpu_reason: Option<String>,
    /// One entry per device with the checks run on it.
    #[serde(default)]
    pub devices: Vec<DeviceCheck>,
    /// Declared (`TORCHENV_*_VERSION`) vs runtime comparisons.
    #[serde(default)]
    pub declared: Vec<VersionCheck>,
    /// `--expect-gpus` value.
    #[serde(default)]
    pub expected_gpus: u32,
    /// Process exit code and its meaning.
    pub exit_code: i32,
    pub verdict: String,
}

/// Version info of the loaded libtorch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TorchInfo {
    /// e.g. `2.6.0+cu124`; `unknown` when no version file was found.
    pub version: String,
    /// CUDA version libtorch was built against (`version.py`'s `cuda`), if any.
    pub built_cuda: Option<String>,
    /// Directory of the loaded `libtorch_cpu.so`.
    pub lib_dir: Option<String>,
}

/// Checks on one GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceCheck {
    pub index: i64,
    pub name: Option<String>,
    /// `major.minor`.
    pub compute_capability: Option<String>,
    pub total_memory_bytes: Option<u64>,
    /// max |C_gpu - C_cpu| of a 1024×1024 float32 matmul.
    pub matmul_max_abs_diff: Option<f64>,
    /// Tolerance used (relative tolerance × max |C_cpu|).
    pub matmul_tolerance: Option<f64>,
    /// host → device → host copy returned identical values.
    pub roundtrip_equal: Option<bool>,
    /// All checks passed on this device.
    pub ok: bool,
    /// Error text when a check could not run.
    pub error: Option<String>,
}

/// One declared-vs-runtime comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionCheck {
    /// `torch`, `cuda` or `cudnn`.
    pub component: String,
    /// Environment variable holding the declared value.
    pub env_var: String,
    /// Declared value; null when the variable is unset (nothing compared).
    pub declared: Option<String>,
    /// Runtime value; null when it could not be determined.
    pub runtime: Option<String>,
    /// null when nothing could be compared.
    pub matches: Option<bool>,
}
