//! `cargo xtask up [ENV]`: build if needed, create and start the container,
//! wait until it is ready, print how to connect.
//!
//! Idempotent: the same spec already running is reported and left alone; a
//! changed spec (the spec-hash label differs) recreates the container,
//! keeping volumes and the workspace. Two concurrent `up`s of one
//! environment leave one container: on one host they take turns (a lock in
//! the environment's state dir); across hosts sharing an engine, the loser
//! of the name race (409) adopts the winner's container.
//!
//! Everything that can refuse the launch (volume sources, GPUs, ports) is
//! checked before anything is created; when the engine still refuses the
//! start, the container just created is removed. A container that starts
//! but is not ready in time is left for inspection (exit 7).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::ContainerInspectResponse;

use super::plan::ContainerPlan;
use super::ports::{self, ContainerPort, Published, Purpose};
use super::ready::{self, WaitFor};
use super::{
    gpus, image, jupyter, mounts, note, ssh, EnvLock, Identity, LaunchError, LABEL_SPEC_HASH,
};
use crate::docker::containers::GpuSupport;
use crate::docker::{Docker, DockerError, LABEL_MANAGED_BY, MANAGED_BY};
use crate::error::{Error, Result};
use crate::spec::{Env, Spec};

/// Default time `up` waits for readiness.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Options of `up`.
#[derive(Debug, Clone)]
pub struct Up {
    pub env: Option<String>,
    /// Replace taken host ports by free ones (and report them).
    pub auto_ports: bool,
    pub timeout: Duration,
    /// Start this image instead of the environment's own.
    pub image: Option<String>,
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
            p.connect_ip(),
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
            let host = p.connect_ip().to_string();
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
                p.host_ip,
                p.host_port,
                p.container.key()
            ));
        }
        s
    }
}

impl Up {
    /// The CLI entry: runs and prints the connection details.
    pub fn run(&self, spec_path: &Path) -> Result<()> {
        let spec = Spec::load(spec_path)?;
        super::block_on(async {
            let docker = Docker::connect().await?;
            let ready = self.up(&docker, &spec).await?;
            print!("{}", ready.describe());
            Ok(())
        })
    }

