//! `cargo xtask build [ENV|--all]`: hermetic, cached, reproducible image
//! builds, without a Dockerfile builder.
//!
//! An environment image is four layers, each made only when missing, each
//! on top of the one before (so they are stored once in the engine):
//!
//! 1. the base, `torchenv/base:<key>`: the locked Debian root file system
//!    (see [`super::bootstrap`], [`super::base_image`]), or a pinned
//!    `REF@sha256:…` already in the engine;
//! 2. `/opt/venv`, the stage image `torchenv/venv:<hash>`: the locked
//!    wheels (fetched into the cache by [`super::wheels`]) installed by uv
//!    with no network, archived and loaded by torchenv
//!    ([`super::venv_layer`], `images/venv.sh`);
//! 3. the system configuration, the stage image `torchenv/system:<hash>`:
//!    user `dev`, sshd, the entrypoint ([`super::system_layer`],
//!    `images/system.sh`);
//! 4. the harness binary, loaded with the image config written here
//!    ([`runtime_config`]: environment, entrypoint, ports, labels) as the
//!    final image `torchenv/<env>:<tag>`; changing only the harness makes
//!    only this small layer.
//!
//! Every layer torchenv writes has sorted entries, owner root and the
//! lock's `SOURCE_DATE_EPOCH` as mtime, and the final config has no build
//! time in it, so the same spec + lock give the same layers and, with the
//! same harness binary, the same image id on every machine.
//!
//! The tag is a hash of every input ([`plan`]), computed from the lock's
//! hashes without reading any wheel, so an up-to-date image is found with
//! one `inspect` and nothing else; that inspect also checks it is what the
//! build would make ([`super::provenance`]: labels and base layers), so an
//! image someone else tagged under that name is refused. Nothing runs with
//! a network; the engine tags an image only when all of it was stored.
//!
//! May use: the other `build` modules, `docker`, `lock` (data model,
//! freshness), `spec`, `cache`, `progress`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::archive::{self, Entry, EntryKind, ImageDoc, Layer};
use super::base_image::{self, BASE_REPO};
use super::provenance::{self, BaseLayers};
use super::{
    harness, harness_builder, host_tools, registry, system_layer, uv, venv_layer, wheels,
    BuildError,
};
use crate::cache;
use crate::docker::{Docker, LABEL_ENV, LABEL_MANAGED_BY, MANAGED_BY};
use crate::lock::{self, Lock, LockedEnv};
use crate::progress::Progress;
use crate::spec::{Base, Env, Spec};

type Result<T, E = BuildError> = std::result::Result<T, E>;

/// Folder of the Dockerfiles and files copied into images, beside the spec.
pub const IMAGES_DIR: &str = "images";
/// Repository of venv stage images.
pub const VENV_REPO: &str = "torchenv/venv";

pub const LABEL_INPUTS: &str = "dev.torchenv.inputs";
pub const LABEL_SPEC: &str = "dev.torchenv.spec";
pub const LABEL_LOCK_SHA256: &str = "dev.torchenv.lock-sha256";
pub const LABEL_TORCH: &str = "dev.torchenv.torch";
pub const LABEL_TORCHVISION: &str = "dev.torchenv.torchvision";
/// Only on images of environments with torchaudio.
pub const LABEL_TORCHAUDIO: &str = "dev.torchenv.torchaudio";
pub const LABEL_CUDA: &str = "dev.torchenv.cuda";
pub const LABEL_CUDNN: &str = "dev.torchenv.cudnn";
pub const LABEL_HARNESS: &str = "dev.torchenv.harness";
/// [`harness::sources_hash`]: the harness the image holds, by its sources.
pub const LABEL_HARNESS_SOURCES: &str = "dev.torchenv.harness-sources";
pub const LABEL_BASE: &str = crate::docker::LABEL_BASE;
pub const LABEL_VENV: &str = "dev.torchenv.venv";
/// Value of [`LABEL_HARNESS`] when the image was built without a harness.
pub const HARNESS_ABSENT: &str = "absent";

/// Version of the way images are made from their inputs; bump it to
/// rebuild every final image (3: history lines name stages by hash; 4: the
/// harness-sources label; 5: torchvision and torchaudio labels).
const TAG_SCHEME: u32 = 5;

