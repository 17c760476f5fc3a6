//! `cargo xtask doctor`: checks this machine for what torchenv needs, one
//! line per check (ok / warn / fail) with the fix.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::path::Path;
use std::process::Command;

use super::{Ctx, Run};
use crate::build::host_tools::{on_path, CMAKE, MMDEBSTRAP, NASM};
use crate::docker::containers::GpuSupport;
use crate::docker::Docker;
use crate::error::{Error, Result};
use crate::spec::Spec;

/// The one hand-kept table: the minimum Linux driver for each CUDA major
/// version (minor version compatibility). Source: NVIDIA CUDA Toolkit
/// Release Notes, Table 2 "CUDA Toolkit and Minimum Required Driver Version
/// for CUDA Minor Version Compatibility"
/// (<https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/>):
/// CUDA 11.x ≥ 450.80.02, 12.x ≥ 525.60.13, 13.x ≥ 580.
pub const CUDA_MIN_DRIVER: &[(u32, &str)] = &[(11, "450.80.02"), (12, "525.60.13"), (13, "580")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub level: Level,
    pub what: String,
    pub fix: Option<String>,
}

fn ok(what: impl Into<String>) -> Check {
    Check {
        level: Level::Ok,
        what: what.into(),
        fix: None,
    }
}

fn warn(what: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        level: Level::Warn,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

fn fail(what: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        level: Level::Fail,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

/// The minimum driver for CUDA `cuda` ("12.4"), from [`CUDA_MIN_DRIVER`].
pub fn min_driver(cuda: &str) -> Option<&'static str> {
    let major: u32 = cuda.split('.').next()?.parse().ok()?;
    CUDA_MIN_DRIVER
        .iter()
        .find(|(m, _)| *m == major)
        .map(|(_, d)| *d)
}

/// Compares dotted versions numerically (`525.60.13` < `580`).
pub fn version_at_least(have: &str, need: &str) -> bool {
    let parse = |s: &str| {
        s.split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    let (mut h, mut n) = (parse(have), parse(need));
    let len = h.len().max(n.len());
    h.resize(len, 0);
    n.resize(len, 0);
    h >= n
}

/// The host's NVIDIA driver version: `nvidia-smi`, else /proc/driver/nvidia/version.
pub fn driver_version() -> Option<String> {
    if let Ok(out) = Command::new("nvidia-smi")
        .args(["--query-gpu=driver_version", "--format=csv,noheader"])
        .output()
    {
        if out.status.success() {
            if let Some(v) = String::from_utf8_lossy(&out.stdout).lines().next() {
                return Some(v.trim().to_string());
            }
        }
    }
    let text = std::fs::read_to_string("/proc/driver/nvidia/version").ok()?;
    // "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb ..."
    text.split_whitespace()
        .find(|w| w.contains('.') && w.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(str::to_string)
}

fn apt_sources() -> bool {
    let mut files = vec![std::path::PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources")),
        );
    }
    files.iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|t| {
            t.lines()
                .map(str::trim)
                .any(|l| l.starts_with("deb ") || l.starts_with("Types:"))
        })
    })
}

/// Runs every check.
pub async fn checks(spec: Option<&Spec>) -> Vec<Check> {
    let mut out = Vec::new();
    let (engine, docker) = docker_check().await;
    out.push(engine);
    out.push(gpu_runtime_check(docker.as_ref()).await);
    out.extend(driver_checks(spec));
    if let Some(d) = &docker {
        out.push(disk_check(d, spec).await);
    }
    out.extend(host_tool_checks());
    out.push(apt_check());
    out.push(ssh_check());
    out
}

/// The engine: reachable, which one (Docker or Podman, rootless or not,
/// its version) and where; the client when reachable.
async fn docker_check() -> (Check, Option<Docker>) {
    match Docker::connect().await {
        Ok(d) => {
            let mut what = format!("{} at {}", d.engine.describe(), d.host);
            if d.engine.keeps_host_ids() {
                what.push_str(
                    "; containers run in a keep-id user namespace, so workspace files belong to you",
                );
            }
            (ok(what), Some(d))
        }
        Err(e) => (
            fail(
                format!("no container engine answers: {e}"),
                "start Docker (`systemctl start docker`) or your Podman service (`systemctl --user start podman.socket`), or set DOCKER_HOST (unix://, tcp:// with DOCKER_TLS_VERIFY, ssh://)",
            ),
            None,
        ),
    }
}

/// GPU access from containers: the NVIDIA runtime or CDI devices.
async fn gpu_runtime_check(docker: Option<&Docker>) -> Check {
    let support = match docker {
        Some(d) => d.gpu_support().await.unwrap_or_default(),
        None => GpuSupport::default(),
    };
    if let Some(dropped) = &support.dropped {
        warn(
            format!("no GPUs through this engine: it has {dropped}; environments run without GPUs (`gpus: auto`), other `gpus:` fail"),
            "use Podman 5.4 or later with a CDI spec (`nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`), or Docker with nvidia-container-toolkit",
        )
    } else if support.nvidia_runtime {
        ok("NVIDIA container runtime registered with the engine")
    } else if !support.cdi_devices.is_empty() {
        ok(format!(
            "CDI GPU devices: {}",
            support.cdi_devices.join(", ")
        ))
    } else {
        warn(
            "no NVIDIA runtime and no CDI devices: environments run without GPUs (`gpus: auto`), `gpus: all` fails",
            "install nvidia-container-toolkit, then `nvidia-ctk runtime configure --runtime=docker` (or `nvidia-ctk cdi generate`) and restart dockerd",
        )
    }
}

