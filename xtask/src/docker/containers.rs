//! Containers, volumes, execs and the daemon's GPU capabilities: the engine
//! calls `cargo xtask up | down | status | shell | exec | logs | doctor` make.
//!
//! Every call here goes through [`Docker`] and fails with a [`DockerError`]
//! naming the container or volume.
//!
//! May use: `docker`.

use std::collections::HashMap;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, SystemInfo, Volume,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};
use futures_util::{Stream, StreamExt, TryStreamExt};

use super::engine::{cdi_devices, EngineKind, CDI_SPEC_DIRS};
use super::{Conflict, Docker, DockerError, LABEL_MANAGED_BY, MANAGED_BY};

/// What the daemon offers for GPUs, from `docker info`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuSupport {
    /// The `nvidia` runtime is registered (nvidia-container-toolkit).
    pub nvidia_runtime: bool,
    /// CDI spec directories the daemon reads (API >= 1.46 reports them).
    pub cdi_spec_dirs: Vec<String>,
    /// CDI devices the daemon discovered (API >= 1.49).
    pub cdi_devices: Vec<String>,
    /// Why the engine would drop any GPU request without an error (Podman
    /// before 5.4): then no request is made.
    pub dropped: Option<String>,
}

impl GpuSupport {
    pub fn from_info(info: &SystemInfo) -> GpuSupport {
        GpuSupport {
            nvidia_runtime: info
                .runtimes
                .as_ref()
                .is_some_and(|r| r.keys().any(|k| k.contains("nvidia"))),
            cdi_spec_dirs: info.cdi_spec_dirs.clone().unwrap_or_default(),
            cdi_devices: info
                .discovered_devices
                .iter()
                .flatten()
                .filter(|d| d.source.as_deref() == Some("cdi"))
                .filter_map(|d| d.id.clone())
                .collect(),
            dropped: None,
        }
    }

    /// True when a GPU request can be honoured at all.
    pub fn any(&self) -> bool {
        self.dropped.is_none() && (self.nvidia_runtime || !self.cdi_devices.is_empty())
    }
}

