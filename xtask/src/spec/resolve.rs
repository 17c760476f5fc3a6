//! Resolution of one environment: every setting merged from the
//! environment's own keys, `defaults:` and the built-in default, then checked.
//!
//! [`Ctx::resolve`] only assembles the [`Env`]; each setting has its own
//! resolver on [`Resolver`], which returns the resolved value or a
//! [`SpecError`] pointing at the offending key. The resolvers run in a fixed
//! order (the first error found is the one reported). This module uses only
//! items of its parent `spec` (`super::`) and `crate::compat`, which `spec`
//! already imports.
//!
//! May use: `compat`, `spec`, `spec::container`, `spec::exposure`, `spec::locate`, `spec::raw`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::container::{self, Refusal, DEFAULT_PIDS_LIMIT};
use super::exposure::is_loopback;
use super::locate::{self, Step};
use super::raw::{self, RawBase, RawEnv, RawGpus, RawPort, RawVolume};
use super::{
    Base, Ctx, Env, Gpus, Harness, Ipc, Jupyter, PortMapping, Protocol, Security, SpecError, Ssh,
    Tolerances, Volume, VolumeSource, MODELS,
};
use crate::compat;

/// The environment's own value for `$field`, else the one from `defaults:`.
macro_rules! pick {
    ($r:expr, $field:ident) => {
        $r.env.$field.clone().or_else(|| $r.defaults.$field.clone())
    };
}

impl Ctx<'_> {
    /// Resolves environment `name` from its own keys over `defaults`.
    pub(super) fn resolve(
        &self,
        name: &str,
        defaults: &RawEnv,
        env: &RawEnv,
    ) -> Result<Env, SpecError> {
        let r = Resolver {
            ctx: self,
            name,
            defaults,
            env,
            dir: self.path.parent().unwrap_or(Path::new(".")),
        };
        r.check_name()?;
        let torch = r.torch()?;
        let torchvision = r.torchvision()?;
        let torchaudio = r.torchaudio(&torch)?;
        let cuda = r.cuda()?;
        let base = r.base()?;
        let python = r.python(&base)?;
        let pip = r.pip()?;
        let cuda_toolkit = pick!(r, cuda_toolkit).unwrap_or(false);
        let mut apt = r.apt()?;
        if cuda_toolkit {
            for pkg in super::TOOLKIT_APT {
                if !apt.iter().any(|p| p == pkg) {
                    apt.push(pkg.to_string());
                }
            }
        }
        let gpus = r.gpus()?;
        let host_ip = r.host_ip()?;
        let expose = r.expose(host_ip)?;
        let jupyter = r.jupyter()?;
        let ssh = r.ssh()?;
        let ports = r.ports()?;
        r.check_host_ports(jupyter.as_ref(), ssh.as_ref(), &ports)?;
        let volumes = r.volumes()?;
        let workspace = r.workspace()?;
        let shm_size = r.shm_size()?;
        let ipc = r.ipc()?;
        let vars = r.env_vars()?;
        let security = r.security()?;
        let harness = r.harness()?;
        Ok(Env {
            name: name.to_string(),
            description: pick!(r, description).unwrap_or_default(),
            torch,
            torchvision,
            torchaudio,
            cuda,
            cuda_toolkit,
            python,
            base,
            pip,
            apt,
            gpus,
            host_ip,
            expose,
            jupyter,
            ssh,
            ports,
            volumes,
            workspace,
            shm_size,
            ipc,
            env: vars,
            security,
            harness,
        })
    }
}

/// One environment being resolved: its name, its own keys, `defaults:`, and
/// the spec's folder (relative paths resolve against it).
struct Resolver<'a> {
    ctx: &'a Ctx<'a>,
    name: &'a str,
    defaults: &'a RawEnv,
    env: &'a RawEnv,
    dir: &'a Path,
}

impl<'a> Resolver<'a> {
    /// An error at `field` of this environment (see [`field_steps`]).
    fn err(&self, field: &str, message: String, label: &str, help: Option<String>) -> SpecError {
        let rest: Vec<Step> = field_steps(field).collect();
        self.ctx.error(&self.at(&rest), message, label, help)
    }

