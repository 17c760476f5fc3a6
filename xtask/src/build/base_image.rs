//! The base as an engine image: the locked root file system tarball (made by
//! [`super::bootstrap`], cached as `rootfs/<sha256>.tar`) loaded as a
//! one-layer image archive with a deterministic config, so its image id is
//! the same on every machine; or a pinned `REF@sha256:…` already in the engine.
//!
//! May use: `build::bootstrap`, `clock`, `docker`, `lock` (data model), `cache`, `progress`.

use std::path::{Path, PathBuf};

use super::bootstrap::{self, BootstrapRequest};
use super::BuildError;
use crate::cache;
use crate::docker::{Docker, LABEL_MANAGED_BY, MANAGED_BY};
use crate::lock::{Lock, LockedBase, LockedEnv};
use crate::progress::Progress;

/// Repository of base images.
pub const BASE_REPO: &str = "torchenv/base";

/// Makes sure `torchenv/base:<key>` (or the pinned `REF@sha256:` image) is
/// in the engine, bootstrapping and loading it when needed. Returns the
/// reference to build `FROM`.
pub async fn ensure_base_image(
    docker: &Docker,
    lock: &Lock,
    env: &LockedEnv,
    progress: &Progress,
) -> Result<String, BuildError> {
    if env.base.contains("@sha256:") {
        return match docker.image_inspect(&env.base).await? {
            Some(_) => Ok(env.base.clone()),
            None => Err(BuildError::BaseImageMissing {
                reference: env.base.clone(),
            }),
        };
    }
    let base = lock
        .bases
        .get(&env.base)
        .ok_or_else(|| BuildError::StaleLock {
            message: format!(
                "the lock names base `{}` but has no [bases] entry for it",
                env.base
            ),
        })?;
    let tag = format!("{BASE_REPO}:{}", base.key());
    if docker.image_inspect(&tag).await?.is_some() {
        return Ok(tag);
    }
    let tar = ensure_rootfs(base, progress)?;
    load_rootfs(
        docker,
        &tag,
        &tar,
        base.source_date_epoch,
        &base.rootfs_sha256,
        &base.key(),
        progress,
    )
    .await?;
    Ok(tag)
}

/// Loads the root file system tarball `tar` (of sha256 `sha256`) into the
/// engine as the one-layer image `tag`, labelled with `key`.
pub(crate) async fn load_rootfs(
    docker: &Docker,
    tag: &str,
    tar: &Path,
    source_date_epoch: u64,
    sha256: &str,
    key: &str,
    progress: &Progress,
) -> Result<(), BuildError> {
    let size = std::fs::metadata(tar)
        .map_err(BuildError::io(format!("reading {}", tar.display())))?
        .len();
    let task = progress.bytes(format!("load {tag}"), Some(size));
    // The engine checks the layer against the config's diff_id (the
    // sha256), so a corrupted file cannot become the image.
    let archive = image_archive(tag, tar, size, source_date_epoch, sha256, key);
    let counted = count_bytes(archive, task.bar_handle());
    match docker.image_load(tag, counted).await {
        Ok(()) => {
            task.finish(&format!("loaded {}", crate::progress::bytes(size)));
            Ok(())
        }
        Err(e) => {
            task.fail("load");
            Err(e.into())
        }
    }
}

/// The locked root file system tarball in the cache, bootstrapped (with
/// apt pinned to the locked versions) when it is not there. A bootstrap that
/// does not give the locked sha256 leaves the cache and says why.
fn ensure_rootfs(base: &LockedBase, progress: &Progress) -> Result<PathBuf, BuildError> {
    let dir = cache::rootfs_dir();
    let tar = dir.join(format!("{}.tar", base.rootfs_sha256));
    if tar.exists() {
        return Ok(tar);
    }
    let request = BootstrapRequest {
        suite: &base.suite,
        include: &base.include,
        pins: &base.packages,
        source_date_epoch: base.source_date_epoch,
    };
    let got = tokio::task::block_in_place(|| bootstrap::bootstrap_with(request, &dir, progress))?;
    if got.sha256 == base.rootfs_sha256 {
        return Ok(tar);
    }
    let _ = std::fs::remove_file(&got.tar);
    let _ = std::fs::remove_file(got.tar.with_extension("packages"));
    let changed = bootstrap::package_changes(&base.packages, &got.packages);
    Err(if changed.is_empty() {
        BuildError::RootfsMismatch {
            key: base.key(),
            locked: base.rootfs_sha256.clone(),
            got: got.sha256,
        }
    } else {
        BuildError::BasePackagesUnavailable {
            key: base.key(),
            changed,
        }
    })
}

/// A one-layer `docker load` archive of `rootfs` tagged `tag`, with a
/// config that depends only on the locked inputs (so the image id does too).
fn image_archive(
    tag: &str,
    rootfs: &Path,
    size: u64,
    source_date_epoch: u64,
    sha256: &str,
    key: &str,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let config = image_config(source_date_epoch, sha256, key);
    let config_name = format!("{}.json", cache::sha256_bytes(&config));
    let layer_name = format!("{sha256}/layer.tar");
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": [layer_name],
    }]))
    .expect("manifest serializes");
    let rootfs = rootfs.to_path_buf();
    crate::docker::images::tar_stream(move |b| {
        append_bytes(b, "manifest.json", &manifest, source_date_epoch)?;
        append_bytes(b, &config_name, &config, source_date_epoch)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(source_date_epoch);
        header.set_entry_type(tar::EntryType::Regular);
        let file = std::fs::File::open(&rootfs)?;
        b.append_data(&mut header, &layer_name, file)?;
        Ok(())
    })
}

/// The image config of a base: labelled, `PATH` and `LANG` set, no command
/// beyond a shell.
pub(crate) fn image_config(source_date_epoch: u64, sha256: &str, key: &str) -> Vec<u8> {
    let created = crate::clock::rfc3339(source_date_epoch);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": {
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
            ],
            "Cmd": ["/bin/bash"],
            "Labels": {
                LABEL_MANAGED_BY: MANAGED_BY,
                "dev.torchenv.base": key,
                "dev.torchenv.rootfs-sha256": sha256,
            },
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{sha256}")] },
        "history": [{
            "created": created,
            "created_by": format!("torchenv: mmdebstrap --variant=minbase ({key})"),
        }],
    }))
    .expect("config serializes")
}

fn append_bytes<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
    mtime: u64,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut header, name, data)
}

/// Counts the bytes of a body on a progress bar as the engine reads them.
pub(crate) fn count_bytes<S>(
    stream: S,
    bar: indicatif::ProgressBar,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static
where
    S: futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
{
    use futures_util::StreamExt;
    stream.inspect(move |chunk| {
        if let Ok(c) = chunk {
            bar.inc(c.len() as u64);
        }
    })
}
