//! The host's pip, asked to resolve and fetch wheels for an image's
//! interpreter rather than its own. The index is whatever the host's pip
//! configuration says; torchenv never names one.
//!
//! May use: `process`.

use std::path::Path;
use std::process::Command;

use super::BuildError;
use crate::process;

/// The target interpreter of an image: CPython MAJOR.MINOR on x86-64 Linux
/// with a given glibc.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub python: &'a str,
    pub glibc: (u32, u32),
}

impl Target<'_> {
    /// `--python-version … --platform …` flags so pip picks wheels the image
    /// can load: binary only, every manylinux tag up to the image's glibc.
    pub fn args(&self) -> Vec<String> {
        let nodot = self.python.replace('.', "");
        let mut args: Vec<String> = vec![
            "--only-binary=:all:".into(),
            "--python-version".into(),
            self.python.into(),
            "--implementation".into(),
            "cp".into(),
        ];
        for abi in [format!("cp{nodot}"), "abi3".into(), "none".into()] {
            args.extend(["--abi".into(), abi]);
        }
        let (major, max_minor) = self.glibc;
        let mut platforms: Vec<String> = (5..=max_minor)
            .rev()
            .map(|m| format!("manylinux_{major}_{m}_x86_64"))
            .collect();
        platforms.extend(
            [
                "manylinux2014_x86_64",
                "manylinux2010_x86_64",
                "manylinux1_x86_64",
                "linux_x86_64",
            ]
            .map(String::from),
        );
        for p in platforms {
            args.extend(["--platform".into(), p]);
        }
        args
    }
}

/// `python3 -m pip` with the host's configuration (and no version nag).
pub fn command() -> Command {
    let python = std::env::var("TORCHENV_HOST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip"])
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    cmd
}

/// Runs a pip command, its failure saying where pip's index comes from.
pub fn run(cmd: Command, what: &str) -> Result<std::process::Output, BuildError> {
    process::run_captured(cmd, what).map_err(|e| {
        e.with_help("pip uses this host's index configuration (pip config list)")
            .into()
    })
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
    target: Target<'_>,
    requirements: &[String],
    scratch: &Path,
) -> Result<serde_json::Value, BuildError> {
    let mut requirements = requirements.to_vec();
    for _ in 0..5 {
        let report = resolve_once(target, &requirements, scratch)?;
        let missing = missing_for_target(target, &scratch.join("report.json"))?;
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
    target: Target<'_>,
    requirements: &[String],
    scratch: &Path,
) -> Result<serde_json::Value, BuildError> {
    let report = scratch.join("report.json");
    let mut cmd = command();
    cmd.args([
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
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

fn missing_for_target(target: Target<'_>, report: &Path) -> Result<Vec<String>, BuildError> {
    let python = std::env::var("TORCHENV_HOST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(python);
    cmd.arg("-c")
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
