//! `harness cuda`: is the GPU usable from this libtorch, do the versions the
//! image declares match what runs, and does a real computation give the
//! right answer on every device. The checks fill in `report::CudaReport`
//! (the layout shared with the gate).
//!
//! May use: `runtime`.

use crate::runtime::{self, DriverDevice, DriverStatus, TorchInfo};
pub use report::{CudaReport, DeviceCheck, VersionCheck};
use tch::{Device, Kind, Tensor};

/// All consistent (also: no GPU and none expected).
pub const EXIT_OK: i32 = 0;
/// Usage or I/O error.
pub const EXIT_USAGE: i32 = 2;
/// Fewer usable GPUs than `--expect-gpus`.
pub const EXIT_TOO_FEW_GPUS: i32 = 3;
/// A declared version (`TORCHENV_*_VERSION`) disagrees with the runtime.
pub const EXIT_VERSION_MISMATCH: i32 = 4;
/// A GPU computation gave a wrong result.
pub const EXIT_GPU_WRONG: i32 = 5;

/// Matmul check: max |GPU - CPU| allowed, relative to max |CPU result|.
const MATMUL_REL_TOL: f64 = 1e-4;

/// `declared` matches `runtime` when every dotted component given in both
/// agrees (`12.4` matches `12.4.127`, `2.6.0` matches `2.6.0+cu124`).
pub fn versions_match(declared: &str, runtime: &str) -> bool {
    let strip = |s: &str| s.trim().split('+').next().unwrap_or("").to_string();
    let (d, r) = (strip(declared), strip(runtime));
    let (dp, rp): (Vec<&str>, Vec<&str>) = (d.split('.').collect(), r.split('.').collect());
    if declared.contains('+') && runtime.contains('+') && declared.trim() != runtime.trim() {
        return false;
    }
    let n = dp.len().min(rp.len());
    n > 0 && dp[..n] == rp[..n]
}

fn check_device(index: i64) -> DeviceCheck {
    let mut check = DeviceCheck {
        index,
        name: None,
        compute_capability: None,
        total_memory_bytes: None,
        matmul_max_abs_diff: None,
        matmul_tolerance: None,
        roundtrip_equal: None,
        ok: false,
        error: None,
    };
    let dev = Device::Cuda(index as usize);
    let result = (|| -> Result<(), tch::TchError> {
        tch::manual_seed(1234);
        let a = Tensor::f_randn([1024, 1024], (Kind::Float, Device::Cpu))?;
        let b = Tensor::f_randn([1024, 1024], (Kind::Float, Device::Cpu))?;
        let c_cpu = a.f_matmul(&b)?;
        let c_gpu = a
            .f_to_device(dev)?
            .f_matmul(&b.f_to_device(dev)?)?
            .f_to_device(Device::Cpu)?;
        let diff = (c_gpu - &c_cpu).f_abs()?.f_max()?.f_double_value(&[])?;
        let scale = c_cpu.f_abs()?.f_max()?.f_double_value(&[])?;
        check.matmul_max_abs_diff = Some(diff);
        check.matmul_tolerance = Some(MATMUL_REL_TOL * scale);
        let host = Tensor::f_arange(1 << 20, (Kind::Float, Device::Cpu))?;
        let back = host.f_to_device(dev)?.f_to_device(Device::Cpu)?;
        check.roundtrip_equal = Some(back.f_equal(&host)?);
        Ok(())
    })();
    if let Err(e) = result {
        check.error = Some(e.to_string());
    }
    check.ok = check.error.is_none()
        && check.roundtrip_equal == Some(true)
        && matches!((check.matmul_max_abs_diff, check.matmul_tolerance), (Some(d), Some(t)) if d <= t);
    check
}

/// The driver's CUDA API version, its devices, and why it offers no GPU
/// (None when it does).
fn driver_summary() -> (Option<String>, Vec<DriverDevice>, Option<String>) {
    match runtime::driver_status() {
        DriverStatus::LibcudaNotFound(e) => (
            None,
            Vec::new(),
            Some(format!("no NVIDIA driver: libcuda.so.1 not found ({e})")),
        ),
        DriverStatus::InitFailed(rc) => (
            None,
            Vec::new(),
            Some(format!(
                "NVIDIA driver present but cuInit failed (CUresult {rc}); no usable device"
            )),
        ),
        DriverStatus::Ok {
            cuda_api_version,
            devices,
        } => (Some(cuda_api_version), devices, None),
    }
}