    /// Brings the environment up and waits until it is ready. Concurrent
    /// `up`s of one environment on this host take turns ([`EnvLock`]); a
    /// lost race with one on another host (its container vanished or is
    /// being removed under us) is retried from the start.
    pub async fn up(&self, docker: &Docker, spec: &Spec) -> Result<Ready> {
        let env = &spec.env(self.env.as_deref())?.name;
        let _turn = EnvLock::acquire(env).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.up_once(docker, spec).await {
                Err(e) if attempt < 4 && lost_race(&e) => {
                    note("the container changed under us (a concurrent `up`?); retrying");
                }
                other => return other,
            }
        }
    }

    async fn up_once(&self, docker: &Docker, spec: &Spec) -> Result<Ready> {
        let env = spec.env(self.env.as_deref())?.clone();
        let who = Identity::current();
        let name = super::container_name(&env.name, &who);
        let existing = docker.inspect_container(&name).await?;
        if let Some(c) = &existing {
            ensure_managed(&name, c)?;
        }

        // Everything that can refuse the launch, before anything is created.
        mounts::check_sources(&env)?;
        let info = docker.info().await?;
        let support = GpuSupport::from_info(&info);
        let engine_id = info.id.clone().unwrap_or_else(|| docker.host.clone());
        let gpu = gpus::plan(&env.name, &docker.host, &env.gpus, &support)?;
        if let Some(n) = &gpu.notice {
            note(n);
        }
        let key = match &env.ssh {
            Some(s) => {
                let key = ssh::find_key(s)?;
                if key.is_none() {
                    note("no SSH public key (`ssh.public_key:` or ~/.ssh/*.pub): SSH is skipped; create one with `ssh-keygen -t ed25519`");
                }
                key
            }
            None => None,
        };
        // Taken ports fail fast, before a possibly long image build (unless
        // our own container, or a concurrent `up`'s, holds them).
        if existing.is_none() && !self.auto_ports {
            if let Err(e) = ports::check_free(&ports::published(&env, key.is_some())) {
                if docker.inspect_container(&name).await?.is_none() {
                    return Err(e.into());
                }
            }
        }
        let image = image::resolve(docker, spec, &env, self.image.as_deref()).await?;
        let image_id = docker
            .image_id(&image)
            .await?
            .unwrap_or_else(|| image.clone());
        let state_dir = super::ensure_state_dir(&env.name)?;
        let token = match &env.jupyter {
            Some(j) => Some(jupyter::ensure_token(&state_dir, j.token.as_deref())?),
            None => None,
        };
        let hash = ContainerPlan::spec_hash(
            &env,
            &image_id,
            &who,
            key.as_ref().map(|k| k.public.as_str()),
            &gpu.requests,
        );
        let mut plan = ContainerPlan {
            name: name.clone(),
            image,
            ports: ports::published(&env, key.is_some()),
            env: env.clone(),
            who,
            ssh_pubkey: key.as_ref().map(|k| k.public.clone()),
            token_file: token.as_ref().map(|(p, _)| p.clone()),
            device_requests: gpu.requests,
            ulimits: super::plan::ulimits_for(&engine_id),
            hash: hash.clone(),
        };
        let identity = key.and_then(|k| k.identity);
        let token = token.map(|(_, t)| t);
        let ready = |ports: Vec<Published>, action: &'static str| Ready {
            env: env.name.clone(),
            container: name.clone(),
            ports,
            token: token.clone(),
            identity: identity.clone(),
            state_dir: state_dir.clone(),
            waited: Duration::ZERO,
            action,
        };

        let mut action = "created";
        if let Some(c) = existing {
            let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
            if label(&c, LABEL_SPEC_HASH) == Some(hash.as_str()) {
                let r = ready(
                    published_of(&c),
                    if running {
                        "already running"
                    } else {
                        "started"
                    },
                );
                if !running {
                    note(format!("starting stopped container {name}"));
                    self.start(docker, &name, &r.ports, false).await?;
                }
                return self.wait(docker, r).await;
            }
            note(format!(
                "the spec of `{}` changed (spec hash {} → {hash}): recreating {name}; volumes and the workspace are kept",
                env.name,
                label(&c, LABEL_SPEC_HASH).unwrap_or("none"),
            ));
            docker.remove_container(&name).await?;
            action = "recreated";
        }

        // Ports: free, or replaced by free ones with --auto-ports.
        if self.auto_ports {
            let changed =
                ports::auto_assign(&mut plan.ports).map_err(Error::io("pick free ports"))?;
            for (purpose, from, to) in changed {
                note(format!("{purpose}: host port {from} is taken; using {to}"));
            }
        } else if let Err(e) = ports::check_free(&plan.ports) {
            // A concurrent `up` of the same environment may hold them.
            if let Some(r) = self.adopt(docker, &name, &hash, &ready).await? {
                return self.wait(docker, r).await;
            }
            return Err(e.into());
        }

        mounts::ensure_workspace(&env, &plan.who)?;
        mounts::ensure_volumes(docker, &env).await?;

        let mut conflicts = 0;
        loop {
            if !self.create(docker, &plan).await? {
                // 409: another `up` of this environment won the name race.
                if let Some(r) = self.adopt(docker, &name, &hash, &ready).await? {
                    return self.wait(docker, r).await;
                }
                if let Some(c) = docker.inspect_container(&name).await? {
                    ensure_managed(&name, &c)?;
                    if label(&c, LABEL_SPEC_HASH) != Some(hash.as_str()) {
                        return Err(Error::failed(format!(
                            "container {name} was created concurrently from a different spec; run `cargo xtask up` again"
                        )));
                    }
                }
                conflicts += 1;
                if conflicts > 5 {
                    return Err(Error::failed(format!(
                        "container {name} keeps changing under us; run `cargo xtask up` again"
                    )));
                }
                // It vanished (the other `up` is retrying): try again.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            match docker.start_container(&name).await {
                Ok(())
                | Err(BollardError::DockerResponseServerError {
                    status_code: 304, ..
                }) => break,
                Err(e) => {
                    let refused = super::plan::refused_ulimit(&e.to_string());
                    match refused {
                        Some(limit)
                            if plan
                                .ulimits
                                .iter()
                                .any(|u| u.name.as_deref() == Some(limit)) =>
                        {
                            note(format!(
                                "the engine at {} may not raise the {limit} ulimit (no CAP_SYS_RESOURCE?); starting with its default",
                                docker.host
                            ));
                            plan.ulimits.retain(|u| u.name.as_deref() != Some(limit));
                            super::plan::remember_refused(&engine_id, limit);
                            docker.remove_container(&name).await?;
                        }
                        _ => {
                            return Err(self.start_error(docker, &name, &plan.ports, true, e).await)
                        }
                    }
                }
            }
        }
        let c = docker.inspect_container(&name).await?;
        let ports = c.as_ref().map(published_of).unwrap_or(plan.ports);
        self.wait(docker, ready(ports, action)).await
    }

    /// Creates the container; `false` on a 409 name conflict (another `up`
    /// racing this one).
    async fn create(&self, docker: &Docker, plan: &ContainerPlan) -> Result<bool> {
        let name = &plan.name;
        match docker.create_container(name, plan.body()).await {
            Ok(_) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(false),
            Err(e) => Err(create_error(&plan.env, &docker.host, name, e)),
        }
    }

    /// Starts an existing container (304 = already running is fine).
    async fn start(
        &self,
        docker: &Docker,
        name: &str,
        ports: &[Published],
        created: bool,
    ) -> Result<()> {
        match docker.start_container(name).await {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => {
                // A container made by a concurrent `up` before it learnt the
                // engine refuses a ulimit: remove it and retry the `up`.
                if let Some(limit) = super::plan::refused_ulimit(&e.to_string()) {
                    if let Ok(info) = docker.info().await {
                        super::plan::remember_refused(
                            info.id.as_deref().unwrap_or(&docker.host),
                            limit,
                        );
                    }
                    docker.remove_container(name).await?;
                    return Err(LaunchError::Raced {
                        container: name.to_string(),
                    }
                    .into());
                }
                Err(self.start_error(docker, name, ports, created, e).await)
            }
        }
    }

    /// A refused start: a container this run created is removed, and port
    /// and GPU failures get their own errors.
    async fn start_error(
        &self,
        docker: &Docker,
        name: &str,
        ports: &[Published],
        created: bool,
        e: BollardError,
    ) -> Error {
        if created {
            if let Err(rm) = docker.remove_container(name).await {
                return rm.into();
            }
        }
        let message = e.to_string();
        if let Some(taken) = ports::taken_port_in(&message, ports) {
            return taken.into();
        }
        if gpus::is_gpu_error(&message) {
            return LaunchError::GpuUnavailable {
                env: self.env.clone().unwrap_or_default(),
                requested: "GPUs".into(),
                host: docker.host.clone(),
                found: format!("refused them: {message}"),
            }
            .into();
        }
        DockerError::api("start container", name)(e).into()
    }

    /// The container another `up` created with the same spec, if any.
    async fn adopt(
        &self,
        docker: &Docker,
        name: &str,
        hash: &str,
        ready: &impl Fn(Vec<Published>, &'static str) -> Ready,
    ) -> Result<Option<Ready>> {
        let Some(c) = docker.inspect_container(name).await? else {
            return Ok(None);
        };
        ensure_managed(name, &c)?;
        if label(&c, LABEL_SPEC_HASH) != Some(hash) {
            return Ok(None);
        }
        note(format!(
            "{name} was just created by another `up`; adopting it"
        ));
        // Start it in case the other `up` has not yet (304 = already running).
        self.start(docker, name, &[], false).await?;
        let c = docker.inspect_container(name).await?.unwrap_or(c);
        Ok(Some(ready(published_of(&c), "adopted")))
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
                identity: r.identity.clone(),
                state_dir: r.state_dir.clone(),
            });
        }
        r.waited = ready::wait(docker, &r.env, &r.container, &waits, self.timeout).await?;
        Ok(r)
    }
}

