//! `environments.yaml`: parsing, validation and resolution of defaults.
//!
//! [`Spec::load`] either returns a complete, validated spec or a
//! [`SpecError`] that names the file, line and column and shows the line.
//!
//! May use: nothing else of the crate.

// A spec error is made once per run, on the way out; boxing it would only
// add noise to every `?` in this module.
#![allow(clippy::result_large_err)]

mod container;
mod exposure;
mod locate;
mod raw;
mod resolve;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use miette::{Diagnostic, NamedSource, SourceSpan};
use serde::Serialize;

use locate::Step;
use raw::RawSpec;

pub use container::{CAPABILITIES, DEFAULT_PIDS_LIMIT, WORKSPACE_TARGET};
pub use locate::line_col;

/// The file name torchenv looks for in the repository root.
pub const SPEC_FILE: &str = "environments.yaml";

/// The Debian packages `cuda_toolkit: true` adds to `apt:`: nvcc's host
/// compiler and the headers `torch.utils.cpp_extension` compiles against.
pub const TOOLKIT_APT: [&str; 2] = ["g++", "python3-dev"];

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
    /// `registry:`: the team's registry (`HOST[:PORT][/PREFIX]`), which
    /// `build`, `up`, `check --no-build` and `pull` try before building;
    /// `TORCHENV_REGISTRY` overrides it.
    pub registry: Option<String>,
    pub environments: BTreeMap<String, Env>,
}

/// Checks a registry location, `HOST[:PORT][/PREFIX]` (what `registry:`,
/// `TORCHENV_REGISTRY` and `--registry` take), and returns it without a
/// trailing `/`; the error says what is wrong with it.
pub fn registry_location(text: &str) -> Result<String, String> {
    let r = text.trim().trim_end_matches('/');
    if r.is_empty() {
        return Err("is empty".into());
    }
    if r.contains("://") {
        return Err(format!(
            "has a scheme: write HOST[:PORT][/PREFIX], e.g. `{}`",
            r.split_once("://").map(|(_, rest)| rest).unwrap_or(r)
        ));
    }
    let (host, prefix) = r.split_once('/').unwrap_or((r, ""));
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let host_ok = !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !host_ok {
        return Err(format!("names `{host}`, not a host name or address"));
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("has port `{p}`, not one of 1-65535"));
        }
    }
    // Repository path components: lower case, digits, `.`, `_`, `-`.
    let prefix_ok = prefix.is_empty()
        || prefix.split('/').all(|c| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
        });
    if !prefix_ok {
        return Err(format!(
            "has the prefix `{prefix}`, not a repository path (lower-case letters, digits, `.`, `_`, `-`, separated by `/`; no tag)"
        ));
    }
    Ok(r.to_string())
}

/// One environment, resolved.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Env {
    pub name: String,
    pub description: String,
    pub torch: String,
    pub torchvision: String,
    /// torchaudio's version, when the environment has it (its releases
    /// follow torch's: 2.6.0 for torch 2.6.0).
    pub torchaudio: Option<String>,
    /// The CUDA version the spec expects (checked against the lock).
    pub cuda: Option<String>,
    /// nvcc, the CUDA headers and a host compiler in the image (`CUDA_HOME`
    /// set), for building CUDA extensions: the toolkit wheels of the
    /// resolved CUDA are locked with the rest; `apt` then holds
    /// [`TOOLKIT_APT`].
    pub cuda_toolkit: bool,
    pub python: String,
    pub base: Base,
    pub pip: Vec<String>,
    pub apt: Vec<String>,
    pub gpus: Gpus,
    pub host_ip: IpAddr,
    /// `expose: true`: the owner accepts that a non-loopback `host_ip`
    /// makes the published ports reachable from the network (a
    /// non-loopback `host_ip` without it is a spec error).
    pub expose: bool,
    pub jupyter: Option<Jupyter>,
    pub ssh: Option<Ssh>,
    pub ports: Vec<PortMapping>,
    pub volumes: Vec<Volume>,
    pub workspace: PathBuf,
    pub shm_size: u64,
    pub ipc: Ipc,
    pub env: BTreeMap<String, String>,
    pub security: Security,
    pub harness: Harness,
}

