//! Evaluation datasets as people have them:
//!
//! - **ImageFolder**: `root/<synset>/<image>` (torchvision's layout);
//! - **Kaggle**: a flat folder of `ILSVRC2012_val_*.JPEG` with
//!   `LOC_val_solution.csv` (`ImageId,PredictionString`, the first synset of
//!   the prediction string is the label);
//! - **devkit**: the same flat folder with the devkit's
//!   `ILSVRC2012_validation_ground_truth.txt` (line *i* is the devkit class
//!   id of `ILSVRC2012_val_<i>`), whose ids follow the devkit's synset order
//!   (`map_clsloc.txt`: `n02119789 1 kit_fox`, or one synset per line), not
//!   the sorted order of the class indices;
//! - **labels TSV**: `relative/path<TAB>synset-or-class-index` lines.
//!
//! Without a labels file the layout is found from the folder: one of the
//! two label files in it, else synset folders, else a label file in its
//! parent. Every label must name an existing image, no image may be
//! labelled twice, and every image of a flat folder must have a label with
//! Kaggle's and the devkit's files (a TSV lists what it evaluates): the
//! first that does not is named in the error. Hidden files and
//! `lost+found` are not listed. A folder is listed with one `read_dir`, so
//! 50,000 files list in well under a second.
//!
//! May use: nothing else of the crate.

use report::imagenet;
use std::collections::HashMap;
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
    #[error("labels file {labels}, line {line} names {name}, which is not in {root}")]
    Absent {
        labels: PathBuf,
        line: usize,
        name: String,
        root: PathBuf,
    },
    #[error(
        "dataset {root}: {file} has no label in {labels} (the first of {count} unlabelled images)"
    )]
    Unlabelled {
        root: PathBuf,
        file: String,
        labels: PathBuf,
        count: usize,
    },
    #[error(
        "dataset {root}: no synset folders and no labels file (looked for {} in it and its parent); pass --labels",
        AUTO_LABELS.join(", ")
    )]
    NoLabels { root: PathBuf },
    #[error(
        "devkit labels {labels} need the devkit's synset order: pass --synsets with the devkit's map_clsloc.txt (or a file of 1000 synsets in devkit id order, e.g. written from the 2012 devkit's data/meta.mat); none found next to the labels or in {root}"
    )]
    NoSynsetOrder { labels: PathBuf, root: PathBuf },
}

/// How the labels of a dataset were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    ImageFolder,
    LabelsTsv,
    KaggleCsv,
    Devkit,
}

impl Layout {
    /// The name the report records.
    pub fn name(self) -> &'static str {
        match self {
            Layout::ImageFolder => "image-folder",
            Layout::LabelsTsv => "labels-tsv",
            Layout::KaggleCsv => "kaggle-csv",
            Layout::Devkit => "devkit",
        }
    }
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

/// A listed dataset.
#[derive(Debug)]
pub struct Listing {
    /// Sorted by relative path.
    pub samples: Vec<Sample>,
    pub layout: Layout,
    /// The labels file used, None for ImageFolder.
    pub labels_file: Option<PathBuf>,
}

/// File names that are listed as samples (case-insensitive extension);
/// anything else is skipped. Decoding sniffs the real format.
const IMAGE_EXTENSIONS: [&str; 9] = [
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp",
];

/// Every image under `root` (its sub-folders too, labelled or not), sorted
/// by relative path, at most `limit`: the images `export` checks parity on.
pub fn images_under(root: &Path, limit: usize) -> Result<Vec<(PathBuf, String)>, DatasetError> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = Entries::read(&dir)?;
        for name in &entries.images {
            found.push((dir.join(name), format!("{rel}{name}")));
        }
        for name in entries.dirs {
            stack.push((dir.join(&name), format!("{rel}{name}/")));
        }
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    found.truncate(limit);
    if found.is_empty() {
        return Err(DatasetError::Empty {
            path: root.to_path_buf(),
        });
    }
    Ok(found)
}

