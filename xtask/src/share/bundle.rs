//! Air-gapped bundles: one file with an environment's image as `docker
//! save` writes it, its lock entry, its spec (the image's labels) and the
//! locked weights its checks use, so that a machine without network can
//! `load` it and run `up` and `check` with nothing built or fetched.
//!
//! The file is a plain tar (so `docker load -i` reads it too):
//! 1. `torchenv-bundle.json`, the [`Manifest`];
//! 2. `torchenv-weights/<sha256 prefix>-<file>` per model;
//! 3. the entries of the `docker save` archive.
//!
//! `write` writes `FILE.partial` and renames it when complete. `load`
//! checks before the engine sees a byte that the manifest's labels are what
//! this machine's spec, lock and harness sources give (else an error naming
//! the label) and that the archive's own `manifest.json` tags only the
//! bundle's tag, with the bundle's image id; after the engine loaded it,
//! the image's id, labels and base layers (`build::provenance`), untagging
//! it again when they differ. The weights go into the cache, checked
//! against the lock.
//!
//! May use: `build`, `docker`, `lock`, `progress`, `share`, `spec`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use super::ShareError;
use crate::build::image::{self, ImageRef};
use crate::build::{provenance, weights};
use crate::docker::Docker;
use crate::lock::Lock;
use crate::progress::{Progress, Task};
use crate::spec::{Env, Spec};

/// The bundle's first entry.
pub const MANIFEST: &str = "torchenv-bundle.json";
/// Where the weights are, inside the bundle.
const WEIGHTS_DIR: &str = "torchenv-weights/";
const FORMAT: u32 = 1;
/// A manifest larger than this is not one.
const MAX_MANIFEST: u64 = 16 << 20;

/// What a bundle holds, besides the image's bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub env: String,
    /// The image's tag (`torchenv/<env>:<hash>`).
    pub tag: String,
    /// The engine's image id (`sha256:…`).
    pub image_id: String,
    /// The image's `dev.torchenv.*` labels.
    pub labels: BTreeMap<String, String>,
    /// The environment's lock entry and its base's, for people.
    pub lock: serde_json::Value,
    /// Model → its weights file under `torchenv-weights/`.
    pub weights: BTreeMap<String, String>,
}

/// A bundle written.
#[derive(Debug)]
pub struct Written {
    pub bytes: u64,
    pub manifest: Manifest,
}