/// An environment image in the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `torchenv/<env>:<16 hex>`
    pub tag: String,
    /// The engine's image id (`sha256:…`).
    pub id: String,
    /// Its `dev.torchenv.*` labels.
    pub labels: BTreeMap<String, String>,
    /// True when this call built it; false when it was there already.
    pub built: bool,
}

/// The spec fields that reach the image (runtime settings such as ports,
/// volumes or GPUs do not): hashed into the tag and kept as the
/// `dev.torchenv.spec` label.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ImageSpec<'a> {
    pub name: &'a str,
    pub torch: &'a str,
    pub torchvision: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub torchaudio: Option<&'a str>,
    pub cuda: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cuda_toolkit: bool,
    pub python: &'a str,
    pub base: &'a Base,
    pub pip: &'a [String],
    pub apt: &'a [String],
}

impl<'a> ImageSpec<'a> {
    pub fn of(env: &'a Env) -> Self {
        ImageSpec {
            name: &env.name,
            torch: &env.torch,
            torchvision: &env.torchvision,
            torchaudio: env.torchaudio.as_deref(),
            cuda: env.cuda.as_deref(),
            cuda_toolkit: env.cuda_toolkit,
            python: &env.python,
            base: &env.base,
            pip: &env.pip,
            apt: &env.apt,
        }
    }
}

/// Everything a build of one environment needs, computed without touching
/// the engine or any large file.
#[derive(Debug, Clone)]
pub struct Plan {
    pub env: String,
    /// `torchenv/<env>:<first 16 hex of inputs>`
    pub tag: String,
    /// sha256 over every input (see [`plan`]).
    pub inputs: String,
    /// The image to build `FROM`: `torchenv/base:<key>` or `REF@sha256:…`.
    pub base_image: String,
    /// The layers `base_image` contributes (the image's first ones).
    pub base_layers: BaseLayers,
    /// `torchenv/venv:<16 hex>`
    pub venv_tag: String,
    /// `torchenv/system:<16 hex>`
    pub system_tag: String,
    /// Labels of the final image.
    pub labels: BTreeMap<String, String>,
    /// Every mtime in the layers torchenv writes, and every image's
    /// creation time: the base's `SOURCE_DATE_EPOCH`.
    pub epoch: u64,
    /// The folder holding the layer scripts (`images/` beside the spec).
    pub images_dir: PathBuf,
    pub harness: Option<PathBuf>,
    pub locked: LockedEnv,
}

/// The tag `ensure_image` would give `env`'s image, without building
/// anything: `torchenv/<env>:<first 16 hex of sha256 over every input>`.
pub fn image_tag(spec: &Spec, lock: &Lock, env: &Env, harness: Option<&Path>) -> Result<String> {
    Ok(plan(spec, lock, env, harness)?.tag)
}