/// Why no GPU is usable from libtorch; None when one is.
fn no_gpu_reason(
    device_count: i64,
    driver_reason: Option<String>,
    driver_devices: usize,
) -> Option<String> {
    if device_count > 0 {
        None
    } else if let Some(r) = driver_reason {
        Some(r)
    } else if !tch::utils::has_cuda() {
        Some("libtorch has no CUDA support (CPU-only build, or libtorch_cuda.so not loaded)".into())
    } else {
        Some(format!(
            "CUDA not available to libtorch although the driver reports {driver_devices} device(s)"
        ))
    }
}

/// [`check_device`] on each device, named as the driver names it.
fn check_devices(device_count: i64, driver_devices: &[DriverDevice]) -> Vec<DeviceCheck> {
    (0..device_count)
        .map(|i| {
            let mut d = check_device(i);
            if let Some(dd) = driver_devices.iter().find(|d| i64::from(d.index) == i) {
                d.name = Some(dd.name.clone());
                d.compute_capability = Some(dd.compute_capability.clone());
                d.total_memory_bytes = Some(dd.total_memory_bytes);
            }
            d
        })
        .collect()
}

/// `TORCHENV_{TORCH,CUDA,CUDNN}_VERSION` against the runtime's versions.
fn declared_checks(
    torch: &TorchInfo,
    runtime_cuda: Option<String>,
    cudnn: Option<String>,
) -> Vec<VersionCheck> {
    [
        (
            "torch",
            "TORCHENV_TORCH_VERSION",
            Some(torch.version.clone()),
        ),
        ("cuda", "TORCHENV_CUDA_VERSION", runtime_cuda),
        ("cudnn", "TORCHENV_CUDNN_VERSION", cudnn),
    ]
    .into_iter()
    .map(|(component, env_var, rt)| {
        let declared = std::env::var(env_var).ok().filter(|s| !s.trim().is_empty());
        let matches = match (&declared, &rt) {
            (Some(d), Some(r)) => Some(versions_match(d, r)),
            (Some(_), None) => Some(false),
            _ => None,
        };
        VersionCheck {
            component: component.into(),
            env_var: env_var.into(),
            declared,
            runtime: rt,
            matches,
        }
    })
    .collect()
}

/// Exit code and verdict, the first failure in order of severity.
fn verdict(
    devices: &[DeviceCheck],
    declared: &[VersionCheck],
    expect_gpus: u32,
    no_gpu_reason: Option<&str>,
) -> (i32, String) {
    let usable = devices.iter().filter(|d| d.ok).count() as u32;
    if devices.iter().any(|d| !d.ok) {
        (
            EXIT_GPU_WRONG,
            "a GPU computation was wrong or failed".to_string(),
        )
    } else if usable < expect_gpus {
        let why = no_gpu_reason.unwrap_or("not enough devices");
        (
            EXIT_TOO_FEW_GPUS,
            format!("expected {expect_gpus} usable GPU(s), found {usable}: {why}"),
        )
    } else if declared.iter().any(|c| c.matches == Some(false)) {
        (
            EXIT_VERSION_MISMATCH,
            "declared versions disagree with the runtime".to_string(),
        )
    } else if usable == 0 {
        (
            EXIT_OK,
            "no GPU (none expected); versions consistent".to_string(),
        )
    } else {
        (
            EXIT_OK,
            format!("{usable} GPU(s) usable; versions consistent"),
        )
    }
}

