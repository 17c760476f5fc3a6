//! The harness compiled in a container of an older Debian suite, for an
//! environment whose base's glibc is older than this host's
//! ([`harness::foreign_suite`]: bullseye's 2.31 under a bookworm host's
//! 2.36). A binary linked on the host asks for the host's glibc symbol
//! versions, which such a base lacks; linked against the suite's own
//! glibc, it runs there (and on every newer one).
//!
//! The builder image `torchenv/harness-builder:<suite>-<hash>` is the
//! suite bootstrapped with mmdebstrap from the host's apt sources with
//! [`PACKAGES`] (a C/C++ toolchain, CMake and NASM for libjpeg-turbo); it is
//! a tool, not part of any image, so it is not locked. The build is the
//! same `cargo build` a host build runs ([`harness::prepare`]), in a
//! network-less container, as this user, with the cache folder, cargo's
//! home and this host's Rust toolchain mounted at their own paths: the
//! paths in the flags, the rpath and the stamp mean what they mean on the
//! host, and crates are fetched on the host first.
//!
//! May use: `build::{base_image, bootstrap, harness, harness_src}`, `cache`, `docker`,
//! `process`, `progress`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bollard::models::{ContainerCreateBody, HostConfig};

use super::bootstrap::{self, BootstrapRequest};
use super::harness::{self, HarnessBuild};
use super::{base_image, harness_src, BuildError};
use crate::cache;
use crate::docker::run::{unique_name, LABEL_ONE_SHOT};
use crate::docker::{Docker, LABEL_MANAGED_BY, MANAGED_BY};
use crate::lock::LockedEnv;
use crate::process;
use crate::progress::Progress;

type Result<T, E = BuildError> = std::result::Result<T, E>;

/// Repository of builder images.
pub const REPO: &str = "torchenv/harness-builder";

/// What a builder has besides a minimal Debian: `cc`/`c++` for torch-sys's
/// shim and ring, CMake, make and NASM for libjpeg-turbo.
pub const PACKAGES: &[&str] = &["cmake", "g++", "make", "nasm"];

/// The builder's file times (it is never shipped; fixed so a rebuilt
/// builder of the same packages has the same bytes).
const EPOCH: u64 = 1_735_689_600;

/// The builder image of `suite`: named by the suite and [`PACKAGES`].
pub fn tag(suite: &str) -> String {
    let key = cache::sha256_bytes(format!("{suite}\n{}", PACKAGES.join(",")).as_bytes());
    format!("{REPO}:{suite}-{}", &key[..12])
}

/// `locked`'s release harness, built (or found up to date) where it must
/// be compiled: in the builder of its base's suite when this host's glibc
/// is newer ([`harness::foreign_suite`]), else on this host
/// ([`harness::build`]). What every command that builds an environment's
/// harness calls.
pub async fn build(
    docker: &Docker,
    locked: &LockedEnv,
    progress: &Progress,
) -> Result<HarnessBuild> {
    let Some(suite) = harness::foreign_suite(locked) else {
        let locked = locked.clone();
        return tokio::task::spawn_blocking(move || harness::build(&locked))
            .await
            .map_err(|e| BuildError::failed(format!("harness build task: {e}")))?;
    };
    if let Some(current) = harness::current(locked)? {
        return Ok(current);
    }
    build_in_container(docker, locked, suite, progress).await
}

/// Compiles `locked`'s release harness in the builder of `suite` (made
/// first when the engine lacks it).
async fn build_in_container(
    docker: &Docker,
    locked: &LockedEnv,
    suite: &str,
    progress: &Progress,
) -> Result<HarnessBuild> {
    let image = ensure_image(docker, suite, progress).await?;
    let sysroot = toolchain_sysroot()?;
    let owned = locked.clone();
    let (cargo, pending) = tokio::task::spawn_blocking(move || -> Result<_> {
        let (cargo, pending) = harness::prepare(&owned)?;
        // The container has no network: the crates come from cargo's home.
        let mut fetch = process::cargo();
        fetch
            .args(["fetch", "--locked", "--manifest-path"])
            .arg(pending.manifest());
        process::run_logged(fetch, "fetching the harness's crates")?;
        Ok((cargo, pending))
    })
    .await
    .map_err(|e| BuildError::failed(format!("harness build task: {e}")))??;
    let body = container(&image, &cargo, &sysroot)?;
    let task = progress.spinner(format!("harness for torch {} ({image})", locked.torch));
    let name = unique_name("harness-build");
    let out = docker
        .run_once_watching(&name, body, &mut |line| task.line(line))
        .await
        .map_err(|e| BuildError::failed(format!("the harness build container: {e}")))?;
    if out.exit_code != 0 {
        task.fail("cargo build");
        return Err(BuildError::Failed {
            message: format!(
                "compiling the harness for torch {} in {image} exited with status {}",
                locked.torch, out.exit_code
            ),
            help: Some(out.tail(30).join("\n")),
        });
    }
    task.finish("compiled");
    tokio::task::spawn_blocking(move || pending.finish())
        .await
        .map_err(|e| BuildError::failed(format!("harness build task: {e}")))?
}

