//! Base root file systems: bootstrapped reproducibly with `mmdebstrap` from
//! the host's own apt sources, pinned by the tarball's sha256 in the lock,
//! kept in the cache (`rootfs/<sha256>.tar`) and loaded into the engine as
//! `torchenv/base:<key>`.
//!
//! Reproducibility: with `SOURCE_DATE_EPOCH` set and the files that differ
//! per run removed (SSH host keys, machine-id, apt lists and caches, logs),
//! two bootstraps of the same package versions give byte-identical
//! tarballs. A build pins apt to the lock's exact versions (an apt
//! preferences file that lives only during the bootstrap), so a mirror that
//! has since gained newer versions (security updates) still gives the
//! locked rootfs as long as it serves the old ones too, as Debian's main
//! suite does for its point-release versions.
//! [`super::base_image`] turns the tarball into an engine image.
//!
//! May use: `build::host_tools`, `cache`, `compat`, `process`, `progress`, `spec`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{host_tools, BuildError};
use crate::cache;
use crate::process;
use crate::progress::Progress;
use crate::spec::Env;

type Result<T, E = BuildError> = std::result::Result<T, E>;

/// Packages every base has: Python with venv, SSH, an init, certificates,
/// and `setpriv` (util-linux) for dropping privileges in the entrypoint.
pub const BASE_PACKAGES: &[&str] = &[
    "ca-certificates",
    "openssh-server",
    "python3",
    "python3-venv",
    "tini",
    "util-linux",
];

/// A bootstrapped root file system in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrapped {
    /// `<out_dir>/<sha256>.tar`
    pub tar: PathBuf,
    pub sha256: String,
    /// Every installed package as `name=version`, sorted.
    pub packages: Vec<String>,
}

/// The `--include` list of an environment: [`BASE_PACKAGES`] plus its
/// `apt:` extras, sorted and deduplicated (this is what the lock records).
pub fn include_for(env: &Env) -> Vec<String> {
    let mut include: Vec<String> = BASE_PACKAGES
        .iter()
        .map(|s| s.to_string())
        .chain(env.apt.iter().cloned())
        .collect();
    include.sort();
    include.dedup();
    include
}

/// What to bootstrap: a suite, the packages asked for, and optionally the
/// exact versions of every package (a lock's list) to pin apt to.
#[derive(Debug, Clone, Copy)]
pub struct BootstrapRequest<'a> {
    pub suite: &'a str,
    pub include: &'a [String],
    /// `name=version` entries; empty = whatever the mirror serves now.
    pub pins: &'a [String],
    pub source_date_epoch: u64,
}

/// Bootstraps the request into `out_dir/<sha256>.tar` (written to a
/// temporary file, then renamed), and the package list beside it as
/// `<sha256>.packages`. Callers normally pass [`cache::rootfs_dir`].
pub fn bootstrap(request: BootstrapRequest<'_>, out_dir: &Path) -> Result<Bootstrapped> {
    bootstrap_with(request, out_dir, &Progress::new())
}

/// apt preferences that make exactly the pinned versions the candidates
/// (priority over 1000 also allows older-than-newest versions).
pub fn apt_preferences(pins: &[String]) -> String {
    pins.iter()
        .filter_map(|p| p.split_once('='))
        .map(|(name, version)| {
            format!("Package: {name}\nPin: version {version}\nPin-Priority: 1001\n\n")
        })
        .collect()
}