/// Writes the bundle of `env`'s `image` to `out` (through `out.partial`,
/// removed on failure).
pub async fn write(
    docker: &Docker,
    lock: &Lock,
    env: &Env,
    image: &ImageRef,
    out: &Path,
    progress: &Progress,
) -> Result<Written, ShareError> {
    let locked = lock.environments.get(&env.name);
    let mut files = Vec::new();
    let mut names = BTreeMap::new();
    for model in &env.harness.models {
        if let Some(m) = lock.models.get(model) {
            let path = weights::weights_path(lock, model)?;
            let name = format!("{}-{}", &m.weights_sha256[..12], m.weights);
            names.insert(model.clone(), name.clone());
            files.push((name, path));
        }
    }
    let manifest = Manifest {
        format: FORMAT,
        env: env.name.clone(),
        tag: image.tag.clone(),
        image_id: image.id.clone(),
        labels: image.labels.clone(),
        lock: serde_json::json!({
            "environment": locked,
            "base": locked.and_then(|l| lock.bases.get(&l.base)),
        }),
        weights: names,
    };
    let partial = partial_path(out);
    let written = write_to(docker, &manifest, &files, &partial, progress).await;
    let result = written.and_then(|bytes| {
        std::fs::rename(&partial, out).map_err(|e| ShareError::Output {
            path: out.to_path_buf(),
            what: e.to_string(),
        })?;
        Ok(bytes)
    });
    match result {
        Ok(bytes) => Ok(Written { bytes, manifest }),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// `FILE.partial` beside `FILE`.
fn partial_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

async fn write_to(
    docker: &Docker,
    manifest: &Manifest,
    files: &[(String, PathBuf)],
    partial: &Path,
    progress: &Progress,
) -> Result<u64, ShareError> {
    let out_err = |e: std::io::Error| ShareError::Output {
        path: partial.to_path_buf(),
        what: e.to_string(),
    };
    let mut w = BufWriter::with_capacity(1 << 20, File::create(partial).map_err(out_err)?);
    let json = serde_json::to_vec_pretty(manifest).expect("manifest serializes");
    append(&mut w, MANIFEST, json.len() as u64, &mut json.as_slice()).map_err(out_err)?;
    for (name, path) in files {
        let mut f = File::open(path).map_err(out_err)?;
        let size = f.metadata().map_err(out_err)?.len();
        append(&mut w, &format!("{WEIGHTS_DIR}{name}"), size, &mut f).map_err(out_err)?;
    }
    let task = progress.bytes(format!("bundle {}", manifest.env), None);
    let saved = docker
        .image_save(&manifest.tag, |chunk| {
            task.inc(chunk.len() as u64);
            w.write_all(chunk)
        })
        .await?
        .map_err(out_err)?;
    let file = w.into_inner().map_err(|e| out_err(e.into_error()))?;
    file.sync_all().map_err(out_err)?;
    task.finish(&format!("{} written", crate::progress::bytes(saved)));
    Ok(file.metadata().map_err(out_err)?.len())
}

/// One regular tar entry of `size` bytes read from `data`, padded.
fn append(w: &mut impl Write, path: &str, size: u64, data: &mut impl Read) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    w.write_all(h.as_bytes())?;
    let copied = std::io::copy(&mut data.take(size), w)?;
    if copied != size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{path}: {copied} of {size} bytes"),
        ));
    }
    let pad = (512 - size % 512) % 512;
    w.write_all(&vec![0u8; pad as usize])
}

/// The manifest of the bundle at `path` (its first entry).
pub fn read_manifest(path: &Path) -> Result<Manifest, ShareError> {
    let bad = |why: String| ShareError::NotABundle {
        path: path.to_path_buf(),
        why,
    };
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut archive = tar::Archive::new(file);
    let mut entries = archive.entries().map_err(|e| bad(e.to_string()))?;
    let mut first = entries
        .next()
        .ok_or_else(|| bad("it is empty".into()))?
        .map_err(|e| bad(format!("not a tar archive ({e})")))?;
    let name = first.path().map_err(|e| bad(e.to_string()))?.into_owned();
    if name != Path::new(MANIFEST) || first.size() > MAX_MANIFEST {
        return Err(bad(format!(
            "its first entry is {}, not {MANIFEST}",
            name.display()
        )));
    }
    let mut json = Vec::new();
    first
        .read_to_end(&mut json)
        .map_err(|e| bad(e.to_string()))?;
    let manifest: Manifest =
        serde_json::from_slice(&json).map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
    if manifest.format != FORMAT {
        return Err(bad(format!(
            "bundle format {} (this torchenv reads {FORMAT})",
            manifest.format
        )));
    }
    Ok(manifest)
}