/// The host's NVIDIA driver: present, and (with a spec) new enough for the
/// CUDA version of each environment.
fn driver_checks(spec: Option<&Spec>) -> Vec<Check> {
    let mut out = Vec::new();
    let driver = driver_version();
    match (&driver, spec) {
        (None, _) => out.push(warn(
            "no NVIDIA driver visible (nvidia-smi, /proc/driver/nvidia/version)",
            "install the NVIDIA driver for GPU use; CPU-only use needs nothing",
        )),
        (Some(v), None) => out.push(ok(format!("NVIDIA driver {v}"))),
        (Some(v), Some(spec)) => {
            for env in spec.environments.values() {
                let Some(cuda) = &env.cuda else { continue };
                match min_driver(cuda) {
                    Some(need) if version_at_least(v, need) => out.push(ok(format!(
                        "driver {v} ≥ {need} needed by CUDA {cuda} ({})",
                        env.name
                    ))),
                    Some(need) => out.push(fail(
                        format!(
                            "driver {v} is older than {need}, the minimum for CUDA {cuda} ({})",
                            env.name
                        ),
                        format!("upgrade the NVIDIA driver to ≥ {need}"),
                    )),
                    None => out.push(warn(
                        format!(
                            "CUDA {cuda} ({}) is not in torchenv's driver table",
                            env.name
                        ),
                        "add it to doctor::CUDA_MIN_DRIVER from NVIDIA's release notes",
                    )),
                }
            }
        }
    }
    out
}

/// Free space for Docker images (the data root when the engine is local),
/// and the size of the images already built for the spec's environments.
async fn disk_check(d: &Docker, spec: Option<&Spec>) -> Check {
    let local = d.host.starts_with("unix://");
    let root = d
        .data_root()
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| "/var/lib/docker".into());
    let mut images: u64 = 0;
    if let Some(spec) = spec {
        for env in spec.environments.keys() {
            if let Ok(Some(tag)) = d.newest_env_image(env).await {
                images += d.image_size(&tag).await.ok().flatten().unwrap_or(0) as u64;
            }
        }
    }
    // A PyTorch-CUDA image and its build context take ~15 GiB.
    let need: u64 = 20 << 30;
    match crate::disk::free_space(Path::new(if local { root.as_str() } else { "/" })) {
        Some(free) if free >= need => ok(format!(
            "{:.1} GiB free for images ({root}); built images use {:.1} GiB",
            free as f64 / f64::from(1u32 << 30),
            images as f64 / f64::from(1u32 << 30)
        )),
        Some(free) => warn(
            format!(
                "only {:.1} GiB free for images ({root}); a build needs ~20 GiB",
                free as f64 / f64::from(1u32 << 30)
            ),
            "free space, or `docker image prune` / `cargo xtask prune`",
        ),
        None => warn(
            format!("cannot tell the free space of {root}"),
            "check with `df -h`",
        ),
    }
}

/// The host programs torchenv runs (installed automatically when root).
fn host_tool_checks() -> Vec<Check> {
    let mut out = Vec::new();
    for (tool, why) in [
        (MMDEBSTRAP, "bootstraps Debian bases from the host's mirror"),
        (CMAKE, "builds the harness's libjpeg-turbo"),
        (NASM, "assembles libjpeg-turbo's SIMD code"),
    ] {
        if on_path(tool.program) {
            out.push(ok(format!("{} present ({why})", tool.program)));
        } else {
            out.push(warn(
                format!(
                    "{} missing ({why}); installed automatically when torchenv runs as root",
                    tool.program
                ),
                format!("apt-get install {}", tool.package),
            ));
        }
    }
    out
}

/// An apt source, for the Debian mirror bases are bootstrapped from.
fn apt_check() -> Check {
    if apt_sources() {
        ok("apt sources configured (the Debian mirror bases are built from)")
    } else {
        fail(
            "no apt sources configured",
            "add a Debian mirror to /etc/apt/sources.list.d/debian.sources",
        )
    }
}

/// An SSH client, for `up`'s SSH readiness probe.
fn ssh_check() -> Check {
    if on_path("ssh") && on_path("ssh-keygen") {
        ok("openssh-client present (SSH readiness probe)")
    } else {
        warn(
            "no ssh client: `up` cannot verify SSH",
            "apt-get install openssh-client",
        )
    }
}

/// Check this machine: the engine (Docker or Podman, rootless or not),
/// NVIDIA runtime/CDI, driver vs CUDA,
/// disk, bootstrap tools, apt sources.
#[derive(clap::Args)]
pub struct Doctor {}

/// Prints the checks; fails (exit 1) when one fails.
impl Run for Doctor {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec().ok();
        let checks = ctx.block_on(async { Ok(checks(spec.as_ref()).await) })?;
        report(&checks)
    }
}

fn report(checks: &[Check]) -> Result<()> {
    let mut failed = 0;
    for c in checks {
        let tag = match c.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => {
                failed += 1;
                "FAIL"
            }
        };
        println!("{tag} {}", c.what);
        if let Some(fix) = &c.fix {
            println!("     fix: {fix}");
        }
    }
    if failed > 0 {
        return Err(Error::failed(format!("doctor: {failed} check(s) failed")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_table() {
        assert_eq!(min_driver("12.4"), Some("525.60.13"));
        assert_eq!(min_driver("13.0"), Some("580"));
        assert!(version_at_least("550.54.14", "525.60.13"));
        assert!(!version_at_least("525.60.12", "525.60.13"));
        assert!(!version_at_least("575.51.03", "580"));
        assert!(version_at_least("580.65.06", "580"));
    }
}
