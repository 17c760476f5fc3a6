//! Images made without a builder: a `docker load` archive whose config
//! torchenv writes and whose new layers it archives itself, with sorted
//! entries, owner root and one fixed mtime, so a layer's diff id (the
//! sha256 of its tar) depends only on its content and the image id (the
//! sha256 of its config) only on the layers and the config.
//!
//! Layers the engine already holds are named by diff id and not sent: the
//! engine finds them by chain id and stores only the new ones. It checks
//! every new layer against the diff id in the config and tags the image
//! only when the whole archive loaded, so a failed or interrupted load
//! leaves no tag.
//!
//! May use: `docker`, `cache`, `clock`, `progress`.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::BuildError;
use crate::docker::images::tar_stream;
use crate::docker::Docker;
use crate::progress::Progress;

/// One layer of an image, bottom first.
#[derive(Debug, Clone)]
pub enum Layer {
    /// A layer the engine holds (a parent image's), by diff id.
    Existing(String),
    /// The folder `source` on this machine, archived as `at` (for example
    /// `opt/venv`), the folders above `at` included (mode 0755).
    Dir { source: PathBuf, at: String },
    /// Entries given here, in this order (parents before children).
    Entries(Vec<Entry>),
}

/// An entry of a [`Layer::Entries`] layer.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path in the image, relative (`usr/local/bin/harness`).
    pub path: String,
    pub mode: u32,
    pub kind: EntryKind,
}

#[derive(Debug, Clone)]
pub enum EntryKind {
    Dir,
    /// A file on this machine, read when the archive is written.
    File(PathBuf),
}

/// What becomes the image: its tag, the runtime part of its config
/// (`Env`, `Cmd`, `Labels`, …), the line per layer its history shows and
/// the time every entry and the image carry.
#[derive(Debug, Clone)]
pub struct ImageDoc {
    pub tag: String,
    pub config: serde_json::Value,
    pub history: Vec<String>,
    pub epoch: u64,
}

/// A loaded image: its id and every layer's diff id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub id: String,
    pub diff_ids: Vec<String>,
}

/// Loads `layers` as the image `doc`, sending only the layers not already
/// in the engine, with one progress bar over the bytes sent.
pub async fn load(
    docker: &Docker,
    doc: ImageDoc,
    layers: Vec<Layer>,
    progress: &Progress,
) -> Result<Loaded, BuildError> {
    if layers.len() != doc.history.len() {
        return Err(BuildError::failed(format!(
            "{}: {} layers but {} history lines",
            doc.tag,
            layers.len(),
            doc.history.len()
        )));
    }
    // First pass: every new layer's size (the tar entry holding it needs it
    // before its bytes), from headers and file lengths.
    let (sizing, epoch) = (layers.clone(), doc.epoch);
    let sizes = tokio::task::spawn_blocking(move || -> io::Result<Vec<u64>> {
        sizing
            .iter()
            .map(|l| match l {
                Layer::Existing(_) => Ok(0),
                other => layer_size(other, epoch),
            })
            .collect()
    })
    .await
    .map_err(|e| BuildError::failed(format!("sizing the layers of {}: {e}", doc.tag)))?
    .map_err(BuildError::io(format!("reading the layers of {}", doc.tag)))?;
    let total: u64 = sizes.iter().sum();
    let task = progress.bytes(format!("load {}", doc.tag), Some(total));
    let result: Written = Arc::new(Mutex::new(None));
    let archive = archive_stream(doc.clone(), layers, sizes, result.clone());
    let counted = super::base_image::count_bytes(archive, task.bar_handle());
    if let Err(e) = docker.image_load(&doc.tag, counted).await {
        task.fail("load");
        return Err(e.into());
    }
    let (diff_ids, config) = result
        .lock()
        .expect("archive writer does not panic")
        .take()
        .ok_or_else(|| BuildError::failed(format!("the archive of {} was cut short", doc.tag)))?;
    task.finish(&format!("loaded {}", crate::progress::bytes(total)));
    let id = format!("sha256:{}", crate::cache::sha256_bytes(&config));
    Ok(Loaded { id, diff_ids })
}

/// Where the archive writer leaves the diff ids and the config it wrote.
type Written = Arc<Mutex<Option<(Vec<String>, Vec<u8>)>>>;

