//! The host's pip (and its python), asked to fetch wheels for an image's
//! interpreter rather than its own, and the flags that name such an
//! interpreter ([`Target`]; [`super::resolver`] resolves with them). The
//! index is whatever the host's pip configuration says; torchenv never
//! names one.
//!
//! May use: `process`.

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

/// The host's python: `$TORCHENV_HOST_PYTHON`, else `python3`.
pub fn host_python() -> String {
    std::env::var("TORCHENV_HOST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `python3 -m pip` with the host's configuration (and no version nag).
pub fn command() -> Command {
    let mut cmd = Command::new(host_python());
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
