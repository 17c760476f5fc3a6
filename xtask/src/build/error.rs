//! [`BuildError`]: every way turning spec + lock into an image can fail,
//! each naming what failed (suite, wheel, tool, step) with a hint.
//!
//! May use: `docker`, `lock` (its error), `process`, `spec` (their errors),
//! `exit`.

use std::path::PathBuf;

use crate::docker::DockerError;
use crate::exit;
use crate::lock::LockError;
use crate::process::ProcessError;
use crate::spec::{SpecError, UnknownEnv};

/// A failure of `lock` or `build` (and of the build steps `up` and `check`
/// share with them), naming what failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum BuildError {
    #[error("{message}")]
    #[diagnostic(
        code(torchenv::lock::stale),
        help("run `cargo xtask lock` and commit environments.lock")
    )]
    StaleLock { message: String },
    #[error("mmdebstrap failed to bootstrap Debian {suite}")]
    #[diagnostic(code(torchenv::base::bootstrap), help("{}", tail.join("\n")))]
    Bootstrap { suite: String, tail: Vec<String> },
    #[error(
        "base {key}: the host's Debian mirror no longer serves the locked versions of {} package(s): {}",
        changed.len(),
        changed.join(", ")
    )]
    #[diagnostic(
        code(torchenv::base::unavailable),
        help("the mirror replaced them (typically security updates); run `cargo xtask lock --upgrade` to re-pin the base to what it serves now and commit environments.lock, or point apt at a mirror snapshot of the lock's date")
    )]
    BasePackagesUnavailable {
        key: String,
        /// `name: locked → got` per package that differs.
        changed: Vec<String>,
    },
    #[error(
        "base {key}: the bootstrapped root file system has sha256 {got}, the lock says {locked}, although every package version matches"
    )]
    #[diagnostic(
        code(torchenv::base::mismatch),
        help("this host's mmdebstrap/dpkg lay out the same packages differently from the host that made the lock; run `cargo xtask lock --upgrade` here to re-pin the base, or build on a host with the same tools")
    )]
    RootfsMismatch {
        key: String,
        locked: String,
        got: String,
    },
    #[error("not reproducible: a rebuild of {} gave different layers or image id (listed above)", envs.join(", "))]
    #[diagnostic(
        code(torchenv::build::not_reproducible),
        help("something in a layer depends on when or where it was built: compare the two images' files (`docker save`) to find it")
    )]
    NotReproducible { envs: Vec<String> },
    #[error(
        "images/{script} exited with status {code} in its build container; nothing was tagged"
    )]
    #[diagnostic(code(torchenv::build::stage), help("{}", tail.join("\n")))]
    StageScript {
        script: &'static str,
        code: i64,
        /// The last lines it wrote.
        tail: Vec<String>,
    },
    #[error(
        "base image {reference} is not in the Docker engine, and torchenv cannot pull it here"
    )]
    #[diagnostic(
        code(torchenv::base::missing),
        help("on a machine with registry access: `docker pull {reference}` then `docker save {reference} | docker load` here; or use `base: debian: SUITE`")
    )]
    BaseImageMissing { reference: String },
    /// An image under an environment's tag that is not what spec + lock
    /// build (`build::provenance`): refused, never used or built over.
    #[error("image {image} is not what `cargo xtask build` makes from this spec and lock: {field} is `{found}`, expected `{expected}`")]
    #[diagnostic(
        code(torchenv::image::mismatch),
        help("someone tagged other content under that name, or it was built from other inputs; remove the tag (`docker image rm {image}`) and run `cargo xtask build {env}`, or start another image explicitly with `cargo xtask up --image REF`")
    )]
    ImageMismatch {
        image: String,
        env: String,
        /// The label (`label dev.torchenv.torch`) or field (`RootFS.Layers …`).
        field: String,
        expected: String,
        found: String,
    },
    /// `--no-build` (a Slurm task): the engine has no image of the
    /// environment that spec + lock describe.
    #[error("this engine ({engine}, on {host}) has no image of `{env}` built from this spec and lock, and --no-build forbids building it here")]
    #[diagnostic(
        code(torchenv::image::absent),
        help("build it on this machine (`cargo xtask build {env}`), bring it (`cargo xtask bundle` there, `cargo xtask load` here), or set TORCHENV_REGISTRY (or the spec's `registry:`) to a registry it was pushed to; any local image labelled for `{env}` whose spec, lock, versions, harness sources and base layers match is used")
    )]
    ImageAbsent {
        env: String,
        engine: String,
        host: String,
    },
    /// `TORCHENV_REGISTRY` or `--registry` is not `HOST[:PORT][/PREFIX]`.
    #[error("{source_name} `{value}` {why}")]
    #[diagnostic(
        code(torchenv::registry_location),
        help("a registry is HOST[:PORT][/PREFIX], e.g. HOST:5000/ml")
    )]
    RegistryLocation {
        value: String,
        source_name: String,
        why: String,
    },
    /// A registry refused or could not be reached (not a miss).
    #[error("registry {registry}: {op} failed: {why}")]
    #[diagnostic(code(torchenv::registry), help("{help}"))]
    Registry {
        registry: String,
        op: &'static str,
        why: String,
        help: String,
    },
    #[error("no apt source of this host can serve Debian {suite}")]
    #[diagnostic(
        code(torchenv::base::sources),
        help("torchenv bootstraps from the host's own apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d); add a Debian mirror there")
    )]
    NoAptSource { suite: String },
    #[error("{tool} is not installed")]
    #[diagnostic(code(torchenv::tool_missing), help("{help}"))]
    ToolMissing { tool: String, help: String },
    #[error("wheel {name} ({file}) has sha256 {got}, the lock says {locked}")]
    #[diagnostic(
        code(torchenv::wheels::hash),
        help("the index served a different file; check the host's pip index configuration, or re-lock if the package was re-uploaded")
    )]
    WheelHashMismatch {
        name: String,
        file: String,
        locked: String,
        got: String,
    },
    #[error("downloading wheel {file} from {url} failed after {attempts} attempt(s): {reason}")]
    #[diagnostic(
        code(torchenv::wheels::download),
        help("the URL is what the host's pip index configuration lists for the file (pip config list, PIP_INDEX_URL); check the network, the proxy (HTTPS_PROXY) and the index")
    )]
    WheelDownload {
        file: String,
        /// Password hidden.
        url: String,
        /// The HTTP status, when the server answered.
        status: Option<u16>,
        /// `HTTP 503 Service Unavailable`, a connection error, a short body.
        reason: String,
        attempts: u32,
    },
    #[error("pip could not fetch the locked wheels")]
    #[diagnostic(code(torchenv::wheels::fetch), help("{}", tail.join("\n")))]
    WheelFetch { tail: Vec<String> },
    #[error("harness binary {path} cannot be read: {source}")]
    #[diagnostic(code(torchenv::harness::missing))]
    Harness {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Docker(Box<DockerError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lock(Box<LockError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Spec(Box<SpecError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnknownEnv(#[from] UnknownEnv),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Process(#[from] ProcessError),
    /// Anything else a build step reports, with a hint how to fix it.
    #[error("{message}")]
    #[diagnostic(code(torchenv::build::failed))]
    Failed {
        message: String,
        #[help]
        help: Option<String>,
    },
    #[error("{context}: {source}")]
    #[diagnostic(code(torchenv::io))]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

failure_constructors!(BuildError);

impl BuildError {
    /// A stage script that exited non-zero: its status and the last 20
    /// lines it wrote (stderr, then stdout).
    pub fn stage_script(script: &'static str, out: &crate::docker::run::RunOutput) -> BuildError {
        BuildError::StageScript {
            script,
            code: out.exit_code,
            tail: out.tail(20),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            BuildError::StaleLock { .. }
            | BuildError::RootfsMismatch { .. }
            | BuildError::BasePackagesUnavailable { .. }
            | BuildError::RegistryLocation { .. }
            | BuildError::Spec(_)
            | BuildError::UnknownEnv(_) => exit::BAD_INPUT,
            BuildError::Docker(e) if e.is_unreachable() => exit::DOCKER_UNREACHABLE,
            BuildError::Lock(e) => e.exit_code(),
            _ => exit::FAILED,
        }
    }
}

boxed_from!(BuildError {
    Docker(DockerError),
    Lock(LockError),
    Spec(SpecError),
});
