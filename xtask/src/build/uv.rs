//! uv, the Python package installer torchenv installs wheels with (into the
//! image's `/opt/venv` and into the host venv the harness compiles
//! against): one pinned release, fetched as a wheel like every locked wheel
//! (its sha256 is checked) and unpacked into the cache as
//! `tools/uv-<version>/uv`.
//!
//! Its version is part of the venv layer's identity (see
//! [`super::venv_layer`]), so a new uv rebuilds that layer.
//!
//! May use: `build::wheels`, `lock` (data model), `cache`, `progress`.

use std::io::Read;
use std::path::PathBuf;

use super::{wheels, BuildError};
use crate::cache;
use crate::lock::LockedWheel;
use crate::progress::Progress;

/// The pinned release.
pub const VERSION: &str = "0.13.9";
/// Its x86-64 Linux wheel (glibc 2.17 and newer).
pub const WHEEL: &str = "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl";
/// The wheel's sha256, as PyPI lists it.
pub const SHA256: &str = "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19";

/// The pinned wheel, as a locked wheel.
pub fn wheel() -> LockedWheel {
    LockedWheel {
        name: "uv".into(),
        version: VERSION.into(),
        file: WHEEL.into(),
        sha256: SHA256.into(),
    }
}

/// Folder of the unpacked binary in the cache.
pub fn dir() -> PathBuf {
    cache::root().join("tools").join(format!("uv-{VERSION}"))
}

/// The `uv` binary, fetched and unpacked when it is not in the cache yet.
pub fn ensure(progress: &Progress) -> Result<PathBuf, BuildError> {
    let binary = dir().join("uv");
    if binary.exists() {
        return Ok(binary);
    }
    let wheel = wheel();
    let paths = wheels::fetch(std::slice::from_ref(&wheel), "3.11", progress)?;
    let source = &paths[0];
    let unpack = |source: &std::path::Path| -> std::io::Result<Vec<u8>> {
        let mut zip = zip::ZipArchive::new(std::fs::File::open(source)?)?;
        let mut entry = zip.by_name(&format!("uv-{VERSION}.data/scripts/uv"))?;
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut data)?;
        Ok(data)
    };
    let data = unpack(source).map_err(BuildError::io(format!(
        "unpacking the uv binary from {}",
        source.display()
    )))?;
    let dir = dir();
    std::fs::create_dir_all(&dir).map_err(BuildError::io(format!("creating {}", dir.display())))?;
    // Written beside and renamed: a half-written binary never has the name.
    let tmp = dir.join(format!(".uv-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&tmp, &data)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &binary)
    };
    write().map_err(BuildError::io(format!("writing {}", binary.display())))?;
    Ok(binary)
}