/// Label files looked for when `--labels` is not given.
const AUTO_LABELS: [&str; 2] = [KAGGLE_CSV, DEVKIT_GROUND_TRUTH];
const KAGGLE_CSV: &str = "LOC_val_solution.csv";
const DEVKIT_GROUND_TRUTH: &str = "ILSVRC2012_validation_ground_truth.txt";
/// The devkit's synset order (ILSVRC2015 devkit `data/map_clsloc.txt`).
const DEVKIT_SYNSETS: &str = "map_clsloc.txt";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_owned(),
        source,
    }
}

fn is_image(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Lists `root`: with `labels` in the layout its contents say, without in
/// the layout the folder says. `synsets` is the devkit's synset order.
pub fn list(
    root: &Path,
    labels: Option<&Path>,
    synsets: Option<&Path>,
) -> Result<Listing, DatasetError> {
    let entries = Entries::read(root)?;
    // A label file in the folder wins (a flat folder at the root of a
    // file system has `lost+found` beside its images); then synset folders;
    // then a label file beside the folder.
    let labels = match labels {
        Some(l) => Some(l.to_path_buf()),
        None => match find_labels(root) {
            Some(l) => Some(l),
            None if !entries.dirs.is_empty() => None,
            None => Some(root.parent().and_then(find_labels).ok_or_else(|| {
                if entries.images.is_empty() {
                    DatasetError::Empty {
                        path: root.to_owned(),
                    }
                } else {
                    DatasetError::NoLabels {
                        root: root.to_owned(),
                    }
                }
            })?),
        },
    };
    let (layout, mut samples) = match &labels {
        None => (Layout::ImageFolder, image_folder(root, &entries)?),
        Some(l) => {
            let text = std::fs::read_to_string(l).map_err(io_err(l))?;
            let text = text.trim_start_matches('\u{feff}');
            match sniff(text) {
                Layout::KaggleCsv => (Layout::KaggleCsv, kaggle(root, &entries, l, text)?),
                Layout::Devkit => {
                    let order = synset_order(root, l, synsets)?;
                    (Layout::Devkit, devkit(root, &entries, l, text, &order)?)
                }
                _ => (Layout::LabelsTsv, tsv(root, &entries, l, text)?),
            }
        }
    };
    if samples.is_empty() {
        return Err(DatasetError::Empty {
            path: labels.unwrap_or_else(|| root.to_owned()),
        });
    }
    samples.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(Listing {
        samples,
        layout,
        labels_file: labels,
    })
}

/// The folder's sub-folders and image files (names), from one `read_dir`.
struct Entries {
    dirs: Vec<String>,
    images: Vec<String>,
}

impl Entries {
    fn read(dir: &Path) -> Result<Entries, DatasetError> {
        let mut entries = Entries {
            dirs: Vec::new(),
            images: Vec::new(),
        };
        for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let e = e.map_err(io_err(dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            // file_type() does not follow symlinks; a linked entry is stat'ed.
            if name.starts_with('.') || name == "lost+found" {
                continue; // hidden (macOS `._*`, `.ipynb_checkpoints`), fsck's
            }
            let ft = e.file_type().map_err(io_err(dir))?;
            let (is_dir, is_file) = if ft.is_symlink() {
                // A dangling link to an image is listed: it fails to decode
                // and is reported by name, like any unreadable image.
                std::fs::metadata(e.path()).map_or((false, true), |m| (m.is_dir(), m.is_file()))
            } else {
                (ft.is_dir(), ft.is_file())
            };
            if is_dir {
                entries.dirs.push(name);
            } else if is_file && is_image(&name) {
                entries.images.push(name);
            }
        }
        entries.dirs.sort();
        entries.images.sort();
        Ok(entries)
    }

    /// Image file name by its stem (`ILSVRC2012_val_00000001` → `….JPEG`).
    fn by_stem(&self) -> HashMap<&str, &str> {
        self.images
            .iter()
            .map(|n| {
                (
                    n.rsplit_once('.').map_or(n.as_str(), |(s, _)| s),
                    n.as_str(),
                )
            })
            .collect()
    }
}

/// A label file in `dir`.
fn find_labels(dir: &Path) -> Option<PathBuf> {
    AUTO_LABELS
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

/// The layout of a labels file from its contents (byte-order mark
/// removed): Kaggle's header, all-integer lines (the devkit), else TSV.
fn sniff(text: &str) -> Layout {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if first.starts_with("ImageId,") {
        Layout::KaggleCsv
    } else if !text.trim().is_empty()
        && text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| l.trim().parse::<u32>().is_ok())
    {
        Layout::Devkit
    } else {
        Layout::LabelsTsv
    }
}

/// ImageFolder listing: `root/<synset>/<image>`. Files with unknown
/// extensions are skipped, like torchvision's `ImageFolder`.
fn image_folder(root: &Path, entries: &Entries) -> Result<Vec<Sample>, DatasetError> {
    let mut samples = Vec::new();
    for name in &entries.dirs {
        let label = imagenet::index_of_synset(name).ok_or_else(|| DatasetError::UnknownSynset {
            path: root.to_owned(),
            dir: name.clone(),
        })?;
        let dir = root.join(name);
        for file in Entries::read(&dir)?.images {
            samples.push(Sample {
                path: dir.join(&file),
                rel_path: format!("{name}/{file}"),
                label,
            });
        }
    }
    Ok(samples)
}

/// The class index of a synset or class-index label.
fn class_of(label: &str) -> Result<usize, String> {
    if let Ok(n) = label.parse::<usize>() {
        if n >= imagenet::classes().len() {
            return Err(format!("class index {n} out of range 0..999"));
        }
        return Ok(n);
    }
    imagenet::index_of_synset(label)
        .ok_or_else(|| format!("{label:?} is neither a class index nor an ImageNet-1k synset"))
}

/// Checks that every image of the flat folder got a label.
fn all_labelled(
    root: &Path,
    entries: &Entries,
    labels: &Path,
    samples: &[Sample],
) -> Result<(), DatasetError> {
    if samples.len() == entries.images.len() {
        return Ok(());
    }
    let labelled: std::collections::HashSet<&str> =
        samples.iter().map(|s| s.rel_path.as_str()).collect();
    let missing: Vec<&String> = entries
        .images
        .iter()
        .filter(|n| !labelled.contains(n.as_str()))
        .collect();
    match missing.first() {
        None => Ok(()),
        Some(first) => Err(DatasetError::Unlabelled {
            root: root.to_owned(),
            file: (*first).clone(),
            labels: labels.to_owned(),
            count: missing.len(),
        }),
    }
}

/// Kaggle's `LOC_val_solution.csv`: `ImageId,PredictionString` with the
/// label the first word of the prediction string.
fn kaggle(
    root: &Path,
    entries: &Entries,
    labels: &Path,
    text: &str,
) -> Result<Vec<Sample>, DatasetError> {
    let by_stem = entries.by_stem();
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let bad = |msg: String| DatasetError::LabelsLine {
            path: labels.to_owned(),
            line: i + 1,
            msg,
        };
        if line.trim().is_empty() || (i == 0 && line.starts_with("ImageId,")) {
            continue;
        }
        let (id, prediction) = line
            .split_once(',')
            .ok_or_else(|| bad("expected `ImageId,PredictionString`".into()))?;
        // pandas and spreadsheets may quote the fields.
        let id = id.trim().trim_matches('"');
        let synset = prediction
            .trim_matches(|c: char| c == '"' || c.is_whitespace())
            .split_whitespace()
            .next()
            .unwrap_or("");
        let label = class_of(synset).map_err(bad)?;
        let file = by_stem.get(id).ok_or_else(|| DatasetError::Absent {
            labels: labels.to_owned(),
            line: i + 1,
            name: id.to_string(),
            root: root.to_owned(),
        })?;
        if !seen.insert(id) {
            return Err(bad(format!("{id} is labelled twice")));
        }
        samples.push(Sample {
            path: root.join(file),
            rel_path: file.to_string(),
            label,
        });
    }
    all_labelled(root, entries, labels, &samples)?;
    Ok(samples)
}

/// The devkit's synset order: `--synsets`, else `map_clsloc.txt` next to
/// the labels or in `root`. Lines `synset id name` use the id; lines of a
/// bare synset use the line order.
fn synset_order(
    root: &Path,
    labels: &Path,
    synsets: Option<&Path>,
) -> Result<Vec<usize>, DatasetError> {
    let path = match synsets {
        Some(p) => p.to_path_buf(),
        None => [labels.parent().unwrap_or(root), root]
            .iter()
            .map(|d| d.join(DEVKIT_SYNSETS))
            .find(|p| p.is_file())
            .ok_or_else(|| DatasetError::NoSynsetOrder {
                labels: labels.to_owned(),
                root: root.to_owned(),
            })?,
    };
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let mut order = vec![usize::MAX; imagenet::classes().len()];
    let mut next = 0;
    for (i, line) in text.lines().enumerate() {
        let bad = |msg: String| DatasetError::LabelsLine {
            path: path.clone(),
            line: i + 1,
            msg,
        };
        let mut words = line.split_whitespace();
        let Some(synset) = words.next() else { continue };
        let class = imagenet::index_of_synset(synset)
            .ok_or_else(|| bad(format!("{synset:?} is not an ImageNet-1k synset")))?;
        let id = match words.next().map(str::parse::<usize>) {
            Some(Ok(id)) if (1..=order.len()).contains(&id) => id - 1,
            Some(_) => return Err(bad("expected `synset id name` with id 1..1000".into())),
            None => next,
        };
        if id >= order.len() {
            return Err(bad("more than 1000 synsets".into()));
        }
        order[id] = class;
        next += 1;
    }
    if let Some(missing) = order.iter().position(|&c| c == usize::MAX) {
        return Err(DatasetError::LabelsLine {
            path,
            line: text.lines().count(),
            msg: format!("devkit id {} has no synset (need all 1000)", missing + 1),
        });
    }
    Ok(order)
}

/// The devkit's ground truth: line i (1-based) is the devkit id of
/// `ILSVRC2012_val_<i, 8 digits>`.
fn devkit(
    root: &Path,
    entries: &Entries,
    labels: &Path,
    text: &str,
    order: &[usize],
) -> Result<Vec<Sample>, DatasetError> {
    let by_stem = entries.by_stem();
    let mut samples = Vec::new();
    // Line i is image i: only trailing blank lines can be dropped.
    for (i, line) in text.trim_end().lines().enumerate() {
        let id: usize = line.trim().parse().unwrap_or(0);
        if !(1..=order.len()).contains(&id) {
            return Err(DatasetError::LabelsLine {
                path: labels.to_owned(),
                line: i + 1,
                msg: format!("devkit class id {:?} out of range 1..1000", line.trim()),
            });
        }
        let stem = format!("ILSVRC2012_val_{:08}", i + 1);
        let file = by_stem
            .get(stem.as_str())
            .ok_or_else(|| DatasetError::Absent {
                labels: labels.to_owned(),
                line: i + 1,
                name: stem.clone(),
                root: root.to_owned(),
            })?;
        samples.push(Sample {
            path: root.join(file),
            rel_path: file.to_string(),
            label: order[id - 1],
        });
    }
    all_labelled(root, entries, labels, &samples)?;
    Ok(samples)
}

/// Labels TSV: one `relative/path<TAB>synset-or-index` per line, paths
/// relative to `root`; blank lines and `#` comments are ignored.
fn tsv(
    root: &Path,
    entries: &Entries,
    labels: &Path,
    text: &str,
) -> Result<Vec<Sample>, DatasetError> {
    let flat: std::collections::HashSet<&str> = entries.images.iter().map(String::as_str).collect();
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
        let (rel, rest) = line
            .split_once('\t')
            .ok_or_else(|| bad("expected `path<TAB>synset-or-index`".into()))?;
        let label = rest.split_whitespace().next().unwrap_or("");
        let label = class_of(label).map_err(bad)?;
        let path = root.join(rel);
        if !flat.contains(rel) && !path.is_file() {
            return Err(DatasetError::Absent {
                labels: labels.to_owned(),
                line: i + 1,
                name: rel.to_string(),
                root: root.to_owned(),
            });
        }
        samples.push(Sample {
            path,
            rel_path: rel.to_string(),
            label,
        });
    }
    Ok(samples)
}
