//! [`Ctx`]: what every command of one invocation shares — the spec and lock
//! paths (`--spec`/`TORCHENV_SPEC`, `--lock`/`TORCHENV_LOCK`), one async
//! runtime and one Docker connection, both made on first use.
//!
//! May use: `docker`, `lock`, `spec`, `error`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::docker::Docker;
use crate::error::{Error, Result};
use crate::lock::{Lock, LOCK_FILE};
use crate::spec::Spec;

pub struct Ctx {
    spec_path: PathBuf,
    lock_path: PathBuf,
    runtime: OnceLock<tokio::runtime::Runtime>,
    docker: tokio::sync::OnceCell<Docker>,
}

impl Ctx {
    /// `lock`: the lock file (default: `environments.lock` beside the spec).
    pub fn new(spec_path: PathBuf, lock_path: Option<PathBuf>) -> Ctx {
        let lock_path = lock_path.unwrap_or_else(|| spec_path.with_file_name(LOCK_FILE));
        Ctx {
            spec_path,
            lock_path,
            runtime: OnceLock::new(),
            docker: tokio::sync::OnceCell::new(),
        }
    }

    pub fn spec_path(&self) -> &Path {
        &self.spec_path
    }

    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// The spec, read and checked.
    pub fn spec(&self) -> Result<Spec> {
        Ok(Spec::load(&self.spec_path)?)
    }

    /// The lock (an empty one when the file does not exist yet).
    pub fn lock(&self) -> Result<Lock> {
        Ok(Lock::read(&self.lock_path)?)
    }

    /// Runs `fut` to completion on the invocation's runtime.
    pub fn block_on<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let runtime = match self.runtime.get() {
            Some(r) => r,
            None => {
                let r = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .map_err(Error::io("starting the async runtime"))?;
                self.runtime.get_or_init(|| r)
            }
        };
        runtime.block_on(fut)
    }

    /// The Docker engine, connected on first use (inside [`Ctx::block_on`]).
    pub async fn docker(&self) -> Result<Docker> {
        let docker = self
            .docker
            .get_or_try_init(|| async { Docker::connect().await })
            .await?;
        Ok(docker.clone())
    }
}
