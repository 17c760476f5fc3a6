//! `harness export` and `harness eval --onnx` against the real torch.onnx,
//! onnx and onnxruntime of the locked venv: Lite0 (the real weights) and
//! B0 (seeded weights, BatchNorm calibrated on the fixture photos so the
//! random network's logits stay in a sane range on every one of them)
//! exported, parity within 1e-4 with the same top-1 on every fixture
//! photo; the file declares what README says and runs at other batch
//! sizes; bad input is exit 2 and leaves nothing behind.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The harness, with the test venv's Python running torch.onnx and
/// onnxruntime.
fn harness_py() -> Command {
    let mut cmd = harness();
    cmd.env("TORCHENV_PYTHON", python());
    cmd
}

fn export(model: &str, weights: &Path, out: &Path, extra: &[&str]) -> Output {
    run(harness_py()
        .args(["export", "--model", model, "--weights"])
        .arg(weights)
        .arg("--out")
        .arg(out)
        .arg("--parity-data")
        .arg(fixture_images_dir())
        .args(extra))
}

fn parity_report(out: &Path) -> report::ExportReport {
    let mut name = out.file_name().unwrap().to_os_string();
    name.push(".parity.json");
    report::parse_export(&std::fs::read_to_string(out.with_file_name(name)).unwrap()).unwrap()
}

/// Seeded torchvision B0 weights with BatchNorm calibrated on every
/// fixture photo (`make_b0_reference.py`).
fn b0_weights(dir: &Path) -> PathBuf {
    let imgs = fixture_images();
    let mut args: Vec<&std::ffi::OsStr> = vec![dir.as_os_str()];
    args.extend(imgs.iter().map(|(p, _)| std::ffi::OsStr::new(p)));
    run_python("make_b0_reference.py", &args);
    dir.join("b0.pth")
}

/// Asserts the report's parity and the file's declared input and output.
fn check(rep: &report::ExportReport, model: &str, batch: &str) {
    let p = &rep.parity;
    println!("{model} {} batch {batch}: {}", rep.format, p.summary());
    assert!(p.passed, "{}", p.summary());
    assert!(p.max_abs_logit_diff <= 1e-4, "{}", p.summary());
    assert_eq!(p.images, fixture_images().len());
    assert_eq!(p.top1_agree, p.images);
    assert_eq!(rep.model, model);
    assert_eq!(
        rep.input.describe(),
        format!("input: float32[{batch}, 3, 224, 224]")
    );
    assert_eq!(
        rep.output.describe(),
        format!("logits: float32[{batch}, 1000]")
    );
}

