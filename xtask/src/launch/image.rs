//! Which image `up` starts: `--image REF` (or `TORCHENV_IMAGE`) when given,
//! else the environment's own image from spec + lock, built when missing
//! with its harness (`build::ensure_env_image`; a no-op when the tag exists).
//!
//! May use: `build`, `docker`, `lock`, `spec`, `progress`.

use std::path::Path;

use super::{LaunchError, Result};
use crate::docker::Docker;
use crate::lock::Lock;
use crate::progress::Progress;
use crate::spec::{Env, Spec};

/// The image reference for `env`; `lock` is the lock file to build from.
pub async fn resolve(
    docker: &Docker,
    spec: &Spec,
    lock: &Path,
    env: &Env,
    explicit: Option<&str>,
) -> Result<String> {
    if let Some(r) = explicit {
        if docker.image_id(r).await?.is_none() {
            return Err(LaunchError::ImageMissing {
                image: r.to_string(),
                host: docker.host.clone(),
            });
        }
        return Ok(r.to_string());
    }
    let lock = Lock::read(lock)?;
    let image =
        crate::build::ensure_env_image(docker, spec, &lock, env, None, &Progress::new()).await?;
    Ok(image.tag)
}