/// Computes tag, labels and build arguments of `env`'s image.
///
/// The inputs hashed are: the environment name, the image-relevant spec
/// fields ([`ImageSpec`]), the env's lock entry (every wheel's sha256),
/// its base entry (rootfs sha256 and package list) or pinned image, every
/// file under `images/`, and the harness binary's sha256 (or "absent").
/// Wheels are identified by the lock's hashes, never re-read.
pub fn plan(spec: &Spec, lock: &Lock, env: &Env, harness: Option<&Path>) -> Result<Plan> {
    let locked = lock::check_fresh(spec, lock, env)?;
    let images_dir = spec
        .path
        .parent()
        .unwrap_or(Path::new("."))
        .join(IMAGES_DIR);
    let files = read_dir_hashes(&images_dir)?;
    let harness_sha = match harness {
        Some(p) => cache::sha256_file(p).map_err(|source| BuildError::Harness {
            path: p.to_path_buf(),
            source,
        })?,
        None => HARNESS_ABSENT.to_string(),
    };
    let (base_image, base_entry, base_layers, epoch) = if locked.base.contains("@sha256:") {
        (
            locked.base.clone(),
            serde_json::json!(locked.base),
            BaseLayers::Image(locked.base.clone()),
            PINNED_BASE_EPOCH,
        )
    } else {
        let b = lock
            .bases
            .get(&locked.base)
            .ok_or_else(|| BuildError::StaleLock {
                message: format!(
                    "environments.lock: `{}` names base `{}`, which has no [bases] entry",
                    env.name, locked.base
                ),
            })?;
        (
            format!("{BASE_REPO}:{}", b.key()),
            serde_json::to_value(b).expect("lock serializes"),
            BaseLayers::Known(vec![format!("sha256:{}", b.rootfs_sha256)]),
            b.source_date_epoch,
        )
    };
    let image_spec = ImageSpec::of(env);
    let spec_json = serde_json::to_string(&image_spec).expect("spec serializes");
    let lock_json = serde_json::to_string(locked).expect("lock serializes");
    let lock_sha = cache::sha256_bytes(lock_json.as_bytes());
    let venv_tag = format!(
        "{VENV_REPO}:{}",
        &venv_hash(&base_entry, locked, files.get(venv_layer::SCRIPT), epoch)[..16]
    );
    let system_tag = format!(
        "{}:{}",
        system_layer::REPO,
        &system_hash(&venv_tag, &files)[..16]
    );
    let harness_sources = harness::sources_hash(locked)?;
    let inputs_doc = serde_json::json!({
        "scheme": TAG_SCHEME,
        "env": env.name,
        "spec": image_spec,
        "lock": locked,
        "base": base_entry,
        "images": files,
        "harness": harness_sha,
        "harness_sources": harness_sources,
    });
    let inputs = cache::sha256_bytes(inputs_doc.to_string().as_bytes());
    let tag = format!("torchenv/{}:{}", env.name, &inputs[..16]);

    let mut labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (LABEL_ENV.to_string(), env.name.clone()),
        (LABEL_INPUTS.to_string(), inputs.clone()),
        (LABEL_SPEC.to_string(), spec_json),
        (LABEL_LOCK_SHA256.to_string(), lock_sha),
        (LABEL_TORCH.to_string(), locked.torch.clone()),
        (LABEL_TORCHVISION.to_string(), locked.torchvision.clone()),
        (LABEL_CUDA.to_string(), locked.cuda.clone()),
        (LABEL_CUDNN.to_string(), locked.cudnn.clone()),
        (LABEL_HARNESS.to_string(), harness_sha),
        (LABEL_HARNESS_SOURCES.to_string(), harness_sources),
        (LABEL_BASE.to_string(), base_image.clone()),
        (LABEL_VENV.to_string(), venv_tag.clone()),
    ]);
    if let Some(torchaudio) = &locked.torchaudio {
        labels.insert(LABEL_TORCHAUDIO.to_string(), torchaudio.clone());
    }
    Ok(Plan {
        env: env.name.clone(),
        tag,
        inputs,
        base_image,
        base_layers,
        venv_tag,
        system_tag,
        labels,
        epoch,
        images_dir,
        harness: harness.map(Path::to_path_buf),
        locked: locked.clone(),
    })
}

/// The venv stage's identity: base, Python, the wheel set, uv, its script
/// and the epoch of its mtimes.
fn venv_hash(
    base: &serde_json::Value,
    locked: &LockedEnv,
    script: Option<&String>,
    epoch: u64,
) -> String {
    let mut wheels: Vec<&str> = locked.wheels.iter().map(|w| w.sha256.as_str()).collect();
    wheels.sort();
    let mut doc = serde_json::json!({
        "scheme": TAG_SCHEME,
        "base": base,
        "python": locked.python,
        "wheels": wheels,
        "uv": uv::SHA256,
        "script": script,
        "epoch": epoch,
    });
    // The script makes CUDA_HOME only for a toolkit (told which wheels).
    if !locked.cuda_toolkit.is_empty() {
        doc["cuda_toolkit"] = serde_json::json!(locked.cuda_toolkit);
    }
    cache::sha256_bytes(doc.to_string().as_bytes())
}

/// The system stage's identity: the venv stage under it and every file of
/// `images/` but the venv script (the system script reads them).
fn system_hash(venv_tag: &str, files: &BTreeMap<String, String>) -> String {
    let mut files = files.clone();
    files.remove(venv_layer::SCRIPT);
    let doc = serde_json::json!({
        "scheme": TAG_SCHEME,
        "venv": venv_tag,
        "files": files,
    });
    cache::sha256_bytes(doc.to_string().as_bytes())
}

