//! `cargo xtask prune [--all] [--dry-run]`: removes what torchenv made and
//! the current spec + lock no longer reference.
//!
//! Images: only those with `dev.torchenv.managed-by=torchenv` and no tag
//! outside `torchenv/` (an image of yours built `FROM` a torchenv image
//! inherits the label, and stays). An image a container uses (running or
//! not) is reported, never removed. Kept without `--all`: for every
//! environment with a fresh lock entry its base, its stage images (venv,
//! system), the image
//! built without a harness, the harness builder of its suite when its
//! harness is compiled in one, and the newest image built from the current
//! lock entry (whatever harness it carries).
//!
//! Cache: wheels and root file systems the lock does not name (all of them
//! with `--all`), weights downloaded from URLs by `eval` (fetched again
//! on next use), build folders a killed build left under `stage/` (older
//! than six hours), uv releases no longer pinned (the pinned uv and pip
//! wheels stay), and host PyTorch venvs
//! and harness builds of torch versions no environment of the lock uses;
//! with `--all` also the test suite's registry storage.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{Ctx, Run};
use crate::build::image::{self, LABEL_LOCK_SHA256};
use crate::build::{harness, harness_builder};
use crate::cache;
use crate::docker::images::ManagedImage;
use crate::docker::{Docker, LABEL_ENV};
use crate::error::{Error, Result};
use crate::lock::Lock;
use crate::progress::bytes;
use crate::spec::Spec;

/// Remove torchenv images and cache entries the spec + lock no longer use.
#[derive(clap::Args)]
pub struct Prune {
    /// Remove every torchenv image, cached wheel and rootfs, host PyTorch
    /// venv and harness build (downloaded weights go in any case).
    #[arg(long)]
    all: bool,
    /// Print what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
}

/// What the current spec + lock reference.
#[derive(Debug, Default)]
struct Keep {
    tags: BTreeSet<String>,
    /// env → sha256 of its current lock entry.
    lock_sha: BTreeMap<String, String>,
    wheels: BTreeSet<String>,
    rootfs: BTreeSet<String>,
    /// torch versions of the lock's environments (their host venvs and
    /// harness builds stay).
    torch: BTreeSet<String>,
}

impl Run for Prune {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let keep = if self.all {
            Keep::default()
        } else {
            referenced(&ctx.spec()?, &ctx.lock()?)
        };
        let freed_images = ctx.block_on(async {
            let docker = ctx.docker().await?;
            self.prune_images(&docker, &keep).await
        })?;
        let freed_cache = self.prune_cache(&keep)?;
        let verb = if self.dry_run { "would free" } else { "freed" };
        println!(
            "{verb} up to {} of images (shared layers are counted in every image that has them) and {} of cache",
            bytes(freed_images),
            bytes(freed_cache)
        );
        Ok(())
    }
}

impl Prune {
    async fn prune_images(&self, docker: &Docker, keep: &Keep) -> Result<u64> {
        let images = docker.images_managed().await?;
        let newest = newest_per_env(&images, keep);
        let mut doomed: Vec<&ManagedImage> = Vec::new();
        for img in &images {
            if img.tags.iter().any(|t| keep.tags.contains(t)) || newest.contains(&img.id) {
                continue;
            }
            if let Some(foreign) = img.tags.iter().find(|t| !t.starts_with("torchenv/")) {
                println!(
                    "keeping {} ({}): also tagged {foreign}, which torchenv did not make",
                    short_id(&img.id),
                    img.tags.join(", ")
                );
                continue;
            }
            doomed.push(img);
        }
        // Children before parents: environment images, system and venv
        // stage images, bases.
        doomed.sort_by_key(|i| rank(i));
        let mut freed = 0;
        for img in doomed {
            let name = if img.tags.is_empty() {
                short_id(&img.id).to_string()
            } else {
                img.tags.join(", ")
            };
            let users = docker.containers_using(&img.id).await?;
            if !users.is_empty() {
                println!("keeping {name}: used by container(s) {}", users.join(", "));
                continue;
            }
            if self.dry_run {
                println!("would remove image {name} ({})", bytes(img.size));
                freed += img.size;
                continue;
            }
            let refs = if img.tags.is_empty() {
                vec![img.id.clone()]
            } else {
                img.tags.clone()
            };
            let mut ok = true;
            for r in &refs {
                if let Err(e) = docker.image_remove(r).await {
                    println!("could not remove {r}: {e}");
                    ok = false;
                }
            }
            if ok {
                println!("removed image {name} ({})", bytes(img.size));
                freed += img.size;
            }
        }
        Ok(freed)
    }

