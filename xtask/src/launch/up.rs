//! `cargo xtask up [ENV]`: build if needed, create and start the container,
//! wait until it is ready, print how to connect.
//!
//! Idempotent: the same spec already running is reported and left alone; a
//! changed spec (the spec-hash label differs) recreates the container,
//! keeping volumes and the workspace, and so does a container of an older
//! torchenv without the owner-uid label. A container under the user's name
//! that is another user's ([`super::owner`]) is never started, adopted,
//! recreated or removed: `up` refuses it. Two concurrent `up`s of one
//! environment leave one container: on one host they take turns (a lock in
//! the environment's state dir); across hosts sharing an engine, the loser
//! of the name race (409) adopts the winner's container.
//!
//! Everything that can refuse the launch (volume sources, GPUs, ports) is
//! checked before anything is created; when the engine still refuses the
//! start, the container just created is removed. A container that starts
//! but is not ready in time is left for inspection (exit 7). Engine
//! refusals arrive as typed `DockerError` variants (conflict, not
//! modified, port taken, GPUs or a ulimit refused); nothing here reads
//! status codes or engine messages.
//!
//! May use: `build`, `docker`, `launch`, `launch::jupyter`, `launch::mounts`, `launch::owner`, `launch::plan`, `launch::ports`, `launch::ready`, `launch::ssh`, `lock`, `progress`, `spec`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::ContainerInspectResponse;

use super::owner::{self, Kind, LABEL_OWNER_UID};
use super::plan::{ContainerPlan, Resources, Service};
use super::ports::{self, ContainerPort, Published, Purpose};
use super::ready::{self, WaitFor};
use super::Result;
use super::{jupyter, mounts, note, ssh, EnvLock, Identity, LaunchError, LABEL_SPEC_HASH};
use crate::docker::{Conflict, Docker, DockerError, LABEL_MANAGED_BY, MANAGED_BY};
use crate::lock::Lock;
use crate::progress::Progress;
use crate::spec::{Env, Spec};

/// Default time `up` waits for readiness.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Start an environment (building its image if needed) and wait until
/// Jupyter and SSH answer; prints how to connect. Idempotent. The container
/// is hardened (no-new-privileges, few capabilities, its own network) and
/// only yours; without an SSH key, torchenv makes its own once
/// (`~/.local/state/torchenv/id_ed25519`).
#[derive(Debug, Clone, clap::Args)]
pub struct Up {
    /// Environment name (default: the spec's `default:`).
    pub env: Option<String>,
    /// Replace taken host ports by free ones (and report them).
    #[arg(long)]
    pub auto_ports: bool,
    /// Seconds to wait for readiness before giving up (exit 7).
    #[arg(long = "timeout", default_value = "120", value_parser = seconds)]
    pub timeout: Duration,
    /// Start this image instead of the environment's own.
    #[arg(long, env = "TORCHENV_IMAGE")]
    pub image: Option<String>,
}

/// `--timeout SECONDS`.
fn seconds(s: &str) -> std::result::Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|e| format!("`{s}` is not a number of seconds: {e}"))
}

/// A ready environment: where to connect.
#[derive(Debug, Clone)]
pub struct Ready {
    pub env: String,
    pub container: String,
    pub ports: Vec<Published>,
    pub token: Option<String>,
    pub identity: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// The host printed in `ssh` commands ([`Env::display_host`]).
    pub ssh_host: String,
    /// The host printed in URLs ([`Env::url_host`]: IPv6 in brackets).
    pub url_host: String,
    /// How long readiness took after the container was started/found.
    pub waited: Duration,
    /// What `up` did: "created", "recreated", "started", "already running", "adopted".
    pub action: &'static str,
}

impl Ready {
    pub fn port(&self, purpose: Purpose) -> Option<&Published> {
        self.ports.iter().find(|p| p.purpose == purpose)
    }

    pub fn jupyter_url(&self) -> Option<String> {
        let p = self.port(Purpose::Jupyter)?;
        Some(format!(
            "http://{}:{}/lab?token={}",
            self.url_host,
            p.host_port,
            self.token.as_deref().unwrap_or("")
        ))
    }