/// The epoch of images on a pinned `REF@sha256:` base (which has no lock
/// entry to take `SOURCE_DATE_EPOCH` from): 2025-01-01T00:00:00Z.
const PINNED_BASE_EPOCH: u64 = 1_735_689_600;

/// `relative path → sha256` of every regular file under `dir`.
fn read_dir_hashes(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for path in walk(dir)? {
        let rel = relative(dir, &path);
        let sha = cache::sha256_file(&path)
            .map_err(BuildError::io(format!("reading {}", path.display())))?;
        out.insert(rel, sha);
    }
    Ok(out)
}

/// Regular files under `dir`, sorted.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(BuildError::io(format!("reading {}", d.display())))?;
        for e in entries {
            let e = e.map_err(BuildError::io(format!("reading {}", d.display())))?;
            let t = e
                .file_type()
                .map_err(BuildError::io(format!("reading {}", e.path().display())))?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Where the harness is in an environment's image.
pub const IMAGE_HARNESS: &str = "/usr/local/bin/harness";

/// Makes sure `env`'s image exists and returns it: does nothing but one
/// `inspect` when the tag computed by [`plan`] is already in the engine;
/// otherwise makes the base, the stage images and the final layer as
/// needed. `harness` is the harness binary to put at
/// `/usr/local/bin/harness` (`None`: no harness; the label says "absent").
///
/// Progress goes to a [`Progress`] on stdout (bars on a terminal).
pub async fn ensure_image(
    docker: &Docker,
    spec: &Spec,
    lock: &Lock,
    env: &Env,
    harness: Option<&Path>,
) -> Result<ImageRef> {
    ensure_image_with(docker, spec, lock, env, harness, &Progress::new()).await
}

/// [`ensure_image`] on a given progress display.
pub async fn ensure_image_with(
    docker: &Docker,
    spec: &Spec,
    lock: &Lock,
    env: &Env,
    harness: Option<&Path>,
    progress: &Progress,
) -> Result<ImageRef> {
    let plan = plan(spec, lock, env, harness)?;
    if let Some(found) = existing(docker, &plan).await? {
        return Ok(found);
    }
    progress.println(format!("{}: building {}", plan.env, plan.tag));
    build_all(docker, lock, &plan, progress).await?;
    let mut built = existing(docker, &plan).await?.ok_or_else(|| {
        BuildError::failed(format!(
            "the build of {} ended but the tag is missing",
            plan.tag
        ))
    })?;
    built.built = true;
    Ok(built)
}

/// The image under `plan.tag`, checked to be what `plan` builds
/// ([`provenance::verify`]); `None` when there is none.
async fn existing(docker: &Docker, plan: &Plan) -> Result<Option<ImageRef>> {
    let tag = &plan.tag;
    let Some(i) = docker.image_inspect(tag).await? else {
        return Ok(None);
    };
    provenance::verify(docker, tag, &i, &plan.labels, &plan.base_layers).await?;
    Ok(Some(image_ref(tag, i)))
}

/// An image found on the engine, with its `dev.torchenv.*` labels.
fn image_ref(tag: &str, i: bollard::models::ImageInspect) -> ImageRef {
    ImageRef {
        tag: tag.to_string(),
        id: i.id.unwrap_or_default(),
        labels: i
            .config
            .and_then(|c| c.labels)
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k.starts_with("dev.torchenv."))
            .collect(),
        built: false,
    }
}

/// The image of `plan`: its stages where missing, then the final layer.
pub async fn build_all(
    docker: &Docker,
    lock: &Lock,
    plan: &Plan,
    progress: &Progress,
) -> Result<()> {
    ensure_stages(docker, lock, plan, progress).await?;
    build_final(docker, plan, progress).await
}

/// Everything under the harness layer: the base, then the venv and system
/// stage images, each made when it is missing.
pub async fn ensure_stages(
    docker: &Docker,
    lock: &Lock,
    plan: &Plan,
    progress: &Progress,
) -> Result<()> {
    let base_image = base_image::ensure_base_image(docker, lock, &plan.locked, progress).await?;
    debug_assert_eq!(base_image, plan.base_image);
    if docker.image_inspect(&plan.venv_tag).await?.is_none() {
        build_venv_stage(docker, plan, progress).await?;
    }
    if docker.image_inspect(&plan.system_tag).await?.is_none() {
        build_system_stage(docker, plan, progress).await?;
    }
    Ok(())
}

