//! The container torchenv creates for an environment, in one of two modes:
//! `up`'s long-running service ([`Mode::Service`]: published ports, the
//! workspace and volumes, the entrypoint's SSH/Jupyter) or the gate's
//! one-shot run ([`Mode::OneShot`]: a command, no ports, inputs read-only,
//! one output folder read-write, no network). Both share what makes the
//! container the one users get: the GPUs `gpus:` resolves to against the
//! daemon ([`Resources::resolve`]), shared memory / IPC and NVIDIA's
//! ulimits (less those the engine refused before), and the hardening every
//! torchenv container gets: no-new-privileges, every capability dropped
//! but the few the entrypoint and sshd need (none for a one-shot run), a
//! pids limit. [`ContainerPlan::body`] turns a plan into the engine's
//! create body, `HostConfig` built step by step.
//!
//! May use: `docker`, `spec`, `cache` (the refused-ulimit memory) and the
//! rest of `launch`.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{
    ContainerCreateBody, DeviceRequest, HostConfig, PortBinding, ResourcesUlimits,
};

use super::gpus::{self, GpuPlan};
use super::ports::Published;
use super::Result;
use super::{owner, Identity, LABEL_SPEC_HASH};
use crate::docker::run::{unique_name, LABEL_ONE_SHOT};
use crate::docker::{Docker, LABEL_ENV, LABEL_MANAGED_BY, MANAGED_BY};
use crate::spec::{Env, Gpus, Ipc};

/// What the entrypoint (as root, before it drops to `dev`) and sshd need,
/// of Docker's default set: re-owning the home and writing root-owned
/// files (CHOWN, DAC_OVERRIDE, FOWNER), dropping to `dev` (SETUID, SETGID,
/// SETPCAP for an empty bounding set), sshd's privilege separation
/// (SYS_CHROOT), port 22 (NET_BIND_SERVICE), its login records
/// (AUDIT_WRITE), and tini's signals to `dev`'s processes (KILL). Not kept:
/// FSETID, MKNOD, NET_RAW, SETFCAP.
pub const SERVICE_CAPABILITIES: [&str; 10] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "KILL",
    "NET_BIND_SERVICE",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// NVIDIA's recommended defaults for PyTorch containers: unlimited locked
/// memory and a 64 MiB stack.
pub const MEMLOCK: i64 = -1;
pub const STACK: i64 = 67_108_864;

/// NVIDIA's recommended ulimits: memlock unlimited, stack 64 MiB.
pub fn nvidia_ulimits() -> Vec<ResourcesUlimits> {
    [("memlock", MEMLOCK), ("stack", STACK)]
        .into_iter()
        .map(|(name, v)| ResourcesUlimits {
            name: Some(name.into()),
            soft: Some(v),
            hard: Some(v),
        })
        .collect()
}

fn engine_file(engine_id: &str) -> std::path::PathBuf {
    let id: String = engine_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    crate::cache::root()
        .join("engines")
        .join(format!("{id}.refused-ulimits"))
}

/// [`nvidia_ulimits`] less those this engine refused before (remembered
/// per engine id, so later `up`s create the container once).
pub fn ulimits_for(engine_id: &str) -> Vec<ResourcesUlimits> {
    let refused = std::fs::read_to_string(engine_file(engine_id)).unwrap_or_default();
    nvidia_ulimits()
        .into_iter()
        .filter(|u| !refused.lines().any(|l| Some(l) == u.name.as_deref()))
        .collect()
}

/// Remembers that this engine refuses the ulimit `name`.
pub fn remember_refused(engine_id: &str, name: &str) {
    let path = engine_file(engine_id);
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    if !text.lines().any(|l| l == name) {
        text.push_str(name);
        text.push('\n');
        let _ = std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")));
        let _ = std::fs::write(&path, text);
    }
}

/// What the daemon grants an environment, resolved once per run exactly as
/// `up` does: the engine id, the GPU requests of `gpus:` and the ulimits.
#[derive(Debug, Clone)]
pub struct Resources {
    /// `docker info`'s id (else the host), keying the refused-ulimit memory.
    pub engine_id: String,
    pub gpu: GpuPlan,
    pub ulimits: Vec<ResourcesUlimits>,
}

