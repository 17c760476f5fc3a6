//! EfficientNet-Lite0 with the real packaged weights against an independent
//! PyTorch implementation (`python/lite0_reference.py`), and its accuracy on
//! the fixture photos.

mod common;
use common::*;
use std::ffi::OsStr;

#[test]
fn lite0_matches_reference_and_classifies_fixtures() {
    let imgs = fixture_images();
    let dir = tempfile::tempdir().unwrap();
    let weights = lite0_weights();
    let mut args: Vec<&OsStr> = vec![weights.as_os_str(), dir.path().as_os_str()];
    args.extend(imgs.iter().map(|(p, _)| OsStr::new(p)));
    run_python("lite0_reference.py", &args);
    let (_, ref_logits) = read_npy(&dir.path().join("logits.npy"));

    // Same input tensor → same logits.
    let out_path = dir.path().join("rust_logits.npy");
    let out = run(harness()
        .args(["forward", "--model", "efficientnet_lite0", "--weights"])
        .arg(&weights)
        .arg("--input")
        .arg(dir.path().join("pre.npy"))
        .arg("--out")
        .arg(&out_path));
    assert!(out.status.success(), "{}", text(&out));
    let (_, logits) = read_npy(&out_path);
    let d = max_abs_diff(&logits, &ref_logits);
    println!("lite0 same input: max |Δlogit| = {d:.3e}");
    assert!(d <= 1e-3, "max |Δlogit| {d} > 1e-3");
    for (i, (r, h)) in ref_logits.chunks(1000).zip(logits.chunks(1000)).enumerate() {
        assert_eq!(argmax(r), argmax(h), "top-1 differs on {}", imgs[i].0);
    }

    // End to end over the ImageFolder.
    let dump = dir.path().join("e2e.npy");
    let json = dir.path().join("report.json");
    let out = run(harness()
        .args([
            "eval",
            "--model",
            "efficientnet_lite0",
            "--batch-size",
            "8",
            "--weights",
        ])
        .arg(&weights)
        .arg("--data")
        .arg(fixture_images_dir())
        .arg("--dump-logits")
        .arg(&dump)
        .arg("--json")
        .arg(&json));
    assert!(out.status.success(), "{}", text(&out));
    println!("{}", String::from_utf8_lossy(&out.stdout));
    let (_, e2e) = read_npy(&dump);
    // Decoding (libjpeg-turbo) and resizing are Pillow's, so the whole
    // pipeline matches the PIL + PyTorch reference: same top-1 everywhere.
    for (i, (r, h)) in ref_logits.chunks(1000).zip(e2e.chunks(1000)).enumerate() {
        assert_eq!(
            argmax(r),
            argmax(h),
            "end-to-end top-1 differs from the reference on {}",
            imgs[i].0
        );
    }
    let d = max_abs_diff(&e2e, &ref_logits);
    println!(
        "end to end: top-1 agrees with the PyTorch reference on {n}/{n}, max |Δlogit| = {d:.3e}",
        n = imgs.len()
    );
    assert!(d <= 1e-3, "end-to-end max |Δlogit| {d} > 1e-3");

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let top1 = report["metrics"]["top1"].as_f64().unwrap();
    let top5 = report["metrics"]["top5"].as_f64().unwrap();
    println!(
        "lite0 fixture accuracy: top-1 {:.1}%, top-5 {:.1}%",
        100.0 * top1,
        100.0 * top5
    );
    assert_eq!(report["dataset"]["num_evaluated"], imgs.len());
    assert_eq!(report["weights"]["format"], "torch-legacy");
    assert!(top1 >= 0.7, "Lite0 top-1 on fixture photos only {top1}");
    assert!(top5 >= 0.9, "Lite0 top-5 on fixture photos only {top5}");
}