/// The `docker load` archive: each new layer as `<n>/layer.tar`, then the
/// config, then `manifest.json`. `result` receives the diff ids and the
/// config bytes once written.
fn archive_stream(
    doc: ImageDoc,
    layers: Vec<Layer>,
    sizes: Vec<u64>,
    result: Written,
) -> impl futures_util::Stream<Item = io::Result<bytes::Bytes>> + Send + 'static {
    tar_stream(move |b| {
        let mut diff_ids = Vec::new();
        let mut paths = Vec::new();
        for (n, (layer, size)) in layers.iter().zip(&sizes).enumerate() {
            let path = format!("{n}/layer.tar");
            if let Layer::Existing(id) = layer {
                diff_ids.push(id.clone());
                paths.push(path);
                continue;
            }
            let mut header = file_header(*size, doc.epoch);
            header.set_path(&path)?;
            header.set_cksum();
            b.get_mut().write_all(header.as_bytes())?;
            let hashing = Hashing {
                inner: b.get_mut(),
                hasher: Sha256::new(),
                n: 0,
            };
            let hashing = write_layer(hashing, layer, &Pass::real(doc.epoch))?;
            if hashing.n != *size {
                return Err(io::Error::other(format!(
                    "layer {n} of {} changed while it was archived",
                    doc.tag
                )));
            }
            diff_ids.push(format!("sha256:{}", hex::encode(hashing.hasher.finalize())));
            let pad = (512 - size % 512) % 512;
            b.get_mut().write_all(&vec![0; pad as usize])?;
            paths.push(path);
        }
        let config = config_json(&doc, &diff_ids);
        let config_name = format!("{}.json", crate::cache::sha256_bytes(&config));
        append(b, &config_name, &config, doc.epoch)?;
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": config_name,
            "RepoTags": [doc.tag],
            "Layers": paths,
        }]))
        .expect("manifest serializes");
        append(b, "manifest.json", &manifest, doc.epoch)?;
        *result.lock().expect("not poisoned") = Some((diff_ids, config));
        Ok(())
    })
}

/// The image config: `doc.config` as the runtime config, the diff ids, one
/// history line per layer, every time `doc.epoch`.
pub fn config_json(doc: &ImageDoc, diff_ids: &[String]) -> Vec<u8> {
    let created = crate::clock::rfc3339(doc.epoch);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let history: Vec<serde_json::Value> = doc
        .history
        .iter()
        .map(|h| serde_json::json!({ "created": created, "created_by": h }))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": doc.config,
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": history,
    }))
    .expect("config serializes")
}

fn file_header(size: u64, mtime: u64) -> tar::Header {
    header(tar::EntryType::Regular, 0o644, mtime, size)
}

/// A header owned by root (numeric ids only), with `mtime`.
fn header(kind: tar::EntryType, mode: u32, mtime: u64, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append<W: Write>(
    b: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
    mtime: u64,
) -> io::Result<()> {
    let mut header = file_header(data.len() as u64, mtime);
    b.append_data(&mut header, name, data)
}

/// How a layer is written: every mtime, and whether file contents are
/// skipped (the size pass: headers written, contents only counted).
struct Pass {
    mtime: u64,
    skipped: Option<std::cell::Cell<u64>>,
}

impl Pass {
    fn real(mtime: u64) -> Pass {
        Pass {
            mtime,
            skipped: None,
        }
    }
}

/// The size of `layer`'s tar, from its headers (written by the same code
/// as the real pass) and its files' lengths, without reading any file.
fn layer_size(layer: &Layer, mtime: u64) -> io::Result<u64> {
    let pass = Pass {
        mtime,
        skipped: Some(std::cell::Cell::new(0)),
    };
    let counted = write_layer(Counter::default(), layer, &pass)?;
    Ok(counted.n + pass.skipped.map_or(0, |c| c.get()))
}

/// Writes `layer` as a tar into `w` and returns `w`.
fn write_layer<W: Write>(w: W, layer: &Layer, pass: &Pass) -> io::Result<W> {
    let mtime = pass.mtime;
    let mut b = tar::Builder::new(w);
    match layer {
        Layer::Existing(_) => {}
        Layer::Entries(entries) => {
            for e in entries {
                match &e.kind {
                    EntryKind::Dir => dir_entry(&mut b, &e.path, e.mode, mtime)?,
                    EntryKind::File(src) => file_entry(&mut b, src, &e.path, e.mode, pass)?,
                }
            }
        }
        Layer::Dir { source, at } => {
            let mut parent = String::new();
            for part in at.split('/').filter(|p| !p.is_empty()) {
                parent.push_str(part);
                if parent != *at {
                    dir_entry(&mut b, &parent, 0o755, mtime)?;
                }
                parent.push('/');
            }
            walk_into(&mut b, source, at, pass)?;
        }
    }
    b.into_inner()
}

/// `source` (a folder) as `at`, then everything under it, sorted by name.
fn walk_into<W: Write>(
    b: &mut tar::Builder<W>,
    source: &Path,
    at: &str,
    pass: &Pass,
) -> io::Result<()> {
    let mtime = pass.mtime;
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(source)?;
    let mode = meta.permissions().mode() & 0o7777;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = std::fs::read_link(source)?;
        let mut header = header(tar::EntryType::Symlink, 0o777, mtime, 0);
        return b.append_link(&mut header, at, target);
    }
    if kind.is_file() {
        return file_entry(b, source, at, mode, pass);
    }
    if !kind.is_dir() {
        return Err(io::Error::other(format!(
            "{}: neither a file, a folder nor a symlink",
            source.display()
        )));
    }
    dir_entry(b, at, mode, mtime)?;
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(source)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let child = format!("{at}/{}", name.to_string_lossy());
        walk_into(b, &source.join(&name), &child, pass)?;
    }
    Ok(())
}

