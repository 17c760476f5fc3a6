//! Programs torchenv runs on the host and installs when they are missing:
//! `mmdebstrap` (the base root file system), `cmake` + `nasm` (the
//! harness's vendored libjpeg-turbo), Slurm + munge (`slurm start`) and,
//! for the suite, Debian's registry and rootless Podman. As root with
//! apt-get they are installed from the host's own apt sources; otherwise the error says
//! which packages to install.
//!
//! May use: `process`, `progress`.

use std::process::{Command, Stdio};

use super::BuildError;
use crate::process;
use crate::progress::Progress;

/// A program and the Debian package that provides it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

pub const MMDEBSTRAP: Tool = Tool {
    program: "mmdebstrap",
    package: "mmdebstrap",
};
pub const CMAKE: Tool = Tool {
    program: "cmake",
    package: "cmake",
};
pub const NASM: Tool = Tool {
    program: "nasm",
    package: "nasm",
};

pub const SLURM: Tool = Tool {
    program: "slurmctld",
    package: "slurm-wlm",
};
pub const MUNGE: Tool = Tool {
    program: "munged",
    package: "munge",
};
/// Debian's distribution registry, for the registry tests.
pub const REGISTRY: Tool = Tool {
    program: "docker-registry",
    package: "docker-registry",
};

/// Rootless Podman and what it needs to map ids and reach the network, for
/// the Podman tests.
pub const PODMAN: Tool = Tool {
    program: "podman",
    package: "podman",
};
pub const NEWUIDMAP: Tool = Tool {
    program: "newuidmap",
    package: "uidmap",
};
pub const SLIRP4NETNS: Tool = Tool {
    program: "slirp4netns",
    package: "slirp4netns",
};

/// True when `program` is an executable file on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

/// Installs the missing `tools` (`why`: what needs them, for messages).
pub fn ensure(tools: &[Tool], why: &str, progress: &Progress) -> Result<(), BuildError> {
    let missing: Vec<Tool> = tools
        .iter()
        .copied()
        .filter(|t| !on_path(t.program))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names = missing
        .iter()
        .map(|t| t.program)
        .collect::<Vec<_>>()
        .join(", ");
    let packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    let how = format!("sudo apt-get install {}", packages.join(" "));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root || !on_path("apt-get") {
        return Err(BuildError::ToolMissing {
            tool: names,
            help: format!("{why} needs it: install it with `{how}`"),
        });
    }
    let task = progress.spinner(format!("install {names} ({why})"));
    let install: Vec<&str> = ["install", "-y", "-qq", "--no-install-recommends"]
        .into_iter()
        .chain(packages.iter().copied())
        .collect();
    for args in [&["update", "-qq"][..], &install[..]] {
        let mut cmd = Command::new("apt-get");
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        task.log(&format!("running {}", process::describe(&cmd)));
        if let Err(e) = process::run_streaming(cmd, "apt-get", &task) {
            let tail = e.failed_tail()?;
            task.fail("apt-get");
            return Err(BuildError::ToolMissing {
                tool: names,
                help: format!(
                    "`apt-get {}` failed; install it with `{how}`:\n{}",
                    args.join(" "),
                    tail.join("\n")
                ),
            });
        }
    }
    task.finish("installed");
    Ok(())
}