/// The venv stage image `plan.venv_tag` (the base must be there).
pub async fn build_venv_stage(docker: &Docker, plan: &Plan, progress: &Progress) -> Result<()> {
    let (wheel_paths, uv) = host_inputs(&plan.locked, progress).await?;
    let script = plan.images_dir.join(venv_layer::SCRIPT);
    let stage = venv_layer::VenvStage {
        tag: &plan.venv_tag,
        base_image: &plan.base_image,
        wheels: &plan.locked.wheels,
        cuda_toolkit: &plan.locked.cuda_toolkit,
        wheel_paths: &wheel_paths,
        uv: &uv,
        script: &script,
        epoch: plan.epoch,
    };
    venv_layer::build(docker, &stage, progress).await
}

/// The system stage image `plan.system_tag` (the venv stage must be there).
pub async fn build_system_stage(docker: &Docker, plan: &Plan, progress: &Progress) -> Result<()> {
    let stage = system_layer::SystemStage {
        tag: &plan.system_tag,
        venv_tag: &plan.venv_tag,
        base_image: &plan.base_image,
        images_dir: &plan.images_dir,
        epoch: plan.epoch,
    };
    system_layer::build(docker, &stage, progress).await
}

/// The locked wheels in the cache (fetched when missing) and uv.
async fn host_inputs(locked: &LockedEnv, progress: &Progress) -> Result<(Vec<PathBuf>, PathBuf)> {
    let (wheels, python, progress) = (
        locked.wheels.clone(),
        locked.python.clone(),
        progress.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let paths = wheels::fetch(&wheels, &python, &progress)?;
        Ok((paths, uv::ensure(&progress)?))
    })
    .await
    .map_err(|e| BuildError::failed(format!("wheel fetch task: {e}")))?
}

/// The final image: the system stage's layers and the harness layer,
/// loaded with [`runtime_config`].
pub async fn build_final(docker: &Docker, plan: &Plan, progress: &Progress) -> Result<()> {
    let system = docker
        .image_inspect(&plan.system_tag)
        .await?
        .ok_or_else(|| BuildError::failed(format!("{} is missing", plan.system_tag)))?;
    let parents = system.root_fs.and_then(|r| r.layers).unwrap_or_default();
    let base_count = parents.len().saturating_sub(2);
    // Stage tags by their input hash only: `build --verify` makes the same
    // stages under other repository names, and the history is part of the
    // image id.
    let stage = |tag: &str| crate::docker::images::split_tag(tag).1.to_string();
    let mut history = vec![format!("torchenv: base {}", plan.base_image); base_count];
    history.push(format!(
        "torchenv: /opt/venv (venv {})",
        stage(&plan.venv_tag)
    ));
    history.push(format!(
        "torchenv: images/{} (system {})",
        system_layer::SCRIPT,
        stage(&plan.system_tag)
    ));
    history.push(format!("torchenv: {IMAGE_HARNESS}"));
    let mut layers: Vec<Layer> = parents.into_iter().map(Layer::Existing).collect();
    layers.push(harness_layer(plan.harness.as_deref()));
    let env = system.config.and_then(|c| c.env).unwrap_or_default();
    let doc = ImageDoc {
        tag: plan.tag.clone(),
        config: runtime_config(plan, &env),
        history,
        epoch: plan.epoch,
    };
    archive::load(docker, doc, layers, progress).await?;
    Ok(())
}

/// The harness layer: `/usr/local/bin/harness`, or only its folders when
/// built without one.
fn harness_layer(harness: Option<&Path>) -> Layer {
    let dir = |path: &str| Entry {
        path: path.into(),
        mode: 0o755,
        kind: EntryKind::Dir,
    };
    let mut entries = vec![dir("usr"), dir("usr/local"), dir("usr/local/bin")];
    if let Some(h) = harness {
        entries.push(Entry {
            path: IMAGE_HARNESS.trim_start_matches('/').into(),
            mode: 0o755,
            kind: EntryKind::File(h.to_path_buf()),
        });
    }
    Layer::Entries(entries)
}

