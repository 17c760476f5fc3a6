//! Registry calls: push and pull, with the user's credentials, each
//! progress message handed to the caller (per layer on a pull).
//!
//! May use: `docker`.

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{CreateImageOptionsBuilder, PushImageOptionsBuilder};
use futures_util::StreamExt;

use super::images::{split_tag, LOAD_TIMEOUT};
use super::{Docker, DockerError};

/// One progress message of a push or pull.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    /// The layer it concerns (empty for the image as a whole).
    pub layer: String,
    /// `Downloading`, `Pull complete`, `Already exists`, `Pushed`, …
    pub status: String,
    pub current: Option<u64>,
    pub total: Option<u64>,
}

impl Docker {
    /// Pushes `reference` (`host/repo:tag`) to its registry.
    pub async fn image_push(
        &self,
        reference: &str,
        credentials: Option<DockerCredentials>,
        mut on: impl FnMut(Step),
    ) -> Result<(), DockerError> {
        let (repo, tag) = split_tag(reference);
        let options = PushImageOptionsBuilder::new().tag(tag).build();
        let api = self.api.clone().with_timeout(LOAD_TIMEOUT);
        let mut stream = api.push_image(repo, Some(options), credentials);
        while let Some(item) = stream.next().await {
            let info = item.map_err(self.fail("image push", reference))?;
            let detail = info.progress_detail.unwrap_or_default();
            on(Step {
                layer: String::new(),
                status: info.status.unwrap_or_default(),
                current: detail.current.and_then(|c| u64::try_from(c).ok()),
                total: detail.total.and_then(|t| u64::try_from(t).ok()),
            });
        }
        Ok(())
    }

    /// Pulls `reference` (`host/repo:tag`) from its registry.
    pub async fn image_pull(
        &self,
        reference: &str,
        credentials: Option<DockerCredentials>,
        mut on: impl FnMut(Step),
    ) -> Result<(), DockerError> {
        let (repo, tag) = split_tag(reference);
        let options = CreateImageOptionsBuilder::new()
            .from_image(repo)
            .tag(tag)
            .build();
        let api = self.api.clone().with_timeout(LOAD_TIMEOUT);
        let mut stream = api.create_image(Some(options), None, credentials);
        while let Some(item) = stream.next().await {
            let info = item.map_err(self.fail("image pull", reference))?;
            let detail = info.progress_detail.unwrap_or_default();
            on(Step {
                layer: info.id.unwrap_or_default(),
                status: info.status.unwrap_or_default(),
                current: detail.current.and_then(|c| u64::try_from(c).ok()),
                total: detail.total.and_then(|t| u64::try_from(t).ok()),
            });
        }
        Ok(())
    }
}
