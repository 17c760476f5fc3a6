//! `environments.yaml`: parsing, validation and resolution of defaults.
//!
//! [`Spec::load`] either returns a complete, validated spec or a
//! [`SpecError`] that names the file, line and column and shows the line.

// A spec error is made once per run, on the way out; boxing it would only
// add noise to every `?` in this module.
#![allow(clippy::result_large_err)]

mod locate;
mod raw;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use miette::{Diagnostic, NamedSource, SourceSpan};
use serde::Serialize;

use crate::compat;
use locate::Step;
use raw::{RawBase, RawEnv, RawGpus, RawPort, RawSpec};

pub use locate::line_col;

/// The file name torchenv looks for in the repository root.
pub const SPEC_FILE: &str = "environments.yaml";

/// A spec error: what is wrong, where, and how to fix it.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{file}:{line}:{column}: {message}")]
#[diagnostic(code(torchenv::spec))]
pub struct SpecError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("{label}")]
    span: SourceSpan,
    label: String,
    #[help]
    help: Option<String>,
}

/// A validated spec with every environment's defaults filled in.
#[derive(Debug, Clone, Serialize)]
pub struct Spec {
    #[serde(skip)]
    pub path: PathBuf,
    #[serde(skip)]
    pub source: String,
    pub default: String,
    pub environments: BTreeMap<String, Env>,
}

