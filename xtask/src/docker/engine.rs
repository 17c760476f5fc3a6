//! Which engine answers the Docker API, and what its answers mean for
//! torchenv: Docker Engine or Podman's Docker-compatible service, rootful
//! or rootless. Found once per connection ([`Engine::identify`]) from
//! `/version` (Podman names itself among the components) and `/info`
//! (`name=rootless` among the security options).
//!
//! Podman's `/info` says nothing of rootless in Docker's fields: a Podman
//! service on a local socket that is not root's runs rootless (the service
//! runs as the user who owns its socket).
//!
//! Three things differ on Podman, and the client handles each here or in
//! the file that makes the call:
//! - **ids** (rootless only): the container's root is a subordinate id on
//!   the host, so the entrypoint's mapping of `dev` to the host user would
//!   land on a subordinate id too. Containers are created with Podman's
//!   `keep-id` user namespace instead (the host user is the same uid in the
//!   container) and explicitly as root, as on Docker
//!   ([`Engine::adapt_create`]).
//! - **names**: Podman lists local images as `localhost/NAME:TAG`
//!   ([`Engine::local_tag`] gives the name torchenv tagged).
//! - **GPUs**: Podman serves GPUs through CDI only, and its compatible
//!   API honours CDI device requests only from 5.4 (containers/podman#25171);
//!   earlier versions drop every device request silently, so torchenv
//!   refuses to ask ([`Engine::gpu_requests_dropped`]). The CDI devices are
//!   read from the spec directories on this machine ([`cdi_devices`]).
//!
//! May use: bollard, serde_yaml and the standard library.

use std::path::Path;

use bollard::models::{ContainerCreateBody, SystemInfo, SystemVersion};

/// Docker Engine or Podman.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Docker,
    Podman,
}

/// The engine behind the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    pub kind: EngineKind,
    /// The engine's own version (`28.2.2`, `4.3.1`).
    pub version: String,
    /// The Docker API version it speaks.
    pub api: String,
    /// Runs as an ordinary user (rootless Docker or Podman).
    pub rootless: bool,
}

/// The Podman release whose Docker-compatible API first honours CDI device
/// requests (containers/podman#25171).
pub const PODMAN_CDI_REQUESTS: &str = "5.4.0";

/// The user namespace mode that maps the host user to the same uid in a
/// rootless Podman container.
pub const KEEP_ID: &str = "keep-id";

/// The directories CDI specs are read from (the CDI specification's
/// defaults, which Podman uses).
pub const CDI_SPEC_DIRS: &[&str] = &["/etc/cdi", "/var/run/cdi"];

impl Engine {
    /// `/version` names Podman among its components.
    pub fn is_podman(version: &SystemVersion) -> bool {
        version
            .components
            .iter()
            .flatten()
            .any(|c| c.name.to_ascii_lowercase().contains("podman"))
    }

    /// What `/version` and `/info` say; `socket_owner`: the uid owning the
    /// engine's unix socket, when it is one.
    pub fn identify(
        version: &SystemVersion,
        info: &SystemInfo,
        socket_owner: Option<u32>,
    ) -> Engine {
        let podman = version
            .components
            .iter()
            .flatten()
            .find(|c| c.name.to_ascii_lowercase().contains("podman"));
        let kind = if Engine::is_podman(version) {
            EngineKind::Podman
        } else {
            EngineKind::Docker
        };
        let version_text = podman
            .map(|c| c.version.clone())
            .or_else(|| version.version.clone())
            .unwrap_or_default();
        let rootless = info
            .security_options
            .iter()
            .flatten()
            .any(|o| o.split(',').any(|kv| kv == "name=rootless"))
            || (kind == EngineKind::Podman && socket_owner.is_some_and(|uid| uid != 0));
        Engine {
            kind,
            version: version_text,
            api: version.api_version.clone().unwrap_or_default(),
            rootless,
        }
    }

    /// `Docker Engine 28.2.2 (API 1.50)`, `Podman 4.3.1 (rootless, API 1.41)`.
    pub fn describe(&self) -> String {
        let name = match self.kind {
            EngineKind::Docker => "Docker Engine",
            EngineKind::Podman => "Podman",
        };
        let rootless = if self.rootless { "rootless, " } else { "" };
        format!("{name} {} ({rootless}API {})", self.version, self.api)
    }

