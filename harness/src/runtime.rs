//! What is actually loaded in this process: libtorch's location and
//! version, CUDA runtime / driver / cuDNN versions (queried by `dlopen`ing
//! the libraries and calling their version functions), and libtorch's
//! global context switches (TF32, cuDNN determinism) which tch does not
//! expose.
//!
//! May use: nothing else of the crate.

use libloading::os::unix::Library;
use std::ffi::{c_char, c_int, c_void};
use std::path::{Path, PathBuf};

/// Shared libraries currently mapped into this process whose file name
/// contains `needle` (from `/proc/self/maps`).
pub fn loaded_library(needle: &str) -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            Path::new(p)
                .file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.contains(needle))
        })
        .map(PathBuf::from)
}

/// Directory of the loaded `libtorch_cpu.so` (`.../torch/lib`).
pub fn torch_lib_dir() -> Option<PathBuf> {
    // Make sure libtorch is initialised and mapped.
    let _ = tch::utils::has_cuda();
    loaded_library("libtorch_cpu.so").and_then(|p| p.parent().map(Path::to_path_buf))
}

pub use report::TorchInfo;

/// Version info of the loaded libtorch, read from `torch/version.py` next to
/// it (pip wheels) or `build-version` (standalone libtorch zip).
pub fn torch_info() -> TorchInfo {
    let Some(lib) = torch_lib_dir() else {
        return TorchInfo {
            version: "unknown".into(),
            ..Default::default()
        };
    };
    let lib_dir = Some(lib.display().to_string());
    if let Ok(text) = std::fs::read_to_string(lib.join("../version.py")) {
        let field = |name: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(name) && l[name.len()..].trim_start().starts_with([':', '='])
                })
                .and_then(|l| l.split('=').nth(1))
                .map(|v| v.trim().trim_matches(['\'', '"']).to_string())
                .filter(|v| v != "None")
        };
        return TorchInfo {
            version: field("__version__").unwrap_or_else(|| "unknown".into()),
            built_cuda: field("cuda"),
            lib_dir,
        };
    }
    let version = std::fs::read_to_string(lib.join("../build-version"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let built_cuda = version.split_once("+cu").map(|(_, cu)| {
        format!(
            "{}.{}",
            &cu[..cu.len().saturating_sub(1)],
            &cu[cu.len().saturating_sub(1)..]
        )
    });
    TorchInfo {
        version,
        built_cuda,
        lib_dir,
    }
}

/// `12040` → `12.4` (CUDA runtime/driver API version encoding).
pub fn format_cuda_version(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// cuDNN version number → `major.minor.patch` (v9+: M*10000+m*100+p,
/// older: M*1000+m*100+p).
pub fn format_cudnn_version(v: usize) -> String {
    if v >= 90000 {
        format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100)
    } else {
        format!("{}.{}.{}", v / 1000, (v % 1000) / 100, v % 100)
    }
}

fn open(path: &Path) -> Option<Library> {
    // SAFETY: loading CUDA/cuDNN libraries runs their initialisers, which
    // libtorch itself does on first CUDA use.
    unsafe { Library::new(path) }.ok()
}

/// The CUDA runtime libtorch loaded (or can load).
pub fn cudart_library() -> Option<Library> {
    if let Some(p) = loaded_library("libcudart.so") {
        return open(&p);
    }
    let lib = torch_lib_dir()?;
    let p = lib.join("../../nvidia/cuda_runtime/lib/libcudart.so.12");
    open(&p)
}

/// `cudaRuntimeGetVersion`, formatted.
pub fn cuda_runtime_version() -> Option<String> {
    let lib = cudart_library()?;
    // SAFETY: documented signature `cudaError_t cudaRuntimeGetVersion(int*)`.
    unsafe {
        let f = lib
            .get::<unsafe extern "C" fn(*mut c_int) -> c_int>(b"cudaRuntimeGetVersion\0")
            .ok()?;
        let mut v = 0;
        (f(&mut v) == 0 && v > 0).then(|| format_cuda_version(v))
    }
}

/// `cudnnGetVersion` of the cuDNN libtorch uses, formatted.
pub fn cudnn_version() -> Option<String> {
    let lib = match loaded_library("libcudnn.so") {
        Some(p) => open(&p)?,
        None => {
            let dir = torch_lib_dir()?;
            ["libcudnn.so.9", "libcudnn.so.8"]
                .iter()
                .find_map(|n| open(&dir.join("../../nvidia/cudnn/lib").join(n)))
                .or_else(|| open(Path::new("libcudnn.so.9")))?
        }
    };
    // SAFETY: documented signature `size_t cudnnGetVersion(void)`.
    unsafe {
        let f = lib
            .get::<unsafe extern "C" fn() -> usize>(b"cudnnGetVersion\0")
            .ok()?;
        let v = f();
        (v > 0).then(|| format_cudnn_version(v))
    }
}

/// Device memory in use (`total - free` from `cudaMemGetInfo`) on the
/// current device, bytes.
pub fn cuda_memory_used() -> Option<u64> {
    let lib = cudart_library()?;
    // SAFETY: documented signature `cudaError_t cudaMemGetInfo(size_t*, size_t*)`.
    unsafe {
        let f = lib
            .get::<unsafe extern "C" fn(*mut usize, *mut usize) -> c_int>(b"cudaMemGetInfo\0")
            .ok()?;
        let (mut free, mut total) = (0usize, 0usize);
        (f(&mut free, &mut total) == 0).then(|| (total - free) as u64)
    }
}

/// One GPU as the CUDA driver API sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DriverDevice {
    pub index: i32,
    pub name: String,
    /// `major.minor`.
    pub compute_capability: String,
    pub total_memory_bytes: u64,
}