/// The final image's runtime config: the base's environment (`base_env`)
/// with the venv first on `PATH`; GPUs only through the container's device
/// requests or CDI names (`NVIDIA_VISIBLE_DEVICES=void` in the image); the
/// entrypoint under tini; `/workspace`; SSH and Jupyter ports; the labels.
pub fn runtime_config(plan: &Plan, base_env: &[String]) -> serde_json::Value {
    let mut env: Vec<String> = Vec::new();
    let mut path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string();
    for e in base_env {
        match e.split_once('=') {
            Some(("PATH", p)) => path = p.to_string(),
            _ => env.push(e.clone()),
        }
    }
    env.insert(0, format!("PATH=/opt/venv/bin:{path}"));
    let locked = &plan.locked;
    env.extend([
        "NVIDIA_VISIBLE_DEVICES=void".to_string(),
        "NVIDIA_DRIVER_CAPABILITIES=compute,utility".to_string(),
        "VIRTUAL_ENV=/opt/venv".to_string(),
        "PIP_NO_CACHE_DIR=1".to_string(),
        format!("TORCHENV_ENV={}", plan.env),
        format!("TORCHENV_TORCH_VERSION={}", locked.torch),
        format!("TORCHENV_CUDA_VERSION={}", locked.cuda),
        format!("TORCHENV_CUDNN_VERSION={}", locked.cudnn),
    ]);
    if !locked.cuda_toolkit.is_empty() {
        env.push(format!("CUDA_HOME={}", venv_layer::CUDA_HOME));
    }
    serde_json::json!({
        "Env": env,
        "Entrypoint": ["/usr/bin/tini", "--", "/usr/local/bin/torchenv-entrypoint"],
        "WorkingDir": "/workspace",
        "ExposedPorts": { "22/tcp": {}, "8888/tcp": {} },
        "Labels": plan.labels,
    })
}

/// The image of `env` if this engine already has it, never building
/// anything (`check --no-build`, what a Slurm task runs on its node): under
/// its tag when this machine has the harness build that names it, else
/// [`find_labelled`]. `None` when there is none; an image under the env's
/// own tag with other content is still [`BuildError::ImageMismatch`].
pub async fn find_env_image(
    docker: &Docker,
    spec: &Spec,
    lock: &Lock,
    env: &Env,
) -> Result<Option<ImageRef>> {
    let locked = lock::check_fresh(spec, lock, env)?.clone();
    if let Some(binary) = harness::up_to_date(&locked)? {
        let plan = plan(spec, lock, env, Some(&binary))?;
        if let Some(found) = existing(docker, &plan).await? {
            return Ok(Some(found));
        }
    }
    find_labelled(docker, spec, lock, env).await
}

/// The newest local image of `env` whose every label but the harness
/// binary's hash (and the inputs hash, which covers it) is what spec, lock
/// and harness sources give, over the locked base layers
/// ([`provenance`]): an image built on another machine from the same
/// checkout (loaded from a bundle, pulled), found without compiling the
/// harness. Images labelled for `env` that differ are passed over.
pub async fn find_labelled(
    docker: &Docker,
    spec: &Spec,
    lock: &Lock,
    env: &Env,
) -> Result<Option<ImageRef>> {
    let expected = shared_labels(spec, lock, env)?;
    let plan = plan(spec, lock, env, None)?;
    for tag in docker.env_images(&env.name).await? {
        let Some(i) = docker.image_inspect(&tag).await? else {
            continue;
        };
        if provenance::verify(docker, &tag, &i, &expected, &plan.base_layers)
            .await
            .is_ok()
        {
            return Ok(Some(image_ref(&tag, i)));
        }
    }
    Ok(None)
}

/// The labels an image of `env` has wherever it was built from this spec,
/// lock and harness sources: all but the harness binary's hash and the
/// inputs hash that covers it.
pub fn shared_labels(spec: &Spec, lock: &Lock, env: &Env) -> Result<BTreeMap<String, String>> {
    let mut labels = plan(spec, lock, env, None)?.labels;
    labels.remove(LABEL_INPUTS);
    labels.remove(LABEL_HARNESS);
    Ok(labels)
}

/// Where `env`'s image lives in `registry` (the same name on every machine
/// with this checkout).
pub fn registry_reference(spec: &Spec, lock: &Lock, env: &Env, registry: &str) -> Result<String> {
    Ok(registry::reference(
        registry,
        &env.name,
        &shared_labels(spec, lock, env)?,
    ))
}

