//! Weights given as a URL: downloaded once into
//! `${TORCHENV_CACHE:-~/.cache/torchenv}/weights/<sha256>`, verified, and
//! moved into place atomically (temp file + rename in the same directory).
//!
//! May use: nothing else of the crate.

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Errors while resolving weights.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("weights URL {url} needs --sha256 (downloads are always verified)")]
    HashRequired { url: String },
    #[error("--sha256 {0:?} is not 64 hex digits")]
    BadHash(String),
    #[error("downloading {url}: {msg}")]
    Http { url: String, msg: String },
    #[error("downloaded {url}: sha256 is {actual}, expected {expected}")]
    HashMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("weights cache {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot locate the cache directory: set TORCHENV_CACHE or HOME")]
    NoCacheDir,
}

/// Whether `source` is an http(s) URL.
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// `${TORCHENV_CACHE:-$HOME/.cache/torchenv}`.
pub fn cache_root() -> Result<PathBuf, DownloadError> {
    if let Some(c) = std::env::var_os("TORCHENV_CACHE").filter(|c| !c.is_empty()) {
        return Ok(PathBuf::from(c));
    }
    let home = std::env::var_os("HOME").ok_or(DownloadError::NoCacheDir)?;
    Ok(Path::new(&home).join(".cache/torchenv"))
}

fn valid_hash(h: &str) -> bool {
    h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit())
}

/// Downloads `url` into `cache_dir/<sha256>` unless already there; returns
/// the local path. The hash is verified before the file becomes visible.
pub fn fetch(url: &str, sha256: Option<&str>, cache_dir: &Path) -> Result<PathBuf, DownloadError> {
    let expected = sha256
        .ok_or_else(|| DownloadError::HashRequired { url: url.into() })?
        .to_ascii_lowercase();
    if !valid_hash(&expected) {
        return Err(DownloadError::BadHash(expected));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DownloadError::Io { path, source }
    };
    std::fs::create_dir_all(cache_dir).map_err(io(cache_dir))?;
    let dest = cache_dir.join(&expected);
    if dest.is_file() {
        return Ok(dest); // verified before it was renamed into place
    }
    let http = |msg: String| DownloadError::Http {
        url: url.into(),
        msg,
    };
    let resp = ureq::get(url).call().map_err(|e| match e {
        ureq::Error::Status(code, r) => http(format!("HTTP {code} {}", r.status_text())),
        other => http(other.to_string()),
    })?;
    let tmp = cache_dir.join(format!(".{expected}.{}.partial", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut reader = resp.into_reader();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(http(e.to_string()));
            }
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(io(&tmp))?;
    }
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    let actual: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual != expected {
        let _ = std::fs::remove_file(&tmp);
        return Err(DownloadError::HashMismatch {
            url: url.into(),
            expected,
            actual,
        });
    }
    std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
    Ok(dest)
}
