//! The dataset layouts people have — ImageFolder, a flat folder with
//! Kaggle's `LOC_val_solution.csv`, the same with the devkit's ground
//! truth and synset order, a labels TSV — list the same images with the
//! same labels, and each mistake in them is an error naming the file.
//!
//! The flat layouts are made from the fixture ImageFolder, with the devkit
//! ids in a shuffled synset order, so a reader that ignored the order (or
//! used the sorted class index) would give other labels.

mod common;
use common::*;

use harness::dataset::{self, DatasetError, Layout};
use report::imagenet;
use std::path::{Path, PathBuf};

/// (synset, file) of every fixture image, in ImageFolder order.
fn fixture_images() -> Vec<(String, PathBuf)> {
    let listing = dataset::list(&fixture_images_dir(), None, None).unwrap();
    assert_eq!(listing.layout, Layout::ImageFolder);
    listing
        .samples
        .iter()
        .map(|s| {
            (
                imagenet::classes()[s.label].synset.to_string(),
                s.path.clone(),
            )
        })
        .collect()
}

/// A devkit synset order: the sorted synsets rotated by 7, so devkit id
/// `i` is not class index `i - 1`.
fn devkit_order() -> Vec<&'static str> {
    let mut synsets: Vec<&str> = imagenet::classes().iter().map(|c| c.synset).collect();
    synsets.rotate_left(7);
    synsets
}

/// A flat folder of `ILSVRC2012_val_<n>.JPEG` copies of the fixtures.
fn flat_folder(dir: &Path) -> Vec<(String, String)> {
    let images = dir.join("val");
    std::fs::create_dir_all(&images).unwrap();
    let mut named = Vec::new();
    for (i, (synset, path)) in fixture_images().into_iter().enumerate() {
        let name = format!("ILSVRC2012_val_{:08}.JPEG", i + 1);
        std::fs::copy(&path, images.join(&name)).unwrap();
        named.push((name, synset));
    }
    named
}

fn kaggle_csv(dir: &Path, named: &[(String, String)]) -> PathBuf {
    let mut csv = String::from("ImageId,PredictionString\n");
    // Kaggle's rows are not in file order; boxes follow the synset.
    for (name, synset) in named.iter().rev() {
        let id = name.trim_end_matches(".JPEG");
        csv += &format!("{id},{synset} 10 20 200 220 {synset} 0 0 50 50\n");
    }
    let path = dir.join("LOC_val_solution.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

fn devkit_files(dir: &Path, named: &[(String, String)]) -> (PathBuf, PathBuf) {
    let order = devkit_order();
    let mut truth = String::new();
    for (_, synset) in named {
        let id = order.iter().position(|s| s == synset).unwrap() + 1;
        truth += &format!("{id}\n");
    }
    let truth_path = dir.join("ILSVRC2012_validation_ground_truth.txt");
    std::fs::write(&truth_path, truth).unwrap();
    let map: String = order
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{s} {} some_name\n", i + 1))
        .collect();
    let map_path = dir.join("map_clsloc.txt");
    std::fs::write(&map_path, map).unwrap();
    (truth_path, map_path)
}

/// (file name, synset) of a listing, sorted by file name.
fn labels_of(listing: &dataset::Listing) -> Vec<(String, String)> {
    listing
        .samples
        .iter()
        .map(|s| {
            (
                s.path.file_name().unwrap().to_string_lossy().into_owned(),
                imagenet::classes()[s.label].synset.to_string(),
            )
        })
        .collect()
}

#[test]
fn kaggle_and_devkit_layouts_give_the_imagefolder_labels() {
    let dir = tempfile::tempdir().unwrap();
    let named = flat_folder(dir.path());
    let root = dir.path().join("val");
    assert_eq!(named.len(), fixture_images().len());

    // Kaggle's CSV beside the folder is found without --labels.
    kaggle_csv(dir.path(), &named);
    let kaggle = dataset::list(&root, None, None).unwrap();
    assert_eq!(kaggle.layout, Layout::KaggleCsv);
    assert_eq!(labels_of(&kaggle), named);

    // The devkit's files, given explicitly; map_clsloc.txt found beside.
    let (truth, map) = devkit_files(dir.path(), &named);
    let devkit = dataset::list(&root, Some(&truth), None).unwrap();
    assert_eq!(devkit.layout, Layout::Devkit);
    assert_eq!(labels_of(&devkit), named);
    // A plain list of synsets in id order is the same order.
    let plain = dir.path().join("synsets.txt");
    std::fs::write(&plain, devkit_order().join("\n")).unwrap();
    assert_eq!(
        labels_of(&dataset::list(&root, Some(&truth), Some(&plain)).unwrap()),
        named
    );
    // The sorted order instead gives other labels: the order matters.
    let sorted: Vec<&str> = imagenet::classes().iter().map(|c| c.synset).collect();
    std::fs::write(&plain, sorted.join("\n")).unwrap();
    assert_ne!(
        labels_of(&dataset::list(&root, Some(&truth), Some(&plain)).unwrap()),
        named
    );
    std::fs::remove_file(&map).unwrap();
    let e = dataset::list(&root, Some(&truth), None).unwrap_err();
    assert!(matches!(e, DatasetError::NoSynsetOrder { .. }), "{e}");
    assert!(e.to_string().contains("--synsets"), "{e}");
}

#[test]
fn a_labels_file_naming_an_absent_image_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut named = flat_folder(dir.path());
    let root = dir.path().join("val");
    named.push(("ILSVRC2012_val_00000999.JPEG".into(), "n01440764".into()));
    let csv = kaggle_csv(dir.path(), &named);
    let e = dataset::list(&root, Some(&csv), None).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DatasetError::Absent { .. }), "{msg}");
    assert!(msg.contains("ILSVRC2012_val_00000999"), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");

    let tsv = dir.path().join("labels.tsv");
    std::fs::write(&tsv, "missing/cat.jpg\tn02123045\n").unwrap();
    let e = dataset::list(&root, Some(&tsv), None).unwrap_err();
    assert!(e.to_string().contains("missing/cat.jpg"), "{e}");
}