    /// Human-readable connection details.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} is ready ({}, container {}, {:.1} s)\n",
            self.env,
            self.action,
            self.container,
            self.waited.as_secs_f64()
        );
        if let Some(url) = self.jupyter_url() {
            s.push_str(&format!("  Jupyter: {url}\n"));
        }
        if let Some(p) = self.port(Purpose::Ssh) {
            let known = self.state_dir.join(ssh::KNOWN_HOSTS);
            let host = self.ssh_host.clone();
            s.push_str(&format!(
                "  SSH:     {}\n  ~/.ssh/config:\n",
                ssh::command_line(&host, p.host_port, self.identity.as_deref(), &known)
            ));
            let block = ssh::config_block(
                &format!("torchenv-{}", self.env),
                &host,
                p.host_port,
                self.identity.as_deref(),
                &known,
            );
            for line in block.lines() {
                s.push_str(&format!("    {line}\n"));
            }
        }
        for p in self.ports.iter().filter(|p| p.purpose == Purpose::Extra) {
            s.push_str(&format!(
                "  Port:    {}:{} -> {}\n",
                self.url_host,
                p.host_port,
                p.container.key()
            ));
        }
        s
    }
}

/// What `up` resolved before creating anything.
struct Prepared {
    env: Env,
    name: String,
    /// The container found under `name` (checked to be torchenv's).
    existing: Option<ContainerInspectResponse>,
    resources: Resources,
    image: String,
    service: Service,
    identity: Option<PathBuf>,
    token: Option<String>,
    state_dir: PathBuf,
}

impl Prepared {
    fn ready(&self, ports: Vec<Published>, action: &'static str) -> Ready {
        Ready {
            env: self.env.name.clone(),
            container: self.name.clone(),
            ports,
            token: self.token.clone(),
            identity: self.identity.clone(),
            state_dir: self.state_dir.clone(),
            ssh_host: self.env.display_host(),
            url_host: self.env.url_host(),
            waited: Duration::ZERO,
            action,
        }
    }
}

