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
//! The image is made from the tarball as a one-layer image archive with a
//! deterministic config, so its image id is the same on every machine.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cache;
use crate::docker::{Docker, LABEL_MANAGED_BY, MANAGED_BY};
use crate::error::{Error, Result};
use crate::image::ImageError;
use crate::lock::{Lock, LockedEnv};
use crate::progress::{Progress, Task};
use crate::spec::Env;

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

/// Repository of base images.
pub const BASE_REPO: &str = "torchenv/base";

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
    let BootstrapRequest {
        suite,
        include,
        pins,
        source_date_epoch,
    } = request;
    crate::host_tools::ensure(
        &[crate::host_tools::MMDEBSTRAP],
        "bootstrapping the base",
        progress,
    )?;
    std::fs::create_dir_all(out_dir)
        .map_err(Error::io(format!("creating {}", out_dir.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix(".bootstrap-")
        .tempdir_in(out_dir)
        .map_err(Error::io(format!(
            "creating a temporary folder in {}",
            out_dir.display()
        )))?;
    let tar_tmp = scratch.path().join("rootfs.tar");
    let packages_tmp = scratch.path().join("packages");
    let mirrors = host_sources(suite)?;

    let mut cmd = Command::new("mmdebstrap");
    cmd.arg("--variant=minbase")
        .arg("--format=tar")
        .arg(format!("--include={}", include.join(",")));
    if !pins.is_empty() {
        let pref = scratch.path().join("pins.pref");
        std::fs::write(&pref, apt_preferences(pins))
            .map_err(Error::io(format!("writing {}", pref.display())))?;
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
            shell_quote(&packages_tmp.display().to_string())
        ))
        .arg(format!("--customize-hook={CLEAN_HOOK}"))
        .arg(suite)
        .arg(&tar_tmp)
        .args(&mirrors)
        .env("SOURCE_DATE_EPOCH", source_date_epoch.to_string())
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let task = progress.spinner(format!("bootstrap {suite}"));
    task.log(&format!("running {}", describe(&cmd)));
    let tail = match run_streaming(&mut cmd, &task) {
        Ok(tail) => tail,
        Err(e) => {
            task.fail("mmdebstrap");
            return Err(e);
        }
    };
    if let Some(tail) = tail {
        task.fail("mmdebstrap");
        return Err(ImageError::Bootstrap {
            suite: suite.to_string(),
            tail,
        }
        .into());
    }
    let sha256 = cache::sha256_file(&tar_tmp)
        .map_err(Error::io(format!("hashing {}", tar_tmp.display())))?;
    let mut packages: Vec<String> = std::fs::read_to_string(&packages_tmp)
        .map_err(Error::io(format!("reading {}", packages_tmp.display())))?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    packages.sort();
    let tar = out_dir.join(format!("{sha256}.tar"));
    let list = out_dir.join(format!("{sha256}.packages"));
    std::fs::write(&packages_tmp, packages.join("\n") + "\n")
        .map_err(Error::io(format!("writing {}", packages_tmp.display())))?;
    std::fs::rename(&packages_tmp, &list)
        .map_err(Error::io(format!("writing {}", list.display())))?;
    std::fs::rename(&tar_tmp, &tar).map_err(Error::io(format!("writing {}", tar.display())))?;
    let size = std::fs::metadata(&tar).map(|m| m.len()).unwrap_or(0);
    task.finish(&format!(
        "{} packages, {}, sha256 {}",
        packages.len(),
        crate::progress::bytes(size),
        &sha256[..12]
    ));
    Ok(Bootstrapped {
        tar,
        sha256,
        packages,
    })
}

/// Removes what differs between two runs or must not be shared by every
/// container of the image.
const CLEAN_HOOK: &str = "rm -f \"$1\"/etc/ssh/ssh_host_*; \
     rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/* \"$1\"/var/cache/ldconfig/aux-cache \"$1\"/var/cache/debconf/*-old; \
     find \"$1\"/var/log -type f -delete; \
     : > \"$1\"/etc/machine-id";

/// Makes sure `torchenv/base:<key>` (or the pinned `REF@sha256:` image) is
/// in the engine, bootstrapping and loading it when needed. Returns the
/// reference to build `FROM`.
pub async fn ensure_base_image(
    docker: &Docker,
    lock: &Lock,
    env: &LockedEnv,
    progress: &Progress,
) -> Result<String> {
    if env.base.contains("@sha256:") {
        return match docker.image_inspect(&env.base).await? {
            Some(_) => Ok(env.base.clone()),
            None => Err(ImageError::BaseImageMissing {
                reference: env.base.clone(),
            }
            .into()),
        };
    }
    let base = lock
        .bases
        .get(&env.base)
        .ok_or_else(|| ImageError::StaleLock {
            message: format!(
                "the lock names base `{}` but has no [bases] entry for it",
                env.base
            ),
        })?;
    let tag = format!("{BASE_REPO}:{}", base.key());
    if docker.image_inspect(&tag).await?.is_some() {
        return Ok(tag);
    }
    let dir = cache::rootfs_dir();
    let tar = dir.join(format!("{}.tar", base.rootfs_sha256));
    if !tar.exists() {
        let request = BootstrapRequest {
            suite: &base.suite,
            include: &base.include,
            pins: &base.packages,
            source_date_epoch: base.source_date_epoch,
        };
        let got = tokio::task::block_in_place(|| bootstrap_with(request, &dir, progress))?;
        if got.sha256 != base.rootfs_sha256 {
            // Not the locked rootfs: out of the cache, and say why.
            let _ = std::fs::remove_file(&got.tar);
            let _ = std::fs::remove_file(got.tar.with_extension("packages"));
            let changed = package_changes(&base.packages, &got.packages);
            return Err(if changed.is_empty() {
                ImageError::RootfsMismatch {
                    key: base.key(),
                    locked: base.rootfs_sha256.clone(),
                    got: got.sha256,
                }
            } else {
                ImageError::BasePackagesUnavailable {
                    key: base.key(),
                    changed,
                }
            }
            .into());
        }
    }
    let size = std::fs::metadata(&tar)
        .map_err(Error::io(format!("reading {}", tar.display())))?
        .len();
    let task = progress.bytes(format!("load {tag}"), Some(size));
    // The engine checks the layer against the config's diff_id (the locked
    // sha256), so a corrupted cache file cannot become the base.
    let archive = image_archive(
        &tag,
        &tar,
        size,
        base.source_date_epoch,
        &base.rootfs_sha256,
        &base.key(),
    );
    let counted = count_bytes(archive, task.bar_handle());
    match docker.image_load(&tag, counted).await {
        Ok(()) => {
            task.finish(&format!("loaded {}", crate::progress::bytes(size)));
            Ok(tag)
        }
        Err(e) => {
            task.fail("load");
            Err(e.into())
        }
    }
}

/// A one-layer `docker load` archive of `rootfs` tagged `tag`, with a
/// config that depends only on the locked inputs (so the image id does too).
fn image_archive(
    tag: &str,
    rootfs: &Path,
    size: u64,
    source_date_epoch: u64,
    sha256: &str,
    key: &str,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let config = image_config(source_date_epoch, sha256, key);
    let config_name = format!("{}.json", cache::sha256_bytes(&config));
    let layer_name = format!("{sha256}/layer.tar");
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": [layer_name],
    }]))
    .expect("manifest serializes");
    let rootfs = rootfs.to_path_buf();
    crate::docker::images::tar_stream(move |b| {
        append_bytes(b, "manifest.json", &manifest, source_date_epoch)?;
        append_bytes(b, &config_name, &config, source_date_epoch)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(source_date_epoch);
        header.set_entry_type(tar::EntryType::Regular);
        let file = std::fs::File::open(&rootfs)?;
        b.append_data(&mut header, &layer_name, file)?;
        Ok(())
    })
}

