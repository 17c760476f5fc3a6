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
pub fn resolve(
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