/// Refuses containers without torchenv's managed-by label.
pub fn ensure_managed(name: &str, c: &ContainerInspectResponse) -> Result<(), LaunchError> {
    if label(c, LABEL_MANAGED_BY) == Some(MANAGED_BY) {
        Ok(())
    } else {
        Err(LaunchError::ForeignContainer {
            name: name.to_string(),
            label: LABEL_MANAGED_BY,
        })
    }
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

/// True for the errors a concurrent `up` of the same environment causes.
fn lost_race(e: &Error) -> bool {
    match e {
        Error::Launch(launch) => lost_race_launch(launch),
        Error::Docker(docker) => lost_race_docker(docker),
        _ => false,
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
    match e {
        DockerError::Api {
            source:
                BollardError::DockerResponseServerError {
                    status_code,
                    message,
                },
            ..
        } => {
            *status_code == 404
                || (*status_code == 409
                    && (message.contains("removal") || message.contains("is already in use")))
        }
        _ => false,
    }
}

fn create_error(env: &Env, host: &str, name: &str, e: BollardError) -> Error {
    let message = e.to_string();
    if gpus::is_gpu_error(&message) {
        return LaunchError::GpuUnavailable {
            env: env.name.clone(),
            requested: "GPUs".into(),
            host: host.to_string(),
            found: format!("refused them: {message}"),
        }
        .into();
    }
    DockerError::api("create container", name)(e).into()
}