/// The image config of a base: labelled, `PATH` and `LANG` set, no command
/// beyond a shell.
pub(crate) fn image_config(source_date_epoch: u64, sha256: &str, key: &str) -> Vec<u8> {
    let created = rfc3339(source_date_epoch);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": {
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
            ],
            "Cmd": ["/bin/bash"],
            "Labels": {
                LABEL_MANAGED_BY: MANAGED_BY,
                "dev.torchenv.base": key,
                "dev.torchenv.rootfs-sha256": sha256,
            },
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{sha256}")] },
        "history": [{
            "created": created,
            "created_by": format!("torchenv: mmdebstrap --variant=minbase ({key})"),
        }],
    }))
    .expect("config serializes")
}

fn append_bytes<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
    mtime: u64,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut header, name, data)
}

/// Counts the bytes of a body on a progress bar as the engine reads them.
pub(crate) fn count_bytes<S>(
    stream: S,
    bar: indicatif::ProgressBar,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static
where
    S: futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
{
    use futures_util::StreamExt;
    stream.inspect(move |chunk| {
        if let Ok(c) = chunk {
            bar.inc(c.len() as u64);
        }
    })
}

/// `1970-01-01T00:00:00Z` for a Unix time.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since the epoch (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

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
        return Err(ImageError::NoAptSource {
            suite: suite.to_string(),
        }
        .into());
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

/// Runs `cmd`, showing each output line on `task`. `Ok(None)` on success,
/// `Ok(Some(tail))` with the last lines when it exits non-zero.
pub(crate) fn run_streaming(cmd: &mut Command, task: &Task) -> Result<Option<Vec<String>>> {
    let what = describe(cmd);
    let mut child = cmd.spawn().map_err(Error::io(format!("starting {what}")))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let readers: Vec<_> = [
        stdout.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        stderr.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|r| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(|l| l.ok()) {
                let _ = tx.send(line);
            }
        })
    })
    .collect();
    drop(tx);
    let mut tail = std::collections::VecDeque::new();
    for line in rx {
        task.line(&line);
        if tail.len() == crate::docker::images::BUILD_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child
        .wait()
        .map_err(Error::io(format!("waiting for {what}")))?;
    if status.success() {
        Ok(None)
    } else {
        tail.push_back(format!("({what} exited with {status})"));
        Ok(Some(tail.into()))
    }
}

/// The command line, for logs.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
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

    #[test]
    fn epoch_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
