//! Building the in-image `harness` against an environment's own libtorch.
//!
//! The harness links libtorch through tch, and a tch release links exactly
//! one torch version (`compat::TORCH_TCH`). For each torch version this
//! module keeps, in the cache:
//! - `pytorch/<torch>/venv`: a host virtualenv holding the environment's
//!   locked wheels (the very files that go into the image), used to compile
//!   tch (`LIBTORCH_USE_PYTORCH=1`) and to run the Python reference tests;
//! - `harness/<torch>/src` and `harness/<torch>/fixtures`: the sources
//!   cargo compiles (a copy, see [`harness_src`]), with the torch version's
//!   `Cargo.lock`;
//! - `harness/<torch>/target`: the cargo target dir of that build.
//!
//! The harness crate pins tch with a range; `harness/locks/torch-<v>.Cargo.lock`
//! picks the exact tch for each torch version.
//!
//! May use: `build::{harness_src, host_tools, pip, uv, wheels}`, `lock` (data model), `cache`,
//! `compat`, `process`, `progress`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::{harness_src, host_tools, pip, wheels, BuildError};
use crate::lock::LockedEnv;
use crate::process::{self, cargo};
use crate::progress::Progress;
use crate::{cache, compat};

type Result<T, E = BuildError> = std::result::Result<T, E>;

/// Where a harness build's outputs land.
pub struct HarnessBuild {
    pub binary: PathBuf,
    /// The environment's torch it was compiled against.
    pub torch: TorchSource,
}

/// The repository root. Taken from `CARGO_MANIFEST_DIR` as cargo sets it
/// when it runs xtask (its compile-time value may name another checkout
/// that shared the target dir), else the compile-time value.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("..")
}

/// The repository's `harness/` crate.
pub fn crate_dir() -> PathBuf {
    repo_root().join("harness")
}

/// File in a host venv naming the wheel set installed in it.
const VENV_MARKER: &str = ".torchenv-wheels";

/// Directory inside an image of Python `python` (MAJOR.MINOR) where the
/// harness finds libtorch.
pub fn image_torch_lib(python: &str) -> String {
    format!("/opt/venv/lib/python{python}/site-packages/torch/lib")
}

/// The venv's python.
pub fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// `torch/lib` inside a venv.
pub fn venv_torch_lib(venv: &Path, python: &str) -> PathBuf {
    venv.join("lib")
        .join(format!("python{python}"))
        .join("site-packages/torch/lib")
}

/// Makes sure the host venv for `locked` exists and holds exactly its wheels.
pub fn ensure_torch_venv(locked: &LockedEnv) -> Result<PathBuf> {
    let venv = cache::torch_venv(&locked.torch);
    if holds_wheel_set(&venv, locked) {
        return Ok(venv);
    }
    let host = host_python()?;
    if host.version != locked.python {
        return Err(BuildError::Failed {
            message: format!(
                "a host venv of the image's wheels needs python {}, but `{}` is python {}",
                locked.python, host.command, host.version
            ),
            help: Some(format!(
                "install python{} and set TORCHENV_HOST_PYTHON to it",
                locked.python
            )),
        });
    }
    refill(locked, &venv, "installing", |uv, files| {
        let mut cmd = Command::new(&host.command);
        // With pip and setuptools (ensurepip, offline): torch-sys's build
        // script imports `torch.utils.cpp_extension`, which needs setuptools.
        cmd.args(["-m", "venv"]).arg(&venv);
        pip::run(cmd, "creating the host venv")?;
        uv_install(
            uv,
            &venv,
            files,
            &["--python".into(), venv_python(&venv).into()],
        )
    })?;
    Ok(venv)
}

/// The environment's wheels unpacked for its own python (`uv pip install
/// --target --python-version`), for a python the host lacks: the folder
/// holds `torch/` (headers, libtorch) beside `nvidia/` as an image's
/// site-packages does, and no interpreter.
fn ensure_torch_target(locked: &LockedEnv) -> Result<PathBuf> {
    let dir = cache::torch_target(&locked.torch, &locked.python);
    if holds_wheel_set(&dir, locked) {
        return Ok(dir);
    }
    refill(locked, &dir, "unpacking", |uv, files| {
        uv_install(
            uv,
            &dir,
            files,
            &[
                "--target".into(),
                dir.clone().into(),
                "--python-version".into(),
                locked.python.clone().into(),
                "--python-platform".into(),
                "x86_64-manylinux_2_28".into(),
            ],
        )
    })?;
    Ok(dir)
}