    /// Containers need Podman's `keep-id` user namespace for files written
    /// in bind mounts to belong to the host user.
    pub fn keeps_host_ids(&self) -> bool {
        self.kind == EngineKind::Podman && self.rootless
    }

    /// Fits a create request to the engine: on rootless Podman, the
    /// `keep-id` user namespace (unless the request names one) and, when
    /// the request names no user, root, which is what Docker runs an image
    /// without `USER` as (`keep-id` would otherwise start it as the host
    /// user, and the entrypoint could not map `dev`).
    pub fn adapt_create(&self, body: &mut ContainerCreateBody) {
        if !self.keeps_host_ids() {
            return;
        }
        let host = body.host_config.get_or_insert_with(Default::default);
        if host.userns_mode.as_deref().unwrap_or("").is_empty() {
            host.userns_mode = Some(KEEP_ID.into());
        }
        if body.user.as_deref().unwrap_or("").is_empty() {
            body.user = Some("0:0".into());
        }
    }

    /// The name torchenv gave a local image, from the engine's listing:
    /// Podman qualifies unqualified names with `localhost/`.
    pub fn local_tag(&self, listed: &str) -> String {
        match self.kind {
            EngineKind::Podman => listed.strip_prefix("localhost/").unwrap_or(listed).into(),
            EngineKind::Docker => listed.into(),
        }
    }

    /// Why the engine would drop a GPU request without an error, if it
    /// would (Podman before [`PODMAN_CDI_REQUESTS`]): what the engine
    /// "has", for messages.
    pub fn gpu_requests_dropped(&self) -> Option<String> {
        (self.kind == EngineKind::Podman && !version_at_least(&self.version, PODMAN_CDI_REQUESTS))
            .then(|| {
                format!(
                    "the Docker-compatible API of Podman {}, which drops GPU (device) requests without an error (CDI requests work from Podman {PODMAN_CDI_REQUESTS})",
                    self.version
                )
            })
    }
}

