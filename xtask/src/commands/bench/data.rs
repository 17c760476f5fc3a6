//! Scratch datasets the benchmarks make from an environment's fixture
//! photos (an ImageFolder: `<synset>/<photo>`): the photos replicated as an
//! ImageFolder ([`replicate`]), or a flat Kaggle-style validation folder of
//! hard links with its `LOC_val_solution.csv` ([`kaggle_folder`]).
//!
//! May use: `error`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The labels file of a Kaggle validation folder (the harness finds it in
/// the folder).
const KAGGLE_CSV: &str = "LOC_val_solution.csv";

/// The photos of an ImageFolder, each with its synset (the folder name),
/// classes and files in sorted order.
pub fn photos(src: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut classes: Vec<_> = std::fs::read_dir(src)
        .map_err(Error::io(format!("reading {}", src.display())))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    classes.sort_by_key(|e| e.file_name());
    let mut out = Vec::new();
    for class in classes {
        let synset = class.file_name().to_string_lossy().into_owned();
        let mut files: Vec<_> = std::fs::read_dir(class.path())
            .map_err(Error::io(format!("reading {}", class.path().display())))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|f| (synset.clone(), f)));
    }
    if out.is_empty() {
        return Err(Error::failed(format!("no images under {}", src.display())));
    }
    Ok(out)
}

/// Copies every image of an ImageFolder `copies` times into `dest`
/// (same class folders), returning the paths in sorted order.
pub fn replicate(src: &Path, dest: &Path, copies: usize) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for (synset, file) in photos(src)? {
        let to = dest.join(&synset);
        std::fs::create_dir_all(&to).map_err(Error::io(format!("creating {}", to.display())))?;
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        for i in 0..copies {
            let target = to.join(format!("{i:03}_{name}"));
            std::fs::copy(&file, &target)
                .map_err(Error::io(format!("copying {}", file.display())))?;
            out.push(target);
        }
    }
    out.sort();
    Ok(out)
}

/// A flat validation folder made by [`kaggle_folder`].
pub struct KaggleFolder {
    pub images: usize,
    /// Hard links (false: the file system refused them, so copies).
    pub linked: bool,
}

/// Fills `dest` (created) with `count` images `ILSVRC2012_val_%08d.JPEG`,
/// the fixture photos of `src` in turn, and `LOC_val_solution.csv` giving
/// each its photo's synset. The photos are copied into `dest/.photos`
/// once (the harness lists no hidden folder) and the images are hard links
/// to those copies (same file system); where links fail, every image is a
/// copy.
pub fn kaggle_folder(src: &Path, dest: &Path, count: usize) -> Result<KaggleFolder> {
    let originals = dest.join(".photos");
    std::fs::create_dir_all(&originals)
        .map_err(Error::io(format!("creating {}", originals.display())))?;
    let mut photos = photos(src)?;
    for (i, (_, file)) in photos.iter_mut().enumerate() {
        let copy = originals.join(format!("{i:04}.jpg"));
        std::fs::copy(&*file, &copy).map_err(Error::io(format!("copying {}", file.display())))?;
        *file = copy;
    }
    let mut csv = String::from("ImageId,PredictionString\n");
    let mut linked = true;
    for i in 0..count {
        let (synset, photo) = &photos[i % photos.len()];
        let id = format!("ILSVRC2012_val_{:08}", i + 1);
        let target = dest.join(format!("{id}.JPEG"));
        if !linked || std::fs::hard_link(photo, &target).is_err() {
            linked = false;
            std::fs::copy(photo, &target)
                .map_err(Error::io(format!("copying {}", photo.display())))?;
        }
        let _ = writeln!(csv, "{id},{synset} 0 0 1 1");
    }
    let labels = dest.join(KAGGLE_CSV);
    std::fs::write(&labels, csv).map_err(Error::io(format!("writing {}", labels.display())))?;
    Ok(KaggleFolder {
        images: count,
        linked,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn fixture(dir: &Path) {
        for (synset, name) in [
            ("n01443537", "b.jpg"),
            ("n01443537", "a.jpg"),
            ("n01818515", "c.jpg"),
        ] {
            std::fs::create_dir_all(dir.join(synset)).unwrap();
            std::fs::write(dir.join(synset).join(name), name).unwrap();
        }
    }

    #[test]
    fn replicates_in_sorted_order_in_the_same_classes() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(&tmp.path().join("src"));
        let out = super::replicate(&tmp.path().join("src"), &tmp.path().join("dest"), 2).unwrap();
        let rel: Vec<_> = out
            .iter()
            .map(|p| {
                p.strip_prefix(tmp.path().join("dest"))
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            rel,
            [
                "n01443537/000_a.jpg",
                "n01443537/000_b.jpg",
                "n01443537/001_a.jpg",
                "n01443537/001_b.jpg",
                "n01818515/000_c.jpg",
                "n01818515/001_c.jpg",
            ]
        );
    }

    #[test]
    fn a_kaggle_folder_labels_every_image_with_its_photos_synset() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(&tmp.path().join("src"));
        let dest = tmp.path().join("flat");
        let made = super::kaggle_folder(&tmp.path().join("src"), &dest, 4).unwrap();
        assert_eq!(made.images, 4);
        assert_eq!(
            std::fs::read_to_string(dest.join("LOC_val_solution.csv")).unwrap(),
            "ImageId,PredictionString\n\
             ILSVRC2012_val_00000001,n01443537 0 0 1 1\n\
             ILSVRC2012_val_00000002,n01443537 0 0 1 1\n\
             ILSVRC2012_val_00000003,n01818515 0 0 1 1\n\
             ILSVRC2012_val_00000004,n01443537 0 0 1 1\n"
        );
        let first = std::fs::read_to_string(dest.join("ILSVRC2012_val_00000001.JPEG")).unwrap();
        let third = std::fs::read_to_string(dest.join("ILSVRC2012_val_00000003.JPEG")).unwrap();
        let fourth = std::fs::read_to_string(dest.join("ILSVRC2012_val_00000004.JPEG")).unwrap();
        assert_eq!(
            (first.as_str(), third.as_str(), fourth.as_str()),
            ("a.jpg", "c.jpg", "a.jpg")
        );
    }
}