/// Whether `dir` holds `locked`'s harness wheel set (its marker says so).
fn holds_wheel_set(dir: &Path, locked: &LockedEnv) -> bool {
    std::fs::read_to_string(dir.join(VENV_MARKER))
        .is_ok_and(|have| have.trim() == wheel_set_hash(locked))
}

/// Makes `dir` anew from `locked`'s harness wheels: fetched into the
/// cache, the old `dir` removed, `install(uv, wheel files)` run, then the
/// marker written (so an interrupted install is redone).
fn refill(
    locked: &LockedEnv,
    dir: &Path,
    what: &str,
    install: impl FnOnce(&Path, &[PathBuf]) -> Result<()>,
) -> Result<()> {
    let progress = Progress::new();
    let files = wheels::fetch(&locked.harness_wheels(), &locked.python, &progress)?;
    let uv = super::uv::ensure(&progress)?;
    eprintln!(
        "harness: {what} {} wheels for python {} into {}",
        files.len(),
        locked.python,
        dir.display()
    );
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(BuildError::io(format!("removing stale {}", dir.display())))?;
    }
    install(&uv, &files)?;
    let marker = dir.join(VENV_MARKER);
    std::fs::write(&marker, wheel_set_hash(locked))
        .map_err(BuildError::io(format!("writing {}", marker.display())))
}

/// `uv pip install` of wheel `files` (offline, no deps), where `target`
/// says: hard links from a uv cache beside `dest`, removed afterwards
/// (one write of the files).
fn uv_install(
    uv: &Path,
    dest: &Path,
    files: &[PathBuf],
    target: &[std::ffi::OsString],
) -> Result<()> {
    let parent = dest.parent().expect("the destination has a parent");
    std::fs::create_dir_all(parent)
        .map_err(BuildError::io(format!("creating {}", parent.display())))?;
    let uv_cache = tempfile::Builder::new()
        .prefix(".uv-cache-")
        .tempdir_in(parent)
        .map_err(BuildError::io(format!(
            "creating a folder in {}",
            parent.display()
        )))?;
    let mut cmd = Command::new(uv);
    cmd.args([
        "pip",
        "install",
        "--no-config",
        "--offline",
        "--no-index",
        "--no-deps",
    ])
    .args(["--link-mode", "hardlink", "--quiet"])
    .args(target)
    .env("UV_CACHE_DIR", uv_cache.path())
    .env("UV_PYTHON_DOWNLOADS", "never")
    .args(files);
    pip::run(cmd, "installing the locked wheels on the host")?;
    Ok(())
}

/// Where a harness build takes libtorch from.
#[derive(Debug, Clone)]
pub enum TorchSource {
    /// The host venv ([`ensure_torch_venv`]): the environment's python is
    /// the host's. torch-sys asks its python where libtorch is; the
    /// harness's Python reference tests run in it.
    Venv(PathBuf),
    /// The wheels unpacked for a python the host lacks (bullseye's 3.9,
    /// trixie's 3.13): libtorch is one C++ library whatever python its
    /// wheel is for, so torch-sys gets its folder (`LIBTORCH`).
    Unpacked(PathBuf),
}

impl TorchSource {
    /// The venv, or the folder of unpacked wheels.
    fn dir(&self) -> &Path {
        match self {
            TorchSource::Venv(dir) | TorchSource::Unpacked(dir) => dir,
        }
    }

    /// The folder holding `torch/lib`.
    pub fn torch_lib(&self, python: &str) -> PathBuf {
        match self {
            TorchSource::Venv(venv) => venv_torch_lib(venv, python),
            TorchSource::Unpacked(dir) => dir.join("torch").join("lib"),
        }
    }

    /// The host venv's python; an unpacked source has none.
    pub fn python(&self) -> Result<PathBuf> {
        match self {
            TorchSource::Venv(venv) => Ok(venv_python(venv)),
            TorchSource::Unpacked(dir) => Err(BuildError::failed(format!(
                "{} holds the environment's torch for a python this host lacks; this needs the host python to be the environment's",
                dir.display()
            ))),
        }
    }
}

