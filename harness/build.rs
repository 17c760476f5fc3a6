//! Link flags for the harness binary.
//!
//! * `libtorch_cuda.so` is linked with `--no-as-needed`: nothing in the
//!   binary references its symbols directly, so the default `--as-needed`
//!   would drop it and libtorch would never register its CUDA backend.
//! * `TORCHENV_HARNESS_RPATH` (colon separated directories) becomes rpath
//!   entries so the binary finds exactly the libtorch it was built against
//!   (the host venv's `torch/lib` and the image's
//!   `/opt/venv/lib/python3.11/site-packages/torch/lib`).

fn main() {
    println!("cargo:rerun-if-env-changed=TORCHENV_HARNESS_RPATH");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    if let Ok(dirs) = std::env::var("TORCHENV_HARNESS_RPATH") {
        for dir in dirs.split(':').filter(|d| !d.is_empty()) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
}
