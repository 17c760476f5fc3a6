//! torchvision EfficientNet-B0 parity against PyTorch on the CPU:
//! same weights (random init, saved as torch zip / legacy pickle /
//! safetensors), same preprocessed input → logits within 1e-4; Rust vs
//! PIL+torchvision preprocessing within 1/255 mean, 8/255 max; identical
//! top-1 end to end.

mod common;
use common::*;
use std::ffi::OsStr;

/// Every fixture image (JPEG and PNG, many sizes).
fn images() -> Vec<(String, String)> {
    fixture_images()
}

#[test]
fn b0_matches_pytorch() {
    let imgs = images();
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<&OsStr> = vec![dir.path().as_os_str()];
    args.extend(imgs.iter().map(|(p, _)| OsStr::new(p)));
    run_python("make_b0_reference.py", &args);
    let (shape, ref_logits) = read_npy(&dir.path().join("logits.npy"));
    assert_eq!(shape, vec![imgs.len(), 1000]);
    let scale = ref_logits.iter().map(|v| v.abs()).fold(0.0, f32::max);
    let mean_abs = ref_logits.iter().map(|v| v.abs()).sum::<f32>() / ref_logits.len() as f32;
    // Random-init logits must not be degenerate for the comparison to mean anything.
    assert!(
        mean_abs > 0.05,
        "reference logits too small to compare (mean |logit| {mean_abs})"
    );

    // 1. Same preprocessed input, every checkpoint format.
    let mut formats = vec!["b0.pth", "b0_legacy.pth", "b0_wrapped.pth"];
    if dir.path().join("b0.safetensors").exists() {
        formats.push("b0.safetensors");
    }
    for w in &formats {
        let out_path = dir.path().join(format!("{w}.logits.npy"));
        let out = run(harness()
            .args(["forward", "--model", "efficientnet_b0", "--weights"])
            .arg(dir.path().join(w))
            .arg("--input")
            .arg(dir.path().join("pre.npy"))
            .arg("--out")
            .arg(&out_path));
        assert!(out.status.success(), "{}", text(&out));
        let (_, logits) = read_npy(&out_path);
        let d = max_abs_diff(&logits, &ref_logits);
        println!(
            "{w}: max |Δlogit| = {d:.3e} (max |logit| {scale:.3}, mean |logit| {mean_abs:.3})"
        );
        assert!(d <= 1e-4, "{w}: max |Δlogit| {d} > 1e-4");
        assert!(
            d / scale <= 1e-5,
            "{w}: relative |Δlogit| {} too large",
            d / scale
        );
        for (i, (r, h)) in ref_logits.chunks(1000).zip(logits.chunks(1000)).enumerate() {
            assert_eq!(argmax(r), argmax(h), "{w}: top-1 differs on {}", imgs[i].0);
        }
    }

    // 2. Rust preprocessing vs PIL + torchvision, in [0, 1] pixel space.
    let pre_path = dir.path().join("rust_pre.npy");
    let out = run(harness()
        .args(["preprocess", "--model", "efficientnet_b0", "--out"])
        .arg(&pre_path)
        .args(imgs.iter().map(|(p, _)| fixture_images_dir().join(p))));
    assert!(out.status.success(), "{}", text(&out));
    let (rshape, rust_pre) = read_npy(&pre_path);
    let (pshape, py_pre) = read_npy(&dir.path().join("pre.npy"));
    assert_eq!(rshape, pshape);
    let std = [0.229f32, 0.224, 0.225];
    let plane = 224 * 224;
    let (mut sum, mut max) = (0f64, 0f32);
    for (i, (a, b)) in rust_pre.iter().zip(&py_pre).enumerate() {
        let d = (a - b).abs() * std[(i / plane) % 3];
        sum += f64::from(d);
        max = max.max(d);
    }
    let mean = sum / rust_pre.len() as f64;
    println!(
        "preprocess: mean |Δ| = {:.3}/255, max |Δ| = {:.1}/255",
        mean * 255.0,
        max * 255.0
    );
    assert!(mean <= 1.0 / 255.0, "mean |Δ| {} > 1/255", mean * 255.0);
    assert!(max <= 8.0 / 255.0 + 1e-6, "max |Δ| {} > 8/255", max * 255.0);

    // 3. End to end (Rust decode + preprocess + model) gives PyTorch's top-1.
    let labels = dir.path().join("labels.tsv");
    let lines: String = imgs.iter().map(|(p, s)| format!("{p}\t{s}\n")).collect();
    std::fs::write(&labels, lines).unwrap();
    let dump = dir.path().join("e2e.npy");
    let json = dir.path().join("report.json");
    let out = run(harness()
        .args([
            "eval",
            "--model",
            "efficientnet_b0",
            "--batch-size",
            "4",
            "--workers",
            "2",
            "--weights",
        ])
        .arg(dir.path().join("b0.pth"))
        .arg("--data")
        .arg(fixture_images_dir())
        .arg("--labels")
        .arg(&labels)
        .arg("--dump-logits")
        .arg(&dump)
        .arg("--json")
        .arg(&json));
    assert!(out.status.success(), "{}", text(&out));
    let (_, e2e) = read_npy(&dump);
    let mut same = 0;
    for (i, (r, h)) in ref_logits.chunks(1000).zip(e2e.chunks(1000)).enumerate() {
        assert_eq!(
            argmax(r),
            argmax(h),
            "end-to-end top-1 differs on {}",
            imgs[i].0
        );
        same += 1;
    }
    println!(
        "end to end: identical top-1 on {same}/{} images, max |Δlogit| {:.3e}",
        imgs.len(),
        max_abs_diff(&e2e, &ref_logits)
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["dataset"]["num_evaluated"], imgs.len());
    assert_eq!(report["weights"]["format"], "torch-zip");
}

#[test]
fn shape_mismatch_and_wrong_model_are_clear_errors() {
    // Lite0 weights loaded as B0: names do not fit.
    let out = run(harness()
        .args(["forward", "--model", "efficientnet_b0", "--weights"])
        .arg(lite0_weights())
        .args(["--input", "/nonexistent.npy", "--out", "/dev/null"]));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("weights do not fit efficientnet_b0: missing key"),
        "{t}"
    );
}