/// The python the host runs (`TORCHENV_HOST_PYTHON`, else `python3`).
struct HostPython {
    command: String,
    version: String,
}

/// Asked once per process: [`build_key`] is on every `up`'s path.
fn host_python() -> Result<&'static HostPython> {
    static HOST: OnceLock<HostPython> = OnceLock::new();
    if let Some(host) = HOST.get() {
        return Ok(host);
    }
    let command = std::env::var("TORCHENV_HOST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&command)
        .args([
            "-c",
            "import sys;print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
        ])
        .output()
        .map_err(BuildError::io(format!("running {command}")))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(HOST.get_or_init(|| HostPython { command, version }))
}

/// This host's glibc (`getconf GNU_LIBC_VERSION`: "glibc 2.36"), asked
/// once per process.
fn host_glibc() -> Option<(u32, u32)> {
    static GLIBC: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *GLIBC.get_or_init(read_host_glibc)
}

fn read_host_glibc() -> Option<(u32, u32)> {
    let out = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (major, minor) = text.trim().strip_prefix("glibc ")?.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The Debian suite of `locked`'s base when a harness linked on this host
/// could not run on it: the binary needs this host's glibc symbol
/// versions, and a base with an older glibc (bullseye's 2.31 under a
/// bookworm host's 2.36) lacks them. Such a harness is compiled in a
/// container of that suite ([`super::harness_builder`]). `None` when a
/// host build runs there, or when the base is a pinned image.
pub fn foreign_suite(locked: &LockedEnv) -> Option<&str> {
    let suite = locked.debian_suite()?;
    let host = host_glibc()?;
    (host > compat::debian_glibc(Some(suite))).then_some(suite)
}

/// The cache key of `locked`'s harness build: its torch version, with
/// `-py<python>` when the host's python is another one, and
/// `-py<python>-<suite>` when it is compiled in a builder container of the
/// base's suite ([`foreign_suite`]); both compile against
/// [`TorchSource::Unpacked`].
pub fn build_key(locked: &LockedEnv) -> String {
    if let Some(suite) = foreign_suite(locked) {
        return format!("{}-py{}-{suite}", locked.torch, locked.python);
    }
    match host_python() {
        Ok(host) if host.version != locked.python => {
            format!("{}-py{}", locked.torch, locked.python)
        }
        _ => locked.torch.clone(),
    }
}

/// Where the torch a harness build of `locked` compiles against is (or
/// goes), by [`build_key`].
fn torch_source(locked: &LockedEnv) -> TorchSource {
    if build_key(locked) == locked.torch {
        TorchSource::Venv(cache::torch_venv(&locked.torch))
    } else {
        TorchSource::Unpacked(cache::torch_target(&locked.torch, &locked.python))
    }
}

/// [`torch_source`], made when missing or stale.
fn ensure_torch(locked: &LockedEnv) -> Result<TorchSource> {
    Ok(match torch_source(locked) {
        TorchSource::Venv(_) => TorchSource::Venv(ensure_torch_venv(locked)?),
        TorchSource::Unpacked(_) => TorchSource::Unpacked(ensure_torch_target(locked)?),
    })
}

/// torch's C++ ABI flag as its CMake config says
/// (`-D_GLIBCXX_USE_CXX11_ABI=N`), for torch-sys without a python. A
/// config that does not say is a torch with only the C++11 ABI (2.9 on):
/// `1`. A missing config is an error naming it.
fn cxx11_abi(torch_dir: &Path) -> Result<String> {
    let config = torch_dir.join("share/cmake/Torch/TorchConfig.cmake");
    let text = std::fs::read_to_string(&config)
        .map_err(BuildError::io(format!("reading {}", config.display())))?;
    let Some(rest) = text.split("_GLIBCXX_USE_CXX11_ABI=").nth(1) else {
        return Ok("1".into());
    };
    rest.chars()
        .next()
        .filter(|c| *c == '0' || *c == '1')
        .map(String::from)
        .ok_or_else(|| {
            BuildError::failed(format!(
                "{} sets _GLIBCXX_USE_CXX11_ABI to neither 0 nor 1",
                config.display()
            ))
        })
}

/// The host venv's wheel set: [`LockedEnv::harness_wheels`].
fn wheel_set_hash(locked: &LockedEnv) -> String {
    let wheels = locked.harness_wheels();
    let joined: Vec<&str> = wheels.iter().map(|w| w.sha256.as_str()).collect();
    cache::sha256_bytes(joined.join("\n").as_bytes())
}

/// The lockfile that pins the tch release for `torch`.
pub fn cargo_lock_for(torch: &str) -> Result<PathBuf> {
    let tch = compat::tch_for_torch(torch).ok_or_else(|| {
        BuildError::failed(format!("no tch release is known to link torch {torch}"))
    })?;
    let path = crate_dir()
        .join("locks")
        .join(format!("torch-{torch}.Cargo.lock"));
    if !path.exists() {
        return Err(BuildError::Failed {
            message: format!("{} is missing (torch {torch} needs tch {tch})", path.display()),
            help: Some(format!(
                "create it: cd harness && cargo update -p tch --precise {tch} && cp Cargo.lock locks/torch-{torch}.Cargo.lock"
            )),
        });
    }
    Ok(path)
}

/// Environment for cargo invocations on the harness of `locked`: the host
/// venv's torch to compile against, the rpath (the host venv relative to
/// the binary, then the image's), the per-torch target dir, and the
/// path-independence flags of [`harness_src`].
fn cargo_env(cmd: &mut Command, locked: &LockedEnv, torch: &TorchSource) -> Result<()> {
    let dir = cache::harness_dir(&build_key(locked));
    let mut rpath = harness_src::host_rpath(&dir, &torch.torch_lib(&locked.python));
    rpath.push(image_torch_lib(&locked.python));
    match torch {
        TorchSource::Venv(venv) => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![venv.join("bin")];
            paths.extend(std::env::split_paths(&path));
            cmd.env(
                "PATH",
                std::env::join_paths(paths).expect("PATH entries are valid"),
            )
            .env("LIBTORCH_USE_PYTORCH", "1")
            .env("PYTHON_SYS_EXECUTABLE", venv_python(venv))
            .env_remove("LIBTORCH")
            .env_remove("LIBTORCH_CXX11_ABI");
        }
        TorchSource::Unpacked(unpacked) => {
            let torch_dir = unpacked.join("torch");
            cmd.env("LIBTORCH", &torch_dir)
                .env("LIBTORCH_CXX11_ABI", cxx11_abi(&torch_dir)?)
                .env_remove("LIBTORCH_USE_PYTORCH");
        }
    }
    cmd.env("TORCHENV_HARNESS_RPATH", rpath.join(":"))
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env("CARGO_ENCODED_RUSTFLAGS", harness_src::encoded_rustflags())
        .env("CFLAGS", harness_src::c_flags(std::env::var_os("CFLAGS")))
        .env(
            "CXXFLAGS",
            harness_src::c_flags(std::env::var_os("CXXFLAGS")),
        )
        .env_remove("RUSTFLAGS")
        .env_remove("LIBTORCH_INCLUDE")
        .env_remove("LIBTORCH_LIB")
        .env_remove("CARGO_MANIFEST_DIR");
    Ok(())
}