    /// Where `rest` (steps below the environment) is written: in
    /// `defaults:` when more of it is written there than in the environment
    /// (the value was inherited), else in the environment. The error then
    /// points at the deepest part of the path found.
    fn at<'s>(&self, rest: &[Step<'s>]) -> Vec<Step<'s>>
    where
        'a: 's,
    {
        let own: Vec<Step> = [Step::Key("environments"), Step::Key(self.name)]
            .into_iter()
            .chain(rest.iter().copied())
            .collect();
        let inherited: Vec<Step> = std::iter::once(Step::Key("defaults"))
            .chain(rest.iter().copied())
            .collect();
        let own_depth = locate::depth(self.ctx.source, &own).saturating_sub(2);
        let inherited_depth = locate::depth(self.ctx.source, &inherited).saturating_sub(1);
        if inherited_depth > own_depth {
            inherited
        } else {
            own
        }
    }

    /// An error from a [`Refusal`] at `rest` (see [`Resolver::at`]).
    fn refused(&self, rest: &[Step], why: Refusal) -> SpecError {
        self.ctx
            .error(&self.at(rest), why.message, why.label, why.help)
    }

    /// An error at item `i` of the list `key` of this environment.
    fn err_item(
        &self,
        key: &str,
        i: usize,
        message: String,
        label: &str,
        help: Option<String>,
    ) -> SpecError {
        let here = self.at(&[Step::Key(key), Step::Item(i)]);
        self.ctx.error(&here, message, label, help)
    }

    fn check_name(&self) -> Result<(), SpecError> {
        let name = self.name;
        if !valid_name(name) {
            return Err(self.err(
                "",
                format!("invalid environment name `{name}`"),
                "not a valid name",
                Some("use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit (it becomes a Docker image name)".into()),
            ));
        }
        Ok(())
    }

    fn torch(&self) -> Result<String, SpecError> {
        let name = self.name;
        let torch = pick!(self, torch).ok_or_else(|| {
            self.err(
                "",
                format!("environment `{name}` has no `torch:` version"),
                "torch missing",
                Some("add e.g. `torch: 2.6.0`".into()),
            )
        })?;
        if compat::tch_for_torch(&torch).is_none() {
            return Err(self.err(
                "torch",
                format!("unknown torch version `{torch}`"),
                "no harness (tch) release links this torch",
                Some(match compat::no_tch_reason(&torch) {
                    Some(why) => format!(
                        "{why}; supported torch versions: {}",
                        compat::supported_torch().join(", ")
                    ),
                    None => format!(
                        "supported torch versions: {}",
                        compat::supported_torch().join(", ")
                    ),
                }),
            ));
        }
        Ok(torch)
    }

    fn torchvision(&self) -> Result<String, SpecError> {
        let name = self.name;
        let torchvision = pick!(self, torchvision).ok_or_else(|| {
            self.err(
                "",
                format!("environment `{name}` has no `torchvision:` version"),
                "torchvision missing",
                Some("add e.g. `torchvision: 0.21.0`".into()),
            )
        })?;
        if !is_version(&torchvision) {
            return Err(self.err(
                "torchvision",
                format!("`{torchvision}` is not a version"),
                "expected e.g. 0.21.0",
                None,
            ));
        }
        Ok(torchvision)
    }

    /// torchaudio is optional; its release is torch's (2.6.0 with torch
    /// 2.6.0), so another MAJOR.MINOR cannot resolve and is refused here.
    fn torchaudio(&self, torch: &str) -> Result<Option<String>, SpecError> {
        let Some(torchaudio) = pick!(self, torchaudio) else {
            return Ok(None);
        };
        if !is_version(&torchaudio) {
            return Err(self.err(
                "torchaudio",
                format!("`{torchaudio}` is not a version"),
                "expected e.g. 2.6.0",
                None,
            ));
        }
        let line = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
        if line(&torchaudio) != line(torch) {
            return Err(self.err(
                "torchaudio",
                format!(
                    "torchaudio {torchaudio} is released with torch {}, but this environment has torch {torch}",
                    line(&torchaudio)
                ),
                "not torch's release",
                Some(format!("torchaudio's releases follow torch's: use `torchaudio: {}`", line(torch) + ".0")),
            ));
        }
        Ok(Some(torchaudio))
    }

    fn cuda(&self) -> Result<Option<String>, SpecError> {
        let cuda = pick!(self, cuda);
        if let Some(c) = &cuda {
            if !is_major_minor(c) {
                return Err(self.err(
                    "cuda",
                    format!("`{c}` is not a CUDA version"),
                    "expected MAJOR.MINOR, e.g. 12.4",
                    None,
                ));
            }
        }
        Ok(cuda)
    }

    fn base(&self) -> Result<Base, SpecError> {
        let base = match pick!(self, base) {
            None => Base::Debian {
                suite: "bookworm".into(),
            },
            Some(RawBase {
                debian: Some(_),
                image: Some(_),
            }) => {
                return Err(self.err(
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
                    return Err(self.err(
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
                    return Err(self.err(
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
                return Err(self.err(
                    "base",
                    "`base:` needs `debian:` or `image:`".into(),
                    "empty base",
                    None,
                ))
            }
        };
        Ok(base)
    }

    fn python(&self, base: &Base) -> Result<String, SpecError> {
        let python = match (pick!(self, python), base) {
            (Some(p), Base::Debian { suite }) => {
                let expected = compat::debian_python(suite).unwrap();
                if p != expected {
                    return Err(self.err(
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
                return Err(self.err(
                    "python",
                    "a `base: image:` needs an explicit `python:` version".into(),
                    "python missing",
                    None,
                ))
            }
        };
        if !is_major_minor(&python) {
            return Err(self.err(
                "python",
                format!("`{python}` is not a Python version"),
                "expected MAJOR.MINOR",
                None,
            ));
        }
        Ok(python)
    }

    fn pip(&self) -> Result<Vec<String>, SpecError> {
        let pip = pick!(self, pip).unwrap_or_default();
        for (i, req) in pip.iter().enumerate() {
            self.check_list_entry("pip", i, req)?;
        }
        Ok(pip)
    }

    fn apt(&self) -> Result<Vec<String>, SpecError> {
        let apt = pick!(self, apt).unwrap_or_default();
        for (i, pkg) in apt.iter().enumerate() {
            self.check_list_entry("apt", i, pkg)?;
            if !valid_debian_package(pkg) {
                return Err(self.err_item(
                    "apt",
                    i,
                    format!("`{pkg}` is not a Debian package name"),
                    "invalid package name",
                    None,
                ));
            }
        }
        Ok(apt)
    }

    /// Item `i` of `pip:` or `apt:` is one package, not an option or several
    /// words (each entry becomes one argument of the locking pip / apt).
    fn check_list_entry(&self, key: &str, i: usize, entry: &str) -> Result<(), SpecError> {
        let what = if key == "pip" {
            "NAME or NAME==VERSION"
        } else {
            "a Debian package name"
        };
        let source = if key == "pip" {
            "this host's pip index configuration"
        } else {
            "this host's Debian mirror"
        };
        let help = Some(format!(
            "list packages only; options are not allowed: the lock controls where packages come from (`cargo xtask lock` resolves them from {source} and pins them in environments.lock)"
        ));
        if entry.trim_start().starts_with('-') {
            return Err(self.err_item(
                key,
                i,
                format!("`{key}:` entry {entry:?} is an option; options are not allowed"),
                &format!("expected {what}"),
                help,
            ));
        }
        if entry.trim().is_empty() || entry.contains(char::is_whitespace) {
            let why = if entry.trim().is_empty() {
                "is empty"
            } else {
                "contains whitespace"
            };
            return Err(self.err_item(
                key,
                i,
                format!("`{key}:` entry {entry:?} {why}"),
                &format!("expected {what}, without spaces"),
                help,
            ));
        }
        Ok(())
    }

    fn gpus(&self) -> Result<Gpus, SpecError> {
        let gpus = match pick!(self, gpus).unwrap_or(RawGpus::Word("auto".into())) {
            RawGpus::Count(0) => Gpus::None,
            RawGpus::Count(n) => Gpus::Count(n),
            RawGpus::Word(w) => match w.as_str() {
                "all" => Gpus::All,
                "none" => Gpus::None,
                "auto" => Gpus::Auto,
                other => {
                    return Err(self.err(
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
            RawGpus::Devices(ids) => self.gpu_devices(ids)?,
        };
        Ok(gpus)
    }

    /// A `gpus:` list: all CDI names or all device ids.
    fn gpu_devices(&self, ids: Vec<String>) -> Result<Gpus, SpecError> {
        let cdi = ids.iter().filter(|d| d.contains('=')).count();
        if ids.is_empty() {
            Err(self.err(
                "gpus",
                "empty `gpus:` list".into(),
                "no devices",
                Some("use `none` for no GPU".into()),
            ))
        } else if cdi == ids.len() {
            for id in &ids {
                let (kind, dev) = id.split_once('=').unwrap();
                if !kind.contains('/') || dev.is_empty() {
                    return Err(self.err(
                        "gpus",
                        format!("invalid CDI device name `{id}`"),
                        "expected VENDOR/CLASS=NAME",
                        Some("e.g. nvidia.com/gpu=0".into()),
                    ));
                }
            }
            Ok(Gpus::Cdi(ids))
        } else if cdi == 0 {
            if let Some(bad) = ids
                .iter()
                .find(|id| id.is_empty() || id.contains(char::is_whitespace))
            {
                return Err(self.err(
                    "gpus",
                    format!("invalid GPU id `{bad}`"),
                    "expected an index or a GPU UUID",
                    None,
                ));
            }
            Ok(Gpus::Ids(ids))
        } else {
            Err(self.err(
                "gpus",
                "`gpus:` mixes CDI names and device ids".into(),
                "mixed list",
                None,
            ))
        }
    }

    fn host_ip(&self) -> Result<IpAddr, SpecError> {
        let host_ip_text = pick!(self, host_ip).unwrap_or_else(|| "127.0.0.1".into());
        host_ip_text.parse().map_err(|_| {
            self.err(
                "host_ip",
                format!("`{host_ip_text}` is not an IP address"),
                "invalid address",
                None,
            )
        })
    }

    /// `expose:`, required (true) for a `host_ip` that is not loopback.
    fn expose(&self, host_ip: IpAddr) -> Result<bool, SpecError> {
        let expose = pick!(self, expose).unwrap_or(false);
        if !expose && !is_loopback(host_ip) {
            return Err(self.err(
                "host_ip",
                format!("`host_ip: {host_ip}` publishes the ports to the network, but `expose: true` is not set"),
                "not a loopback address",
                Some("Docker's published ports bypass the host firewall: they are reachable from the network regardless of ufw/firewalld INPUT rules. Set `expose: true` next to `host_ip:` if every machine that can reach this address may reach Jupyter and SSH, or keep `host_ip: 127.0.0.1` and connect through an SSH tunnel".into()),
            ));
        }
        Ok(expose)
    }

    fn jupyter(&self) -> Result<Option<Jupyter>, SpecError> {
        let jupyter_raw = merge_jupyter(self.defaults.jupyter.as_ref(), self.env.jupyter.as_ref());
        let jupyter = jupyter_raw.enabled.unwrap_or(true).then(|| Jupyter {
            port: jupyter_raw.port.unwrap_or(8888),
            token: jupyter_raw.token.clone(),
        });
        if let Some(j) = &jupyter {
            if j.port == 0 {
                return Err(self.err(
                    "jupyter.port",
                    "Jupyter host port 0".into(),
                    "port must be 1-65535",
                    None,
                ));
            }
            if let Some(t) = &j.token {
                if t.len() < 32 {
                    return Err(self.err(
                        "jupyter.token",
                        "Jupyter token shorter than 32 characters".into(),
                        "too short to be a secret",
                        Some("omit `token:` and one is generated at `up`".into()),
                    ));
                }
            }
        }
        Ok(jupyter)
    }

    fn ssh(&self) -> Result<Option<Ssh>, SpecError> {
        let ssh_raw = merge_ssh(self.defaults.ssh.as_ref(), self.env.ssh.as_ref());
        let ssh = ssh_raw.enabled.unwrap_or(true).then(|| Ssh {
            port: ssh_raw.port.unwrap_or(2222),
            public_key: ssh_raw
                .public_key
                .as_ref()
                .map(|p| resolve_path(self.dir, p)),
            forwarding: ssh_raw.forwarding.unwrap_or(false),
        });
        if ssh.as_ref().is_some_and(|s| s.port == 0) {
            return Err(self.err(
                "ssh.port",
                "SSH host port 0".into(),
                "port must be 1-65535",
                None,
            ));
        }
        Ok(ssh)
    }

    fn ports(&self) -> Result<Vec<PortMapping>, SpecError> {
        let mut ports = Vec::new();
        for (i, p) in pick!(self, ports).unwrap_or_default().iter().enumerate() {
            ports.push(self.port(i, p)?);
        }
        Ok(ports)
    }

    /// Item `i` of `ports:`.
    fn port(&self, i: usize, p: &RawPort) -> Result<PortMapping, SpecError> {
        let mapping = match p {
            RawPort::Short(s) => parse_port(s).ok_or_else(|| {
                self.err_item(
                    "ports",
                    i,
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
                        return Err(self.err_item(
                            "ports",
                            i,
                            format!("invalid protocol `{other}`"),
                            "tcp or udp",
                            None,
                        ))
                    }
                };
                if l.host == 0 || l.container == 0 {
                    return Err(self.err_item(
                        "ports",
                        i,
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
        Ok(mapping)
    }

    /// No host port is used twice by Jupyter, SSH and `ports:`.
    fn check_host_ports(
        &self,
        jupyter: Option<&Jupyter>,
        ssh: Option<&Ssh>,
        ports: &[PortMapping],
    ) -> Result<(), SpecError> {
        let name = self.name;
        let mut taken: Vec<(u16, &str)> = Vec::new();
        if let Some(j) = jupyter {
            taken.push((j.port, "jupyter.port"));
        }
        if let Some(s) = ssh {
            taken.push((s.port, "ssh.port"));
        }
        for p in ports {
            taken.push((p.host, "ports"));
        }
        for (i, (port, field)) in taken.iter().enumerate() {
            if let Some((_, other)) = taken[..i].iter().find(|(q, _)| q == port) {
                return Err(self.err(
                    field,
                    format!("host port {port} is used twice in `{name}` ({other} and {field})"),
                    "duplicate host port",
                    None,
                ));
            }
        }
        Ok(())
    }

    /// `volumes:`, no two with the same target.
    fn volumes(&self) -> Result<Vec<Volume>, SpecError> {
        let mut volumes: Vec<Volume> = Vec::new();
        for (i, v) in pick!(self, volumes).unwrap_or_default().iter().enumerate() {
            let volume = self.volume(i, v)?;
            if let Some(first) = volumes.iter().position(|o| o.target == volume.target) {
                return Err(self.ctx.error(
                    &self.at(&[Step::Key("volumes"), Step::Item(i), Step::Key("target")]),
                    format!(
                        "volume target `{}` is used twice (volumes[{first}] and volumes[{i}])",
                        v.target
                    ),
                    "duplicate target",
                    Some("one mount per target; mount the second source elsewhere".into()),
                ));
            }
            volumes.push(volume);
        }
        Ok(volumes)
    }

    /// Item `i` of `volumes:`.
    fn volume(&self, i: usize, v: &RawVolume) -> Result<Volume, SpecError> {
        let rest = |k: &'static str| [Step::Key("volumes"), Step::Item(i), Step::Key(k)];
        let here = |k: &'static str| self.at(&rest(k));
        let target =
            container::mount_target(&v.target).map_err(|why| self.refused(&rest("target"), why))?;
        let dir = self.dir;
        let looks_like_path = v.source.starts_with(['/', '.', '~']);
        let source = match v.kind.as_deref() {
            Some("bind") => VolumeSource::Bind(resolve_path(dir, &v.source)),
            Some("volume") => VolumeSource::Named(v.source.clone()),
            None if looks_like_path => VolumeSource::Bind(resolve_path(dir, &v.source)),
            None => VolumeSource::Named(v.source.clone()),
            Some(other) => {
                return Err(self.ctx.error(
                    &here("type"),
                    format!("invalid volume type `{other}`"),
                    "bind or volume",
                    None,
                ))
            }
        };
        if let VolumeSource::Named(n) = &source {
            if !valid_volume_name(n) {
                return Err(self.ctx.error(
                    &here("source"),
                    format!("`{n}` is neither a path nor a volume name"),
                    "invalid source",
                    Some("host paths start with /, ./, ../ or ~; volume names use letters, digits, '_', '.', '-'".into()),
                ));
            }
        }
        Ok(Volume {
            source,
            target,
            read_only: v.read_only,
        })
    }

    /// `workspace:`, which `up` creates when missing: an existing one must
    /// be a folder.
    fn workspace(&self) -> Result<PathBuf, SpecError> {
        let name = self.name;
        let workspace = resolve_path(
            self.dir,
            &pick!(self, workspace).unwrap_or_else(|| format!("./workspace/{name}")),
        );
        match std::fs::metadata(&workspace) {
            Ok(m) if !m.is_dir() => Err(self.err(
                "workspace",
                format!(
                    "workspace `{}` exists and is not a directory",
                    workspace.display()
                ),
                "not a directory",
                Some(format!(
                    "the workspace is a host folder mounted at {}; point `workspace:` at a folder (`up` creates a missing one)",
                    super::WORKSPACE_TARGET
                )),
            )),
            _ => Ok(workspace),
        }
    }

    fn shm_size(&self) -> Result<u64, SpecError> {
        let shm_text = pick!(self, shm_size).unwrap_or_else(|| "8g".into());
        super::parse_size(&shm_text).ok_or_else(|| {
            self.err(
                "shm_size",
                format!("invalid size `{shm_text}`"),
                "expected e.g. 512m, 16g or bytes",
                None,
            )
        })
    }

    fn ipc(&self) -> Result<Ipc, SpecError> {
        let ipc = match pick!(self, ipc).as_deref() {
            None | Some("private") => Ipc::Private,
            Some("host") => Ipc::Host,
            Some("shareable") => Ipc::Shareable,
            Some(other) => {
                return Err(self.err(
                    "ipc",
                    format!("invalid ipc mode `{other}`"),
                    "private, shareable or host",
                    None,
                ))
            }
        };
        Ok(ipc)
    }

    /// `env:` of `defaults:`, overridden key by key by the environment's.
    fn env_vars(&self) -> Result<BTreeMap<String, String>, SpecError> {
        let mut vars = self.defaults.env.clone().unwrap_or_default();
        vars.extend(self.env.env.clone().unwrap_or_default());
        for (key, value) in &vars {
            let refusal = if !valid_env_var(key) {
                Some((
                    format!("`env:` key {key:?} (value {value:?}) is not a valid variable name"),
                    "expected [A-Za-z_][A-Za-z0-9_]*",
                    None,
                ))
            } else if key.starts_with(RESERVED_ENV_PREFIX) {
                Some((
                    format!("`env:` key {key:?} (value {value:?}) uses the reserved prefix {RESERVED_ENV_PREFIX}"),
                    "reserved for the entrypoint",
                    Some(format!("{RESERVED_ENV_PREFIX}* variables are set by torchenv's entrypoint; choose another name")),
                ))
            } else if let Some(why) = privileged_env_var(key) {
                Some((
                    format!("`env:` key {key:?} (value {value:?}) is not allowed: {why}"),
                    "changes what the container's root processes run",
                    Some("the container's environment also reaches its root processes (the entrypoint, sshd); set this one for yourself in ~/.bashrc, a notebook or the command you run".into()),
                ))
            } else if value.contains(['\n', '\r', '\0']) {
                Some((
                    format!("`env:` value of {key:?} contains a newline, carriage return or NUL: {value:?}"),
                    "one line without NUL",
                    Some("each variable is one line of the container's environment; pass longer text through a file in the workspace".into()),
                ))
            } else {
                None
            };
            if let Some((message, label, help)) = refusal {
                return Err(self.ctx.error(&self.env_var_at(key), message, label, help));
            }
        }
        Ok(vars)
    }

    /// Where variable `key` of `env:` is written: the environment's `env:`
    /// when it sets it, else `defaults:`'s (at the key in a block mapping,
    /// at the `env:` mapping in a flow one).
    fn env_var_at<'k>(&self, key: &'k str) -> Vec<Step<'k>>
    where
        'a: 'k,
    {
        let own = self.env.env.as_ref().is_some_and(|e| e.contains_key(key));
        let base: Vec<Step> = if own {
            vec![Step::Key("environments"), Step::Key(self.name)]
        } else {
            vec![Step::Key("defaults")]
        };
        let with_key: Vec<Step> = base
            .iter()
            .copied()
            .chain([Step::Key("env"), Step::Key(key)])
            .collect();
        if locate::find(self.ctx.source, &with_key).is_some() {
            with_key
        } else {
            base.into_iter().chain([Step::Key("env")]).collect()
        }
    }

    /// `security:` of the environment over `defaults:`'s, key by key.
    fn security(&self) -> Result<Security, SpecError> {
        let d = self.defaults.security.clone().unwrap_or_default();
        let e = self.env.security.clone().unwrap_or_default();
        let pids_limit = e.pids_limit.or(d.pids_limit).unwrap_or(DEFAULT_PIDS_LIMIT);
        if pids_limit == 0 {
            return Err(self.err(
                "security.pids_limit",
                "`security.pids_limit: 0` is not a limit".into(),
                "expected a positive integer",
                Some(format!(
                    "the container's process + thread limit; omit it for {DEFAULT_PIDS_LIMIT}"
                )),
            ));
        }
        let mut cap_add: Vec<String> = Vec::new();
        for (i, name) in e
            .cap_add
            .or(d.cap_add)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let here = [Step::Key("security"), Step::Key("cap_add"), Step::Item(i)];
            let cap = container::capability(name).map_err(|why| self.refused(&here, why))?;
            if cap_add.contains(&cap) {
                return Err(self.ctx.error(
                    &self.at(&here),
                    format!("`security.cap_add` lists {cap} twice"),
                    "duplicate capability",
                    None,
                ));
            }
            cap_add.push(cap);
        }
        Ok(Security {
            pids_limit,
            cap_add,
        })
    }

    fn harness(&self) -> Result<Harness, SpecError> {
        let d = self.defaults.harness.clone().unwrap_or_default();
        let e = self.env.harness.clone().unwrap_or_default();
        let at = [
            Step::Key("environments"),
            Step::Key(self.name),
            Step::Key("harness"),
        ];
        let ci = e.ci.or(d.ci).unwrap_or(true);
        let models = e
            .models
            .or(d.models)
            .unwrap_or_else(|| vec!["efficientnet_lite0".into()]);
        if let Some(bad) = models.iter().find(|m| !MODELS.contains(&m.as_str())) {
            return Err(self.ctx.error(
                &at,
                format!("unknown model `{bad}`"),
                "not a harness model",
                Some(format!("models: {}", MODELS.join(", "))),
            ));
        }
        let dataset = resolve_path(
            self.dir,
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
                return Err(self.ctx.error(
                    &at,
                    format!("tolerance `{key}` is {v}"),
                    "must be a finite number >= 0",
                    None,
                ));
            }
        }
        Ok(Harness {
            ci,
            models,
            dataset,
            tolerances,
        })
    }
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
        forwarding: e.forwarding.or(d.forwarding),
    }
}

/// The steps of `field` below an environment; `field` may be dotted
/// (`ssh.port`) or empty (the environment itself).
fn field_steps(field: &str) -> impl Iterator<Item = Step<'_>> {
    field.split('.').filter(|f| !f.is_empty()).map(Step::Key)
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

/// `env:` names with this prefix are the entrypoint's (TORCHENV_UID, …).
const RESERVED_ENV_PREFIX: &str = "TORCHENV_";

/// Why `key` may not be set by the spec: variables that change which code
/// the container's root processes load or run (the dynamic loader, shell
/// start-up, `PATH`), or which GPUs the NVIDIA runtime hands out behind
/// `gpus:`'s back. `None` for any other name.
fn privileged_env_var(key: &str) -> Option<&'static str> {
    const SHELL: [&str; 8] = [
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "IFS",
        "CDPATH",
        "GLOBIGNORE",
    ];
    const LOADER: [&str; 7] = [
        "GCONV_PATH",
        "GLIBC_TUNABLES",
        "LOCPATH",
        "NLSPATH",
        "HOSTALIASES",
        "RESOLV_HOST_CONF",
        "MALLOC_ARENA_MAX",
    ];
    if key.starts_with("LD_") || LOADER.contains(&key) || key.starts_with("MALLOC_") {
        Some("it changes what the dynamic loader or the C library loads")
    } else if SHELL.contains(&key) || key.starts_with("BASH_FUNC_") {
        Some("it changes what shells run at start")
    } else if matches!(key, "PATH" | "HOME" | "USER" | "LOGNAME" | "SHELL") {
        Some("the image sets it (PATH starts with /opt/venv/bin)")
    } else if key.starts_with("NVIDIA_") {
        Some("NVIDIA_* variables are set by the image and by `gpus:` (a GPU grant outside `gpus:` is not allowed)")
    } else {
        None
    }
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
