//! The environment's own network: `up`'s container joins the bridge
//! network named like the container (`torchenv-<env>-<user>`), made by
//! torchenv and removed by `down`, so no other container — another user's
//! environment, a one-shot run, anything on the default bridge — reaches its
//! Jupyter or sshd by container IP. Published ports work as before.
//!
//! May use: `docker`, `launch`.

use std::collections::HashMap;

use super::{Identity, LaunchError, Result, LABEL_OWNER};
use crate::docker::{Docker, LABEL_ENV, LABEL_MANAGED_BY, MANAGED_BY};

/// The network of `env` for `who`: the container's own name.
pub fn name(env: &str, who: &Identity) -> String {
    super::container_name(env, who)
}

/// Creates the network when missing; an existing one must be torchenv's,
/// of this environment and user.
pub async fn ensure(docker: &Docker, env: &str, who: &Identity) -> Result<String> {
    let name = name(env, who);
    let wanted = HashMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (LABEL_ENV.to_string(), env.to_string()),
        (LABEL_OWNER.to_string(), who.user.clone()),
    ]);
    match docker.network_labels(&name).await? {
        None => {
            docker.create_network(&name, wanted).await?;
        }
        Some(labels) => {
            let ours = wanted.iter().all(|(k, v)| labels.get(k) == Some(v));
            if !ours {
                return Err(LaunchError::failed(format!(
                    "a Docker network named {name} exists but was not made by torchenv for `{env}` of {}; remove or rename it (`docker network rm {name}`)",
                    who.user
                )));
            }
        }
    }
    Ok(name)
}

/// Removes the environment's network (after its container); absent is fine.
pub async fn remove(docker: &Docker, env: &str, who: &Identity) -> Result<()> {
    let name = name(env, who);
    if let Some(labels) = docker.network_labels(&name).await? {
        if labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY) {
            docker.remove_network(&name).await?;
        }
    }
    Ok(())
}
