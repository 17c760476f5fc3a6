//! Networks: one bridge network per environment and user, so a container
//! reaches no other torchenv container (Docker isolates bridge networks
//! from each other and from the default bridge), while its published ports
//! work as on the default bridge.

use std::collections::HashMap;

use bollard::models::NetworkCreateRequest;

use super::{Docker, DockerError};

/// The bridge driver option that turns off traffic between containers of
/// one network (only torchenv's one container is on it; this keeps it so if
/// someone attaches another).
const ICC_OFF: (&str, &str) = ("com.docker.network.bridge.enable_icc", "false");

impl Docker {
    /// The labels of the network `name`, or `None` when there is none.
    pub async fn network_labels(
        &self,
        name: &str,
    ) -> Result<Option<HashMap<String, String>>, DockerError> {
        match self.api.inspect_network(name, None).await {
            Ok(n) => Ok(Some(n.labels.unwrap_or_default())),
            Err(e) => match self.fail("inspect network", name)(e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Creates the bridge network `name` with `labels` and inter-container
    /// traffic off. The caller checked it is absent (the engine allows two
    /// networks of one name).
    pub async fn create_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), DockerError> {
        self.api
            .create_network(NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                labels: Some(labels),
                options: Some(HashMap::from([(ICC_OFF.0.into(), ICC_OFF.1.into())])),
                ..Default::default()
            })
            .await
            .map_err(self.fail("create network", name))?;
        Ok(())
    }

    /// Removes the network `name`; absent is fine.
    pub async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        match self.api.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) => match self.fail("remove network", name)(e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }
}