impl Up {
    /// Brings the environment up and waits until it is ready. Concurrent
    /// `up`s of one environment on this host take turns ([`EnvLock`]); a
    /// lost race with one on another host (its container vanished or is
    /// being removed under us) is retried from the start.
    pub async fn up(&self, docker: &Docker, spec: &Spec, lock: &Path) -> Result<Ready> {
        let env = &spec.env(self.env.as_deref())?.name;
        let _turn = EnvLock::acquire(env).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.up_once(docker, spec, lock).await {
                Err(e) if attempt < 4 && lost_race(&e) => {
                    note("the container changed under us (a concurrent `up`?); retrying");
                }
                other => return other,
            }
        }
    }

    async fn up_once(&self, docker: &Docker, spec: &Spec, lock: &Path) -> Result<Ready> {
        let mut p = self.prepare(docker, spec, lock).await?;
        let mut action = "created";
        if let Some(c) = p.existing.take() {
            let same_spec = label(&c, LABEL_SPEC_HASH) == Some(p.service.hash.as_str());
            if same_spec && label(&c, LABEL_OWNER_UID).is_some() {
                return self.resume(docker, &p, &c).await;
            }
            if same_spec {
                note(format!(
                    "{} was made by an older torchenv (no {LABEL_OWNER_UID} label): recreating it; the workspace is kept, named volumes are now per user (`torchenv-<uid>-<name>`)",
                    p.name
                ));
            } else {
                note(format!(
                    "the spec of `{}` changed (spec hash {} → {}): recreating {}; volumes and the workspace are kept",
                    p.env.name,
                    label(&c, LABEL_SPEC_HASH).unwrap_or("none"),
                    p.service.hash,
                    p.name,
                ));
            }
            docker.remove_container(&p.name).await?;
            action = "recreated";
        }
        if let Some(r) = self.claim_ports(docker, &mut p).await? {
            return self.wait(docker, r).await;
        }
        mounts::ensure_workspace(&p.env, &p.service.who)?;
        mounts::ensure_volumes(docker, &p.env, &p.service.who).await?;
        super::network::ensure(docker, &p.env.name, &p.service.who).await?;
        let plan = ContainerPlan::service(
            p.name.clone(),
            p.image.clone(),
            p.env.clone(),
            &p.resources,
            p.service.clone(),
        );
        if let Some(r) = self.create_and_start(docker, plan, &p).await? {
            return self.wait(docker, r).await;
        }
        let c = docker.inspect_container(&p.name).await?;
        let ports = c
            .as_ref()
            .map(published_of)
            .unwrap_or(p.service.ports.clone());
        self.wait(docker, p.ready(ports, action)).await
    }

    /// Everything that can refuse the launch (volume sources, GPUs, the SSH
    /// key, taken ports), checked before anything is created; then the
    /// image, the state dir and the token.
    async fn prepare(&self, docker: &Docker, spec: &Spec, lock: &Path) -> Result<Prepared> {
        let env = spec.env(self.env.as_deref())?.clone();
        let who = Identity::current()?;
        note_unmapped_ids(&who);
        let name = super::container_name(&env.name, &who);
        let existing = docker.inspect_container(&name).await?;
        if let Some(c) = &existing {
            ensure_owned(&name, c, &who)?;
        }
        mounts::check_sources(&env)?;
        let resources = Resources::resolve(docker, &env).await?;
        if let Some(n) = &resources.gpu.notice {
            note(n);
        }
        let key = match &env.ssh {
            Some(s) => Some(ssh::key_for_up(s, &super::state_root())?),
            None => None,
        };
        // Taken ports fail fast, before a possibly long image build (unless
        // our own container, or a concurrent `up`'s, holds them).
        if existing.is_none() && !self.auto_ports {
            if let Err(e) = ports::check_free(&ports::published(&env, key.is_some())) {
                if docker.inspect_container(&name).await?.is_none() {
                    return Err(e);
                }
            }
        }
        let image = image_for(docker, spec, lock, &env, self.image.as_deref()).await?;
        let image_id = docker
            .image_id(&image)
            .await?
            .unwrap_or_else(|| image.clone());
        let state_dir = super::ensure_state_dir(&env.name)?;
        let token = match &env.jupyter {
            Some(j) => Some(jupyter::ensure_token(&state_dir, j.token.as_deref())?),
            None => None,
        };
        let ssh_pubkey = key.as_ref().map(|k| k.public.clone());
        let keys_file =
            match &ssh_pubkey {
                Some(k) => Some(ssh::write_authorized_keys(&state_dir, k).map_err(
                    LaunchError::io(format!("write the SSH key file in {}", state_dir.display())),
                )?),
                None => None,
            };
        let network = super::network::name(&env.name, &who);
        let hash = ContainerPlan::spec_hash(
            &env,
            &image_id,
            &who,
            ssh_pubkey.as_deref(),
            &resources.gpu.requests,
        );
        Ok(Prepared {
            service: Service {
                ports: ports::published(&env, key.is_some()),
                who,
                ssh_pubkey,
                keys_file,
                network,
                token_file: token.as_ref().map(|(p, _)| p.clone()),
                hash,
            },
            identity: key.and_then(|k| k.identity),
            token: token.map(|(_, t)| t),
            name,
            env,
            existing,
            resources,
            image,
            state_dir,
        })
    }

    /// The same spec is there already: start it when stopped, then wait.
    async fn resume(
        &self,
        docker: &Docker,
        p: &Prepared,
        c: &ContainerInspectResponse,
    ) -> Result<Ready> {
        let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let action = if running {
            "already running"
        } else {
            "started"
        };
        let r = p.ready(published_of(c), action);
        if !running {
            note(format!("starting stopped container {}", p.name));
            self.start(docker, p, &r.ports, false).await?;
        }
        self.wait(docker, r).await
    }

    /// Ports: free, or replaced by free ones with --auto-ports. When they
    /// are taken by a concurrent `up` of the same environment, its
    /// container is adopted.
    async fn claim_ports(&self, docker: &Docker, p: &mut Prepared) -> Result<Option<Ready>> {
        if self.auto_ports {
            let changed = ports::auto_assign(&mut p.service.ports)
                .map_err(LaunchError::io("pick free ports"))?;
            for (purpose, from, to) in changed {
                note(format!("{purpose}: host port {from} is taken; using {to}"));
            }
            return Ok(None);
        }
        if let Err(e) = ports::check_free(&p.service.ports) {
            return match self.adopt(docker, p).await? {
                Some(r) => Ok(Some(r)),
                None => Err(e),
            };
        }
        Ok(None)
    }

    /// Creates and starts the container; `Some` when a concurrent `up` won
    /// the name race and its container was adopted instead. A ulimit the
    /// engine refuses is dropped (and remembered) and the container made
    /// again.
    async fn create_and_start(
        &self,
        docker: &Docker,
        mut plan: ContainerPlan,
        p: &Prepared,
    ) -> Result<Option<Ready>> {
        let mut conflicts = 0;
        loop {
            match docker.create_container(&plan.name, plan.body()).await {
                Ok(_) => {}
                Err(DockerError::Conflict { .. }) => {
                    // Another `up` of this environment won the name race.
                    if let Some(r) = self.adopt(docker, p).await? {
                        return Ok(Some(r));
                    }
                    conflicts += 1;
                    self.lost_name_race(docker, p, conflicts).await?;
                    continue;
                }
                Err(e) => return Err(refused(&p.env, &docker.host, e, plan.ports())),
            }
            let e = match docker.start_container(&plan.name).await {
                Ok(()) | Err(DockerError::NotModified { .. }) => return Ok(None),
                Err(e) => e,
            };
            if let DockerError::UlimitRefused { name: limit, .. } = e {
                if plan.drop_refused_ulimit(limit, &p.resources.engine_id) {
                    note(format!(
                        "the engine at {} may not raise the {limit} ulimit (no CAP_SYS_RESOURCE?); starting with its default",
                        docker.host
                    ));
                    docker.remove_container(&plan.name).await?;
                    continue;
                }
            }
            return Err(self.start_error(docker, p, plan.ports(), true, e).await);
        }
    }

    /// After a lost name race whose winner could not be adopted: fails when
    /// the container is someone else's, from another spec, or keeps
    /// changing; else waits a moment (it vanished: the other `up` retries).
    async fn lost_name_race(&self, docker: &Docker, p: &Prepared, conflicts: u32) -> Result<()> {
        let name = &p.name;
        if let Some(c) = docker.inspect_container(name).await? {
            ensure_owned(name, &c, &p.service.who)?;
            if label(&c, LABEL_SPEC_HASH) != Some(p.service.hash.as_str()) {
                return Err(LaunchError::failed(format!(
                    "container {name} was created concurrently from a different spec; run `cargo xtask up` again"
                )));
            }
        }
        if conflicts > 5 {
            return Err(LaunchError::failed(format!(
                "container {name} keeps changing under us; run `cargo xtask up` again"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    }

    /// Starts an existing container (already running is fine).
    async fn start(
        &self,
        docker: &Docker,
        p: &Prepared,
        ports: &[Published],
        created: bool,
    ) -> Result<()> {
        match docker.start_container(&p.name).await {
            Ok(()) | Err(DockerError::NotModified { .. }) => Ok(()),
            // A container made by a concurrent `up` before it learnt the
            // engine refuses a ulimit: remove it and retry the `up`.
            Err(DockerError::UlimitRefused { name: limit, .. }) => {
                super::plan::remember_refused(&p.resources.engine_id, limit);
                docker.remove_container(&p.name).await?;
                Err(LaunchError::Raced {
                    container: p.name.clone(),
                })
            }
            Err(e) => Err(self.start_error(docker, p, ports, created, e).await),
        }
    }

    /// A refused start: a container this run created is removed, and port
    /// and GPU refusals get their own errors.
    async fn start_error(
        &self,
        docker: &Docker,
        p: &Prepared,
        ports: &[Published],
        created: bool,
        e: DockerError,
    ) -> LaunchError {
        if created {
            if let Err(rm) = docker.remove_container(&p.name).await {
                return rm.into();
            }
        }
        refused(&p.env, &docker.host, e, ports)
    }

    /// The container another `up` created with the same spec, if any.
    async fn adopt(&self, docker: &Docker, p: &Prepared) -> Result<Option<Ready>> {
        let name = &p.name;
        let Some(c) = docker.inspect_container(name).await? else {
            return Ok(None);
        };
        ensure_owned(name, &c, &p.service.who)?;
        if label(&c, LABEL_SPEC_HASH) != Some(p.service.hash.as_str()) {
            return Ok(None);
        }
        note(format!(
            "{name} was just created by another `up`; adopting it"
        ));
        // Start it in case the other `up` has not yet.
        self.start(docker, p, &[], false).await?;
        let c = docker.inspect_container(name).await?.unwrap_or(c);
        Ok(Some(p.ready(published_of(&c), "adopted")))
    }

    async fn wait(&self, docker: &Docker, mut r: Ready) -> Result<Ready> {
        let mut waits = vec![WaitFor::Running];
        if let (Some(p), Some(token)) = (r.port(Purpose::Jupyter), &r.token) {
            waits.push(WaitFor::JupyterApi {
                host: p.connect_ip().to_string(),
                port: p.host_port,
                token: token.clone(),
            });
        }
        if let Some(p) = r.port(Purpose::Ssh) {
            waits.push(WaitFor::Ssh {
                host: p.connect_ip().to_string(),
                port: p.host_port,
                aliases: vec![r.ssh_host.clone()],
                identity: r.identity.clone(),
                state_dir: r.state_dir.clone(),
            });
        }
        r.waited = ready::wait(docker, &r.env, &r.container, &waits, self.timeout).await?;
        Ok(r)
    }
}

/// Refuses containers without torchenv's managed-by label
/// ([`LaunchError::ForeignContainer`]) and those of another user
/// ([`owner::check`]: [`LaunchError::NotYours`]).
pub fn ensure_owned(
    name: &str,
    c: &ContainerInspectResponse,
    who: &Identity,
) -> Result<(), LaunchError> {
    if label(c, LABEL_MANAGED_BY) != Some(MANAGED_BY) {
        return Err(LaunchError::ForeignContainer {
            name: name.to_string(),
            label: LABEL_MANAGED_BY,
        });
    }
    let labels = c.config.as_ref().and_then(|c| c.labels.clone());
    owner::check(Kind::Container, name, &labels.unwrap_or_default(), who)
}

pub fn label<'a>(c: &'a ContainerInspectResponse, key: &str) -> Option<&'a str> {
    c.config
        .as_ref()?
        .labels
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The published ports of an existing container (from its host config).
pub fn published_of(c: &ContainerInspectResponse) -> Vec<Published> {
    let mut out = Vec::new();
    let bindings = c
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.clone())
        .unwrap_or_default();
    for (key, list) in bindings {
        let (port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let container = ContainerPort {
            port,
            protocol: if proto == "udp" {
                crate::spec::Protocol::Udp
            } else {
                crate::spec::Protocol::Tcp
            },
        };
        let purpose = match container {
            ContainerPort::JUPYTER => Purpose::Jupyter,
            ContainerPort::SSH => Purpose::Ssh,
            _ => Purpose::Extra,
        };
        for b in list.unwrap_or_default() {
            let (Some(ip), Some(hp)) = (b.host_ip, b.host_port) else {
                continue;
            };
            let (Ok(host_ip), Ok(host_port)) = (ip.parse(), hp.parse()) else {
                continue;
            };
            out.push(Published {
                host_ip,
                host_port,
                container,
                purpose,
            });
        }
    }
    out.sort_by_key(|p| (p.purpose as u8, p.host_port));
    out
}

/// Which image `up` starts: `--image REF` (or `TORCHENV_IMAGE`) when given,
/// else the environment's own image from spec + lock (`lock`: the lock
/// file), built when missing with its harness (a no-op when the tag exists).
async fn image_for(
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

/// Says on the host, where the user sees it, when `dev` keeps its own ids
/// ([`Identity::container_ids`]; the entrypoint's log says it too).
fn note_unmapped_ids(who: &Identity) {
    let (uid, gid) = who.container_ids();
    for (what, id, mapped) in [("uid", who.uid, uid), ("primary gid", who.gid, gid)] {
        if id != mapped && id != 0 {
            note(format!(
                "your {what} {id} is a system id (not {}-{}); the container's `dev` keeps its own {what} {mapped}, so files it writes in the workspace carry {mapped}",
                super::ORDINARY_IDS.start(),
                super::ORDINARY_IDS.end()
            ));
        }
    }
}

/// True for the errors a concurrent `up` of the same environment causes.
fn lost_race(e: &LaunchError) -> bool {
    match e {
        LaunchError::Docker(docker) => lost_race_docker(docker),
        launch => lost_race_launch(launch),
    }
}

fn lost_race_launch(e: &LaunchError) -> bool {
    match e {
        LaunchError::NotReady { reason, .. } => {
            reason == ready::REMOVED || reason.contains("code 137")
        }
        LaunchError::Raced { .. } => true,
        _ => false,
    }
}

fn lost_race_docker(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::NotFound { .. }
            | DockerError::Conflict {
                reason: Conflict::NameInUse | Conflict::BeingRemoved,
                ..
            }
    )
}

/// The engine refused to create or start the container: a taken port and
/// refused GPUs become their launch errors (exit 4 and 6).
fn refused(env: &Env, host: &str, e: DockerError, ports: &[Published]) -> LaunchError {
    match e {
        DockerError::PortTaken { port, .. } => match ports::taken(port, ports) {
            Some(taken) => taken,
            None => e.into(),
        },
        DockerError::GpuRefused { source, .. } => LaunchError::GpuUnavailable {
            env: env.name.clone(),
            requested: "GPUs".into(),
            host: host.to_string(),
            found: format!("refused them: {source}"),
        },
        e => e.into(),
    }
}