impl Resources {
    /// `docker info` → [`GpuSupport`] → [`gpus::plan`] (an explicit request
    /// the daemon cannot serve is `LaunchError::GpuUnavailable`), and
    /// [`ulimits_for`] this engine.
    pub async fn resolve(docker: &Docker, env: &Env) -> Result<Resources> {
        let info = docker.info().await?;
        let support = docker.gpu_support_from(&info);
        let engine_id = info.id.clone().unwrap_or_else(|| docker.host.clone());
        let gpu = gpus::plan(&env.name, &docker.host, &env.gpus, &support)?;
        Ok(Resources {
            ulimits: ulimits_for(&engine_id),
            engine_id,
            gpu,
        })
    }

    /// [`Resources::resolve`] for a one-shot run that `needs_gpus` (a CUDA
    /// check or eval): an environment that resolves to no GPU is
    /// [`super::LaunchError::NoGpus`] naming `wanted` (the command asking),
    /// never a silent CPU run or a request for all GPUs. Prints the GPU
    /// notice (e.g. `auto` found no runtime) under `who`.
    pub async fn resolve_for_run(
        docker: &Docker,
        env: &Env,
        needs_gpus: bool,
        wanted: &str,
        who: &str,
    ) -> Result<Resources> {
        let resources = Resources::resolve(docker, env).await?;
        if needs_gpus && resources.gpu.requests.is_empty() {
            return Err(super::LaunchError::NoGpus {
                env: env.name.clone(),
                gpus: gpus::describe(&env.gpus),
                wanted: wanted.to_string(),
                why: match env.gpus {
                    Gpus::None => String::new(),
                    _ => format!(
                        " on the engine at {}, which has {}",
                        docker.host,
                        gpus::found(&docker.gpu_support_from(&docker.info().await?))
                    ),
                },
            });
        }
        if let Some(n) = &resources.gpu.notice {
            eprintln!("{who}: {n}");
        }
        Ok(resources)
    }
}

/// `up`'s long-running container.
#[derive(Debug, Clone)]
pub struct Service {
    pub who: Identity,
    pub ports: Vec<Published>,
    pub ssh_pubkey: Option<String>,
    /// The file holding `ssh_pubkey` on the host (mounted read-only at
    /// [`super::mounts::AUTHORIZED_KEYS_TARGET`]; the key is never in the container's
    /// environment).
    pub keys_file: Option<PathBuf>,
    /// The environment's own network ([`super::network`]).
    pub network: String,
    /// The token file on the host, when Jupyter is on.
    pub token_file: Option<PathBuf>,
    /// [`ContainerPlan::spec_hash`], computed before `--auto-ports` changed
    /// any port so re-running `up --auto-ports` keeps the container.
    pub hash: String,
}

/// A command run once (the gate's harness): no ports, no network, the
/// image's entrypoint replaced by `cmd[0]`.
#[derive(Debug, Clone)]
pub struct OneShot {
    pub cmd: Vec<String>,
    /// Host path → container path, mounted read-only (dataset, weights).
    pub inputs: Vec<(PathBuf, String)>,
    /// The one read-write mount: host folder → container path.
    pub output: (PathBuf, String),
    /// `uid:gid` the command runs as: the owner of the output folder, so
    /// what it writes belongs to the caller.
    pub user: Option<String>,
    /// What the run is (the one-shot label's value, part of the name).
    pub purpose: String,
}

#[derive(Debug, Clone)]
pub enum Mode {
    Service(Service),
    OneShot(OneShot),
}

/// Everything decided about one container.
#[derive(Debug, Clone)]
pub struct ContainerPlan {
    pub name: String,
    pub image: String,
    pub env: Env,
    pub device_requests: Vec<DeviceRequest>,
    /// Ulimits ([`nvidia_ulimits`] unless the engine refused one).
    pub ulimits: Vec<ResourcesUlimits>,
    pub mode: Mode,
}

