//! The container `up` creates, resolved from an environment: a
//! [`ContainerPlan`] holds every decision (image, ports, mounts, GPUs, user
//! mapping) and [`ContainerPlan::body`] turns it into the engine's create
//! body, `HostConfig` built step by step.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{
    ContainerCreateBody, DeviceRequest, HostConfig, PortBinding, ResourcesUlimits,
};

use super::ports::Published;
use super::{Identity, LABEL_OWNER, LABEL_SPEC_HASH};
use crate::docker::{LABEL_ENV, LABEL_MANAGED_BY, MANAGED_BY};
use crate::spec::{Env, Ipc};

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

/// The ulimit an engine error "error setting rlimit type N" names (an
/// engine running without CAP_SYS_RESOURCE, e.g. rootless or nested).
pub fn refused_ulimit(message: &str) -> Option<&'static str> {
    let n: u32 = message
        .split("error setting rlimit type ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    match n {
        3 => Some("stack"),
        8 => Some("memlock"),
        _ => None,
    }
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

/// Everything `up` decided about the container.
#[derive(Debug, Clone)]
pub struct ContainerPlan {
    pub name: String,
    pub image: String,
    pub env: Env,
    pub who: Identity,
    pub ports: Vec<Published>,
    pub ssh_pubkey: Option<String>,
    /// The token file on the host, when Jupyter is on.
    pub token_file: Option<PathBuf>,
    pub device_requests: Vec<DeviceRequest>,
    /// Ulimits ([`nvidia_ulimits`] unless the engine refused one).
    pub ulimits: Vec<ResourcesUlimits>,
    /// [`ContainerPlan::spec_hash`], computed before `--auto-ports` changed
    /// any port so re-running `up --auto-ports` keeps the container.
    pub hash: String,
}

impl ContainerPlan {
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
            "entrypoint_contract": 1,
        });
        crate::cache::sha256_bytes(input.to_string().as_bytes())[..16].to_string()
    }

    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
            (LABEL_ENV.to_string(), self.env.name.clone()),
            (LABEL_OWNER.to_string(), self.who.user.clone()),
            (LABEL_SPEC_HASH.to_string(), self.hash.clone()),
        ])
    }

    /// Environment variables: the spec's `env:`, then the entrypoint's
    /// switches. The Jupyter token is not among them (it is a mounted file).
    pub fn env_vars(&self) -> Vec<String> {
        let mut vars: Vec<String> = self
            .env
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !self.env.env.is_empty() {
            let names: Vec<&str> = self.env.env.keys().map(String::as_str).collect();
            vars.push(format!("TORCHENV_USER_ENV={}", names.join(" ")));
        }
        vars.push(format!("TORCHENV_ENV={}", self.env.name));
        vars.push(format!("TORCHENV_UID={}", self.who.uid));
        vars.push(format!("TORCHENV_GID={}", self.who.gid));
        vars.push(format!(
            "TORCHENV_JUPYTER={}",
            u8::from(self.token_file.is_some())
        ));
        match &self.ssh_pubkey {
            Some(k) => {
                vars.push("TORCHENV_SSH=1".into());
                vars.push(format!("TORCHENV_SSH_PUBKEY={k}"));
            }
            None => vars.push("TORCHENV_SSH=0".into()),
        }
        vars
    }

    pub fn port_bindings(&self) -> HashMap<String, Option<Vec<PortBinding>>> {
        let mut map: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in &self.ports {
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
    #[allow(clippy::field_reassign_with_default)]
    pub fn host_config(&self) -> HostConfig {
        let mut hc = HostConfig::default();
        // Ports, on the spec's host address only.
        hc.port_bindings = Some(self.port_bindings());
        // Mounts: workspace, volumes, token file.
        hc.mounts = Some(super::mounts::mounts(&self.env, self.token_file.as_deref()));
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
        hc
    }

    /// The create body.
    pub fn body(&self) -> ContainerCreateBody {
        let mut exposed: Vec<String> = self.ports.iter().map(|p| p.container.key()).collect();
        exposed.sort();
        exposed.dedup();
        ContainerCreateBody {
            image: Some(self.image.clone()),
            hostname: Some(self.env.name.replace('.', "-")),
            labels: Some(self.labels()),
            env: Some(self.env_vars()),
            exposed_ports: Some(exposed),
            working_dir: Some(super::WORKSPACE_TARGET.into()),
            host_config: Some(self.host_config()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::{gpus, ports};
    use crate::spec::{Gpus, Spec};

    fn default_plan() -> ContainerPlan {
        let source =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../environments.yaml"))
                .unwrap();
        let spec = Spec::parse(std::path::Path::new("/repo/environments.yaml"), source).unwrap();
        let env = spec.env(None).unwrap().clone();
        let who = Identity {
            user: "alice".into(),
            uid: 1234,
            gid: 1234,
        };
        let requests = gpus::device_requests(&Gpus::All);
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTKEY alice@host".to_string();
        let hash = ContainerPlan::spec_hash(&env, "sha256:0123", &who, Some(&key), &requests);
        ContainerPlan {
            name: super::super::container_name(&env.name, &who),
            image: format!("torchenv/{}:0123456789ab", env.name),
            ports: ports::published(&env, true),
            env,
            who,
            ssh_pubkey: Some(key),
            token_file: Some(
                "/home/alice/.local/state/torchenv/pytorch-2.6-cuda12.4/jupyter_token".into(),
            ),
            device_requests: requests,
            ulimits: nvidia_ulimits(),
            hash,
        }
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
    fn token_is_not_in_the_body() {
        let plan = default_plan();
        let body = serde_json::to_string(&plan.body()).unwrap();
        assert!(!body.contains("JUPYTER_TOKEN"));
    }

    #[test]
    fn hash_changes_with_the_spec() {
        let plan = default_plan();
        let mut env = plan.env.clone();
        env.shm_size *= 2;
        let h2 = ContainerPlan::spec_hash(
            &env,
            "sha256:0123",
            &plan.who,
            plan.ssh_pubkey.as_deref(),
            &plan.device_requests,
        );
        assert_ne!(plan.hash, h2);
    }
}