/// What the CUDA driver (`libcuda.so.1`) reports.
#[derive(Debug, Clone)]
pub enum DriverStatus {
    /// `libcuda.so.1` could not be loaded: no NVIDIA driver in this container.
    LibcudaNotFound(String),
    /// `cuInit` failed (e.g. no device visible, driver/runtime mismatch).
    InitFailed(i32),
    Ok {
        /// CUDA API version supported by the driver (`cuDriverGetVersion`).
        cuda_api_version: String,
        devices: Vec<DriverDevice>,
    },
}

/// Queries the CUDA driver API directly.
pub fn driver_status() -> DriverStatus {
    // SAFETY: loading the driver library; signatures below are the
    // documented CUDA driver API ones.
    let lib = match unsafe { Library::new("libcuda.so.1") } {
        Ok(l) => l,
        Err(e) => return DriverStatus::LibcudaNotFound(e.to_string()),
    };
    unsafe {
        type GetInt = unsafe extern "C" fn(*mut c_int) -> c_int;
        let sym = |name: &[u8]| lib.get::<GetInt>(name).ok().map(|s| *s);
        let Ok(cu_init) = lib.get::<unsafe extern "C" fn(u32) -> c_int>(b"cuInit\0") else {
            return DriverStatus::InitFailed(-1);
        };
        let rc = cu_init(0);
        if rc != 0 {
            return DriverStatus::InitFailed(rc);
        }
        let mut version = 0;
        if let Some(f) = sym(b"cuDriverGetVersion\0") {
            f(&mut version);
        }
        let mut count = 0;
        if let Some(f) = sym(b"cuDeviceGetCount\0") {
            f(&mut count);
        }
        let get = lib.get::<unsafe extern "C" fn(*mut c_int, c_int) -> c_int>(b"cuDeviceGet\0");
        let name_fn = lib
            .get::<unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int>(b"cuDeviceGetName\0");
        let mem_fn =
            lib.get::<unsafe extern "C" fn(*mut usize, c_int) -> c_int>(b"cuDeviceTotalMem_v2\0");
        let attr_fn = lib.get::<unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int>(
            b"cuDeviceGetAttribute\0",
        );
        let mut devices = Vec::new();
        if let (Ok(get), Ok(name_fn), Ok(mem_fn), Ok(attr_fn)) = (get, name_fn, mem_fn, attr_fn) {
            for i in 0..count {
                let mut dev = 0;
                if get(&mut dev, i) != 0 {
                    continue;
                }
                let mut buf = [0 as c_char; 256];
                name_fn(buf.as_mut_ptr(), 255, dev);
                let name = std::ffi::CStr::from_ptr(buf.as_ptr())
                    .to_string_lossy()
                    .into_owned();
                let mut mem = 0usize;
                mem_fn(&mut mem, dev);
                // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR
                let (mut major, mut minor) = (0, 0);
                attr_fn(&mut major, 75, dev);
                attr_fn(&mut minor, 76, dev);
                devices.push(DriverDevice {
                    index: i,
                    name,
                    compute_capability: format!("{major}.{minor}"),
                    total_memory_bytes: mem as u64,
                });
            }
        }
        DriverStatus::Ok {
            cuda_api_version: format_cuda_version(version),
            devices,
        }
    }
}

/// NVIDIA kernel driver version from `/proc/driver/nvidia/version`.
pub fn nvidia_driver_version() -> Option<String> {
    let text = std::fs::read_to_string("/proc/driver/nvidia/version").ok()?;
    let line = text.lines().next()?;
    line.split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.'))
        .map(str::to_string)
}

/// libtorch `at::globalContext()` setters that tch does not wrap, called
/// through their C++ symbols. Each returns whether the symbol was found.
pub struct TorchContext {
    lib: Library,
    ctx: *mut c_void,
}

impl TorchContext {
    pub fn get() -> Option<TorchContext> {
        let _ = tch::utils::has_cuda();
        let lib = Library::this();
        // SAFETY: `at::Context& at::globalContext()` takes no arguments.
        let ctx = unsafe {
            let f = lib
                .get::<unsafe extern "C" fn() -> *mut c_void>(b"_ZN2at13globalContextEv\0")
                .ok()?;
            f()
        };
        (!ctx.is_null()).then_some(TorchContext { lib, ctx })
    }

    fn set_bool(&self, symbol: &[u8], value: bool) -> bool {
        // SAFETY: non-virtual `void at::Context::setX(bool)`; under the
        // Itanium C++ ABI `this` is passed as the first argument.
        unsafe {
            match self
                .lib
                .get::<unsafe extern "C" fn(*mut c_void, bool)>(symbol)
            {
                Ok(f) => {
                    f(self.ctx, value);
                    true
                }
                Err(_) => false,
            }
        }
    }

    pub fn set_allow_tf32_cublas(&self, v: bool) -> bool {
        self.set_bool(b"_ZN2at7Context18setAllowTF32CuBLASEb\0", v)
    }
    pub fn set_allow_tf32_cudnn(&self, v: bool) -> bool {
        self.set_bool(b"_ZN2at7Context17setAllowTF32CuDNNEb\0", v)
    }
    pub fn set_deterministic_cudnn(&self, v: bool) -> bool {
        self.set_bool(b"_ZN2at7Context21setDeterministicCuDNNEb\0", v)
    }
    pub fn set_benchmark_cudnn(&self, v: bool) -> bool {
        self.set_bool(b"_ZN2at7Context17setBenchmarkCuDNNEb\0", v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_formatting() {
        assert_eq!(format_cuda_version(12040), "12.4");
        assert_eq!(format_cuda_version(11080), "11.8");
        assert_eq!(format_cudnn_version(90100), "9.1.0");
        assert_eq!(format_cudnn_version(8902), "8.9.2");
    }
}