/// Runs every check; the caller prints and exits with `exit_code`.
pub fn run(expect_gpus: u32) -> CudaReport {
    let torch = runtime::torch_info();
    let cuda_available = tch::Cuda::is_available();
    let device_count = if cuda_available {
        tch::Cuda::device_count()
    } else {
        0
    };
    let (driver_api, driver_devices, driver_reason) = driver_summary();
    let no_gpu_reason = no_gpu_reason(device_count, driver_reason, driver_devices.len());
    let devices = if no_gpu_reason.is_none() {
        check_devices(device_count, &driver_devices)
    } else {
        Vec::new()
    };
    let cuda_runtime_version = if cuda_available {
        runtime::cuda_runtime_version()
    } else {
        None
    };
    let cudnn_version = runtime::cudnn_version();
    let runtime_cuda = cuda_runtime_version
        .clone()
        .or_else(|| torch.built_cuda.clone());
    let declared = declared_checks(&torch, runtime_cuda, cudnn_version.clone());
    let (exit_code, verdict) = verdict(&devices, &declared, expect_gpus, no_gpu_reason.as_deref());
    CudaReport {
        schema_version: report::SCHEMA_VERSION,
        harness_version: env!("CARGO_PKG_VERSION").into(),
        torch,
        cuda_available,
        device_count,
        cuda_runtime_version,
        cuda_driver_api_version: driver_api,
        nvidia_driver_version: runtime::nvidia_driver_version(),
        cudnn_version,
        no_gpu_reason,
        devices,
        declared,
        expected_gpus: expect_gpus,
        exit_code,
        verdict,
    }
}

/// Human-readable summary.
pub fn render(r: &CudaReport) -> String {
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let mut s = String::new();
    s += &format!(
        "torch            {}  (built for CUDA {})\n",
        r.torch.version,
        opt(&r.torch.built_cuda)
    );
    s += &format!("libtorch         {}\n", opt(&r.torch.lib_dir));
    s += &format!(
        "CUDA available   {}  ({} device(s))\n",
        r.cuda_available, r.device_count
    );
    s += &format!("CUDA runtime     {}\n", opt(&r.cuda_runtime_version));
    s += &format!("driver CUDA API  {}\n", opt(&r.cuda_driver_api_version));
    s += &format!("NVIDIA driver    {}\n", opt(&r.nvidia_driver_version));
    s += &format!("cuDNN            {}\n", opt(&r.cudnn_version));
    if let Some(reason) = &r.no_gpu_reason {
        s += &format!("no GPU: {reason}\n");
    }
    for d in &r.devices {
        s += &format!(
            "GPU {}: {} (sm {}, {:.1} GiB) matmul |Δ|max={} (tol {}) roundtrip={} -> {}{}\n",
            d.index,
            opt(&d.name),
            opt(&d.compute_capability),
            d.total_memory_bytes.unwrap_or(0) as f64 / (1u64 << 30) as f64,
            d.matmul_max_abs_diff
                .map_or("-".into(), |v| format!("{v:.3e}")),
            d.matmul_tolerance
                .map_or("-".into(), |v| format!("{v:.3e}")),
            d.roundtrip_equal.map_or("-".into(), |v| v.to_string()),
            if d.ok { "ok" } else { "FAILED" },
            d.error
                .as_ref()
                .map_or(String::new(), |e| format!(" ({e})")),
        );
    }
    for c in &r.declared {
        match (&c.declared, c.matches) {
            (None, _) => {
                s += &format!(
                    "{:<6} {} unset: nothing to compare\n",
                    c.component, c.env_var
                )
            }
            (Some(d), m) => {
                s += &format!(
                    "{:<6} declared {} runtime {} -> {}\n",
                    c.component,
                    d,
                    opt(&c.runtime),
                    if m == Some(true) { "match" } else { "MISMATCH" }
                )
            }
        }
    }
    s += &format!("verdict: {} (exit {})\n", r.verdict, r.exit_code);
    s
}

#[cfg(test)]
mod tests {
    use super::versions_match;

    #[test]
    fn version_comparison() {
        assert!(versions_match("2.6.0", "2.6.0+cu124"));
        assert!(versions_match("12.4", "12.4"));
        assert!(versions_match("12.4.1", "12.4"));
        assert!(versions_match("9.1.0", "9.1.0"));
        assert!(!versions_match("12.1", "12.4"));
        assert!(!versions_match("2.6.0+cu121", "2.6.0+cu124"));
        assert!(!versions_match("2.5.1", "2.6.0+cu124"));
    }
}
