//! Environment images in a team registry. An environment's image lives
//! there as `HOST[:PORT][/PREFIX]/torchenv/<env>:<key>`, the key a hash of
//! what the image must be ([`super::image::shared_labels`]: spec, lock,
//! versions, harness sources, base), so every machine with the checkout
//! names it without compiling anything. Pushes and pulls use the user's
//! Docker credentials (`~/.docker/config.json`: `auths`, `credsStore`,
//! `credHelpers`).
//!
//! A pulled image is used only when its labels and base layers are what
//! this checkout gives (`provenance`); otherwise it is untagged again and
//! the error names the field. `image::pull_env_image` then tags it under
//! the name a local build gives it and removes the registry's name, so an
//! image looks the same however it came.
//!
//! May use: `build::provenance`, `cache`, `docker`, `progress`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::models::ImageInspect;

use super::provenance::{self, BaseLayers};
use super::BuildError;
use crate::docker::registry::Step;
use crate::docker::{Docker, DockerError};
use crate::progress::{Progress, Task};
use crate::spec::Spec;

/// The registry `build`, `up` and `check` try before building.
pub const REGISTRY_VAR: &str = "TORCHENV_REGISTRY";

type Result<T, E = BuildError> = std::result::Result<T, E>;

/// The team's registry: `TORCHENV_REGISTRY` when set (an empty value
/// turns the spec's off), else the spec's `registry:`. A malformed
/// `TORCHENV_REGISTRY` is [`BuildError::RegistryLocation`].
pub fn configured(spec: &Spec) -> Result<Option<String>> {
    match std::env::var(REGISTRY_VAR) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => location(&v, REGISTRY_VAR).map(Some),
        Err(_) => Ok(spec.registry.clone()),
    }
}

/// `text` checked as `HOST[:PORT][/PREFIX]` ([`crate::spec::registry_location`]);
/// `source` names where it came from, for the error.
pub fn location(text: &str, source: &str) -> Result<String> {
    crate::spec::registry_location(text).map_err(|why| BuildError::RegistryLocation {
        value: text.to_string(),
        source_name: source.to_string(),
        why,
    })
}

/// The registry's host (`HOST[:PORT]`), what credentials are filed under.
pub fn host(registry: &str) -> &str {
    registry.split('/').next().unwrap_or(registry)
}

/// Where the image of environment `env` with the shared labels `labels`
/// ([`super::image::shared_labels`]) lives in `registry`.
pub fn reference(registry: &str, env: &str, labels: &BTreeMap<String, String>) -> String {
    let json = serde_json::to_string(labels).expect("labels serialize");
    let key = &crate::cache::sha256_bytes(json.as_bytes())[..16];
    format!("{registry}/torchenv/{env}:{key}")
}

/// The user's Docker credentials for `host`, if any.
pub fn credentials(host: &str) -> Result<Option<DockerCredentials>> {
    let path = docker_config();
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| BuildError::failed(format!("{}: not JSON ({e})", path.display())))?;
    let helper = config["credHelpers"][host]
        .as_str()
        .or_else(|| config["credsStore"].as_str());
    if let Some(helper) = helper {
        return helper_credentials(helper, host);
    }
    let auths = config["auths"].as_object();
    let entry = auths.and_then(|a| {
        a.iter()
            .find(|(k, _)| {
                k.trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    == host
            })
            .map(|(_, v)| v)
    });
    let Some(auth) = entry.and_then(|e| e["auth"].as_str()) else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        })
        .ok_or_else(|| {
            BuildError::failed(format!(
                "{}: the `auth` of {host} is not base64 of USER:PASSWORD",
                path.display()
            ))
        })?;
    Ok(Some(DockerCredentials {
        username: Some(decoded.0),
        password: Some(decoded.1),
        serveraddress: Some(host.to_string()),
        ..DockerCredentials::default()
    }))
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("config.json"),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".docker")
            .join("config.json"),
    }
}

