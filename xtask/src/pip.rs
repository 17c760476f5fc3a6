//! The host's pip, asked to resolve and fetch wheels for an image's
//! interpreter rather than its own. The index is whatever the host's pip
//! configuration says; torchenv never names one.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};

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

/// Runs `cmd`, logging it first and again with its output tail on failure.
pub fn run(mut cmd: Command, what: &str) -> Result<std::process::Output> {
    eprintln!("  $ {}", display_short(&cmd));
    let output = cmd
        .output()
        .map_err(Error::io(format!("running {}", display(&cmd))))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(Error::Failed {
            message: format!(
                "{what} failed ({}): {}\n{}",
                output.status,
                display(&cmd),
                tail.join("\n")
            ),
            help: Some("pip uses this host's index configuration (pip config list)".into()),
        });
    }
    Ok(output)
}

/// A command line as a user would type it.
pub fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// [`display`] for logs: a command with many arguments (a wheel list) is
/// cut after the first few, saying how many were left out.
pub fn display_short(cmd: &Command) -> String {
    const SHOWN: usize = 12;
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let program = cmd.get_program().to_string_lossy();
    if args.len() <= SHOWN {
        return display(cmd);
    }
    format!(
        "{program} {} … (+{} more arguments)",
        args[..SHOWN].join(" "),
        args.len() - SHOWN
    )
}

/// Resolves `requirements` for `target` without installing anything and
/// returns pip's JSON installation report.
pub fn resolve(
    target: Target<'_>,
    requirements: &[String],
    scratch: &Path,
) -> Result<serde_json::Value> {
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
        .map_err(Error::io(format!("reading {}", report.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::failed(format!("pip report {}: {e}", report.display())))
}
