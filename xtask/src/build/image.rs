//! `cargo xtask build [ENV|--all]`: hermetic, cached image builds.
//!
//! An environment image is made in three steps, each skipped when its
//! result already exists:
//!
//! 1. the base, `torchenv/base:<key>`: the locked Debian root file system
//!    (see [`super::bootstrap`], [`super::base_image`]), or a pinned
//!    `REF@sha256:…` already in the engine;
//! 2. the stage image `torchenv/venv:<hash>`: the locked wheels (fetched into
//!    the cache by [`super::wheels`]) installed into `/opt/venv` from the
//!    build context, with no index and no network (`images/venv.Dockerfile`);
//! 3. the final image `torchenv/<env>:<tag>` (`images/Dockerfile`): base,
//!    system configuration, `/opt/venv` copied from the stage image, and the
//!    harness binary as the last layer.
//!
//! The tag is a hash of every input ([`plan`]), computed from the lock's
//! hashes without reading any wheel, so an up-to-date image is found with
//! one `inspect` and nothing else; that inspect also checks it is what the
//! build would make ([`super::provenance`]: labels and base layers), so an
//! image someone else tagged under that name is refused. Builds run with `--network none`; the
//! engine tags an image only when every step succeeded.
//!
//! May use: the other `build` modules, `docker`, `lock` (data model,
//! freshness), `spec`, `cache`, `progress`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::base_image::{self, count_bytes, BASE_REPO};
use super::provenance::{self, BaseLayers};
use super::{harness, wheels, BuildError};
use crate::cache;
use crate::docker::images::{tar_stream, BuildError as EngineBuildError, BuildEvent};
use crate::docker::{Docker, LABEL_ENV, LABEL_MANAGED_BY, MANAGED_BY};
use crate::lock::{self, Lock, LockedEnv};
use crate::progress::{Progress, Task};
use crate::spec::{Base, Env, Spec};

type Result<T, E = BuildError> = std::result::Result<T, E>;

/// Folder of the Dockerfiles and files copied into images, beside the spec.
pub const IMAGES_DIR: &str = "images";
/// The final image's Dockerfile, in [`IMAGES_DIR`].
pub const DOCKERFILE: &str = "Dockerfile";
/// The stage image's Dockerfile, in [`IMAGES_DIR`].
pub const VENV_DOCKERFILE: &str = "venv.Dockerfile";
/// Repository of stage images.
pub const VENV_REPO: &str = "torchenv/venv";

pub const LABEL_INPUTS: &str = "dev.torchenv.inputs";
pub const LABEL_SPEC: &str = "dev.torchenv.spec";
pub const LABEL_LOCK_SHA256: &str = "dev.torchenv.lock-sha256";
pub const LABEL_TORCH: &str = "dev.torchenv.torch";
pub const LABEL_CUDA: &str = "dev.torchenv.cuda";
pub const LABEL_CUDNN: &str = "dev.torchenv.cudnn";
pub const LABEL_HARNESS: &str = "dev.torchenv.harness";
pub const LABEL_BASE: &str = "dev.torchenv.base";
pub const LABEL_VENV: &str = "dev.torchenv.venv";
/// Value of [`LABEL_HARNESS`] when the image was built without a harness.
pub const HARNESS_ABSENT: &str = "absent";