impl ContainerPlan {
    /// `up`'s container of `env`.
    pub fn service(
        name: String,
        image: String,
        env: Env,
        resources: &Resources,
        service: Service,
    ) -> ContainerPlan {
        ContainerPlan {
            name,
            image,
            env,
            device_requests: resources.gpu.requests.clone(),
            ulimits: resources.ulimits.clone(),
            mode: Mode::Service(service),
        }
    }

    /// A one-shot container of `env`, named `torchenv-<purpose>-<env>-<pid>-<n>`.
    pub fn one_shot(
        image: String,
        env: &Env,
        resources: &Resources,
        job: OneShot,
    ) -> ContainerPlan {
        ContainerPlan {
            name: unique_name(&format!("{}-{}", job.purpose, env.name)),
            image,
            env: env.clone(),
            device_requests: resources.gpu.requests.clone(),
            ulimits: resources.ulimits.clone(),
            mode: Mode::OneShot(job),
        }
    }

    /// Hash of what the container is made from: the resolved environment,
    /// the image (by id), the user mapping, the SSH key and the GPU requests.
    pub fn spec_hash(
        env: &Env,
        image_id: &str,
        who: &Identity,
        ssh_pubkey: Option<&str>,
        devices: &[DeviceRequest],
    ) -> String {
        let input = serde_json::json!({
            "env": env,
            "image": image_id,
            "uid": who.uid,
            "gid": who.gid,
            "ssh": ssh_pubkey,
            "devices": devices,
            "entrypoint_contract": 2,
        });
        crate::cache::sha256_bytes(input.to_string().as_bytes())[..16].to_string()
    }

    /// The published ports (none for a one-shot run).
    pub fn ports(&self) -> &[Published] {
        match &self.mode {
            Mode::Service(s) => &s.ports,
            Mode::OneShot(_) => &[],
        }
    }

    /// Drops the ulimit `name` the engine refused and remembers the refusal
    /// for this engine; false when the plan did not ask for it (then the
    /// refusal is not ours to fix).
    pub fn drop_refused_ulimit(&mut self, name: &str, engine_id: &str) -> bool {
        if !self.ulimits.iter().any(|u| u.name.as_deref() == Some(name)) {
            return false;
        }
        self.ulimits.retain(|u| u.name.as_deref() != Some(name));
        remember_refused(engine_id, name);
        true
    }