/// Exclusive use of the harness sources copy and target dirs: a checkout
/// refreshes the copy before cargo runs, and two checkouts must not
/// overlap. Released when dropped.
struct CrateLock {
    _file: std::fs::File,
}

impl CrateLock {
    fn acquire() -> Result<CrateLock> {
        let dir = cache::root().join("harness");
        std::fs::create_dir_all(&dir)
            .map_err(BuildError::io(format!("creating {}", dir.display())))?;
        let path = dir.join(".crate.lock");
        let file = std::fs::File::create(&path)
            .map_err(BuildError::io(format!("creating {}", path.display())))?;
        file.lock()
            .map_err(BuildError::io(format!("locking {}", path.display())))?;
        Ok(CrateLock { _file: file })
    }
}

/// `cargo <subcommand> --release --locked` on the harness crate for
/// `locked`, compiled from its copy in the cache ([`harness_src`]): the
/// copy held exclusively (until dropped) and refreshed, the host venv
/// ready, the torch version's lockfile in place, the build environment set.
struct HarnessCargo {
    cmd: Command,
    torch: TorchSource,
    _crate: CrateLock,
}

impl HarnessCargo {
    fn new(locked: &LockedEnv, subcommand: &[&str]) -> Result<HarnessCargo> {
        // A builder container brings its own.
        if foreign_suite(locked).is_none() {
            host_tools::ensure(
                &[host_tools::CMAKE, host_tools::NASM],
                "building the harness's libjpeg-turbo",
                &Progress::new(),
            )?;
        }
        let crate_lock = CrateLock::acquire()?;
        let torch = ensure_torch(locked)?;
        let src = harness_src::copy_root(&build_key(locked));
        harness_src::sync(&repo_root(), &src)?;
        select_lockfile(locked, &src)?;
        let mut cmd = cargo();
        cmd.args(subcommand)
            .args(["--release", "--locked", "--manifest-path"])
            .arg(src.join("Cargo.toml"));
        cargo_env(&mut cmd, locked, &torch)?;
        Ok(HarnessCargo {
            cmd,
            torch,
            _crate: crate_lock,
        })
    }
}

