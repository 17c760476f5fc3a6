//! The gate's inputs on the product path: the environment's image (built
//! when missing, with its harness) and the locked weights of each model.

use std::path::PathBuf;

use crate::build::{self, weights};
use crate::docker::Docker;
use crate::error::Result;
use crate::lock::{Lock, LOCK_FILE};
use crate::spec::{Env, Spec};

fn lock(spec: &Spec) -> Result<Lock> {
    Ok(Lock::read(&spec.path.with_file_name(LOCK_FILE))?)
}

/// The image of `env` with its harness: built (cached) like `cargo xtask
/// build`, its tag returned.
pub async fn ensure_image(docker: &Docker, spec: &Spec, env: &Env) -> Result<String> {
    let lock = lock(spec)?;
    let progress = crate::progress::Progress::new();
    let image = build::ensure_env_image(docker, spec, &lock, env, None, &progress).await?;
    Ok(image.tag)
}

/// The locked weights file of `model`, fetched into the cache on first use.
pub fn weights_path(spec: &Spec, model: &str) -> Result<PathBuf> {
    Ok(weights::weights_path(&lock(spec)?, model)?)
}