/// Loads the bundle at `path` into the engine after checking it (see the
/// module docs), then puts its weights into the cache. The image, or the
/// reason nothing was tagged.
pub async fn load(
    docker: &Docker,
    spec: &Spec,
    lock: &Lock,
    path: &Path,
    progress: &Progress,
) -> Result<ImageRef, ShareError> {
    let manifest = read_manifest(path)?;
    let env = spec
        .environments
        .get(&manifest.env)
        .ok_or_else(|| ShareError::UnknownEnv {
            path: path.to_path_buf(),
            env: manifest.env.clone(),
        })?;
    let expected = image::shared_labels(spec, lock, env)?;
    if let Some((field, want, found)) = label_difference(&expected, &manifest.labels) {
        return Err(ShareError::Mismatch {
            path: path.to_path_buf(),
            env: env.name.clone(),
            field: format!("label {field}"),
            expected: want,
            found,
        });
    }
    check_archive(path, &manifest)?;
    match docker.image_inspect(&manifest.tag).await? {
        Some(i) if i.id.as_deref() == Some(manifest.image_id.as_str()) => {
            progress.println(format!("{} is already on this engine", manifest.tag));
        }
        Some(i) => {
            return Err(ShareError::TagTaken {
                tag: manifest.tag.clone(),
                existing: i.id.unwrap_or_default(),
                bundled: manifest.image_id.clone(),
            })
        }
        None => {
            let size = std::fs::metadata(path).map(|m| m.len()).ok();
            let task = progress.bytes(format!("load {}", manifest.env), size);
            docker
                .image_load(&manifest.tag, file_stream(path.to_path_buf(), &task))
                .await?;
            task.finish(&format!("{} loaded", manifest.tag));
        }
    }
    let loaded = verify_loaded(docker, spec, lock, env, path, &manifest, &expected).await?;
    install_weights(lock, path, &manifest)?;
    Ok(loaded)
}

/// The first label of `expected` that `found` lacks or has otherwise.
fn label_difference(
    expected: &BTreeMap<String, String>,
    found: &BTreeMap<String, String>,
) -> Option<(String, String, String)> {
    expected.iter().find_map(|(k, want)| match found.get(k) {
        Some(v) if v == want => None,
        other => Some((
            k.clone(),
            short(want),
            short(other.map_or("(none)", String::as_str)),
        )),
    })
}

fn short(s: &str) -> String {
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s.to_string()
    }
}

/// The `docker save` part tags exactly the bundle's tag, with the
/// bundle's image id (so loading cannot retag anything else).
fn check_archive(path: &Path, manifest: &Manifest) -> Result<(), ShareError> {
    let tampered = |why: String| ShareError::Tampered {
        path: path.to_path_buf(),
        why,
    };
    let file = File::open(path).map_err(|e| tampered(e.to_string()))?;
    let mut archive = tar::Archive::new(file);
    let entries = archive
        .entries_with_seek()
        .map_err(|e| tampered(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| tampered(format!("broken archive: {e}")))?;
        if entry.path().map_err(|e| tampered(e.to_string()))?.as_ref() != Path::new("manifest.json")
        {
            continue;
        }
        let mut text = String::new();
        entry
            .by_ref()
            .take(MAX_MANIFEST)
            .read_to_string(&mut text)
            .map_err(|e| tampered(e.to_string()))?;
        let images: Vec<serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| tampered(format!("manifest.json: {e}")))?;
        let [one] = &images[..] else {
            return Err(tampered(format!(
                "manifest.json lists {} images, a bundle holds one",
                images.len()
            )));
        };
        let tags: Vec<&str> = one["RepoTags"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
            .unwrap_or_default();
        if tags != [manifest.tag.as_str()] {
            return Err(tampered(format!(
                "the archive tags {tags:?}, the bundle is {}",
                manifest.tag
            )));
        }
        let config = one["Config"].as_str().unwrap_or_default();
        let id = config
            .trim_start_matches("blobs/sha256/")
            .trim_end_matches(".json");
        if manifest.image_id.strip_prefix("sha256:") != Some(id) {
            return Err(tampered(format!(
                "the archive's image is sha256:{id}, the bundle's {}",
                manifest.image_id
            )));
        }
        return Ok(());
    }
    Err(tampered("it holds no image (no manifest.json)".into()))
}