impl Env {
    /// "torch 2.6.0 + torchvision 0.21.0[ + torchaudio 2.6.0]", for messages.
    pub fn packages(&self) -> String {
        let mut s = format!("torch {} + torchvision {}", self.torch, self.torchvision);
        if let Some(a) = &self.torchaudio {
            s.push_str(&format!(" + torchaudio {a}"));
        }
        s
    }
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

/// `--gpus` on the command line, in the words of the spec's `gpus:`:
/// `all`, `none`, `auto`, a count, or comma-separated device ids (also
/// Docker's `device=1,2`) or CDI names (`vendor/class=name`).
impl std::str::FromStr for Gpus {
    type Err = String;

    fn from_str(s: &str) -> Result<Gpus, String> {
        let s = s.trim();
        Ok(match s {
            "all" => Gpus::All,
            "none" | "0" => Gpus::None,
            "auto" => Gpus::Auto,
            _ if s.chars().all(|c| c.is_ascii_digit()) && !s.contains(',') && s.len() < 4 => {
                Gpus::Count(s.parse().map_err(|e| format!("{e}"))?)
            }
            _ => {
                let list = s.strip_prefix("device=").unwrap_or(s);
                let ids: Vec<String> = list.split(',').map(|d| d.trim().to_string()).collect();
                if ids
                    .iter()
                    .any(|d| d.is_empty() || d.contains(char::is_whitespace))
                {
                    return Err(format!(
                        "invalid GPU selection `{s}`: use all, none, auto, a count, or device ids / CDI names separated by commas"
                    ));
                }
                let cdi = ids.iter().filter(|d| d.contains('=')).count();
                if let Some(bad) = ids.iter().find(|d| {
                    d.split_once('=')
                        .is_some_and(|(kind, dev)| !kind.contains('/') || dev.is_empty())
                }) {
                    return Err(format!(
                        "invalid CDI device name `{bad}`: expected VENDOR/CLASS=NAME, e.g. nvidia.com/gpu=0"
                    ));
                }
                match cdi {
                    0 => Gpus::Ids(ids),
                    n if n == ids.len() => Gpus::Cdi(ids),
                    _ => return Err(format!("`{s}` mixes CDI names and device ids")),
                }
            }
        })
    }
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
    /// Public key to install; otherwise `~/.ssh/*.pub`, else torchenv's own
    /// key, at `up`.
    pub public_key: Option<PathBuf>,
    /// `ssh.forwarding`: allow `ssh -L/-R` TCP forwarding (e.g. TensorBoard).
    pub forwarding: bool,
}

/// `security:`: the container's hardening, with named overrides.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Security {
    /// The container's process + thread limit (>= 1; default
    /// [`DEFAULT_PIDS_LIMIT`]).
    pub pids_limit: u32,
    /// Extra Linux capabilities, upper-case names without the `CAP_`
    /// prefix (e.g. `SYS_PTRACE`), each one of [`CAPABILITIES`] and never
    /// `SYS_ADMIN`; no duplicates.
    pub cap_add: Vec<String>,
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
    /// Whether `cargo xtask ci` without `--envs` checks it (default true).
    pub ci: bool,
    pub models: Vec<String>,
    pub dataset: PathBuf,
    pub tolerances: Tolerances,
}

/// How far a run may drift from its baseline before the gate fails.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq)]
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
        let registry = match &raw.registry {
            None => None,
            Some(r) => Some(registry_location(r).map_err(|why| {
                ctx.error(
                    &[Step::Key("registry")],
                    format!("registry `{r}` {why}"),
                    "not HOST[:PORT][/PREFIX]",
                    Some(
                        "e.g. `registry: HOST:5000/ml`; leave it out to build on each machine"
                            .into(),
                    ),
                )
            })?),
        };
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
            registry,
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