/// Version of the way tags are computed; bump it to rebuild everything.
const TAG_SCHEME: u32 = 1;

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
    pub cuda: Option<&'a str>,
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
            cuda: env.cuda.as_deref(),
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
    /// Build arguments of the final image.
    pub build_args: BTreeMap<String, String>,
    /// Labels of the final image.
    pub labels: BTreeMap<String, String>,
    /// The folder holding the Dockerfiles (`images/` beside the spec).
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
    let (base_image, base_entry, base_layers) = if locked.base.contains("@sha256:") {
        (
            locked.base.clone(),
            serde_json::json!(locked.base),
            BaseLayers::Image(locked.base.clone()),
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
        )
    };
    let image_spec = ImageSpec::of(env);
    let spec_json = serde_json::to_string(&image_spec).expect("spec serializes");
    let lock_json = serde_json::to_string(locked).expect("lock serializes");
    let lock_sha = cache::sha256_bytes(lock_json.as_bytes());
    let venv_tag = format!(
        "{VENV_REPO}:{}",
        &venv_hash(&base_entry, locked, files.get(VENV_DOCKERFILE))[..16]
    );
    let inputs_doc = serde_json::json!({
        "scheme": TAG_SCHEME,
        "env": env.name,
        "spec": image_spec,
        "lock": locked,
        "base": base_entry,
        "images": files,
        "harness": harness_sha,
    });
    let inputs = cache::sha256_bytes(inputs_doc.to_string().as_bytes());
    let tag = format!("torchenv/{}:{}", env.name, &inputs[..16]);

    let build_args = BTreeMap::from([
        ("BASE_IMAGE".to_string(), base_image.clone()),
        ("VENV_IMAGE".to_string(), venv_tag.clone()),
        ("TORCHENV_ENV".to_string(), env.name.clone()),
        ("TORCHENV_TORCH_VERSION".to_string(), locked.torch.clone()),
        ("TORCHENV_CUDA_VERSION".to_string(), locked.cuda.clone()),
        ("TORCHENV_CUDNN_VERSION".to_string(), locked.cudnn.clone()),
    ]);
    let labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (LABEL_ENV.to_string(), env.name.clone()),
        (LABEL_INPUTS.to_string(), inputs.clone()),
        (LABEL_SPEC.to_string(), spec_json),
        (LABEL_LOCK_SHA256.to_string(), lock_sha),
        (LABEL_TORCH.to_string(), locked.torch.clone()),
        (LABEL_CUDA.to_string(), locked.cuda.clone()),
        (LABEL_CUDNN.to_string(), locked.cudnn.clone()),
        (LABEL_HARNESS.to_string(), harness_sha),
        (LABEL_BASE.to_string(), base_image.clone()),
        (LABEL_VENV.to_string(), venv_tag.clone()),
    ]);
    Ok(Plan {
        env: env.name.clone(),
        tag,
        inputs,
        base_image,
        base_layers,
        venv_tag,
        build_args,
        labels,
        images_dir,
        harness: harness.map(Path::to_path_buf),
        locked: locked.clone(),
    })
}

/// The stage image's identity: base, Python, the wheel set, its Dockerfile.
fn venv_hash(base: &serde_json::Value, locked: &LockedEnv, dockerfile: Option<&String>) -> String {
    let mut wheels: Vec<&str> = locked.wheels.iter().map(|w| w.sha256.as_str()).collect();
    wheels.sort();
    let doc = serde_json::json!({
        "scheme": TAG_SCHEME,
        "base": base,
        "python": locked.python,
        "wheels": wheels,
        "dockerfile": dockerfile,
    });
    cache::sha256_bytes(doc.to_string().as_bytes())
}

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

/// The stage image's `requirements.txt`: each wheel by its path in the
/// build (`/tmp/wheelhouse/<file>`) with its locked sha256, sorted by name.
pub fn venv_requirements(locked: &LockedEnv) -> String {
    let mut wheels = locked.wheels.clone();
    wheels.sort_by(|a, b| a.name.cmp(&b.name).then(a.file.cmp(&b.file)));
    let mut out = String::from(
        "# Generated by `cargo xtask build` from environments.lock: every wheel by\n# file, pinned by sha256; installed with --no-index --no-deps --require-hashes.\n",
    );
    for w in wheels {
        out.push_str(&format!(
            "/tmp/wheelhouse/{} --hash=sha256:{}\n",
            w.file, w.sha256
        ));
    }
    out
}

/// Where the harness is in an environment's image.
pub const IMAGE_HARNESS: &str = "/usr/local/bin/harness";

/// Makes sure `env`'s image exists and returns it: does nothing but one
/// `inspect` when the tag computed by [`plan`] is already in the engine;
/// otherwise loads the base, fetches wheels, builds the stage image and
/// the final image as needed. `harness` is the harness binary to put at
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
    let base_image = base_image::ensure_base_image(docker, lock, &plan.locked, progress).await?;
    debug_assert_eq!(base_image, plan.base_image);
    if docker.image_inspect(&plan.venv_tag).await?.is_none() {
        build_venv(docker, &plan, progress).await?;
    }
    build_final(docker, &plan, progress).await?;
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
    Ok(Some(ImageRef {
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
    }))
}

/// A file placed into a build context.
#[derive(Debug, Clone)]
pub enum ContextFile {
    /// Bytes, with a mode.
    Data(Vec<u8>, u32),
    /// A file on disk, streamed, with a mode.
    Path(PathBuf, u32),
    /// An (empty) folder.
    Dir,
}