/// One environment, resolved.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Env {
    pub name: String,
    pub description: String,
    pub torch: String,
    pub torchvision: String,
    /// The CUDA version the spec expects (checked against the lock).
    pub cuda: Option<String>,
    pub python: String,
    pub base: Base,
    pub pip: Vec<String>,
    pub apt: Vec<String>,
    pub gpus: Gpus,
    pub host_ip: IpAddr,
    pub jupyter: Option<Jupyter>,
    pub ssh: Option<Ssh>,
    pub ports: Vec<PortMapping>,
    pub volumes: Vec<Volume>,
    pub workspace: PathBuf,
    pub shm_size: u64,
    pub ipc: Ipc,
    pub env: BTreeMap<String, String>,
    pub harness: Harness,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, Hash)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Base {
    /// Bootstrapped from the host's configured Debian mirror.
    Debian { suite: String },
    /// A pinned image for users with a registry: `REF@sha256:…`.
    Image { reference: String },
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "mode", content = "value", rename_all = "snake_case")]
pub enum Gpus {
    All,
    None,
    /// All GPUs when the daemon has the NVIDIA runtime or CDI devices, else none.
    Auto,
    Count(u32),
    /// Device indexes or UUIDs.
    Ids(Vec<String>),
    /// Fully qualified CDI device names, e.g. `nvidia.com/gpu=0`.
    Cdi(Vec<String>),
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Jupyter {
    pub port: u16,
    /// Fixed token from the spec; otherwise one is generated at `up`.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ssh {
    pub port: u16,
    /// Public key to install; otherwise `~/.ssh/*.pub` at `up`.
    pub public_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PortMapping {
    pub host: u16,
    pub container: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Volume {
    pub source: VolumeSource,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum VolumeSource {
    /// A host path, absolute (relative paths are resolved against the spec's folder).
    Bind(PathBuf),
    /// A named Docker volume.
    Named(String),
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Ipc {
    Private,
    Host,
    Shareable,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Harness {
    pub models: Vec<String>,
    pub dataset: PathBuf,
    pub tolerances: Tolerances,
}

/// How far a run may drift from its baseline before the gate fails.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Tolerances {
    /// Allowed top-1 drop, in percentage points.
    pub top1_drop: f64,
    /// Allowed number of samples whose top-1 class changes.
    pub max_flips: u32,
    /// Allowed per-sample probability difference on CPU.
    pub prob_abs_cpu: f64,
    /// Allowed per-sample probability difference on GPU.
    pub prob_abs_gpu: f64,
}

/// Models the harness can evaluate.
pub const MODELS: &[&str] = &[
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "efficientnet_lite0",
];

impl Spec {
    /// Reads and validates the spec at `path`.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let source = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            message: format!("cannot read spec: {e}"),
            src: NamedSource::new(path.display().to_string(), String::new()),
            span: (0, 0).into(),
            label: "here".into(),
            help: Some("run from the repository root or pass --spec PATH".into()),
        })?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Self::parse(&path, source)
    }

    /// Validates `source` as if read from `path` (relative paths in the spec
    /// resolve against `path`'s folder).
    pub fn parse(path: &Path, source: String) -> Result<Spec, SpecError> {
        let ctx = Ctx {
            path,
            source: &source,
        };
        let raw: RawSpec = serde_yaml::from_str(&source).map_err(|e| ctx.yaml_error(&e))?;
        if raw.version != 1 {
            return Err(ctx.error(
                &[Step::Key("version")],
                format!("unsupported spec version {}", raw.version),
                "only version 1 is understood",
                None,
            ));
        }
        if raw.environments.0.is_empty() {
            return Err(ctx.error(
                &[Step::Key("environments")],
                "no environments defined".into(),
                "empty",
                Some("declare at least one environment under `environments:`".into()),
            ));
        }
        let mut environments = BTreeMap::new();
        for (name, env) in &raw.environments.0 {
            let resolved = ctx.resolve(name, &raw.defaults, env)?;
            environments.insert(name.clone(), resolved);
        }
        let default = match raw.default {
            Some(d) if environments.contains_key(&d) => d,
            Some(d) => {
                return Err(ctx.error(
                    &[Step::Key("default")],
                    format!("default environment `{d}` is not defined"),
                    "unknown environment",
                    Some(format!("defined: {}", names(&environments))),
                ))
            }
            None if environments.len() == 1 => environments.keys().next().cloned().unwrap(),
            None => {
                return Err(ctx.error(
                    &[Step::Key("environments")],
                    "several environments but no `default:`".into(),
                    "which one does `cargo xtask up` start?",
                    Some("add `default: NAME` at the top level".into()),
                ))
            }
        };
        Ok(Spec {
            path: path.to_path_buf(),
            source,
            default,
            environments,
        })
    }

    /// The environment called `name`, or the default when `None`.
    pub fn env(&self, name: Option<&str>) -> Result<&Env, UnknownEnv> {
        let name = name.unwrap_or(&self.default);
        self.environments.get(name).ok_or_else(|| UnknownEnv {
            name: name.to_string(),
            file: self.path.display().to_string(),
            known: names(&self.environments),
        })
    }

    /// The environments a command acts on: one by name, the default, or all.
    pub fn select(&self, name: Option<&str>, all: bool) -> Result<Vec<&Env>, UnknownEnv> {
        if all {
            Ok(self.environments.values().collect())
        } else {
            Ok(vec![self.env(name)?])
        }
    }

    /// Points at `path` inside this spec: for errors found after loading
    /// (e.g. a lock that disagrees with `cuda:`).
    pub fn error_at(
        &self,
        path: &[&str],
        message: String,
        label: &str,
        help: Option<String>,
    ) -> SpecError {
        let steps: Vec<Step> = path.iter().map(|k| Step::Key(k)).collect();
        Ctx {
            path: &self.path,
            source: &self.source,
        }
        .error(&steps, message, label, help)
    }
}

#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("unknown environment `{name}` (not in {file})")]
#[diagnostic(code(torchenv::unknown_env), help("defined: {known}"))]
pub struct UnknownEnv {
    pub name: String,
    pub file: String,
    pub known: String,
}

fn names<V>(map: &BTreeMap<String, V>) -> String {
    map.keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

struct Ctx<'a> {
    path: &'a Path,
    source: &'a str,
}

impl Ctx<'_> {
    fn error(
        &self,
        path: &[Step],
        message: String,
        label: &str,
        help: Option<String>,
    ) -> SpecError {
        let (offset, len) = locate::locate(self.source, path);
        self.error_at(offset, len, message, label, help)
    }

    fn error_at(
        &self,
        offset: usize,
        len: usize,
        message: String,
        label: &str,
        help: Option<String>,
    ) -> SpecError {
        let (line, column) = line_col(self.source, offset);
        SpecError {
            file: self.path.display().to_string(),
            line,
            column,
            message,
            src: NamedSource::new(self.path.display().to_string(), self.source.to_string()),
            span: (offset, len).into(),
            label: label.to_string(),
            help,
        }
    }

    fn yaml_error(&self, e: &serde_yaml::Error) -> SpecError {
        let text = e.to_string();
        // serde_yaml appends " at line L column C"; the location is ours to show.
        let message = match text.rfind(" at line ") {
            Some(i) => text[..i].to_string(),
            None => text.clone(),
        };
        let mut offset = e
            .location()
            .map(|l| locate::offset_of(self.source, l.line(), l.column()))
            .unwrap_or(0);
        // A duplicate environment: point at the second definition.
        if let Some(dup) = message
            .split("duplicate environment `")
            .nth(1)
            .and_then(|r| r.split('`').next())
        {
            let key = format!("{dup}:");
            let mut defs = line_offsets_of(self.source, |line| {
                line.trim_start() == key || line.trim_start().starts_with(&format!("{key} "))
            });
            if let Some(second) = defs.nth(1) {
                offset = second;
            }
        }
        let len = self.source[offset..]
            .find('\n')
            .unwrap_or(self.source.len() - offset);
        let help = if message.contains("unknown field") {
            Some("check the spelling; environments.yaml documents every key".to_string())
        } else {
            None
        };
        self.error_at(offset, len.max(1), message, "here", help)
    }

    fn resolve(&self, name: &str, defaults: &RawEnv, env: &RawEnv) -> Result<Env, SpecError> {
        let err = |field: &str, message: String, label: &str, help: Option<String>| {
            self.error(&env_path(name, field), message, label, help)
        };
        if !valid_name(name) {
            return Err(err(
                "",
                format!("invalid environment name `{name}`"),
                "not a valid name",
                Some("use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit (it becomes a Docker image name)".into()),
            ));
        }
        macro_rules! pick {
            ($field:ident) => {
                env.$field.clone().or_else(|| defaults.$field.clone())
            };
        }

        let torch = pick!(torch).ok_or_else(|| {
            err(
                "",
                format!("environment `{name}` has no `torch:` version"),
                "torch missing",
                Some("add e.g. `torch: 2.6.0`".into()),
            )
        })?;
        if compat::tch_for_torch(&torch).is_none() {
            return Err(err(
                "torch",
                format!("unknown torch version `{torch}`"),
                "no harness (tch) release links this torch",
                Some(format!(
                    "supported torch versions: {}",
                    compat::supported_torch().join(", ")
                )),
            ));
        }
        let torchvision = pick!(torchvision).ok_or_else(|| {
            err(
                "",
                format!("environment `{name}` has no `torchvision:` version"),
                "torchvision missing",
                Some("add e.g. `torchvision: 0.21.0`".into()),
            )
        })?;
        if !is_version(&torchvision) {
            return Err(err(
                "torchvision",
                format!("`{torchvision}` is not a version"),
                "expected e.g. 0.21.0",
                None,
            ));
        }
        let cuda = pick!(cuda);
        if let Some(c) = &cuda {
            if !is_major_minor(c) {
                return Err(err(
                    "cuda",
                    format!("`{c}` is not a CUDA version"),
                    "expected MAJOR.MINOR, e.g. 12.4",
                    None,
                ));
            }
        }

        let base = match pick!(base) {
            None => Base::Debian {
                suite: "bookworm".into(),
            },
            Some(RawBase {
                debian: Some(_),
                image: Some(_),
            }) => {
                return Err(err(
                    "base",
                    "`base:` sets both `debian:` and `image:`".into(),
                    "choose one",
                    None,
                ))
            }
            Some(RawBase {
                debian: Some(suite),
                image: None,
            }) => {
                if compat::debian_python(&suite).is_none() {
                    return Err(err(
                        "base",
                        format!("unsupported Debian suite `{suite}`"),
                        "unknown suite",
                        Some(format!(
                            "supported: {}",
                            compat::DEBIAN_SUITES
                                .iter()
                                .map(|(s, _)| *s)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    ));
                }
                Base::Debian { suite }
            }
            Some(RawBase {
                debian: None,
                image: Some(reference),
            }) => {
                if !is_pinned_image(&reference) {
                    return Err(err(
                        "base",
                        format!("base image `{reference}` is not pinned by digest"),
                        "expected REF@sha256:<64 hex>",
                        Some(
                            "a tag can move; pin the digest so every machine builds the same image"
                                .into(),
                        ),
                    ));
                }
                Base::Image { reference }
            }
            Some(RawBase {
                debian: None,
                image: None,
            }) => {
                return Err(err(
                    "base",
                    "`base:` needs `debian:` or `image:`".into(),
                    "empty base",
                    None,
                ))
            }
        };
        let python = match (pick!(python), &base) {
            (Some(p), Base::Debian { suite }) => {
                let expected = compat::debian_python(suite).unwrap();
                if p != expected {
                    return Err(err(
                        "python",
                        format!("python `{p}` does not match Debian {suite}, which ships python {expected}"),
                        "python version of the base",
                        Some(format!("set `python: \"{expected}\"` or choose another `base: debian:` suite")),
                    ));
                }
                p
            }
            (None, Base::Debian { suite }) => compat::debian_python(suite).unwrap().to_string(),
            (Some(p), Base::Image { .. }) => p,
            (None, Base::Image { .. }) => {
                return Err(err(
                    "python",
                    "a `base: image:` needs an explicit `python:` version".into(),
                    "python missing",
                    None,
                ))
            }
        };
        if !is_major_minor(&python) {
            return Err(err(
                "python",
                format!("`{python}` is not a Python version"),
                "expected MAJOR.MINOR",
                None,
            ));
        }

        let pip = pick!(pip).unwrap_or_default();
        for (i, req) in pip.iter().enumerate() {
            if req.trim().is_empty()
                || req.trim_start().starts_with('-')
                || req.contains(char::is_whitespace) && req.contains(" -")
            {
                return Err(self.error(
                    &[Step::Key("environments"), Step::Key(name), Step::Key("pip"), Step::Item(i)],
                    format!("`{req}` is not a pip requirement"),
                    "expected NAME or NAME==VERSION",
                    Some("pip options cannot be passed here; the index is the host's pip configuration".into()),
                ));
            }
        }
        let apt = pick!(apt).unwrap_or_default();
        for (i, pkg) in apt.iter().enumerate() {
            if !valid_debian_package(pkg) {
                return Err(self.error(
                    &[
                        Step::Key("environments"),
                        Step::Key(name),
                        Step::Key("apt"),
                        Step::Item(i),
                    ],
                    format!("`{pkg}` is not a Debian package name"),
                    "invalid package name",
                    None,
                ));
            }
        }

        let gpus = match pick!(gpus).unwrap_or(RawGpus::Word("auto".into())) {
            RawGpus::Count(0) => Gpus::None,
            RawGpus::Count(n) => Gpus::Count(n),
            RawGpus::Word(w) => match w.as_str() {
                "all" => Gpus::All,
                "none" => Gpus::None,
                "auto" => Gpus::Auto,
                other => {
                    return Err(err(
                        "gpus",
                        format!("invalid `gpus:` value `{other}`"),
                        "not a GPU selection",
                        Some(
                            "use all, none, auto, a count, or a list of device ids / CDI names"
                                .into(),
                        ),
                    ))
                }
            },
            RawGpus::Devices(ids) => {
                let cdi = ids.iter().filter(|d| d.contains('=')).count();
                if ids.is_empty() {
                    return Err(err(
                        "gpus",
                        "empty `gpus:` list".into(),
                        "no devices",
                        Some("use `none` for no GPU".into()),
                    ));
                } else if cdi == ids.len() {
                    for id in &ids {
                        let (kind, dev) = id.split_once('=').unwrap();
                        if !kind.contains('/') || dev.is_empty() {
                            return Err(err(
                                "gpus",
                                format!("invalid CDI device name `{id}`"),
                                "expected VENDOR/CLASS=NAME",
                                Some("e.g. nvidia.com/gpu=0".into()),
                            ));
                        }
                    }
                    Gpus::Cdi(ids)
                } else if cdi == 0 {
                    if let Some(bad) = ids
                        .iter()
                        .find(|id| id.is_empty() || id.contains(char::is_whitespace))
                    {
                        return Err(err(
                            "gpus",
                            format!("invalid GPU id `{bad}`"),
                            "expected an index or a GPU UUID",
                            None,
                        ));
                    }
                    Gpus::Ids(ids)
                } else {
                    return Err(err(
                        "gpus",
                        "`gpus:` mixes CDI names and device ids".into(),
                        "mixed list",
                        None,
                    ));
                }
            }
        };

        let host_ip_text = pick!(host_ip).unwrap_or_else(|| "127.0.0.1".into());
        let host_ip: IpAddr = host_ip_text.parse().map_err(|_| {
            err(
                "host_ip",
                format!("`{host_ip_text}` is not an IP address"),
                "invalid address",
                None,
            )
        })?;

        let jupyter_raw = merge_jupyter(defaults.jupyter.as_ref(), env.jupyter.as_ref());
        let jupyter = jupyter_raw.enabled.unwrap_or(true).then(|| Jupyter {
            port: jupyter_raw.port.unwrap_or(8888),
            token: jupyter_raw.token.clone(),
        });
        if let Some(j) = &jupyter {
            if j.port == 0 {
                return Err(err(
                    "jupyter.port",
                    "Jupyter host port 0".into(),
                    "port must be 1-65535",
                    None,
                ));
            }
            if let Some(t) = &j.token {
                if t.len() < 32 {
                    return Err(err(
                        "jupyter.token",
                        "Jupyter token shorter than 32 characters".into(),
                        "too short to be a secret",
                        Some("omit `token:` and one is generated at `up`".into()),
                    ));
                }
            }
        }
        let ssh_raw = merge_ssh(defaults.ssh.as_ref(), env.ssh.as_ref());
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let ssh = ssh_raw.enabled.unwrap_or(true).then(|| Ssh {
            port: ssh_raw.port.unwrap_or(2222),
            public_key: ssh_raw.public_key.as_ref().map(|p| resolve_path(dir, p)),
        });
        if ssh.as_ref().is_some_and(|s| s.port == 0) {
            return Err(err(
                "ssh.port",
                "SSH host port 0".into(),
                "port must be 1-65535",
                None,
            ));
        }

        let mut ports = Vec::new();
        for (i, p) in pick!(ports).unwrap_or_default().iter().enumerate() {
            let here = [
                Step::Key("environments"),
                Step::Key(name),
                Step::Key("ports"),
                Step::Item(i),
            ];
            let mapping = match p {
                RawPort::Short(s) => parse_port(s).ok_or_else(|| {
                    self.error(
                        &here,
                        format!("invalid port mapping `{s}`"),
                        "expected HOST:CONTAINER[/tcp|/udp]",
                        Some("ports are 1-65535, e.g. \"6006:6006\"".into()),
                    )
                })?,
                RawPort::Long(l) => {
                    let protocol = match l.protocol.as_deref() {
                        None | Some("tcp") => Protocol::Tcp,
                        Some("udp") => Protocol::Udp,
                        Some(other) => {
                            return Err(self.error(
                                &here,
                                format!("invalid protocol `{other}`"),
                                "tcp or udp",
                                None,
                            ))
                        }
                    };
                    if l.host == 0 || l.container == 0 {
                        return Err(self.error(
                            &here,
                            "port 0 in a mapping".into(),
                            "ports are 1-65535",
                            None,
                        ));
                    }
                    PortMapping {
                        host: l.host,
                        container: l.container,
                        protocol,
                    }
                }
            };
            ports.push(mapping);
        }
        let mut taken: Vec<(u16, &str)> = Vec::new();
        if let Some(j) = &jupyter {
            taken.push((j.port, "jupyter.port"));
        }
        if let Some(s) = &ssh {
            taken.push((s.port, "ssh.port"));
        }
        for p in &ports {
            taken.push((p.host, "ports"));
        }
        for (i, (port, field)) in taken.iter().enumerate() {
            if let Some((_, other)) = taken[..i].iter().find(|(q, _)| q == port) {
                return Err(err(
                    field,
                    format!("host port {port} is used twice in `{name}` ({other} and {field})"),
                    "duplicate host port",
                    None,
                ));
            }
        }

        let mut volumes = Vec::new();
        for (i, v) in pick!(volumes).unwrap_or_default().iter().enumerate() {
            let here = |k: &'static str| {
                vec![
                    Step::Key("environments"),
                    Step::Key(name),
                    Step::Key("volumes"),
                    Step::Item(i),
                    Step::Key(k),
                ]
            };
            if !v.target.starts_with('/') {
                return Err(self.error(
                    &here("target"),
                    format!("volume target `{}` is not an absolute path", v.target),
                    "expected /path inside the container",
                    None,
                ));
            }
            let looks_like_path = v.source.starts_with(['/', '.', '~']);
            let source = match v.kind.as_deref() {
                Some("bind") => VolumeSource::Bind(resolve_path(dir, &v.source)),
                Some("volume") => VolumeSource::Named(v.source.clone()),
                None if looks_like_path => VolumeSource::Bind(resolve_path(dir, &v.source)),
                None => VolumeSource::Named(v.source.clone()),
                Some(other) => {
                    return Err(self.error(
                        &here("type"),
                        format!("invalid volume type `{other}`"),
                        "bind or volume",
                        None,
                    ))
                }
            };
            if let VolumeSource::Named(n) = &source {
                if !valid_volume_name(n) {
                    return Err(self.error(
                        &here("source"),
                        format!("`{n}` is neither a path nor a volume name"),
                        "invalid source",
                        Some("host paths start with /, ./, ../ or ~; volume names use letters, digits, '_', '.', '-'".into()),
                    ));
                }
            }
            volumes.push(Volume {
                source,
                target: v.target.clone(),
                read_only: v.read_only,
            });
        }
        let workspace = resolve_path(
            dir,
            &pick!(workspace).unwrap_or_else(|| format!("./workspace/{name}")),
        );

        let shm_text = pick!(shm_size).unwrap_or_else(|| "8g".into());
        let shm_size = parse_size(&shm_text).ok_or_else(|| {
            err(
                "shm_size",
                format!("invalid size `{shm_text}`"),
                "expected e.g. 512m, 16g or bytes",
                None,
            )
        })?;
        let ipc = match pick!(ipc).as_deref() {
            None | Some("private") => Ipc::Private,
            Some("host") => Ipc::Host,
            Some("shareable") => Ipc::Shareable,
            Some(other) => {
                return Err(err(
                    "ipc",
                    format!("invalid ipc mode `{other}`"),
                    "private, shareable or host",
                    None,
                ))
            }
        };

        let mut vars = defaults.env.clone().unwrap_or_default();
        vars.extend(env.env.clone().unwrap_or_default());
        if let Some(bad) = vars.keys().find(|k| !valid_env_var(k)) {
            return Err(err(
                "env",
                format!("invalid environment variable name `{bad}`"),
                "expected [A-Za-z_][A-Za-z0-9_]*",
                None,
            ));
        }

        let harness = self.resolve_harness(name, defaults, env, dir)?;
        Ok(Env {
            name: name.to_string(),
            description: pick!(description).unwrap_or_default(),
            torch,
            torchvision,
            cuda,
            python,
            base,
            pip,
            apt,
            gpus,
            host_ip,
            jupyter,
            ssh,
            ports,
            volumes,
            workspace,
            shm_size,
            ipc,
            env: vars,
            harness,
        })
    }

    fn resolve_harness(
        &self,
        name: &str,
        defaults: &RawEnv,
        env: &RawEnv,
        dir: &Path,
    ) -> Result<Harness, SpecError> {
        let d = defaults.harness.clone().unwrap_or_default();
        let e = env.harness.clone().unwrap_or_default();
        let at = [
            Step::Key("environments"),
            Step::Key(name),
            Step::Key("harness"),
        ];
        let models = e
            .models
            .or(d.models)
            .unwrap_or_else(|| vec!["efficientnet_lite0".into()]);
        if let Some(bad) = models.iter().find(|m| !MODELS.contains(&m.as_str())) {
            return Err(self.error(
                &at,
                format!("unknown model `{bad}`"),
                "not a harness model",
                Some(format!("models: {}", MODELS.join(", "))),
            ));
        }
        let dataset = resolve_path(
            dir,
            &e.dataset
                .or(d.dataset)
                .unwrap_or_else(|| "fixtures/images".into()),
        );
        let dt = d.tolerances.unwrap_or_default();
        let et = e.tolerances.unwrap_or_default();
        let tolerances = Tolerances {
            top1_drop: et.top1_drop.or(dt.top1_drop).unwrap_or(0.0),
            max_flips: et.max_flips.or(dt.max_flips).unwrap_or(0),
            prob_abs_cpu: et.prob_abs_cpu.or(dt.prob_abs_cpu).unwrap_or(1e-3),
            prob_abs_gpu: et.prob_abs_gpu.or(dt.prob_abs_gpu).unwrap_or(1e-2),
        };
        for (v, key) in [
            (tolerances.top1_drop, "top1_drop"),
            (tolerances.prob_abs_cpu, "prob_abs_cpu"),
            (tolerances.prob_abs_gpu, "prob_abs_gpu"),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(self.error(
                    &at,
                    format!("tolerance `{key}` is {v}"),
                    "must be a finite number >= 0",
                    None,
                ));
            }
        }
        Ok(Harness {
            models,
            dataset,
            tolerances,
        })
    }
}

/// Offsets of the first non-blank character of each line matching `pred`.
fn line_offsets_of<'a>(
    source: &'a str,
    pred: impl Fn(&str) -> bool + 'a,
) -> impl Iterator<Item = usize> + 'a {
    let mut offset = 0;
    source.split_inclusive('\n').filter_map(move |line| {
        let start = offset;
        offset += line.len();
        pred(line.trim_end()).then(|| start + (line.len() - line.trim_start().len()))
    })
}