/// Puts the torch version's lockfile in place as `Cargo.lock` of the crate
/// copy `crate_copy`, rewriting it only when it differs.
fn select_lockfile(locked: &LockedEnv, crate_copy: &Path) -> Result<()> {
    let source = cargo_lock_for(&locked.torch)?;
    let dest = crate_copy.join("Cargo.lock");
    let want =
        std::fs::read(&source).map_err(BuildError::io(format!("reading {}", source.display())))?;
    harness_src::put(&dest, &want, &source)
}

/// Builds (or finds up to date) the release harness for `locked` on this
/// host (for a base this host's glibc is too new for, see
/// [`super::harness_builder`]).
///
/// A stamp beside the binary records the hash of everything the build
/// reads from this repository and the cache (sources, lockfile, the venv's
/// wheel set); when it matches, the binary is returned without running
/// cargo, so `up` on a warm machine does not pay for a cargo start.
pub fn build(locked: &LockedEnv) -> Result<HarnessBuild> {
    if let Some(current) = current(locked)? {
        return Ok(current);
    }
    let (cargo, pending) = prepare(locked)?;
    process::run_logged(
        cargo,
        &format!("building the harness for torch {}", locked.torch),
    )?;
    pending.finish()
}

/// A harness build whose cargo command has not run yet: it holds the
/// sources copy, and [`PendingBuild::finish`] keeps cargo's output.
pub struct PendingBuild {
    key: String,
    stamp: String,
    torch: TorchSource,
    _crate: CrateLock,
}

/// Readies the release build of `locked`'s harness (sources copied, torch
/// in place, the build environment set) and returns `cargo build`'s
/// command, to run on this host or in a builder container, with what
/// finishes it.
pub fn prepare(locked: &LockedEnv) -> Result<(Command, PendingBuild)> {
    let stamp = source_stamp(locked)?;
    let cargo = HarnessCargo::new(locked, &["build"])?;
    let pending = PendingBuild {
        key: build_key(locked),
        stamp,
        torch: cargo.torch,
        _crate: cargo._crate,
    };
    Ok((cargo.cmd, pending))
}

impl PendingBuild {
    /// The manifest of the sources copy cargo compiles.
    pub fn manifest(&self) -> PathBuf {
        harness_src::copy_root(&self.key).join("Cargo.toml")
    }

    /// Keeps the binary cargo built (a copy, see [`binary_path`]) with its
    /// stamp.
    pub fn finish(self) -> Result<HarnessBuild> {
        let binary = binary_path(&self.key);
        let built = cache::harness_dir(&self.key).join("target/release/harness");
        if !built.exists() {
            return Err(BuildError::failed(format!(
                "cargo built the harness but {} is missing",
                built.display()
            )));
        }
        let dir = binary.parent().expect("the binary path has a parent");
        std::fs::create_dir_all(dir)
            .map_err(BuildError::io(format!("creating {}", dir.display())))?;
        let tmp = binary.with_extension("tmp");
        std::fs::copy(&built, &tmp)
            .map_err(BuildError::io(format!("copying {}", built.display())))?;
        std::fs::rename(&tmp, &binary)
            .map_err(BuildError::io(format!("writing {}", binary.display())))?;
        let stamp_path = binary.with_extension("stamp");
        std::fs::write(&stamp_path, self.stamp)
            .map_err(BuildError::io(format!("writing {}", stamp_path.display())))?;
        Ok(HarnessBuild {
            binary,
            torch: self.torch,
        })
    }
}