/// A clean onnxruntime session (no harness involved) loads the file,
/// declares `input`/`logits`, and runs it at batch sizes 1 and 3.
fn clean_session(file: &Path) -> String {
    let script = r#"
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
i, o = s.get_inputs()[0], s.get_outputs()[0]
print(i.name, i.shape, i.type, o.name, o.shape, o.type)
for n in (1, 3):
    y = s.run(None, {i.name: np.zeros((n, 3, 224, 224), np.float32)})[0]
    print(n, y.shape, y.dtype)
print(dict(s.get_modelmeta().custom_metadata_map)["torchenv.model"])
"#;
    let out = run(Command::new(python()).arg("-c").arg(script).arg(file));
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn lite0_and_b0_export_with_parity_and_load_in_a_clean_session() {
    let dir = tempfile::tempdir().unwrap();
    let b0 = b0_weights(&dir.path().join("b0"));
    for (model, weights) in [
        ("efficientnet_lite0", lite0_weights()),
        ("efficientnet_b0", b0),
    ] {
        let file = dir.path().join(format!("{model}.onnx"));
        let out = export(model, &weights, &file, &[]);
        assert!(out.status.success(), "{}", text(&out));
        let rep = parity_report(&file);
        check(&rep, model, "batch");
        assert_eq!(rep.opset, Some(17));
        assert_eq!(rep.bytes, std::fs::metadata(&file).unwrap().len());
        let said = clean_session(&file);
        assert!(
            said.starts_with(
                "input ['batch', 3, 224, 224] tensor(float) logits ['batch', 1000] tensor(float)"
            ),
            "{said}"
        );
        assert!(
            said.contains("1 (1, 1000) float32") && said.contains("3 (3, 1000) float32"),
            "{said}"
        );
        assert!(said.trim_end().ends_with(model), "{said}");
    }
}

#[test]
fn fixed_batch_and_torchscript() {
    let dir = tempfile::tempdir().unwrap();
    let fixed = dir.path().join("lite0-b4.onnx");
    let out = export(
        "efficientnet_lite0",
        &lite0_weights(),
        &fixed,
        &["--batch", "4", "--opset", "13"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let rep = parity_report(&fixed);
    check(&rep, "efficientnet_lite0", "4");
    assert_eq!(rep.opset, Some(13));
    // A parity folder with an undecodable file: left out and named.
    let some = dir.path().join("some");
    std::fs::create_dir(&some).unwrap();
    for (path, _) in fixture_images().iter().take(3) {
        let p = fixture_images_dir().join(path);
        std::fs::copy(&p, some.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(some.join("broken.jpg"), b"\xff\xd8 not really a jpeg").unwrap();
    let ts = dir.path().join("lite0.pt");
    let out = run(harness_py()
        .args([
            "export",
            "--model",
            "efficientnet_lite0",
            "--format",
            "torchscript",
            "--weights",
        ])
        .arg(lite0_weights())
        .arg("--out")
        .arg(&ts)
        .arg("--parity-data")
        .arg(&some));
    assert!(out.status.success(), "{}", text(&out));
    let rep = parity_report(&ts);
    assert_eq!(rep.parity.images, 3);
    assert_eq!(
        rep.parity.unreadable.len(),
        1,
        "{:?}",
        rep.parity.unreadable
    );
    assert!(rep.parity.unreadable[0].starts_with("broken.jpg: "));
    assert_eq!(rep.format, "torchscript");
    assert_eq!(rep.parity.runtime, "libtorch (TorchScript)");
    assert!(
        rep.parity.passed && rep.parity.max_abs_logit_diff <= 1e-4,
        "{}",
        rep.parity.summary()
    );
    // The image's torch loads it.
    let script = "import sys, torch; m = torch.jit.load(sys.argv[1]); print(tuple(m(torch.zeros(2, 3, 224, 224)).shape))";
    let out = run(Command::new(python()).arg("-c").arg(script).arg(&ts));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "(2, 1000)",
        "{}",
        text(&out)
    );
}

/// Every file in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn bad_input_is_exit_2_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let weights = std::fs::read(lite0_weights()).unwrap();
    let truncated = dir.path().join("truncated.pth");
    std::fs::write(&truncated, &weights[..weights.len() / 3]).unwrap();
    let garbage = dir.path().join("garbage.pth");
    std::fs::write(&garbage, b"this is not a checkpoint at all").unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let good_old = out_dir.join("model.onnx");
    std::fs::write(&good_old, b"the file from yesterday").unwrap();
    let cases: [(&str, PathBuf, PathBuf, &[&str], &str); 6] = [
        (
            "efficientnet_lite0",
            truncated.clone(),
            good_old.clone(),
            &[],
            "truncated.pth",
        ),
        (
            "efficientnet_lite0",
            garbage,
            good_old.clone(),
            &[],
            "garbage.pth",
        ),
        (
            "efficientnet_b0",
            lite0_weights(),
            good_old.clone(),
            &[],
            "weights do not fit efficientnet_b0",
        ),
        (
            "efficientnet_lite0",
            lite0_weights(),
            out_dir.join("no/such/m.onnx"),
            &[],
            "does not exist",
        ),
        (
            "efficientnet_lite0",
            lite0_weights(),
            PathBuf::from("/proc/m.onnx"),
            &[],
            "cannot write in /proc",
        ),
        (
            "efficientnet_lite0",
            lite0_weights(),
            good_old.clone(),
            &["--opset", "23"],
            "--opset 23",
        ),
    ];
    for (model, weights, out, extra, says) in cases {
        let o = export(model, &weights, &out, extra);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{t}");
        assert!(t.contains(says), "expected {says:?} in {t}");
        assert_eq!(listing(&out_dir), ["model.onnx"], "{t}");
        assert_eq!(
            std::fs::read(&good_old).unwrap(),
            b"the file from yesterday"
        );
    }
    let unknown = run(harness_py().args([
        "export",
        "--model",
        "resnet50",
        "--weights",
        "w",
        "--out",
        "o",
        "--parity-data",
        ".",
    ]));
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(text(&unknown).contains("resnet50"));
}

#[test]
fn eval_onnx_gives_the_harness_result_and_checks_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lite0.onnx");
    assert!(export("efficientnet_lite0", &lite0_weights(), &file, &[])
        .status
        .success());
    let eval = |how: &[&std::ffi::OsStr], json: &Path, model: &str| {
        run(harness_py()
            .args(["eval", "--model", model, "--batch-size", "7", "--data"])
            .arg(fixture_images_dir())
            .args(how)
            .arg("--json")
            .arg(json))
    };
    let torch_json = dir.path().join("torch.json");
    let onnx_json = dir.path().join("onnx.json");
    let w = lite0_weights();
    let o = eval(
        &["--weights".as_ref(), w.as_os_str()],
        &torch_json,
        "efficientnet_lite0",
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = eval(
        &["--onnx".as_ref(), file.as_os_str()],
        &onnx_json,
        "efficientnet_lite0",
    );
    assert!(o.status.success(), "{}", text(&o));
    let read = |p: &Path| report::parse_eval(&std::fs::read_to_string(p).unwrap()).unwrap();
    let (t, x) = (read(&torch_json), read(&onnx_json));
    assert_eq!(x.settings.runtime, "onnxruntime");
    assert_eq!(x.weights.format, "onnx");
    assert!(x.versions.onnxruntime.is_some());
    assert_eq!(x.metrics.correct_top1, t.metrics.correct_top1);
    for (a, b) in t.samples.iter().zip(&x.samples) {
        assert_eq!(a.top5[0].index, b.top5[0].index, "{}", a.path);
        assert!(
            (a.top5[0].probability - b.top5[0].probability).abs() < 1e-4,
            "{}",
            a.path
        );
    }
    // The file says which model it is; another model's preprocessing is refused.
    let o = eval(
        &["--onnx".as_ref(), file.as_os_str()],
        &onnx_json,
        "efficientnet_b0",
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("exported from efficientnet_lite0"),
        "{}",
        text(&o)
    );
}