/// Compares dotted versions numerically; a suffix (`-rc1`, `+ds1`) is
/// ignored.
fn version_at_least(have: &str, need: &str) -> bool {
    let parse = |s: &str| -> Vec<u64> {
        s.split(['-', '+'])
            .next()
            .unwrap_or("")
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    let (mut h, mut n) = (parse(have), parse(need));
    let len = h.len().max(n.len());
    h.resize(len, 0);
    n.resize(len, 0);
    h >= n
}

/// The CDI devices (`vendor.com/class=name`) the spec files in `dirs`
/// declare (JSON or YAML, `*.json`/`*.yaml`/`*.yml`); unreadable or
/// malformed files are skipped, as CDI itself does. Sorted.
pub fn cdi_devices(dirs: &[&str]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Spec {
        kind: String,
        #[serde(default)]
        devices: Vec<Device>,
    }
    #[derive(serde::Deserialize)]
    struct Device {
        name: String,
    }
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let spec_file = Path::new(&path)
                .extension()
                .is_some_and(|e| e == "json" || e == "yaml" || e == "yml");
            if !spec_file {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            // YAML is a superset of JSON: one parser reads both.
            let Ok(spec) = serde_yaml::from_str::<Spec>(&text) else {
                continue;
            };
            out.extend(
                spec.devices
                    .into_iter()
                    .map(|d| format!("{}={}", spec.kind, d.name)),
            );
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{HostConfig, SystemVersionComponents};

    fn version(components: &[(&str, &str)], v: &str) -> SystemVersion {
        SystemVersion {
            version: Some(v.into()),
            api_version: Some("1.41".into()),
            components: Some(
                components
                    .iter()
                    .map(|(name, version)| SystemVersionComponents {
                        name: (*name).into(),
                        version: (*version).into(),
                        details: None,
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn info(options: &[&str]) -> SystemInfo {
        SystemInfo {
            security_options: Some(options.iter().map(|s| (*s).into()).collect()),
            ..Default::default()
        }
    }

    fn podman(v: &str) -> Engine {
        Engine::identify(
            &version(&[("Podman Engine", v), ("Conmon", "2.1.6")], v),
            &info(&["name=seccomp,profile=default"]),
            Some(1500),
        )
    }

    #[test]
    fn identifies_podman_and_docker_as_they_answer() {
        let p = podman("4.3.1");
        assert_eq!(p.kind, EngineKind::Podman);
        assert!(p.rootless);
        assert_eq!(p.describe(), "Podman 4.3.1 (rootless, API 1.41)");
        let p = Engine::identify(
            &version(&[("Podman Engine", "4.3.1")], "4.3.1"),
            &info(&["name=seccomp,profile=default"]),
            Some(0),
        );
        assert!(!p.rootless, "root's Podman service");
        let d = Engine::identify(
            &version(&[("Engine", "20.10.24"), ("containerd", "1.6")], "20.10.24"),
            &info(&["name=seccomp,profile=builtin", "name=cgroupns"]),
            Some(0),
        );
        assert_eq!(d.kind, EngineKind::Docker);
        assert!(!d.rootless);
        assert_eq!(d.describe(), "Docker Engine 20.10.24 (API 1.41)");
        // Rootless Docker says so itself.
        let d = Engine::identify(
            &version(&[("Engine", "28.2.2")], "28.2.2"),
            &info(&["name=seccomp,profile=builtin", "name=rootless"]),
            Some(1000),
        );
        assert!(d.rootless && !d.keeps_host_ids());
    }

    #[test]
    fn rootless_podman_creates_with_keep_id_as_root() {
        let mut body = ContainerCreateBody::default();
        podman("4.3.1").adapt_create(&mut body);
        assert_eq!(body.user.as_deref(), Some("0:0"));
        assert_eq!(
            body.host_config.unwrap().userns_mode.as_deref(),
            Some(KEEP_ID)
        );
        // A user the request names (a one-shot run as a file's owner) stays.
        let mut body = ContainerCreateBody {
            user: Some("1500:1500".into()),
            host_config: Some(HostConfig::default()),
            ..Default::default()
        };
        podman("5.4.0").adapt_create(&mut body);
        assert_eq!(body.user.as_deref(), Some("1500:1500"));
        // Docker, and rootful Podman, get the request as it is.
        let mut body = ContainerCreateBody::default();
        let rootful = Engine {
            rootless: false,
            ..podman("4.3.1")
        };
        rootful.adapt_create(&mut body);
        assert_eq!(body, ContainerCreateBody::default());
    }

    #[test]
    fn podman_names_are_given_back_unqualified() {
        let p = podman("4.3.1");
        assert_eq!(p.local_tag("localhost/torchenv/a:b"), "torchenv/a:b");
        assert_eq!(
            p.local_tag("ml.example/torchenv/a:b"),
            "ml.example/torchenv/a:b"
        );
    }

    #[test]
    fn gpu_requests_are_dropped_by_podman_before_5_4() {
        assert!(podman("4.3.1")
            .gpu_requests_dropped()
            .unwrap()
            .contains("Podman 4.3.1"));
        assert!(podman("5.3.9").gpu_requests_dropped().is_some());
        assert_eq!(podman("5.4.0").gpu_requests_dropped(), None);
        assert_eq!(podman("5.10.0-rc1").gpu_requests_dropped(), None);
    }

    #[test]
    fn cdi_devices_from_json_and_yaml_specs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("nvidia.yaml"),
            "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: \"0\"\n  containerEdits: {}\n- name: all\n  containerEdits: {}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("other.json"),
            r#"{"cdiVersion":"0.5.0","kind":"vendor.dev/x","devices":[{"name":"a","containerEdits":{}}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("broken.json"), "{").unwrap();
        std::fs::write(dir.path().join("README"), "kind: not/a-spec").unwrap();
        let d = dir.path().to_str().unwrap();
        assert_eq!(
            cdi_devices(&[d, "/nonexistent"]),
            ["nvidia.com/gpu=0", "nvidia.com/gpu=all", "vendor.dev/x=a"]
        );
    }
}