fn dir_entry<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    mode: u32,
    mtime: u64,
) -> io::Result<()> {
    let mut header = header(tar::EntryType::Directory, mode, mtime, 0);
    b.append_data(&mut header, format!("{path}/"), io::empty())
}

fn file_entry<W: Write>(
    b: &mut tar::Builder<W>,
    source: &Path,
    path: &str,
    mode: u32,
    pass: &Pass,
) -> io::Result<()> {
    let len = std::fs::metadata(source)?.len();
    let mut header = file_header(len, pass.mtime);
    header.set_mode(mode);
    if let Some(skipped) = &pass.skipped {
        // The header as the real pass writes it; the contents and their
        // padding to 512 bytes only counted.
        b.append_data(&mut header, path, io::empty())?;
        skipped.set(skipped.get() + len.div_ceil(512) * 512);
        return Ok(());
    }
    // Exactly `len` bytes: a file that grew or shrank since is an error
    // (the size pass counted `len`).
    let mut file = std::fs::File::open(source)?.take(len);
    let mut counted = CountRead {
        inner: &mut file,
        n: 0,
    };
    b.append_data(&mut header, path, &mut counted)?;
    if counted.n != len {
        return Err(io::Error::other(format!(
            "{} shrank while it was archived",
            source.display()
        )));
    }
    Ok(())
}

/// A writer that only counts.
#[derive(Default)]
struct Counter {
    n: u64,
}

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.n += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that hashes and counts what it passes on.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    n: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct CountRead<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for CountRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lib/b")).unwrap();
        std::fs::write(dir.path().join("lib/b/x.py"), "x = 1\n").unwrap();
        std::fs::write(dir.path().join("lib/a.txt"), "a".repeat(700)).unwrap();
        std::os::unix::fs::symlink("/usr/bin/python3", dir.path().join("python")).unwrap();
        dir
    }

    #[test]
    fn a_folder_layer_is_sorted_rooted_and_timeless() {
        let dir = tree();
        let layer = Layer::Dir {
            source: dir.path().to_path_buf(),
            at: "opt/venv".into(),
        };
        let bytes = write_layer(Vec::new(), &layer, &Pass::real(1_735_689_600)).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<(String, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                )
            })
            .collect();
        let names: Vec<&str> = entries.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "opt/",
                "opt/venv/",
                "opt/venv/lib/",
                "opt/venv/lib/a.txt",
                "opt/venv/lib/b/",
                "opt/venv/lib/b/x.py",
                "opt/venv/python"
            ]
        );
        assert!(entries
            .iter()
            .all(|(_, m, u)| *m == 1_735_689_600 && *u == 0));
    }

    #[test]
    fn the_size_pass_counts_what_the_write_pass_writes() {
        let dir = tree();
        // A name longer than a tar header holds takes an extra entry.
        let long = "n".repeat(150);
        std::fs::write(dir.path().join(&long), "long").unwrap();
        // Paths of 99, 100 and 101 bytes ("opt/venv/" + name): the edge of
        // the header's name field; a long symlink target too.
        for n in [90, 91, 92] {
            std::fs::write(dir.path().join("e".repeat(n)), "edge").unwrap();
        }
        std::os::unix::fs::symlink("t".repeat(120), dir.path().join("far")).unwrap();
        let layer = Layer::Dir {
            source: dir.path().to_path_buf(),
            at: "opt/venv".into(),
        };
        let real = write_layer(Vec::new(), &layer, &Pass::real(7)).unwrap();
        assert_eq!(real.len() as u64, layer_size(&layer, 7).unwrap());
    }

    #[test]
    fn the_same_content_gives_the_same_bytes() {
        let (a, b) = (tree(), tree());
        let layer = |d: &tempfile::TempDir| Layer::Dir {
            source: d.path().to_path_buf(),
            at: "opt/venv".into(),
        };
        // Different mtimes on disk do not reach the archive.
        let f = std::fs::File::open(b.path().join("lib/a.txt")).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(
            write_layer(Vec::new(), &layer(&a), &Pass::real(9)).unwrap(),
            write_layer(Vec::new(), &layer(&b), &Pass::real(9)).unwrap()
        );
    }
}