/// The outcome of a finished exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl Docker {
    /// `docker info`.
    pub async fn info(&self) -> Result<SystemInfo, DockerError> {
        self.api.info().await.map_err(self.fail("info", &self.host))
    }

    /// What the engine offers for GPUs ([`Docker::gpu_support_from`] its
    /// `info`).
    pub async fn gpu_support(&self) -> Result<GpuSupport, DockerError> {
        Ok(self.gpu_support_from(&self.info().await?))
    }

    /// What the engine that answered `info` offers for GPUs. Docker: its
    /// runtimes and CDI devices. Podman: CDI only, the devices from this
    /// machine's CDI spec directories when the engine is local (Podman's
    /// `info` lists neither), and none it would honour when its API drops
    /// device requests ([`GpuSupport::dropped`]).
    pub fn gpu_support_from(&self, info: &SystemInfo) -> GpuSupport {
        match self.engine.kind {
            EngineKind::Docker => GpuSupport::from_info(info),
            EngineKind::Podman => {
                let local = self.host.starts_with("unix://");
                GpuSupport {
                    nvidia_runtime: false,
                    cdi_spec_dirs: CDI_SPEC_DIRS.iter().map(|d| d.to_string()).collect(),
                    cdi_devices: if local {
                        cdi_devices(CDI_SPEC_DIRS)
                    } else {
                        vec![]
                    },
                    dropped: self.engine.gpu_requests_dropped(),
                }
            }
        }
    }

    /// The container called `name`, or `None` when there is none.
    pub async fn inspect_container(
        &self,
        name: &str,
    ) -> Result<Option<ContainerInspectResponse>, DockerError> {
        match self.api.inspect_container(name, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) => match self.fail("inspect container", name)(e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Creates the container `name` from `body`, fitted to the engine
    /// ([`super::engine::Engine::adapt_create`]); returns its id. A taken
    /// name is [`DockerError::Conflict`], refused GPUs
    /// [`DockerError::GpuRefused`].
    pub async fn create_container(
        &self,
        name: &str,
        mut body: ContainerCreateBody,
    ) -> Result<String, DockerError> {
        self.engine.adapt_create(&mut body);
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        Ok(self
            .api
            .create_container(Some(options), body)
            .await
            .map_err(self.fail("create container", name))?
            .id)
    }

    /// Starts the container. Already running is
    /// [`DockerError::NotModified`]; a taken port, refused GPUs or a refused
    /// ulimit have their own variants.
    pub async fn start_container(&self, name: &str) -> Result<(), DockerError> {
        self.api
            .start_container(name, None)
            .await
            .map_err(self.fail("start container", name))
    }

    /// Removes the container (running or not) and its anonymous volumes.
    /// Missing is fine.
    pub async fn remove_container(&self, name: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let Err(e) = self.api.remove_container(name, Some(options)).await else {
            return Ok(());
        };
        match self.fail("remove container", name)(e) {
            DockerError::NotFound { .. }
            // A concurrent `down` is removing it already.
            | DockerError::Conflict {
                reason: Conflict::BeingRemoved,
                ..
            } => Ok(()),
            e => Err(e),
        }
    }

    /// Every container (running or not) carrying torchenv's managed-by label
    /// and, when given, every `labels` pair.
    pub async fn list_managed_containers(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerSummary>, DockerError> {
        let mut filter = vec![format!("{LABEL_MANAGED_BY}={MANAGED_BY}")];
        filter.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
        let filters = HashMap::from([("label", filter)]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.api
            .list_containers(Some(options))
            .await
            .map_err(self.fail("list containers", "managed by torchenv"))
    }

    /// The last `tail` log lines (stdout and stderr), or all with `None`.
    pub async fn container_logs_tail(
        &self,
        name: &str,
        tail: Option<usize>,
    ) -> Result<String, DockerError> {
        let tail = tail.map_or("all".to_string(), |n| n.to_string());
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&tail)
            .build();
        let chunks: Vec<LogOutput> = self
            .api
            .logs(name, Some(options))
            .try_collect()
            .await
            .map_err(self.fail("logs", name))?;
        Ok(chunks
            .iter()
            .map(|c| String::from_utf8_lossy(&c.clone().into_bytes()).into_owned())
            .collect())
    }

    /// The log stream of the container; `follow` keeps it open.
    pub fn container_logs(
        &self,
        name: &str,
        follow: bool,
        tail: &str,
    ) -> impl Stream<Item = Result<LogOutput, BollardError>> + use<> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(follow)
            .tail(tail)
            .build();
        self.api.logs(name, Some(options))
    }

    /// Runs `cmd` in the container as `user`, collects its output and exit
    /// code.
    pub async fn exec_output(
        &self,
        name: &str,
        user: &str,
        cmd: &[&str],
    ) -> Result<ExecOutput, DockerError> {
        let exec = self
            .api
            .create_exec(
                name,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    user: Some(user),
                    cmd: Some(cmd.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(self.fail("exec create", name))?;
        let mut out = ExecOutput {
            exit_code: -1,
            stdout: String::new(),
            stderr: String::new(),
        };
        if let StartExecResults::Attached { mut output, .. } = self
            .api
            .start_exec(&exec.id, None)
            .await
            .map_err(self.fail("exec start", name))?
        {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(self.fail("exec", name))? {
                    LogOutput::StdErr { message } => {
                        out.stderr.push_str(&String::from_utf8_lossy(&message))
                    }
                    other => out
                        .stdout
                        .push_str(&String::from_utf8_lossy(&other.into_bytes())),
                }
            }
        }
        out.exit_code = self.exec_exit_code(name, &exec.id).await?;
        Ok(out)
    }

    /// Creates an exec for an interactive or streamed session; returns its id.
    pub async fn exec_create(
        &self,
        name: &str,
        options: CreateExecOptions<String>,
    ) -> Result<String, DockerError> {
        Ok(self
            .api
            .create_exec(name, options)
            .await
            .map_err(self.fail("exec create", name))?
            .id)
    }

    /// Starts (attaches to) an exec created with [`Docker::exec_create`].
    pub async fn exec_start(
        &self,
        name: &str,
        id: &str,
        tty: bool,
    ) -> Result<StartExecResults, DockerError> {
        self.api
            .start_exec(
                id,
                Some(StartExecOptions {
                    detach: false,
                    tty,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(self.fail("exec start", name))
    }

    pub async fn exec_resize(
        &self,
        name: &str,
        id: &str,
        width: u16,
        height: u16,
    ) -> Result<(), DockerError> {
        self.api
            .resize_exec(id, bollard::exec::ResizeExecOptions { height, width })
            .await
            .map_err(self.fail("exec resize", name))
    }

    /// The exit code of a finished exec.
    pub async fn exec_exit_code(&self, name: &str, id: &str) -> Result<i64, DockerError> {
        // The exit code is set a moment after the stream ends.
        for _ in 0..50 {
            let info = self
                .api
                .inspect_exec(id)
                .await
                .map_err(self.fail("exec inspect", name))?;
            if info.running != Some(true) {
                if let Some(code) = info.exit_code {
                    return Ok(code);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(-1)
    }

    /// The named volume, or `None`.
    pub async fn inspect_volume(&self, name: &str) -> Result<Option<Volume>, DockerError> {
        match self.api.inspect_volume(name).await {
            Ok(v) => Ok(Some(v)),
            Err(e) => match self.fail("inspect volume", name)(e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Creates the named volume with `labels` (creating an existing one is a
    /// no-op in the engine).
    pub async fn create_volume(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<Volume, DockerError> {
        self.api
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_string()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(self.fail("create volume", name))
    }

    /// Named volumes carrying torchenv's managed-by label and `labels`.
    pub async fn list_managed_volumes(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<Volume>, DockerError> {
        let mut filter = vec![format!("{LABEL_MANAGED_BY}={MANAGED_BY}")];
        filter.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
        let filters = HashMap::from([("label", filter)]);
        let options = ListVolumesOptionsBuilder::default()
            .filters(&filters)
            .build();
        Ok(self
            .api
            .list_volumes(Some(options))
            .await
            .map_err(self.fail("list volumes", "managed by torchenv"))?
            .volumes
            .unwrap_or_default())
    }

    pub async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        let options = RemoveVolumeOptionsBuilder::default().force(false).build();
        match self.api.remove_volume(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => match self.fail("remove volume", name)(e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Size in bytes of a local image, or `None` when it does not exist.
    pub async fn image_size(&self, reference: &str) -> Result<Option<i64>, DockerError> {
        match self.api.inspect_image(reference).await {
            Ok(i) => Ok(i.size),
            Err(e) => match self.fail("inspect image", reference)(e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// The id (`sha256:…`) of a local image, or `None` when it does not exist.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>, DockerError> {
        match self.api.inspect_image(reference).await {
            Ok(i) => Ok(i.id),
            Err(e) => match self.fail("inspect image", reference)(e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// The newest local image labelled `dev.torchenv.env=<env>`.
    pub async fn newest_env_image(&self, env: &str) -> Result<Option<String>, DockerError> {
        Ok(self.env_images(env).await?.into_iter().next())
    }

    /// The local images labelled `dev.torchenv.env=<env>`, newest first
    /// (by the time they were last tagged), each by a tag (its id when it
    /// has none).
    pub async fn env_images(&self, env: &str) -> Result<Vec<String>, DockerError> {
        let filters = HashMap::from([("label", vec![format!("{}={env}", super::LABEL_ENV)])]);
        let options = bollard::query_parameters::ListImagesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let images = self
            .api
            .list_images(Some(options))
            .await
            .map_err(self.fail("list images", env))?;
        // Creation times are the lock's fixed epoch: newest = last tagged.
        let mut tagged = Vec::with_capacity(images.len());
        for i in images {
            tagged.push((self.last_tagged(&i.id).await?, i));
        }
        tagged.sort_by_key(|(t, _)| std::cmp::Reverse(super::images::time_key(t)));
        Ok(tagged
            .into_iter()
            .map(|(_, i)| {
                i.repo_tags
                    .into_iter()
                    .find(|t| t != "<none>:<none>")
                    .map(|t| self.engine.local_tag(&t))
                    .unwrap_or(i.id)
            })
            .collect())
    }

    /// The engine's data root (for the free-disk check).
    pub async fn data_root(&self) -> Result<Option<String>, DockerError> {
        Ok(self.info().await?.docker_root_dir)
    }
}