/// `env`'s image pulled from `registry` and checked ([`registry::pull`]),
/// then tagged as a local build names it (`torchenv/<env>:<inputs>`, from
/// its own inputs label) with the registry's name removed. `None` on a
/// miss.
pub async fn pull_env_image(
    docker: &Docker,
    spec: &Spec,
    lock: &Lock,
    env: &Env,
    registry: &str,
    progress: &Progress,
) -> Result<Option<ImageRef>> {
    let remote = registry_reference(spec, lock, env, registry)?;
    let expected = shared_labels(spec, lock, env)?;
    let base = plan(spec, lock, env, None)?.base_layers;
    let Some(found) = registry::pull(docker, &remote, registry, &expected, &base, progress).await?
    else {
        return Ok(None);
    };
    let inputs = found
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(LABEL_INPUTS))
        .cloned()
        .unwrap_or_default();
    let repo = format!("torchenv/{}", env.name);
    let name = &inputs[..inputs.len().min(16)];
    docker.image_tag(&remote, &repo, name).await?;
    docker.image_remove(&remote).await?;
    progress.println(format!("{}: pulled {remote} as {repo}:{name}", env.name));
    Ok(Some(image_ref(&format!("{repo}:{name}"), found)))
}

/// The image of `env` as every command uses it (`build`, `up`, `check`):
/// with its harness built against the environment's own torch (cached),
/// unless `harness` names a binary to use instead. Without a current
/// harness build here, an image of the same spec, lock and harness
/// sources already on the engine ([`find_labelled`]) is used. Then the
/// team's registry, if one is configured ([`registry::configured`];
/// [`registry::pull`]: checked,
/// a miss falls through). Then it is built; when the harness must be
/// compiled, it compiles while the base and stage layers are made.
pub async fn ensure_env_image(
    docker: &Docker,
    spec: &Spec,
    lock: &Lock,
    env: &Env,
    harness: Option<&Path>,
    progress: &Progress,
) -> Result<ImageRef> {
    if let Some(path) = harness {
        return ensure_image_with(docker, spec, lock, env, Some(path), progress).await;
    }
    let locked = lock::check_fresh(spec, lock, env)?.clone();
    let binary = harness::up_to_date(&locked)?;
    match &binary {
        Some(b) => {
            if let Some(found) = existing(docker, &plan(spec, lock, env, Some(b))?).await? {
                return Ok(found);
            }
        }
        // No current harness build here: an image built elsewhere from the
        // same spec, lock and harness sources (a bundle, a pull) is used
        // as it is, with nothing compiled or fetched.
        None => {
            if let Some(found) = find_labelled(docker, spec, lock, env).await? {
                progress.println(format!(
                    "{}: using {} (built elsewhere from this spec, lock and harness sources)",
                    env.name, found.tag
                ));
                return Ok(found);
            }
        }
    }
    // The team's registry before building.
    if let Some(reg) = registry::configured(spec)? {
        if let Some(found) = pull_env_image(docker, spec, lock, env, &reg, progress).await? {
            return Ok(found);
        }
    }
    if let Some(b) = binary {
        return ensure_image_with(docker, spec, lock, env, Some(&b), progress).await;
    }
    // The host inputs once (two fetches side by side would race), then the
    // harness compiles while the layers under it are made: on this host,
    // or in a builder of the base's suite when this host's glibc is newer.
    if harness::foreign_suite(&locked).is_none() {
        host_tools::ensure(
            &[host_tools::CMAKE, host_tools::NASM],
            "building the harness's libjpeg-turbo",
            progress,
        )?;
    }
    host_inputs(&locked, progress).await?;
    let stages = plan(spec, lock, env, None)?;
    // Both run to their end, also when one fails: the harness compiled is
    // kept for the next try, and no build container outlives the command.
    let (compiled, made) = tokio::join!(
        harness_builder::build(docker, &locked, progress),
        ensure_stages(docker, lock, &stages, progress)
    );
    made?;
    let binary = compiled?.binary;
    ensure_image_with(docker, spec, lock, env, Some(&binary), progress).await
}

#[cfg(test)]
mod tests;
