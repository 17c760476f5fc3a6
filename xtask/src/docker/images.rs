//! Image calls: inspect, load, save, commit, tag, list and remove.
//!
//! Every stream is drained to its end, and an `error_detail` inside a build
//! or load stream is an error (bollard turns it into `DockerStreamError`).
//!
//! May use: `docker`.

use std::collections::HashMap;

use bollard::models::{ChangeType, ContainerConfig, ImageInspect};
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, ImportImageOptionsBuilder, ListContainersOptionsBuilder,
    ListImagesOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::{Docker, DockerError, LABEL_MANAGED_BY, MANAGED_BY};

/// How long a `docker load` may take before torchenv gives up on it.
pub const LOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// One image carrying the managed-by label.
#[derive(Debug, Clone)]
pub struct ManagedImage {
    pub id: String,
    pub tags: Vec<String>,
    pub size: u64,
    pub labels: HashMap<String, String>,
    /// When the engine last tagged it (RFC 3339).
    pub last_tagged: String,
}

impl Docker {
    /// The image called `reference`, or `None` when the engine has none.
    pub async fn image_inspect(
        &self,
        reference: &str,
    ) -> Result<Option<ImageInspect>, DockerError> {
        match self.api.inspect_image(reference).await {
            Ok(i) => Ok(Some(i)),
            Err(e) => {
                let e = self.fail("image inspect", reference)(e);
                if e.is_not_found() {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// `docker load` of an image archive (manifest.json + config + layers),
    /// streamed; `tag` (`repo:tag`) is the tag its manifest carries.
    ///
    /// The engine's load records no tag time (`Metadata.LastTagTime` stays
    /// at year 1), and torchenv's images all carry the lock's fixed creation
    /// time, so the tag is set once more through the tag call, which does
    /// record it: `prune` and `newest_env_image` tell the newest image of an
    /// environment by it.
    pub async fn image_load<S>(&self, tag: &str, archive: S) -> Result<(), DockerError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let options = ImportImageOptionsBuilder::new().quiet(true).build();
        // The engine answers only once it has read and stored the whole
        // archive: minutes for a multi-gigabyte layer, not the default
        // two-minute request timeout.
        let api = self.api.clone().with_timeout(LOAD_TIMEOUT);
        let mut stream = api.import_image_stream(options, archive, None);
        while let Some(item) = stream.next().await {
            item.map_err(self.fail("image load", tag))?;
        }
        let (repo, name) = split_tag(tag);
        self.image_tag(tag, repo, name).await
    }

    /// The image as `docker save` writes it (a tar archive), handed to
    /// `sink` chunk by chunk; the bytes written, or the sink's first error
    /// (which stops the save).
    pub async fn image_save<E>(
        &self,
        reference: &str,
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<Result<u64, E>, DockerError> {
        let api = self.api.clone().with_timeout(LOAD_TIMEOUT);
        let mut stream = api.export_image(reference);
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(self.fail("image save", reference))?;
            if let Err(e) = sink(&chunk) {
                return Ok(Err(e));
            }
            written += chunk.len() as u64;
        }
        Ok(Ok(written))
    }

    /// Paths the container `name` added, changed or deleted, as `docker
    /// diff` lists them (`A /opt/x`, `C /etc`, `D /tmp/y`), sorted.
    pub async fn container_changes(&self, name: &str) -> Result<Vec<String>, DockerError> {
        let changes = self
            .api
            .container_changes(name)
            .await
            .map_err(self.fail("container diff", name))?
            .unwrap_or_default();
        let mut out: Vec<String> = changes
            .into_iter()
            .map(|c| {
                let kind = match c.kind {
                    ChangeType::_0 => 'C',
                    ChangeType::_1 => 'A',
                    ChangeType::_2 => 'D',
                };
                format!("{kind} {}", c.path)
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Commits the (stopped) container `name`'s changes as a new layer,
    /// tagged `repo:tag` by the engine once the layer is stored. `config`
    /// replaces the image config: the engine fills only what it leaves
    /// empty from the container's. Returns the image id.
    pub async fn commit_container(
        &self,
        name: &str,
        repo: &str,
        tag: &str,
        config: ContainerConfig,
    ) -> Result<String, DockerError> {
        let options = CommitContainerOptionsBuilder::new()
            .container(name)
            .repo(repo)
            .tag(tag)
            .pause(false)
            .build();
        Ok(self
            .api
            .commit_container(options, config)
            .await
            .map_err(self.fail("commit", format!("{name} as {repo}:{tag}")))?
            .id)
    }

    /// Points `repo:tag` at `source` (an id or reference).
    pub async fn image_tag(&self, source: &str, repo: &str, tag: &str) -> Result<(), DockerError> {
        let options = TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
        self.api
            .tag_image(source, Some(options))
            .await
            .map_err(self.fail("image tag", format!("{source} as {repo}:{tag}")))
    }

    /// Removes one tag (or an untagged image by id); never forces, so an
    /// image a container uses stays.
    pub async fn image_remove(&self, reference: &str) -> Result<(), DockerError> {
        let options = RemoveImageOptionsBuilder::new()
            .force(false)
            .noprune(false)
            .build();
        self.api
            .remove_image(reference, Some(options), None)
            .await
            .map(|_| ())
            .map_err(self.fail("image remove", reference))
    }

    /// Every image with `dev.torchenv.managed-by=torchenv`.
    pub async fn images_managed(&self) -> Result<Vec<ManagedImage>, DockerError> {
        let filters: HashMap<&str, Vec<String>> =
            HashMap::from([("label", vec![format!("{LABEL_MANAGED_BY}={MANAGED_BY}")])]);
        let options = ListImagesOptionsBuilder::new().filters(&filters).build();
        let list = self
            .api
            .list_images(Some(options))
            .await
            .map_err(self.fail("image list", "label=managed-by"))?;
        let mut out = Vec::with_capacity(list.len());
        for i in list {
            out.push(ManagedImage {
                last_tagged: self.last_tagged(&i.id).await?,
                id: i.id,
                tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .map(|t| self.engine.local_tag(&t))
                    .collect(),
                size: i.size.max(0) as u64,
                labels: i.labels,
            });
        }
        // Newest first. Creation times cannot tell: torchenv's images carry
        // the lock's fixed `SOURCE_DATE_EPOCH`, so they sort by when they
        // were tagged here.
        out.sort_by_key(|i| std::cmp::Reverse(time_key(&i.last_tagged)));
        Ok(out)
    }

    /// When the engine last tagged the image (RFC 3339, "" if never).
    pub async fn last_tagged(&self, reference: &str) -> Result<String, DockerError> {
        Ok(self
            .image_inspect(reference)
            .await?
            .and_then(|i| i.metadata)
            .and_then(|m| m.last_tag_time)
            .unwrap_or_default())
    }

    /// Names of the containers (running or not) created from `image_id`
    /// or one of its descendants.
    pub async fn containers_using(&self, image_id: &str) -> Result<Vec<String>, DockerError> {
        let filters: HashMap<&str, Vec<String>> =
            HashMap::from([("ancestor", vec![image_id.to_string()])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .api
            .list_containers(Some(options))
            .await
            .map_err(self.fail("container list", image_id))?;
        Ok(list
            .into_iter()
            .map(|c| {
                c.names
                    .and_then(|n| n.first().cloned())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .or(c.id)
                    .unwrap_or_default()
            })
            .collect())
    }
}

/// `repo:tag` split at the tag's colon (a registry's `host:port/` before
/// the repository stays in the repository); `latest` when there is none.
pub fn split_tag(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

/// An engine timestamp (`2026-12-02T06:40:12.1234Z`, UTC, the fraction's
/// trailing zeros dropped) as a key that sorts in time order.
pub fn time_key(rfc3339: &str) -> (String, u32) {
    let (whole, rest) = rfc3339
        .split_once('.')
        .unwrap_or((rfc3339.trim_end_matches('Z'), ""));
    let digits: String = rest
        .chars()
        .take_while(char::is_ascii_digit)
        .take(9)
        .collect();
    let nanos = format!("{digits:0<9}").parse().unwrap_or(0);
    (whole.to_string(), nanos)
}

/// Size of the chunks a streamed tar is sent in.
const CHUNK: usize = 1 << 20;

/// A tar archive written by `build` on a blocking thread and streamed to the
/// engine chunk by chunk, so multi-gigabyte contexts never sit in memory.
/// A write error (or `build` failing) ends the stream with that error.
pub fn tar_stream<F>(build: F) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static
where
    F: FnOnce(&mut tar::Builder<ChunkWriter>) -> std::io::Result<()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let mut builder = tar::Builder::new(ChunkWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        });
        builder.mode(tar::HeaderMode::Deterministic);
        let result = build(&mut builder)
            .and_then(|()| builder.into_inner())
            .and_then(|mut w| w.send());
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}

/// The `Write` end of [`tar_stream`].
pub struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the Docker engine stopped reading the archive",
            )
        })
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{split_tag, time_key};

    #[test]
    fn tags_split_at_the_tag_colon_only() {
        assert_eq!(
            split_tag("torchenv/venv:9eeb8d85"),
            ("torchenv/venv", "9eeb8d85")
        );
        assert_eq!(
            split_tag("host:5000/team/env:v1"),
            ("host:5000/team/env", "v1")
        );
        assert_eq!(
            split_tag("host:5000/team/env"),
            ("host:5000/team/env", "latest")
        );
        assert_eq!(split_tag("torchenv/env"), ("torchenv/env", "latest"));
    }

    #[test]
    fn engine_times_sort_in_time_order() {
        let mut times = vec![
            "2026-12-02T06:40:12.12345678Z",
            "2026-12-02T06:40:12.1234Z",
            "2026-12-02T06:40:13Z",
            "2026-12-01T23:59:59.9Z",
        ];
        times.sort_by_key(|t| time_key(t));
        assert_eq!(
            times,
            [
                "2026-12-01T23:59:59.9Z",
                "2026-12-02T06:40:12.1234Z",
                "2026-12-02T06:40:12.12345678Z",
                "2026-12-02T06:40:13Z",
            ]
        );
    }
}