/// [`up_to_date`]'s binary with the torch it was compiled against.
pub fn current(locked: &LockedEnv) -> Result<Option<HarnessBuild>> {
    Ok(up_to_date(locked)?.map(|binary| HarnessBuild {
        binary,
        torch: torch_source(locked),
    }))
}

/// The release harness for `locked` when it is built and up to date (its
/// stamp matches the sources and the host venv holds the wheel set), found
/// without running cargo.
pub fn up_to_date(locked: &LockedEnv) -> Result<Option<PathBuf>> {
    let key = build_key(locked);
    let binary = binary_path(&key);
    let venv_ready = holds_wheel_set(torch_source(locked).dir(), locked);
    let stamp = std::fs::read_to_string(binary.with_extension("stamp"));
    if !venv_ready || !binary.exists() || stamp.is_err() {
        return Ok(None);
    }
    Ok((stamp.ok() == Some(source_stamp(locked)?)).then_some(binary))
}

/// [`sources_hash`] with the flags the sources are compiled with (which
/// name this machine's cache folder): what decides whether the cached
/// binary is current.
fn source_stamp(locked: &LockedEnv) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(sources_hash(locked)?);
    hasher.update(harness_src::encoded_rustflags().as_encoded_bytes());
    hasher.update(harness_src::c_flags(None).as_encoded_bytes());
    Ok(hex::encode(hasher.finalize()))
}

