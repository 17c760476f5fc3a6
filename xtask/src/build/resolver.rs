//! The pip that resolves environments into the lock: one pinned release,
//! fetched as a wheel like every locked wheel (its sha256 is checked) and
//! run from that wheel by the host's python (pip runs from a zip), with
//! the host's pip configuration (its index). Pinned, so what a lock
//! resolves to does not depend on which pip a host has; this release, so
//! that a resolve reads wheels' metadata with HTTP range requests and
//! downloads none of them (pip 23.2, the host's here, downloads every
//! resolved wheel even for `--dry-run`: ~3 GB per torch, into /tmp).
//!
//! May use: `build::{pip, wheels}`, `lock` (data model), `progress`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::pip::{self, run, Target};
use super::{wheels, BuildError};
use crate::lock::LockedWheel;
use crate::progress::Progress;

/// The pinned release.
pub const VERSION: &str = "26.3";
/// Its wheel (pure python).
pub const WHEEL: &str = "pip-26.3-py3-none-any.whl";
/// The wheel's sha256, as PyPI lists it.
pub const SHA256: &str = "f3b60b20ffaadd4415ed7957212a38ac63fa4c5fa375bd0f4a797777940fad13";

/// The pinned wheel, as a locked wheel.
pub fn wheel() -> LockedWheel {
    LockedWheel {
        name: "pip".into(),
        version: VERSION.into(),
        file: WHEEL.into(),
        sha256: SHA256.into(),
    }
}

/// The pinned pip, ready to run.
#[derive(Debug, Clone)]
pub struct Resolver {
    /// The wheel in the cache (`wheels/<sha256>/pip-….whl`).
    wheel: PathBuf,
}

impl Resolver {
    /// Fetches the pinned wheel into the cache when it is not there yet.
    pub fn ensure(progress: &Progress) -> Result<Resolver, BuildError> {
        let paths = wheels::fetch(std::slice::from_ref(&wheel()), "3.11", progress)?;
        Ok(Resolver {
            wheel: paths.into_iter().next().expect("one wheel asked, one path"),
        })
    }

    /// `python3 <wheel>/pip` with the host's configuration (and no
    /// version nag).
    fn command(&self) -> Command {
        let mut cmd = Command::new(pip::host_python());
        cmd.arg(self.wheel.join("pip"))
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
        cmd
    }

    /// Resolves `requirements` for `target` without installing anything and
    /// returns pip's JSON installation report.
    ///
    /// pip evaluates environment markers against the interpreter it runs on,
    /// also with `--python-version` (it only picks wheel tags for the target),
    /// so on a host newer than the image it drops what the image's python
    /// needs, such as jupyter_client's `importlib_metadata; python_version <
    /// "3.10"` for python 3.9. Every resolved distribution's requirements are
    /// therefore evaluated for the target ([`MISSING_FOR_TARGET`]) and what
    /// the report lacks is added to the requirements, until nothing is.
    pub fn resolve(
        &self,
        target: Target<'_>,
        requirements: &[String],
        scratch: &Path,
    ) -> Result<serde_json::Value, BuildError> {
        let mut requirements = requirements.to_vec();
        for _ in 0..5 {
            let report = self.resolve_once(target, &requirements, scratch)?;
            let missing = self.missing_for_target(target, &scratch.join("report.json"))?;
            if missing.is_empty() {
                return Ok(report);
            }
            requirements.extend(missing);
        }
        Err(BuildError::failed(format!(
        "resolving for python {}: requirements of the resolved wheels were still missing after 5 rounds ({})",
        target.python,
        requirements.join(" ")
    )))
    }

    fn resolve_once(
        &self,
        target: Target<'_>,
        requirements: &[String],
        scratch: &Path,
    ) -> Result<serde_json::Value, BuildError> {
        let report = scratch.join("report.json");
        let mut cmd = self.command();
        cmd.args([
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            FAST_DEPS,
            "--report",
        ])
        .arg(&report)
        .args(target.args())
        .arg("--target")
        .arg(scratch.join("target"))
        .args(requirements);
        run(cmd, "resolving wheels with pip")?;
        let text = std::fs::read_to_string(&report)
            .map_err(BuildError::io(format!("reading {}", report.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| BuildError::failed(format!("pip report {}: {e}", report.display())))
    }

    fn missing_for_target(
        &self,
        target: Target<'_>,
        report: &Path,
    ) -> Result<Vec<String>, BuildError> {
        let mut cmd = Command::new(pip::host_python());
        // Its `packaging` is the pinned pip's.
        cmd.env("PYTHONPATH", &self.wheel)
            .arg("-c")
            .arg(MISSING_FOR_TARGET)
            .arg(report)
            .arg(target.python);
        let out = run(
            cmd,
            "evaluating the resolved wheels' requirements for the image's python",
        )?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }
}

/// pip reads a wheel's metadata with HTTP range requests (its central
/// directory and `METADATA`, a few hundred KB) instead of downloading it:
/// without it a resolve fetches every wheel it considers, ~3 GB for a
/// torch and its CUDA wheels, into its temporary folder — per environment,
/// and `lock --dry-run` resolves them at once — only to read their
/// metadata, where the index serves no PEP 658 metadata files (as here).
/// Where the files' host answers no range request pip downloads that
/// wheel. The hashes in the lock come from the index either way.
const FAST_DEPS: &str = "--use-feature=fast-deps";

/// Prints the requirements (without markers, one per line) that the
/// distributions of a pip report (argv 1) have on CPython argv 2 on x86-64
/// Linux and the report does not hold, with pip's own `packaging`.
const MISSING_FOR_TARGET: &str = r#"
import json, sys
from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name
report = json.load(open(sys.argv[1]))
py = sys.argv[2]
env = {"python_version": py, "python_full_version": py + ".0",
       "implementation_name": "cpython", "implementation_version": py + ".0",
       "platform_python_implementation": "CPython", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64",
       "os_name": "posix", "platform_release": "", "platform_version": ""}
have = {canonicalize_name(i["metadata"]["name"]) for i in report["install"]}
missing = {}
for item in report["install"]:
    extras = [""] + list(item.get("requested_extras") or [])
    for text in item["metadata"].get("requires_dist") or []:
        req = Requirement(text)
        if req.marker is not None and not any(
            req.marker.evaluate(dict(env, extra=e)) for e in extras
        ):
            continue
        name = canonicalize_name(req.name)
        if name in have:
            continue
        extra = "[" + ",".join(sorted(req.extras)) + "]" if req.extras else ""
        specs = missing.setdefault(name + extra, [])
        if str(req.specifier):
            specs.append(str(req.specifier))
for name, specs in sorted(missing.items()):
    print(name + ",".join(specs))
"#;