/// `docker-credential-<helper> get`, as the Docker CLI asks it.
fn helper_credentials(helper: &str, host: &str) -> Result<Option<DockerCredentials>> {
    use std::io::Write;
    let program = format!("docker-credential-{helper}");
    let child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = child.map_err(|e| BuildError::failed(format!("running {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(host.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| BuildError::failed(format!("running {program}: {e}")))?;
    if !out.status.success() {
        // The helper has nothing for this host.
        return Ok(None);
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| BuildError::failed(format!("{program} get: {e}")))?;
    Ok(Some(DockerCredentials {
        username: v["Username"].as_str().map(str::to_string),
        password: v["Secret"].as_str().map(str::to_string),
        serveraddress: Some(host.to_string()),
        ..DockerCredentials::default()
    }))
}

/// A failed registry call as an error that says what to do.
fn registry_error(registry: &str, op: &'static str, e: DockerError) -> BuildError {
    if e.is_unreachable() {
        return BuildError::Docker(Box::new(e));
    }
    let why = e.to_string();
    let lower = why.to_lowercase();
    let help = if [
        "unauthorized",
        "authentication required",
        "denied",
        "no basic auth",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        format!("log in first (`docker login {}`): torchenv uses the credentials in ~/.docker/config.json", host(registry))
    } else if [
        "connection refused",
        "no such host",
        "timeout",
        "i/o timeout",
        "dial tcp",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        format!("is the registry at {registry} up and reachable from the Docker engine? Set {REGISTRY_VAR}= (empty) to build here instead")
    } else {
        format!("the engine's answer is above; set {REGISTRY_VAR}= (empty) to build here instead")
    };
    BuildError::Registry {
        registry: registry.to_string(),
        op,
        why,
        help,
    }
}

/// A registry's missing manifest, as the engine reports it.
fn is_missing(e: &DockerError) -> bool {
    let text = e.to_string().to_lowercase();
    e.is_not_found() || text.contains("manifest unknown") || text.contains("not found")
}

/// Per-layer progress bars of a pull.
struct Layers<'a> {
    progress: &'a Progress,
    tasks: HashMap<String, Task>,
}

impl Layers<'_> {
    fn step(&mut self, s: Step) {
        // Messages about the image as a whole carry its tag as their id.
        if s.layer.is_empty()
            || ["Pulling from", "Digest:", "Status:"]
                .iter()
                .any(|p| s.status.starts_with(p))
        {
            return;
        }
        let task = self.tasks.entry(s.layer.clone()).or_insert_with(|| {
            self.progress.bytes(
                format!("layer {}", &s.layer[..s.layer.len().min(12)]),
                s.total,
            )
        });
        if let Some(total) = s.total {
            task.set_length(total);
        }
        if let Some(current) = s.current {
            task.inc(current.saturating_sub(task.position()));
        }
        task.line(&s.status);
    }

    fn finish(self) {
        for (_, t) in self.tasks {
            t.finish("done");
        }
    }
}

/// Pulls `remote` from `registry` and checks it against `expected` labels
/// over `base` layers. `None` when the registry has none (a miss); an
/// image that is not what was expected is untagged again and refused.
/// The image stays under `remote` for the caller to adopt.
pub async fn pull(
    docker: &Docker,
    remote: &str,
    registry: &str,
    expected: &BTreeMap<String, String>,
    base: &BaseLayers,
    progress: &Progress,
) -> Result<Option<ImageInspect>> {
    let creds = credentials(host(registry))?;
    progress.println(format!("pulling {remote}"));
    let mut layers = Layers {
        progress,
        tasks: HashMap::new(),
    };
    let pulled = docker.image_pull(remote, creds, |s| layers.step(s)).await;
    layers.finish();
    match pulled {
        Err(e) if is_missing(&e) => {
            progress.println(format!("{registry} has no {remote}: building"));
            return Ok(None);
        }
        Err(e) => return Err(registry_error(registry, "pull", e)),
        Ok(()) => {}
    }
    let Some(found) = docker.image_inspect(remote).await? else {
        return Err(BuildError::failed(format!(
            "the engine pulled {remote} but does not have it"
        )));
    };
    if let Err(e) = provenance::verify(docker, remote, &found, expected, base).await {
        let _ = docker.image_remove(remote).await;
        return Err(e);
    }
    Ok(Some(found))
}

/// Pushes the local image `tag` to `remote` in `registry`; the name
/// `remote` is removed here again afterwards.
pub async fn push(
    docker: &Docker,
    tag: &str,
    remote: &str,
    registry: &str,
    progress: &Progress,
) -> Result<()> {
    let creds = credentials(host(registry))?;
    let (repo, name) = crate::docker::images::split_tag(remote);
    docker.image_tag(tag, repo, name).await?;
    let task = progress.spinner(format!("push {remote}"));
    let pushed = docker
        .image_push(remote, creds, |s| task.line(&s.status))
        .await;
    let _ = docker.image_remove(remote).await;
    match pushed {
        Ok(()) => {
            task.finish("pushed");
            Ok(())
        }
        Err(e) => {
            task.fail("push failed");
            Err(registry_error(registry, "push", e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_what_credentials_are_filed_under() {
        assert_eq!(host("127.0.0.1:5000/team/ml"), "127.0.0.1:5000");
        assert_eq!(host("HOST:443"), "HOST:443");
    }

    #[test]
    fn credentials_come_from_the_auths_of_the_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths": {"https://127.0.0.1:5000": {"auth": "YWxpY2U6czNjcmV0"}}}"#,
        )
        .unwrap();
        // Only this test reads DOCKER_CONFIG (nextest: a process per test).
        std::env::set_var("DOCKER_CONFIG", dir.path());
        let c = credentials("127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(c.username.as_deref(), Some("alice"));
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert!(credentials("127.0.0.1:5001").unwrap().is_none());
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths": {"127.0.0.1:5000": {"auth": "!!"}}}"#,
        )
        .unwrap();
        assert!(credentials("127.0.0.1:5000").is_err());
        std::env::remove_var("DOCKER_CONFIG");
    }
}
