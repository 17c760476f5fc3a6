//! Dataset problems are clear errors with exit code 2.

mod common;
use common::*;

#[test]
fn empty_dataset_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("n01440764")).unwrap();
    let out = run(harness()
        .args([
            "eval",
            "--model",
            "efficientnet_b0",
            "--weights",
            "/nonexistent.pth",
            "--data",
        ])
        .arg(dir.path()));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("contains no images"), "{t}");
}

#[test]
fn unknown_synset_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("cats")).unwrap();
    let out = run(harness()
        .args([
            "eval",
            "--model",
            "efficientnet_b0",
            "--weights",
            "/nonexistent.pth",
            "--data",
        ])
        .arg(dir.path()));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("\"cats\" is not an ImageNet-1k synset"), "{t}");
}

#[test]
fn missing_weights_file_is_a_clear_error() {
    let out = run(harness()
        .args([
            "eval",
            "--model",
            "efficientnet_b0",
            "--weights",
            "/nonexistent.pth",
            "--data",
        ])
        .arg(fixture_images_dir()));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("cannot read checkpoint /nonexistent.pth"), "{t}");
}