/// A build: a Dockerfile and the files of its context (by path in the
/// context), the tag the engine applies on success, arguments and labels.
#[derive(Debug, Clone, Default)]
pub struct ContextBuild {
    pub tag: String,
    pub dockerfile: String,
    pub files: BTreeMap<String, ContextFile>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// Streams `build`'s context to the engine and builds it with no network,
/// one progress line per Dockerfile step. On failure nothing is tagged and
/// the error names the step with the tail of its output.
pub async fn build_context(
    docker: &Docker,
    build: ContextBuild,
    progress: &Progress,
) -> Result<String> {
    let total: u64 = build.files.values().map(ContextFile::size).sum();
    let upload = progress.bytes(format!("context {}", build.tag), Some(total));
    let files = labelled_files(&build)?;
    let context = count_bytes(context_tar(files), upload.bar_handle());
    let mut steps = StepDisplay {
        progress,
        upload: Some(upload),
        step: None,
        total,
    };
    let result = docker
        .image_build(
            &build.tag,
            &build.dockerfile,
            context,
            &build.build_args,
            &BTreeMap::new(),
            |event| steps.show(event),
        )
        .await;
    match result {
        Ok(id) => {
            steps.finish();
            progress.println(format!("built {}", build.tag));
            Ok(id)
        }
        Err(e) => {
            // A step that failed, or the engine that went away mid-step.
            let why = match &e {
                EngineBuildError::Docker(d) if d.is_unreachable() => {
                    "interrupted: lost the connection to the engine"
                }
                _ => "step failed",
            };
            steps.fail(why);
            Err(e.into())
        }
    }
}

impl ContextFile {
    /// Bytes it adds to the context (a file that cannot be read counts 0;
    /// the tar stream reports the error).
    fn size(&self) -> u64 {
        match self {
            ContextFile::Data(d, _) => d.len() as u64,
            ContextFile::Path(p, _) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            ContextFile::Dir => 0,
        }
    }
}

/// The context's files, the Dockerfile ending with one LABEL instruction:
/// the engine's `labels` option adds one step per label, and every step
/// after a multi-gigabyte layer costs seconds on fuse-overlayfs.
fn labelled_files(build: &ContextBuild) -> Result<BTreeMap<String, ContextFile>> {
    let mut files = build.files.clone();
    if build.labels.is_empty() {
        return Ok(files);
    }
    let text = match files.get(&build.dockerfile) {
        Some(ContextFile::Data(d, _)) => d.clone(),
        Some(ContextFile::Path(p, _)) => {
            std::fs::read(p).map_err(BuildError::io(format!("reading {}", p.display())))?
        }
        _ => Vec::new(),
    };
    let text = with_labels(&String::from_utf8_lossy(&text), &build.labels);
    files.insert(
        build.dockerfile.clone(),
        ContextFile::Data(text.into_bytes(), 0o644),
    );
    Ok(files)
}

/// The build context as a tar stream with fixed owners and mtimes.
fn context_tar(
    files: BTreeMap<String, ContextFile>,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    tar_stream(move |b| {
        for (name, file) in &files {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            match file {
                ContextFile::Data(data, mode) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    b.append_data(&mut header, name, data.as_slice())?;
                }
                ContextFile::Path(path, mode) => {
                    let f = std::fs::File::open(path)?;
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(f.metadata()?.len());
                    b.append_data(&mut header, name, f)?;
                }
                ContextFile::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    b.append_data(&mut header, format!("{name}/"), std::io::empty())?;
                }
            }
        }
        Ok(())
    })
}

/// The progress lines of one build: the context upload, then one spinner
/// per Dockerfile step showing its latest output line.
struct StepDisplay<'a> {
    progress: &'a Progress,
    upload: Option<Task>,
    step: Option<Task>,
    total: u64,
}

