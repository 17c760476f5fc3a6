//! Where torchenv keeps what is expensive to make: wheels, base root file
//! systems, host-side PyTorch installs and harness builds. Everything in it
//! is addressed by content, so it can be shared by every checkout on the
//! machine and pruned at any time (`cargo xtask prune`).
//!
//! May use: nothing else of the crate.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The cache root: `$TORCHENV_CACHE`, else `$XDG_CACHE_HOME/torchenv`,
/// else `~/.cache/torchenv`.
pub fn root() -> PathBuf {
    if let Some(dir) = std::env::var_os("TORCHENV_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("torchenv");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache").join("torchenv")
}

/// Content-addressed wheel store: `wheels/<sha256>/<file name>`.
pub fn wheel_path(sha256: &str, file_name: &str) -> PathBuf {
    root().join("wheels").join(sha256).join(file_name)
}

/// Weights downloaded from a URL (`eval --weights URL --sha256 …`):
/// `weights/<sha256>/<file name>` (the harness keeps its own downloads
/// at the same place). No lock references them: `prune` removes them.
pub fn url_weights_dir() -> PathBuf {
    root().join("weights")
}

/// Base root file system tarballs: `rootfs/<sha256>.tar`.
pub fn rootfs_dir() -> PathBuf {
    root().join("rootfs")
}

/// The host-side PyTorch used to build the harness and run Python
/// references: `pytorch/<torch version>/venv`.
pub fn torch_venv(torch: &str) -> PathBuf {
    root().join("pytorch").join(torch).join("venv")
}

/// An environment's wheels unpacked for a python the host lacks
/// (`build::harness::TorchSource::Unpacked`).
pub fn torch_target(torch: &str, python: &str) -> PathBuf {
    root()
        .join("pytorch")
        .join(format!("{torch}-py{python}"))
        .join("site-packages")
}

/// Harness builds, one cargo target dir per torch version (and per python
/// when it is not the host's: `build::harness::build_key`).
pub fn harness_dir(torch: &str) -> PathBuf {
    root().join("harness").join(torch)
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

pub fn sha256_bytes(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
