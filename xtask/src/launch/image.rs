//! Which image `up` starts: `--image REF` (or `TORCHENV_IMAGE`) when given,
//! else the environment's own image from spec + lock, built when missing
//! with its harness (`image::ensure_env_image`; a no-op when the tag exists).

use crate::docker::Docker;
use crate::error::{Error, Result};
use crate::spec::{Env, Spec};

/// The image reference for `env`.
pub async fn resolve(
    docker: &Docker,
    spec: &Spec,
    env: &Env,
    explicit: Option<&str>,
) -> Result<String> {
    if let Some(r) = explicit {
        if docker.image_id(r).await?.is_none() {
            return Err(Error::Failed {
                message: format!(
                    "image {r} does not exist on the Docker engine at {}",
                    docker.host
                ),
                help: Some("build it with `cargo xtask build`, or drop --image".into()),
            });
        }
        return Ok(r.to_string());
    }
    let lock_path = spec.path.with_file_name(crate::lock::LOCK_FILE);
    let lock = crate::lock::Lock::read(&lock_path)?;
    let progress = crate::progress::Progress::new();
    Ok(
        crate::build::ensure_env_image(docker, spec, &lock, env, None, &progress)
            .await?
            .tag,
    )
}