impl StepDisplay<'_> {
    fn show(&mut self, event: BuildEvent) {
        match event {
            BuildEvent::Step(s) => {
                if let Some(u) = self.upload.take() {
                    u.finish(&format!("sent {}", crate::progress::bytes(self.total)));
                }
                if let Some(prev) = self.step.take() {
                    prev.finish("done");
                }
                self.step = Some(self.progress.spinner(short(&s, 100)));
            }
            BuildEvent::Line(l) => {
                if let Some(t) = &self.step {
                    t.line(&short(&l, 120));
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(u) = self.upload.take() {
            u.finish("sent");
        }
        if let Some(prev) = self.step.take() {
            prev.finish("done");
        }
    }

    fn fail(&mut self, why: &str) {
        if let Some(u) = self.upload.take() {
            u.fail("context");
        }
        if let Some(prev) = self.step.take() {
            prev.fail(why);
        }
    }
}

/// `dockerfile` with a last `LABEL k="v" …` instruction holding `labels`.
pub fn with_labels(dockerfile: &str, labels: &BTreeMap<String, String>) -> String {
    let quote = |s: &str| {
        let mut q = String::with_capacity(s.len() + 2);
        q.push('"');
        for c in s.chars() {
            match c {
                '"' | '\\' | '$' => {
                    q.push('\\');
                    q.push(c);
                }
                '\n' => q.push_str("\\n"),
                c => q.push(c),
            }
        }
        q.push('"');
        q
    };
    let mut out = dockerfile.trim_end().to_string();
    out.push_str("\n# Added by `cargo xtask build`: every label in one step.\nLABEL");
    for (k, v) in labels {
        out.push_str(" \\\n      ");
        out.push_str(k);
        out.push('=');
        out.push_str(&quote(v));
    }
    out.push('\n');
    out
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let cut: String = s.chars().take(n - 1).collect();
        format!("{cut}…")
    }
}

async fn build_venv(docker: &Docker, plan: &Plan, progress: &Progress) -> Result<()> {
    let wheels = plan.locked.wheels.clone();
    let python = plan.locked.python.clone();
    let task_progress = progress.clone();
    let paths =
        tokio::task::spawn_blocking(move || wheels::fetch(&wheels, &python, &task_progress))
            .await
            .map_err(|e| BuildError::failed(format!("wheel fetch panicked: {e}")))??;
    let dockerfile = plan.images_dir.join(VENV_DOCKERFILE);
    let text = std::fs::read(&dockerfile)
        .map_err(BuildError::io(format!("reading {}", dockerfile.display())))?;
    let mut files = BTreeMap::from([
        (VENV_DOCKERFILE.to_string(), ContextFile::Data(text, 0o644)),
        (
            "wheels/requirements.txt".to_string(),
            ContextFile::Data(venv_requirements(&plan.locked).into_bytes(), 0o644),
        ),
    ]);
    for (w, path) in plan.locked.wheels.iter().zip(paths) {
        files.insert(format!("wheels/{}", w.file), ContextFile::Path(path, 0o644));
    }
    let labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        ("dev.torchenv.stage".to_string(), "venv".to_string()),
        (LABEL_BASE.to_string(), plan.base_image.clone()),
    ]);
    build_context(
        docker,
        ContextBuild {
            tag: plan.venv_tag.clone(),
            dockerfile: VENV_DOCKERFILE.to_string(),
            files,
            build_args: BTreeMap::from([("BASE_IMAGE".to_string(), plan.base_image.clone())]),
            labels,
        },
        progress,
    )
    .await?;
    Ok(())
}

/// The final image's context: every file under `images/` (shell scripts
/// executable) and `harness/`, empty or holding the harness binary.
pub fn final_context(plan: &Plan) -> Result<BTreeMap<String, ContextFile>> {
    let mut files = BTreeMap::new();
    for path in walk(&plan.images_dir)? {
        let rel = relative(&plan.images_dir, &path);
        let mode = if rel.ends_with(".sh") { 0o755 } else { 0o644 };
        files.insert(rel, ContextFile::Path(path, mode));
    }
    files.insert("harness".to_string(), ContextFile::Dir);
    if let Some(h) = &plan.harness {
        files.insert(
            "harness/harness".to_string(),
            ContextFile::Path(h.clone(), 0o755),
        );
    }
    Ok(files)
}

async fn build_final(docker: &Docker, plan: &Plan, progress: &Progress) -> Result<()> {
    build_context(
        docker,
        ContextBuild {
            tag: plan.tag.clone(),
            dockerfile: DOCKERFILE.to_string(),
            files: final_context(plan)?,
            build_args: plan.build_args.clone(),
            labels: plan.labels.clone(),
        },
        progress,
    )
    .await?;
    Ok(())
}

/// The image of `env` as every command uses it (`build`, `up`, `check`):
/// with its harness built against the environment's own torch (cached),
/// unless `harness` names a binary to use instead.
pub async fn ensure_env_image(
    docker: &Docker,
    spec: &Spec,
    lock: &Lock,
    env: &Env,
    harness: Option<&Path>,
    progress: &Progress,
) -> Result<ImageRef> {
    let binary = match harness {
        Some(path) => path.to_path_buf(),
        None => {
            let locked = lock::check_fresh(spec, lock, env)?.clone();
            tokio::task::spawn_blocking(move || harness::build(&locked))
                .await
                .map_err(|e| BuildError::failed(format!("harness build task: {e}")))??
                .binary
        }
    };
    ensure_image_with(docker, spec, lock, env, Some(&binary), progress).await
}

#[cfg(test)]
mod tests;
