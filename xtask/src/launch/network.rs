//! The environment's own network: `up`'s container joins the bridge
//! network named like the container (`torchenv-<env>-<user>`), made by
//! torchenv and removed by `down`, so no other container — another user's
//! environment, a one-shot run, anything on the default bridge — reaches its
//! Jupyter or sshd by container IP. Published ports work as before. It
//! carries the owner's name and uid like the container ([`super::owner`]);
//! another user's network of that name is refused, never used or removed.
//!
//! May use: `docker`, `launch`, `launch::owner`.

use std::collections::HashMap;

use super::owner::{self, Kind};
use super::{Identity, LaunchError, Result};
use crate::docker::{Docker, LABEL_ENV, LABEL_MANAGED_BY, MANAGED_BY};

/// The network of `env` for `who`: the container's own name.
pub fn name(env: &str, who: &Identity) -> String {
    super::container_name(env, who)
}

/// Creates the network when missing; an existing one must be torchenv's,
/// of this environment and `who`'s ([`owner::check`]).
pub async fn ensure(docker: &Docker, env: &str, who: &Identity) -> Result<String> {
    let name = name(env, who);
    let mut wanted = HashMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (LABEL_ENV.to_string(), env.to_string()),
    ]);
    wanted.extend(owner::labels(who));
    match docker.network_labels(&name).await? {
        None => {
            docker.create_network(&name, wanted).await?;
        }
        Some(labels) => {
            owner::check(Kind::Network, &name, &labels, who)?;
            if labels.get(LABEL_ENV).map(String::as_str) != Some(env) {
                return Err(LaunchError::failed(format!(
                    "a Docker network named {name} exists but was not made by torchenv for `{env}`; remove or rename it (`docker network rm {name}`)"
                )));
            }
        }
    }
    Ok(name)
}

/// The environment's network when there is one, checked to be `who`'s
/// (another user's is [`LaunchError::NotYours`]); `down` removes it after
/// the container.
pub async fn owned(docker: &Docker, env: &str, who: &Identity) -> Result<Option<String>> {
    let name = name(env, who);
    match docker.network_labels(&name).await? {
        Some(labels) => {
            owner::check(Kind::Network, &name, &labels, who)?;
            Ok(Some(name))
        }
        None => Ok(None),
    }
}