    fn prune_cache(&self, keep: &Keep) -> Result<u64> {
        let mut freed = 0;
        let wheels = cache::root().join("wheels");
        for (name, path) in entries(&wheels)? {
            if name.starts_with('.') || keep.wheels.contains(&name) {
                continue;
            }
            freed += self.remove(&path, &format!("wheel {}", describe_wheel(&path)))?;
        }
        for (name, path) in entries(&cache::rootfs_dir())? {
            let sha = name.split('.').next().unwrap_or_default().to_string();
            if name.starts_with('.') || keep.rootfs.contains(&sha) {
                continue;
            }
            freed += self.remove(&path, &format!("rootfs {name}"))?;
        }
        // Build folders a killed build left (a running one is younger).
        for (name, path) in entries(&cache::root().join("stage"))? {
            let age = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            if age.is_some_and(|a| a > STAGE_MAX_AGE) {
                freed += self.remove(&path, &format!("build folder {name}"))?;
            }
        }
        // Host PyTorch venvs and harness builds (sources copy, target dir,
        // binary) of torch versions no environment of the lock uses.
        for dir in [cache::root().join("pytorch"), cache::root().join("harness")] {
            for (name, path) in entries(&dir)? {
                if name.starts_with('.') || keep.torch.contains(&name) {
                    continue;
                }
                let what = format!(
                    "{} for torch {name}",
                    dir.file_name().unwrap_or_default().to_string_lossy()
                );
                freed += self.remove(&path, &what)?;
            }
        }
        // uv releases this torchenv no longer pins.
        let uv_dir = crate::build::uv::dir();
        for (name, path) in entries(&cache::root().join("tools"))? {
            if name.starts_with("uv-") && path != uv_dir {
                freed += self.remove(&path, &format!("tool {name}"))?;
            }
        }
        for (name, path) in entries(&cache::url_weights_dir())? {
            if name.starts_with('.') {
                continue;
            }
            freed += self.remove(&path, &format!("downloaded weights {name}"))?;
        }
        // The test suite's registry storage (`xtask/tests/registry.rs`).
        let registry = cache::root().join("test-registry");
        if self.all && registry.exists() {
            freed += self.remove(&registry, "the test suite's registry storage")?;
        }
        Ok(freed)
    }

    fn remove(&self, path: &Path, what: &str) -> Result<u64> {
        let size = crate::disk::usage(path);
        if self.dry_run {
            println!("would remove {what} ({})", bytes(size));
            return Ok(size);
        }
        let result = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        result.map_err(Error::io(format!("removing {}", path.display())))?;
        println!("removed {what} ({})", bytes(size));
        Ok(size)
    }
}

/// Age after which a build folder under the cache's `stage/` is a leftover.
const STAGE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// Tags, lock entries, wheels and root file systems the spec + lock use.
fn referenced(spec: &Spec, lock: &Lock) -> Keep {
    let mut keep = Keep::default();
    for env in spec.environments.values() {
        if let Some(locked) = lock.environments.get(&env.name) {
            // Its harness build, the torch it compiles against when that is
            // not the host venv (wheels unpacked as `<torch>-py<python>`),
            // and the builder of its suite when it is compiled in one.
            keep.torch.insert(harness::build_key(locked));
            keep.torch
                .insert(format!("{}-py{}", locked.torch, locked.python));
            if let Some(suite) = harness::foreign_suite(locked) {
                keep.tags.insert(harness_builder::tag(suite));
            }
        }
        let Ok(plan) = image::plan(spec, lock, env, None) else {
            continue;
        };
        keep.tags.insert(plan.tag.clone());
        keep.tags.insert(plan.venv_tag.clone());
        keep.tags.insert(plan.system_tag.clone());
        keep.tags.insert(plan.base_image.clone());
        keep.lock_sha
            .insert(env.name.clone(), plan.labels[LABEL_LOCK_SHA256].clone());
    }
    for e in lock.environments.values() {
        keep.wheels
            .extend(e.wheels.iter().map(|w| w.sha256.clone()));
        keep.torch.insert(e.torch.clone());
    }
    for m in lock.models.values() {
        keep.wheels.insert(m.wheel.sha256.clone());
    }
    keep.wheels.insert(crate::build::uv::SHA256.to_string());
    keep.wheels
        .insert(crate::build::resolver::SHA256.to_string());
    keep.rootfs
        .extend(lock.bases.values().map(|b| b.rootfs_sha256.clone()));
    keep
}

/// Ids of the newest image (by tag order of the engine's listing) per
/// environment among those built from its current lock entry.
fn newest_per_env(images: &[ManagedImage], keep: &Keep) -> BTreeSet<String> {
    // Newest first (`images_managed` sorts by when the engine tagged them).
    let mut seen = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for img in images {
        let (Some(env), Some(sha)) = (img.labels.get(LABEL_ENV), img.labels.get(LABEL_LOCK_SHA256))
        else {
            continue;
        };
        if keep.lock_sha.get(env) == Some(sha) && seen.insert(env.clone()) {
            ids.insert(img.id.clone());
        }
    }
    ids
}

fn rank(img: &ManagedImage) -> u8 {
    let first = img.tags.first().map(String::as_str).unwrap_or("");
    if first.starts_with("torchenv/base:") {
        3
    } else if first.starts_with("torchenv/venv:") {
        2
    } else if first.starts_with("torchenv/system:") {
        1
    } else {
        0
    }
}

fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<(String, PathBuf)> = read
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    Ok(out)
}

fn describe_wheel(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .ok()
        .and_then(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.ends_with(".whl"))
        })
        .unwrap_or_else(|| dir.display().to_string())
}