#[test]
fn an_image_without_a_label_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let named = flat_folder(dir.path());
    let root = dir.path().join("val");
    // The CSV misses the third image.
    let mut partial = named.clone();
    let dropped = partial.remove(2);
    kaggle_csv(dir.path(), &partial);
    let e = dataset::list(&root, None, None).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, DatasetError::Unlabelled { count: 1, .. }),
        "{msg}"
    );
    assert!(msg.contains(&dropped.0), "{msg}");
}

#[test]
fn a_flat_folder_without_labels_says_what_it_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    flat_folder(dir.path());
    let e = dataset::list(&dir.path().join("val"), None, None).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DatasetError::NoLabels { .. }), "{msg}");
    assert!(msg.contains("LOC_val_solution.csv"), "{msg}");
    assert!(msg.contains("--labels"), "{msg}");
}

#[test]
fn bad_devkit_and_csv_lines_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let named = flat_folder(dir.path());
    let root = dir.path().join("val");
    let (truth, _) = devkit_files(dir.path(), &named);
    let mut text = std::fs::read_to_string(&truth).unwrap();
    text = text.replacen('\n', "\n1001\n", 1);
    std::fs::write(&truth, text).unwrap();
    let e = dataset::list(&root, Some(&truth), None).unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    assert!(e.to_string().contains("1001"), "{e}");

    let csv = dir.path().join("LOC_val_solution.csv");
    std::fs::write(
        &csv,
        "ImageId,PredictionString\nILSVRC2012_val_00000001,dog 1 2 3 4\n",
    )
    .unwrap();
    let e = dataset::list(&root, Some(&csv), None).unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    assert!(e.to_string().contains("\"dog\""), "{e}");
}

#[test]
fn label_files_as_tools_write_them() {
    let dir = tempfile::tempdir().unwrap();
    let named = flat_folder(dir.path());
    let root = dir.path().join("val");
    // macOS resource forks and fsck's folder are not part of the dataset.
    std::fs::write(root.join("._ILSVRC2012_val_00000001.JPEG"), b"junk").unwrap();
    std::fs::create_dir(root.join("lost+found")).unwrap();

    // A byte-order mark, CRLF line ends and quoted fields (pandas, Excel).
    let mut csv = String::from("\u{feff}ImageId,PredictionString\r\n");
    for (name, synset) in &named {
        let id = name.trim_end_matches(".JPEG");
        csv += &format!("\"{id}\",\"{synset} 1 2 3 4\"\r\n");
    }
    // In the folder itself it wins over `lost+found` looking like ImageFolder.
    std::fs::write(root.join("LOC_val_solution.csv"), &csv).unwrap();
    let listed = dataset::list(&root, None, None).unwrap();
    assert_eq!(listed.layout, Layout::KaggleCsv);
    assert_eq!(labels_of(&listed), named);

    // The same image twice is an error naming it.
    let first = named[0].0.trim_end_matches(".JPEG");
    csv += &format!("{first},{}\r\n", named[1].1);
    std::fs::write(root.join("LOC_val_solution.csv"), &csv).unwrap();
    let e = dataset::list(&root, None, None).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("{first} is labelled twice")),
        "{e}"
    );
    std::fs::remove_file(root.join("LOC_val_solution.csv")).unwrap();

    // The devkit file with a trailing blank line.
    let (truth, _) = devkit_files(dir.path(), &named);
    let text = std::fs::read_to_string(&truth).unwrap();
    std::fs::write(&truth, format!("{text}\n\n")).unwrap();
    assert_eq!(
        labels_of(&dataset::list(&root, Some(&truth), None).unwrap()),
        named
    );

    // A TSV with more columns: the first is the path, the second the label.
    let tsv: String = named
        .iter()
        .map(|(n, s)| format!("{n}\t{s}\t0.93\n"))
        .collect();
    let tsv_path = dir.path().join("labels.tsv");
    std::fs::write(&tsv_path, tsv).unwrap();
    assert_eq!(
        labels_of(&dataset::list(&root, Some(&tsv_path), None).unwrap()),
        named
    );
}