/// `name: locked → got` for every package whose version differs between
/// two `name=version` lists (`none` where a package is missing).
pub fn package_changes(locked: &[String], got: &[String]) -> Vec<String> {
    use std::collections::BTreeMap;
    let map = |list: &[String]| -> BTreeMap<String, String> {
        list.iter()
            .filter_map(|p| p.split_once('='))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    let (locked, got) = (map(locked), map(got));
    let names: std::collections::BTreeSet<&String> = locked.keys().chain(got.keys()).collect();
    names
        .into_iter()
        .filter_map(|n| {
            let (a, b) = (locked.get(n), got.get(n));
            (a != b).then(|| {
                format!(
                    "{n}: {} → {}",
                    a.map_or("none", String::as_str),
                    b.map_or("none", String::as_str)
                )
            })
        })
        .collect()
}

/// Where the pins live inside the rootfs during the bootstrap.
const PINS_IN_ROOTFS: &str = "etc/apt/preferences.d/torchenv-lock.pref";

/// [`bootstrap`] on a given progress display.
pub fn bootstrap_with(
    request: BootstrapRequest<'_>,
    out_dir: &Path,
    progress: &Progress,
) -> Result<Bootstrapped> {
    host_tools::ensure(
        &[host_tools::MMDEBSTRAP],
        "bootstrapping the base",
        progress,
    )?;
    std::fs::create_dir_all(out_dir)
        .map_err(BuildError::io(format!("creating {}", out_dir.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix(".bootstrap-")
        .tempdir_in(out_dir)
        .map_err(BuildError::io(format!(
            "creating a temporary folder in {}",
            out_dir.display()
        )))?;
    let cmd = mmdebstrap(&request, scratch.path())?;
    let suite = request.suite;
    let task = progress.spinner(format!("bootstrap {suite}"));
    task.log(&format!("running {}", process::describe(&cmd)));
    if let Err(e) = process::run_streaming(cmd, "mmdebstrap", &task) {
        task.fail("mmdebstrap");
        return Err(BuildError::Bootstrap {
            suite: suite.to_string(),
            tail: e.failed_tail()?,
        });
    }
    let got = keep(scratch.path(), out_dir)?;
    let size = std::fs::metadata(&got.tar).map(|m| m.len()).unwrap_or(0);
    task.finish(&format!(
        "{} packages, {}, sha256 {}",
        got.packages.len(),
        crate::progress::bytes(size),
        &got.sha256[..12]
    ));
    Ok(got)
}

/// The `mmdebstrap` command for `request`, writing `rootfs.tar` and the
/// package list `packages` into `scratch`.
fn mmdebstrap(request: &BootstrapRequest<'_>, scratch: &Path) -> Result<Command> {
    let mirrors = host_sources(request.suite)?;
    let mut cmd = Command::new("mmdebstrap");
    cmd.arg("--variant=minbase")
        .arg("--format=tar")
        .arg(format!("--include={}", request.include.join(",")));
    if !request.pins.is_empty() {
        let pref = scratch.join("pins.pref");
        std::fs::write(&pref, apt_preferences(request.pins))
            .map_err(BuildError::io(format!("writing {}", pref.display())))?;
        // In place before apt first runs in the new root, gone from the
        // tarball.
        cmd.arg(format!(
            "--setup-hook=mkdir -p \"$1\"/etc/apt/preferences.d && cp {} \"$1\"/{PINS_IN_ROOTFS}",
            shell_quote(&pref.display().to_string())
        ))
        .arg(format!("--customize-hook=rm -f \"$1\"/{PINS_IN_ROOTFS}"));
    }
    cmd
        .arg(format!(
            "--customize-hook=dpkg-query --admindir=\"$1\"/var/lib/dpkg -W -f='${{Package}}=${{Version}}\\n' > {}",
            shell_quote(&scratch.join("packages").display().to_string())
        ))
        .arg(format!("--customize-hook={CLEAN_HOOK}"));
    if crate::compat::debian_drops_bytecode(request.suite) {
        cmd.arg(format!("--customize-hook={DROP_BYTECODE_HOOK}"));
    }
    cmd.arg(request.suite)
        .arg(scratch.join("rootfs.tar"))
        .args(&mirrors)
        .env("SOURCE_DATE_EPOCH", request.source_date_epoch.to_string())
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(cmd)
}

/// Moves a finished bootstrap from `scratch` into `out_dir` as
/// `<sha256>.tar` and `<sha256>.packages` (sorted).
fn keep(scratch: &Path, out_dir: &Path) -> Result<Bootstrapped> {
    let tar_tmp = scratch.join("rootfs.tar");
    let packages_tmp = scratch.join("packages");
    let sha256 = cache::sha256_file(&tar_tmp)
        .map_err(BuildError::io(format!("hashing {}", tar_tmp.display())))?;
    let mut packages: Vec<String> = std::fs::read_to_string(&packages_tmp)
        .map_err(BuildError::io(format!(
            "reading {}",
            packages_tmp.display()
        )))?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    packages.sort();
    let tar = out_dir.join(format!("{sha256}.tar"));
    let list = out_dir.join(format!("{sha256}.packages"));
    std::fs::write(&packages_tmp, packages.join("\n") + "\n").map_err(BuildError::io(format!(
        "writing {}",
        packages_tmp.display()
    )))?;
    std::fs::rename(&packages_tmp, &list)
        .map_err(BuildError::io(format!("writing {}", list.display())))?;
    std::fs::rename(&tar_tmp, &tar)
        .map_err(BuildError::io(format!("writing {}", tar.display())))?;
    Ok(Bootstrapped {
        tar,
        sha256,
        packages,
    })
}

/// Removes the system python's byte code, for a suite whose python does
/// not write it reproducibly (`compat::DEBIAN_UNSTABLE_BYTECODE`).
const DROP_BYTECODE_HOOK: &str =
    "find \"$1\"/usr/lib -depth -type d -name __pycache__ -path \"$1/usr/lib/python3*\" -exec rm -rf {} +";

/// Removes what differs between two runs or must not be shared by every
/// container of the image.
const CLEAN_HOOK: &str = "rm -f \"$1\"/etc/ssh/ssh_host_*; \
     rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/* \"$1\"/var/cache/ldconfig/aux-cache \"$1\"/var/cache/debconf/*-old; \
     find \"$1\"/var/log -type f -delete; \
     : > \"$1\"/etc/machine-id";

/// The host's apt sources for `suite`, as one-line `deb URI SUITE COMPONENTS`
/// entries: every entry of the host's own release (`bookworm`,
/// `bookworm-updates`, `bookworm-security`, …) is rewritten for `suite`.
/// No mirror is ever named by torchenv itself.
pub fn host_sources(suite: &str) -> Result<Vec<String>> {
    let codename = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("VERSION_CODENAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_default();
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(("list", t));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let kind = match p.extension().and_then(|e| e.to_str()) {
                Some("list") => "list",
                Some("sources") => "sources",
                _ => continue,
            };
            if let Ok(t) = std::fs::read_to_string(&p) {
                texts.push((kind, t));
            }
        }
    }
    let mut entries = Vec::new();
    for (kind, text) in &texts {
        if *kind == "list" {
            entries.extend(parse_one_line(text));
        } else {
            entries.extend(parse_deb822(text));
        }
    }
    let lines = rewrite_sources(&entries, &codename, suite);
    if lines.is_empty() {
        return Err(BuildError::NoAptSource {
            suite: suite.to_string(),
        });
    }
    Ok(lines)
}

/// One `deb` source: URI, suite, components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AptSource {
    uri: String,
    suite: String,
    components: Vec<String>,
}

fn parse_one_line(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut rest = rest.trim();
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(i) => rest = rest[i + 1..].trim(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push(AptSource {
                uri: uri.to_string(),
                suite: suite.to_string(),
                components: words.map(str::to_string).collect(),
            });
        }
    }
    out
}

fn parse_deb822(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields = std::collections::HashMap::new();
        for line in stanza.lines() {
            if line.starts_with('#') || line.starts_with(' ') {
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let is_deb = fields
            .get("types")
            .is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let enabled = fields.get("enabled").is_none_or(|e| e != "no");
        if !is_deb || !enabled {
            continue;
        }
        let components: Vec<String> = fields
            .get("components")
            .map(|c| c.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        for uri in fields
            .get("uris")
            .map(String::as_str)
            .unwrap_or("")
            .split_whitespace()
        {
            for suite in fields
                .get("suites")
                .map(String::as_str)
                .unwrap_or("")
                .split_whitespace()
            {
                out.push(AptSource {
                    uri: uri.to_string(),
                    suite: suite.to_string(),
                    components: components.clone(),
                });
            }
        }
    }
    out
}

/// Keeps the entries of the host's release (or already of `suite`) and
/// renames their suite; `bookworm-security` becomes `trixie-security`.
pub(crate) fn rewrite_sources(entries: &[AptSource], host: &str, suite: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for e in entries {
        let rest = [host, suite]
            .iter()
            .filter(|s| !s.is_empty())
            .find_map(|s| {
                if e.suite == *s {
                    Some("")
                } else {
                    e.suite.strip_prefix(s).filter(|r| r.starts_with('-'))
                }
            });
        let Some(rest) = rest else { continue };
        let components = if e.components.is_empty() {
            "main".to_string()
        } else {
            e.components.join(" ")
        };
        let line = format!("deb {} {suite}{rest} {components}", e.uri);
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    lines
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_follow_the_host_release() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main contrib\n\nTypes: deb\nEnabled: no\nURIs: http://x.example\nSuites: bookworm\n";
        let mut e = parse_deb822(deb822);
        e.extend(parse_one_line(
            "deb [arch=amd64] http://other.example/debian bookworm main # c\ndeb http://ppa.example focal main\n",
        ));
        assert_eq!(
            rewrite_sources(&e, "bookworm", "trixie"),
            [
                "deb http://mirror.example/debian trixie main",
                "deb http://mirror.example/debian trixie-updates main",
                "deb http://mirror.example/debian-security trixie-security main contrib",
                "deb http://other.example/debian trixie main",
            ]
        );
    }

    /// Only a suite whose python writes byte code differently on every run
    /// (bullseye's 3.9: two bootstraps gave different `.pyc` files and
    /// nothing else) leaves it out; the others' rootfs hashes stay.
    #[test]
    fn bullseye_bases_leave_the_system_python_byte_code_out() {
        let scratch = tempfile::tempdir().unwrap();
        let include = vec!["python3".to_string()];
        let hooks = |suite: &str| -> Vec<String> {
            let request = BootstrapRequest {
                suite,
                include: &include,
                pins: &[],
                source_date_epoch: 0,
            };
            mmdebstrap(&request, scratch.path())
                .unwrap()
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .filter(|a| a.starts_with("--customize-hook="))
                .collect()
        };
        let drop = format!("--customize-hook={DROP_BYTECODE_HOOK}");
        assert!(hooks("bullseye").contains(&drop));
        assert!(!hooks("bookworm").contains(&drop));
        assert!(!hooks("trixie").contains(&drop));
    }

    #[test]
    fn pins_and_changes() {
        let locked = [
            "libpam0g=1.5.2-6+deb12u2".to_string(),
            "tini=0.19.0-1".into(),
        ];
        assert_eq!(
            apt_preferences(&locked),
            "Package: libpam0g\nPin: version 1.5.2-6+deb12u2\nPin-Priority: 1001\n\n\
             Package: tini\nPin: version 0.19.0-1\nPin-Priority: 1001\n\n"
        );
        let got = ["libpam0g=1.5.2-6+deb12u3".to_string(), "zsh=5.9".into()];
        assert_eq!(
            package_changes(&locked, &got),
            [
                "libpam0g: 1.5.2-6+deb12u2 → 1.5.2-6+deb12u3",
                "tini: 0.19.0-1 → none",
                "zsh: none → 5.9"
            ]
        );
        assert!(package_changes(&locked, &locked).is_empty());
    }
}