/// Hash of the harness sources (with its path dependencies `report/` and
/// `gpumon/`), the lockfile for `locked.torch`, the venv's wheel set and
/// the recipe: what decides the harness binary besides the toolchain, the
/// same on every machine (images carry it as a label, so an image built
/// elsewhere from the same checkout is recognised without compiling).
pub fn sources_hash(locked: &LockedEnv) -> Result<String> {
    let dir = crate_dir();
    let mut files = vec![
        dir.join("Cargo.toml"),
        dir.join("build.rs"),
        cargo_lock_for(&locked.torch)?,
        dir.join("../report/Cargo.toml"),
        dir.join("../gpumon/Cargo.toml"),
    ];
    let mut stack = vec![
        dir.join("src"),
        dir.join("../report/src"),
        dir.join("../gpumon/src"),
    ];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).map_err(BuildError::io(format!("reading {}", d.display())))?
        {
            let path = entry
                .map_err(BuildError::io(format!("reading {}", d.display())))?
                .path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut hasher = Sha256::new();
    hasher.update(wheel_set_hash(locked));
    // How the sources are laid out, besides their bytes.
    hasher.update(harness_src::RECIPE);
    for f in &files {
        let data = std::fs::read(f).map_err(BuildError::io(format!("reading {}", f.display())))?;
        hasher.update(
            f.strip_prefix(&dir)
                .unwrap_or(f)
                .to_string_lossy()
                .as_bytes(),
        );
        hasher.update((data.len() as u64).to_le_bytes());
        hasher.update(&data);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Runs the harness crate's own tests against `locked`'s torch, with the
/// paths they need, by cargo-nextest (one process per test: tests of
/// different files share the cores).
pub fn test(locked: &LockedEnv, lite0_weights: &Path) -> Result<()> {
    let mut cargo = HarnessCargo::new(locked, &["nextest", "run"])?;
    cargo
        .cmd
        .env("TORCHENV_TEST_PYTHON", cargo.torch.python()?)
        .env("TORCHENV_LITE0_WEIGHTS", lite0_weights);
    process::run_logged(
        cargo.cmd,
        &format!("harness tests (torch {})", locked.torch),
    )?;
    Ok(())
}

/// `cargo clippy -D warnings` on the harness crate, in the release profile
/// so it reuses the release build's compiled libtorch bindings.
pub fn clippy(locked: &LockedEnv) -> Result<()> {
    let mut cargo = HarnessCargo::new(locked, &["clippy"])?;
    cargo.cmd.args(["--all-targets", "--", "-D", "warnings"]);
    process::run_logged(
        cargo.cmd,
        &format!("cargo clippy (harness, torch {})", locked.torch),
    )?;
    Ok(())
}

/// Path of the release binary of harness build `key` ([`build_key`]).
///
/// A copy of cargo's output, taken right after `cargo build`: `cargo test`
/// relinks `target/release/harness` with dev-dependency features, and the
/// image must get the same bytes whichever ran last.
pub fn binary_path(key: &str) -> PathBuf {
    cache::harness_dir(key).join("bin").join("harness")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flag as torch's CMake config writes it (2.6's wheels are
    /// pre-C++11 ABI, 2.7's on are C++11 ABI; 2.11's config no longer
    /// says, having no other); a bad value or no config is an error naming
    /// the file.
    #[test]
    fn cxx11_abi_from_torch_config() {
        let dir = tempfile::tempdir().unwrap();
        let cmake = dir.path().join("share/cmake/Torch");
        std::fs::create_dir_all(&cmake).unwrap();
        let config = cmake.join("TorchConfig.cmake");
        for abi in ["0", "1"] {
            std::fs::write(
                &config,
                format!("  set(TORCH_CXX_FLAGS \"-D_GLIBCXX_USE_CXX11_ABI={abi}\")\n"),
            )
            .unwrap();
            assert_eq!(cxx11_abi(dir.path()).unwrap(), abi);
        }
        std::fs::write(&config, "set(TORCH_CXX_FLAGS \"\")\n").unwrap();
        assert_eq!(cxx11_abi(dir.path()).unwrap(), "1");
        std::fs::write(&config, "-D_GLIBCXX_USE_CXX11_ABI=x\n").unwrap();
        let err = cxx11_abi(dir.path()).unwrap_err().to_string();
        assert!(err.contains("TorchConfig.cmake"), "{err}");
        std::fs::remove_file(&config).unwrap();
        let err = cxx11_abi(dir.path()).unwrap_err().to_string();
        assert!(err.contains("TorchConfig.cmake"), "{err}");
    }

    /// A harness for another python than the host's (trixie's 3.13)
    /// compiles against that python's unpacked wheels and finds libtorch,
    /// in the image, under that python's site-packages: no python version
    /// is fixed anywhere on the way.
    #[test]
    fn a_foreign_python_build_links_and_finds_its_own_torch() {
        let unpacked = tempfile::tempdir().unwrap();
        let cmake = unpacked.path().join("torch/share/cmake/Torch");
        std::fs::create_dir_all(&cmake).unwrap();
        std::fs::write(cmake.join("TorchConfig.cmake"), "").unwrap();
        let locked = LockedEnv {
            inputs: String::new(),
            base: "trixie-311731499496".into(),
            python: "3.13".into(),
            torch: "2.11.0".into(),
            torchvision: "0.26.0".into(),
            torchaudio: Some("2.11.0".into()),
            cuda: "13.0".into(),
            cudnn: "9.19.0".into(),
            cuda_toolkit: vec![],
            wheels: vec![],
        };
        let mut cmd = Command::new("cargo");
        let torch = TorchSource::Unpacked(unpacked.path().to_path_buf());
        cargo_env(&mut cmd, &locked, &torch).unwrap();
        let env: std::collections::HashMap<String, String> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string())))
            .collect();
        let rpath = &env["TORCHENV_HARNESS_RPATH"];
        assert!(
            rpath
                .split(':')
                .any(|d| d == "/opt/venv/lib/python3.13/site-packages/torch/lib"),
            "{rpath}"
        );
        assert!(!rpath.contains("python3.11"), "{rpath}");
        assert_eq!(
            env["LIBTORCH"],
            unpacked.path().join("torch").display().to_string()
        );
        assert_eq!(env["LIBTORCH_CXX11_ABI"], "1");
        assert_eq!(
            torch.torch_lib(&locked.python),
            unpacked.path().join("torch/lib")
        );
    }

    /// A harness build is keyed by torch, and by python too when the host's
    /// is another one.
    #[test]
    fn build_key_names_a_foreign_python() {
        let host = host_python().unwrap().version.clone();
        let mut locked = LockedEnv {
            inputs: String::new(),
            base: String::new(),
            python: host.clone(),
            torch: "2.6.0".into(),
            torchvision: "0.21.0".into(),
            torchaudio: None,
            cuda: "12.4".into(),
            cudnn: "9.1.0".into(),
            cuda_toolkit: vec![],
            wheels: vec![],
        };
        assert_eq!(build_key(&locked), "2.6.0");
        locked.python = "2.7".into();
        assert_eq!(build_key(&locked), "2.6.0-py2.7");
    }
}