    /// Managed-by and env; the owner's name and uid ([`super::owner`]):
    /// the service's user, for a one-shot run the current user (left out
    /// when it cannot be told, e.g. a refused `TORCHENV_UID`: nothing acts
    /// on a one-shot container but the run that made it); then the
    /// spec hash or the one-shot label.
    pub fn labels(&self) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
            (LABEL_ENV.to_string(), self.env.name.clone()),
        ]);
        match &self.mode {
            Mode::Service(s) => {
                labels.extend(owner::labels(&s.who));
                labels.insert(LABEL_SPEC_HASH.to_string(), s.hash.clone());
            }
            Mode::OneShot(job) => {
                if let Ok(who) = Identity::current() {
                    labels.extend(owner::labels(&who));
                }
                labels.insert(LABEL_ONE_SHOT.to_string(), job.purpose.clone());
            }
        }
        labels
    }

    /// Environment variables: the spec's `env:`, then (for `up`) the
    /// entrypoint's switches. The Jupyter token is not among them (it is a
    /// mounted file).
    pub fn env_vars(&self) -> Vec<String> {
        let mut vars: Vec<String> = self
            .env
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let Mode::Service(s) = &self.mode else {
            vars.push(format!("TORCHENV_ENV={}", self.env.name));
            return vars;
        };
        if !self.env.env.is_empty() {
            let names: Vec<&str> = self.env.env.keys().map(String::as_str).collect();
            vars.push(format!("TORCHENV_USER_ENV={}", names.join(" ")));
        }
        vars.push(format!("TORCHENV_ENV={}", self.env.name));
        vars.push(format!("TORCHENV_UID={}", s.who.uid));
        vars.push(format!("TORCHENV_GID={}", s.who.gid));
        vars.push(format!(
            "TORCHENV_JUPYTER={}",
            u8::from(s.token_file.is_some())
        ));
        vars.push(format!("TORCHENV_SSH={}", u8::from(s.keys_file.is_some())));
        if self.env.ssh.as_ref().is_some_and(|ssh| ssh.forwarding) {
            vars.push("TORCHENV_SSH_FORWARDING=1".into());
        }
        vars
    }

    pub fn port_bindings(&self) -> HashMap<String, Option<Vec<PortBinding>>> {
        let mut map: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in self.ports() {
            map.entry(p.container.key())
                .or_insert_with(|| Some(vec![]))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(p.host_ip.to_string()),
                    host_port: Some(p.host_port.to_string()),
                });
        }
        map
    }

    /// Built step by step on purpose (one concern per step), hence the allow.
    /// The GPU, shared-memory and ulimit steps are the same in both modes.
    #[allow(clippy::field_reassign_with_default)]
    pub fn host_config(&self) -> HostConfig {
        let mut hc = HostConfig::default();
        match &self.mode {
            Mode::Service(s) => {
                // Ports, on the spec's host address only.
                hc.port_bindings = Some(self.port_bindings());
                // Mounts: workspace, volumes, token and key files.
                hc.mounts = Some(super::mounts::mounts(
                    &self.env,
                    &s.who,
                    s.token_file.as_deref(),
                    s.keys_file.as_deref(),
                ));
                // Its own network: no other container reaches it.
                hc.network_mode = Some(s.network.clone());
                // Only what the entrypoint and sshd need, and the spec's
                // `security.cap_add`.
                let mut caps: Vec<String> = SERVICE_CAPABILITIES.map(String::from).to_vec();
                caps.extend(self.env.security.cap_add.iter().cloned());
                caps.sort();
                caps.dedup();
                hc.cap_add = Some(caps);
            }
            Mode::OneShot(job) => {
                // Inputs read-only, one output folder read-write.
                let mut m: Vec<_> = job
                    .inputs
                    .iter()
                    .map(|(host, target)| super::mounts::bind(host, target, true))
                    .collect();
                m.push(super::mounts::bind(&job.output.0, &job.output.1, false));
                hc.mounts = Some(m);
                // No network; removed by the caller, not the engine (it
                // collects the logs first).
                hc.network_mode = Some("none".into());
                hc.auto_remove = Some(false);
                // It runs as the caller, not root: only what the spec adds.
                if !self.env.security.cap_add.is_empty() {
                    hc.cap_add = Some(self.env.security.cap_add.clone());
                }
            }
        }
        // GPUs.
        if !self.device_requests.is_empty() {
            hc.device_requests = Some(self.device_requests.clone());
        }
        // Shared memory: a sized /dev/shm, or the host's IPC namespace.
        match self.env.ipc {
            Ipc::Host => hc.ipc_mode = Some("host".into()),
            Ipc::Private | Ipc::Shareable => {
                hc.ipc_mode = Some(
                    if self.env.ipc == Ipc::Shareable {
                        "shareable"
                    } else {
                        "private"
                    }
                    .into(),
                );
                hc.shm_size = Some(self.env.shm_size as i64);
            }
        }
        // NVIDIA's recommended ulimits.
        hc.ulimits = Some(self.ulimits.clone());
        // Hardening: nothing gains privileges by exec (setuid files, file
        // capabilities), every capability not added above is dropped, and
        // a fork bomb stops at `security.pids_limit`.
        hc.security_opt = Some(vec!["no-new-privileges:true".into()]);
        hc.cap_drop = Some(vec!["ALL".into()]);
        hc.pids_limit = Some(i64::from(self.env.security.pids_limit));
        hc
    }

    /// The create body.
    pub fn body(&self) -> ContainerCreateBody {
        let common = ContainerCreateBody {
            image: Some(self.image.clone()),
            hostname: Some(self.env.name.replace('.', "-")),
            labels: Some(self.labels()),
            env: Some(self.env_vars()),
            host_config: Some(self.host_config()),
            ..Default::default()
        };
        match &self.mode {
            Mode::Service(_) => {
                let mut exposed: Vec<String> =
                    self.ports().iter().map(|p| p.container.key()).collect();
                exposed.sort();
                exposed.dedup();
                ContainerCreateBody {
                    exposed_ports: Some(exposed),
                    working_dir: Some(super::WORKSPACE_TARGET.into()),
                    ..common
                }
            }
            Mode::OneShot(job) => ContainerCreateBody {
                entrypoint: job.cmd.first().map(|c| vec![c.clone()]),
                cmd: Some(job.cmd.iter().skip(1).cloned().collect()),
                user: job.user.clone(),
                network_disabled: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(false),
                ..common
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::{gpus, ports};
    use crate::spec::{Gpus, Spec};

    fn default_env() -> Env {
        let source =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../environments.yaml"))
                .unwrap();
        let spec = Spec::parse(std::path::Path::new("/repo/environments.yaml"), source).unwrap();
        spec.env(None).unwrap().clone()
    }

    fn resources(gpus: &Gpus) -> Resources {
        Resources {
            engine_id: "engine".into(),
            gpu: GpuPlan {
                requests: gpus::device_requests(gpus),
                notice: None,
            },
            ulimits: nvidia_ulimits(),
        }
    }

    fn default_plan() -> ContainerPlan {
        let env = default_env();
        let who = Identity {
            user: "alice".into(),
            uid: 1234,
            gid: 1234,
        };
        let res = resources(&Gpus::All);
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTKEY alice@host".to_string();
        let hash =
            ContainerPlan::spec_hash(&env, "sha256:0123", &who, Some(&key), &res.gpu.requests);
        let service = Service {
            ports: ports::published(&env, true),
            who: who.clone(),
            ssh_pubkey: Some(key),
            keys_file: Some(
                "/home/alice/.local/state/torchenv/pytorch-2.6-cuda12.4/authorized_keys".into(),
            ),
            network: "torchenv-pytorch-2.6-cuda12.4-alice".into(),
            token_file: Some(
                "/home/alice/.local/state/torchenv/pytorch-2.6-cuda12.4/jupyter_token".into(),
            ),
            hash,
        };
        ContainerPlan::service(
            super::super::container_name(&env.name, &who),
            format!("torchenv/{}:0123456789ab", env.name),
            env,
            &res,
            service,
        )
    }

    fn gate_plan(gpus: &Gpus) -> ContainerPlan {
        let env = default_env();
        let job = OneShot {
            cmd: vec![
                "/usr/local/bin/harness".into(),
                "eval".into(),
                "--weights".into(),
                "/weights/w.pth".into(),
            ],
            inputs: vec![
                ("/repo/fixtures/images".into(), "/data".into()),
                ("/cache/models/w.pth".into(), "/weights/w.pth".into()),
            ],
            output: ("/tmp/torchenv-gate-x".into(), "/out".into()),
            user: Some("1234:1234".into()),
            purpose: "gate".into(),
        };
        ContainerPlan::one_shot(
            format!("torchenv/{}:0123456789ab", env.name),
            &env,
            &resources(gpus),
            job,
        )
    }

    #[test]
    fn create_body_default_env() {
        let plan = default_plan();
        assert_eq!(plan.name, "torchenv-pytorch-2.6-cuda12.4-alice");
        insta::with_settings!({sort_maps => true}, {
            insta::assert_json_snapshot!(plan.body(), {
                ".Labels[\"dev.torchenv.spec-hash\"]" => "[hash]",
            });
        });
    }

    #[test]
    fn one_shot_body_default_env() {
        let plan = gate_plan(&Gpus::All);
        assert!(plan.name.starts_with("torchenv-gate-pytorch-2.6-cuda12.4-"));
        insta::with_settings!({sort_maps => true}, {
            insta::assert_json_snapshot!(plan.body(), {
                ".Labels[\"dev.torchenv.owner\"]" => "[current user]",
                ".Labels[\"dev.torchenv.owner-uid\"]" => "[current uid]",
            });
        });
    }

    #[test]
    fn one_shot_shares_the_host_concerns_of_up() {
        let (up, gate) = (
            default_plan().host_config(),
            gate_plan(&Gpus::All).host_config(),
        );
        assert_eq!(up.shm_size, gate.shm_size);
        assert_eq!(up.ipc_mode, gate.ipc_mode);
        assert_eq!(up.ulimits, gate.ulimits);
        assert_eq!(up.device_requests, gate.device_requests);
        assert_eq!(gate.port_bindings, None);
    }

    #[test]
    fn one_shot_without_gpus_has_no_device_requests() {
        let body = gate_plan(&Gpus::None).body();
        assert_eq!(body.host_config.unwrap().device_requests, None);
    }

    #[test]
    fn every_container_is_hardened() {
        for plan in [default_plan(), gate_plan(&Gpus::All)] {
            let hc = plan.host_config();
            assert_eq!(hc.security_opt, Some(vec!["no-new-privileges:true".into()]));
            assert_eq!(hc.cap_drop, Some(vec!["ALL".into()]));
            assert_eq!(
                hc.pids_limit,
                Some(i64::from(crate::spec::DEFAULT_PIDS_LIMIT))
            );
        }
        let up = default_plan().host_config();
        assert_eq!(
            up.network_mode.as_deref(),
            Some("torchenv-pytorch-2.6-cuda12.4-alice")
        );
        let caps = up.cap_add.unwrap();
        for never in ["SYS_ADMIN", "NET_RAW", "MKNOD", "SETFCAP", "FSETID"] {
            assert!(!caps.iter().any(|c| c == never), "{never} in {caps:?}");
        }
        // A one-shot run gets no capability back and no network.
        let gate = gate_plan(&Gpus::None).host_config();
        assert_eq!(gate.cap_add, None);
        assert_eq!(gate.network_mode.as_deref(), Some("none"));
    }

    #[test]
    fn spec_security_overrides_reach_the_container() {
        let mut plan = default_plan();
        plan.env.security.cap_add = vec!["SYS_PTRACE".into()];
        plan.env.security.pids_limit = 500;
        if let Some(ssh) = plan.env.ssh.as_mut() {
            ssh.forwarding = true;
        }
        let hc = plan.host_config();
        assert!(hc.cap_add.unwrap().contains(&"SYS_PTRACE".to_string()));
        assert_eq!(hc.pids_limit, Some(500));
        assert!(plan
            .env_vars()
            .contains(&"TORCHENV_SSH_FORWARDING=1".to_string()));
        assert!(!default_plan()
            .env_vars()
            .iter()
            .any(|v| v.starts_with("TORCHENV_SSH_FORWARDING")));
    }

    #[test]
    fn ssh_key_is_a_mounted_file_not_an_environment_variable() {
        let body = default_plan().body();
        let env = body.env.unwrap();
        assert!(!env.iter().any(|v| v.contains("ssh-ed25519")), "{env:?}");
        let mounts = body.host_config.unwrap().mounts.unwrap();
        assert!(mounts.iter().any(|m| {
            m.target.as_deref() == Some(crate::launch::mounts::AUTHORIZED_KEYS_TARGET)
                && m.read_only == Some(true)
        }));
    }

    #[test]
    fn token_is_not_in_the_body() {
        for plan in [default_plan(), gate_plan(&Gpus::All)] {
            let body = serde_json::to_string(&plan.body()).unwrap();
            assert!(!body.contains("JUPYTER_TOKEN"));
            assert!(!body.contains("jupyter_token") || matches!(plan.mode, Mode::Service(_)));
        }
    }

    #[test]
    fn hash_changes_with_the_spec() {
        let plan = default_plan();
        let Mode::Service(s) = &plan.mode else {
            unreachable!()
        };
        let mut env = plan.env.clone();
        env.shm_size *= 2;
        let h2 = ContainerPlan::spec_hash(
            &env,
            "sha256:0123",
            &s.who,
            s.ssh_pubkey.as_deref(),
            &plan.device_requests,
        );
        assert_ne!(s.hash, h2);
    }

    #[test]
    fn refused_ulimit_is_dropped_once() {
        let mut plan = gate_plan(&Gpus::None);
        // A made-up engine id: its memory file is removed again below.
        let engine = format!("unit-test-engine-{}", std::process::id());
        assert!(plan.drop_refused_ulimit("memlock", &engine));
        assert!(!plan.drop_refused_ulimit("memlock", &engine));
        assert_eq!(ulimits_for(&engine).len(), 1);
        std::fs::remove_file(engine_file(&engine)).unwrap();
    }
}