fn merge_jupyter(d: Option<&raw::RawJupyter>, e: Option<&raw::RawJupyter>) -> raw::RawJupyter {
    let d = d.cloned().unwrap_or_default();
    let e = e.cloned().unwrap_or_default();
    raw::RawJupyter {
        enabled: e.enabled.or(d.enabled),
        port: e.port.or(d.port),
        token: e.token.or(d.token),
    }
}

fn merge_ssh(d: Option<&raw::RawSsh>, e: Option<&raw::RawSsh>) -> raw::RawSsh {
    let d = d.cloned().unwrap_or_default();
    let e = e.cloned().unwrap_or_default();
    raw::RawSsh {
        enabled: e.enabled.or(d.enabled),
        port: e.port.or(d.port),
        public_key: e.public_key.or(d.public_key),
    }
}

/// The path of `field` in environment `name`; `field` may be dotted
/// (`ssh.port`) or empty (the environment itself).
fn env_path<'a>(name: &'a str, field: &'a str) -> Vec<Step<'a>> {
    let mut steps = vec![Step::Key("environments"), Step::Key(name)];
    steps.extend(field.split('.').filter(|f| !f.is_empty()).map(Step::Key));
    steps
}

fn resolve_path(dir: &Path, p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    let path = Path::new(p);
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    };
    normalize(&joined)
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && s.len() <= 64
}

fn valid_volume_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn valid_debian_package(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() >= 2
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
}

fn valid_env_var(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

fn is_major_minor(s: &str) -> bool {
    is_version(s) && s.split('.').count() == 2
}

fn is_pinned_image(s: &str) -> bool {
    match s.rsplit_once("@sha256:") {
        Some((name, digest)) => {
            !name.is_empty() && digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit())
        }
        None => false,
    }
}

fn parse_port(s: &str) -> Option<PortMapping> {
    let (ports, protocol) = match s.split_once('/') {
        Some((p, "tcp")) => (p, Protocol::Tcp),
        Some((p, "udp")) => (p, Protocol::Udp),
        Some(_) => return None,
        None => (s, Protocol::Tcp),
    };
    let (h, c) = ports.split_once(':')?;
    let host: u16 = h.parse().ok().filter(|p| *p != 0)?;
    let container: u16 = c.parse().ok().filter(|p| *p != 0)?;
    Some(PortMapping {
        host,
        container,
        protocol,
    })
}

/// Parses `512m`, `16g`, `1.5g`, `1073741824` into bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let value: f64 = num.parse().ok()?;
    (value.is_finite() && value > 0.0).then_some((value * mult as f64) as u64)
}

#[cfg(test)]
mod tests;