/// The loaded image is the bundle's, with the labels and base layers this
/// machine's spec and lock give; else it is untagged again.
async fn verify_loaded(
    docker: &Docker,
    spec: &Spec,
    lock: &Lock,
    env: &Env,
    path: &Path,
    manifest: &Manifest,
    expected: &BTreeMap<String, String>,
) -> Result<ImageRef, ShareError> {
    let tag = &manifest.tag;
    let Some(i) = docker.image_inspect(tag).await? else {
        return Err(ShareError::Tampered {
            path: path.to_path_buf(),
            why: format!("the engine loaded it but has no {tag}"),
        });
    };
    let base = image::plan(spec, lock, env, None)?.base_layers;
    let same_id = i.id.as_deref() == Some(manifest.image_id.as_str());
    let checked = provenance::verify(docker, tag, &i, expected, &base).await;
    if !same_id || checked.is_err() {
        let _ = docker.image_remove(tag).await;
        return Err(match checked {
            Err(e) => ShareError::Build(Box::new(e)),
            Ok(()) => ShareError::Tampered {
                path: path.to_path_buf(),
                why: format!(
                    "the engine loaded image {}, the bundle says {}",
                    i.id.unwrap_or_default(),
                    manifest.image_id
                ),
            },
        });
    }
    Ok(ImageRef {
        tag: tag.clone(),
        id: manifest.image_id.clone(),
        labels: manifest.labels.clone(),
        built: false,
    })
}

/// The bundle's weights into the cache, each checked against the lock.
fn install_weights(lock: &Lock, path: &Path, manifest: &Manifest) -> Result<(), ShareError> {
    let bad = |why: String| ShareError::NotABundle {
        path: path.to_path_buf(),
        why,
    };
    let by_file: BTreeMap<String, &String> = manifest
        .weights
        .iter()
        .map(|(model, file)| (format!("{WEIGHTS_DIR}{file}"), model))
        .collect();
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        if name == MANIFEST {
            continue;
        }
        if !name.starts_with(WEIGHTS_DIR) {
            // The image's entries follow the weights.
            break;
        }
        let Some(model) = by_file.get(&name) else {
            continue;
        };
        if let Some(locked) = lock.models.get(model.as_str()) {
            let what = format!("{} in {}", name, path.display());
            weights::install(locked, &mut entry, &what)?;
        }
    }
    Ok(())
}

/// The file at `path` as a stream of chunks read on a blocking thread,
/// counted on `task`.
fn file_stream(
    path: PathBuf,
    task: &Task,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    let bar = task.bar_handle();
    tokio::task::spawn_blocking(move || {
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            let mut buf = vec![0u8; 1 << 20];
            match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    bar.inc(n as u64);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_ustar_and_padded() {
        let mut out = Vec::new();
        append(&mut out, "a.json", 3, &mut &b"abc"[..]).unwrap();
        assert_eq!(out.len(), 1024);
        let mut archive = tar::Archive::new(&out[..]);
        let mut e = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_str(), Some("a.json"));
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        assert_eq!(s, "abc");
    }

    #[test]
    fn a_short_source_is_an_error_not_a_short_entry() {
        let mut out = Vec::new();
        assert!(append(&mut out, "a", 10, &mut &b"abc"[..]).is_err());
    }

    #[test]
    fn a_file_that_is_not_a_bundle_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tar");
        std::fs::write(&p, b"hello").unwrap();
        assert!(matches!(
            read_manifest(&p),
            Err(ShareError::NotABundle { .. })
        ));
        let mut tar = Vec::new();
        append(&mut tar, "manifest.json", 2, &mut &b"[]"[..]).unwrap();
        std::fs::write(&p, &tar).unwrap();
        let e = read_manifest(&p).unwrap_err().to_string();
        assert!(e.contains("first entry is manifest.json"), "{e}");
    }

    #[test]
    fn the_first_differing_label_is_named() {
        let want = BTreeMap::from([
            ("dev.torchenv.torch".to_string(), "2.6.0".to_string()),
            ("dev.torchenv.cuda".to_string(), "12.4".to_string()),
        ]);
        let mut got = want.clone();
        assert_eq!(label_difference(&want, &got), None);
        got.insert("dev.torchenv.torch".into(), "2.7.0".into());
        assert_eq!(
            label_difference(&want, &got),
            Some(("dev.torchenv.torch".into(), "2.6.0".into(), "2.7.0".into()))
        );
        got.remove("dev.torchenv.cuda");
        assert_eq!(
            label_difference(&want, &got).unwrap().2,
            "(none)".to_string()
        );
    }
}
