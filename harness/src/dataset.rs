//! Evaluation datasets: an ImageFolder directory whose class directories
//! are ImageNet synsets, or a labels file.
//!
//! May use: nothing else of the crate.

use report::imagenet;
use std::path::{Path, PathBuf};

/// Errors while listing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read dataset {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "dataset {path}: directory {dir:?} is not an ImageNet-1k synset (expected e.g. n01440764)"
    )]
    UnknownSynset { path: PathBuf, dir: String },
    #[error("labels file {path}, line {line}: {msg}")]
    LabelsLine {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("dataset {path} contains no images")]
    Empty { path: PathBuf },
}

/// One image to evaluate.
#[derive(Debug, Clone)]
pub struct Sample {
    pub path: PathBuf,
    /// Path relative to the dataset root, as reported.
    pub rel_path: String,
    /// ImageNet class index.
    pub label: usize,
}

/// File names that are listed as samples (case-insensitive extension);
/// anything else is skipped. Decoding sniffs the real format.
const IMAGE_EXTENSIONS: [&str; 9] = [
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp",
];

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_owned(),
        source,
    }
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// ImageFolder listing: `root/<synset>/<image>`, sorted by path. Files with
/// unknown extensions are skipped, like torchvision's `ImageFolder`.
pub fn image_folder(root: &Path) -> Result<Vec<Sample>, DatasetError> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(io_err(root))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut samples = Vec::new();
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let label =
            imagenet::index_of_synset(&name).ok_or_else(|| DatasetError::UnknownSynset {
                path: root.to_owned(),
                dir: name.clone(),
            })?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        files.sort();
        for f in files {
            let rel_path = f
                .strip_prefix(root)
                .unwrap_or(&f)
                .to_string_lossy()
                .into_owned();
            samples.push(Sample {
                path: f,
                rel_path,
                label,
            });
        }
    }
    if samples.is_empty() {
        return Err(DatasetError::Empty {
            path: root.to_owned(),
        });
    }
    Ok(samples)
}

/// Labels file: one `relative/path<TAB>synset-or-index` per line, paths
/// relative to `root`; blank lines and `#` comments are ignored.
pub fn labels_file(root: &Path, labels: &Path) -> Result<Vec<Sample>, DatasetError> {
    let text = std::fs::read_to_string(labels).map_err(io_err(labels))?;
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |msg: String| DatasetError::LabelsLine {
            path: labels.to_owned(),
            line: i + 1,
            msg,
        };
        let (rel, label) = line
            .rsplit_once('\t')
            .ok_or_else(|| bad("expected `path<TAB>synset-or-index`".into()))?;
        let label = label.trim();
        let idx = if let Ok(n) = label.parse::<usize>() {
            if n >= imagenet::classes().len() {
                return Err(bad(format!("class index {n} out of range 0..999")));
            }
            n
        } else {
            imagenet::index_of_synset(label).ok_or_else(|| {
                bad(format!(
                    "{label:?} is neither a class index nor an ImageNet-1k synset"
                ))
            })?
        };
        samples.push(Sample {
            path: root.join(rel),
            rel_path: rel.to_string(),
            label: idx,
        });
    }
    if samples.is_empty() {
        return Err(DatasetError::Empty {
            path: labels.to_owned(),
        });
    }
    Ok(samples)
}