/// Makes sure the builder of `suite` is in the engine: bootstrapped, loaded,
/// its tarball removed (the image is the only copy; `prune` removes it
/// when no environment needs it).
async fn ensure_image(docker: &Docker, suite: &str, progress: &Progress) -> Result<String> {
    let tag = tag(suite);
    if docker.image_inspect(&tag).await?.is_some() {
        return Ok(tag);
    }
    let include: Vec<String> = PACKAGES.iter().map(|p| p.to_string()).collect();
    let request = BootstrapRequest {
        suite,
        include: &include,
        pins: &[],
        source_date_epoch: EPOCH,
    };
    let dir = cache::rootfs_dir();
    let got = tokio::task::block_in_place(|| bootstrap::bootstrap_with(request, &dir, progress))?;
    let loaded = base_image::load_rootfs(
        docker,
        &tag,
        &got.tar,
        EPOCH,
        &got.sha256,
        &format!("harness-builder-{suite}"),
        progress,
    )
    .await;
    let _ = std::fs::remove_file(&got.tar);
    let _ = std::fs::remove_file(got.tar.with_extension("packages"));
    loaded?;
    Ok(tag)
}

/// This host's Rust toolchain (`rustc --print sysroot`): mounted into the
/// builder at its own path. rustup's toolchains are linked against an old
/// glibc (2.17), so they run in every supported suite.
fn toolchain_sysroot() -> Result<PathBuf> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(BuildError::io(format!("running {rustc} --print sysroot")))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !sysroot.join("bin/cargo").exists() {
        return Err(BuildError::failed(format!(
            "`{rustc} --print sysroot` names no toolchain with cargo ({})",
            sysroot.display()
        )));
    }
    Ok(sysroot)
}

/// The builder container running `cargo` (the host build's command: its
/// arguments and environment) with the toolchain at `sysroot`.
fn container(image: &str, cargo: &Command, sysroot: &Path) -> Result<ContainerCreateBody> {
    let cargo_home = harness_src::cargo_home()
        .ok_or_else(|| BuildError::failed("neither CARGO_HOME nor HOME is set"))?;
    let bin = sysroot.join("bin");
    let mut env = vec![
        format!("PATH={}:/usr/local/bin:/usr/bin:/bin", bin.display()),
        format!("RUSTC={}", bin.join("rustc").display()),
        format!("CARGO_HOME={}", cargo_home.display()),
        "CARGO_NET_OFFLINE=true".to_string(),
        "HOME=/tmp".to_string(),
    ];
    for (key, value) in cargo.get_envs() {
        if let (Some(key), Some(Some(value))) = (key.to_str(), value.map(|v| v.to_str())) {
            if !["PATH", "CARGO_HOME", "RUSTC", "HOME"].contains(&key) {
                env.push(format!("{key}={value}"));
            }
        }
    }
    let mut cmd = vec![bin.join("cargo").display().to_string()];
    for arg in cargo.get_args() {
        let arg = arg
            .to_str()
            .ok_or_else(|| BuildError::failed(format!("cargo argument {arg:?} is not UTF-8")))?;
        cmd.push(arg.to_string());
    }
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let bind = |path: &Path, mode: &str| format!("{0}:{0}:{mode}", path.display());
    Ok(ContainerCreateBody {
        image: Some(image.to_string()),
        user: Some(format!("{uid}:{gid}")),
        cmd: Some(cmd),
        env: Some(env),
        labels: Some(HashMap::from([
            (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
            (LABEL_ONE_SHOT.to_string(), "harness build".to_string()),
        ])),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            binds: Some(vec![
                bind(&cache::root(), "rw"),
                bind(&cargo_home, "rw"),
                bind(sysroot, "ro"),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The container runs the host build's cargo arguments and environment
    /// with the toolchain's cargo, offline, as this user, with the cache,
    /// cargo's home and the toolchain at their own paths.
    #[test]
    fn container_runs_the_host_command_at_the_same_paths() {
        let mut cargo = Command::new("cargo");
        cargo
            .args(["build", "--release", "--manifest-path", "/c/h/Cargo.toml"])
            .env("LIBTORCH", "/c/torch")
            .env("PATH", "/host/only")
            .env_remove("LIBTORCH_USE_PYTORCH");
        let body = container("b:1", &cargo, Path::new("/tc")).unwrap();
        assert_eq!(
            body.cmd.unwrap(),
            [
                "/tc/bin/cargo",
                "build",
                "--release",
                "--manifest-path",
                "/c/h/Cargo.toml"
            ]
        );
        let env = body.env.unwrap();
        assert!(env.contains(&"LIBTORCH=/c/torch".to_string()), "{env:?}");
        assert!(env.contains(&"CARGO_NET_OFFLINE=true".to_string()));
        assert!(env.iter().any(|e| e.starts_with("PATH=/tc/bin:")));
        assert!(!env.iter().any(|e| e.contains("/host/only")));
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        let binds = host.binds.unwrap();
        let root = cache::root().display().to_string();
        assert!(binds.contains(&format!("{root}:{root}:rw")), "{binds:?}");
        assert!(binds.contains(&"/tc:/tc:ro".to_string()));
        assert!(body.user.unwrap().contains(':'));
    }

    #[test]
    fn the_builder_tag_names_the_suite_and_its_packages() {
        assert!(tag("bullseye").starts_with("torchenv/harness-builder:bullseye-"));
        assert_ne!(tag("bullseye"), tag("bookworm"));
    }
}
