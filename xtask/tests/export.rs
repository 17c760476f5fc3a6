//! `cargo xtask export` end to end: the real engine, both shipped
//! environments' images, their own torch.onnx and onnxruntime. Lite0 (the
//! locked weights) and B0 (seeded weights) export with parity ≤ 1e-4 and
//! the same top-1 on every fixture photo; the file loads in a clean
//! onnxruntime session (the host venv's, not the harness's) and declares
//! what README says; `eval --export onnx` and `eval --onnx` agree image by
//! image; bad input is exit 2 and leaves the output path as it was.
//!
//! Needs what `cargo xtask test` sets: `TORCHENV_TEST_IMAGE` (the default
//! environment's image), `TORCHENV_TEST_PYTHON` (the host venv: torch,
//! torchvision, onnxruntime), `TORCHENV_TEST_WEIGHTS` (Lite0), `TORCHENV_LOCK`.

mod common;
use common::{fixtures, repo, text, var};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("--spec")
        .arg(repo().join("environments.yaml"))
        .args(args)
        .stdin(std::process::Stdio::null());
    cmd
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("cannot run xtask")
}

/// Every fixture photo, sorted (the parity set).
fn fixture_count() -> usize {
    let mut n = 0;
    for class in std::fs::read_dir(fixtures()).unwrap() {
        n += std::fs::read_dir(class.unwrap().path()).unwrap().count();
    }
    n
}

/// Seeded torchvision B0 weights, BatchNorm calibrated on every fixture
/// photo (the harness's reference script, run by the host venv).
fn b0_weights(dir: &Path) -> PathBuf {
    let mut images: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .flat_map(|c| std::fs::read_dir(c.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    images.sort();
    let out = Command::new(var("TORCHENV_TEST_PYTHON"))
        .arg(repo().join("harness/python/make_b0_reference.py"))
        .arg(dir)
        .args(&images)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    dir.join("b0.pth")
}

/// `export ENV --json` with the default image for the default environment.
fn export(env: &str, model: &str, weights: Option<&Path>, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = xtask(&["export", env, "--model", model, "--json"]);
    if env == "pytorch-2.6-cuda12.4" {
        cmd.args(["--image", &var("TORCHENV_TEST_IMAGE")]);
    }
    if let Some(w) = weights {
        cmd.arg("--weights").arg(w);
    }
    output(cmd.arg("--out").arg(out).args(extra))
}

/// What a clean onnxruntime session says of the file, and that it runs at
/// batch sizes 1 and 5.
fn clean_session(file: &Path) -> String {
    let script = r#"
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
i, o = s.get_inputs()[0], s.get_outputs()[0]
print(i.name, i.shape, i.type, o.name, o.shape, o.type)
for n in (1, 5):
    print(n, s.run(None, {i.name: np.zeros((n, 3, 224, 224), np.float32)})[0].shape)
"#;
    let out = Command::new(var("TORCHENV_TEST_PYTHON"))
        .arg("-c")
        .arg(script)
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn both_environments_export_lite0_and_b0_with_parity() {
    let dir = tempfile::tempdir().unwrap();
    let b0 = b0_weights(&dir.path().join("b0"));
    let images = fixture_count();
    for env in ["pytorch-2.6-cuda12.4", "pytorch-2.11"] {
        for (model, weights) in [
            ("efficientnet_lite0", None),
            ("efficientnet_b0", Some(b0.as_path())),
        ] {
            let file = dir.path().join(format!("{env}-{model}.onnx"));
            let out = export(env, model, weights, &file, &[]);
            assert!(out.status.success(), "{env} {model}: {}", text(&out));
            let rep: report::ExportReport = serde_json::from_slice(&out.stdout).expect("--json");
            let p = &rep.parity;
            println!(
                "{env} {model}: torch {}: {}",
                rep.versions.torch,
                p.summary()
            );
            assert!(
                p.passed && p.max_abs_logit_diff <= 1e-4,
                "{env} {model}: {}",
                p.summary()
            );
            assert_eq!((p.images, p.top1_agree), (images, images), "{env} {model}");
            assert_eq!(rep.sha256, sha256(&file));
            let beside = report::parse_export(
                &std::fs::read_to_string(
                    dir.path().join(format!("{env}-{model}.onnx.parity.json")),
                )
                .unwrap(),
            )
            .unwrap();
            assert_eq!(beside, rep);
            let torch = if env.starts_with("pytorch-2.6") {
                "2.6.0"
            } else {
                "2.11.0"
            };
            assert!(rep.versions.torch.starts_with(torch), "{:?}", rep.versions);
            let said = clean_session(&file);
            assert!(
                said.starts_with(
                    "input ['batch', 3, 224, 224] tensor(float) logits ['batch', 1000] tensor(float)\n1 (1, 1000)\n5 (5, 1000)"
                ),
                "{env} {model}: {said}"
            );
        }
    }
}

#[test]
fn bad_input_exits_2_and_leaves_the_output_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let lite0 = std::fs::read(var("TORCHENV_TEST_WEIGHTS")).unwrap();
    let truncated = dir.path().join("truncated.pth");
    std::fs::write(&truncated, &lite0[..lite0.len() / 2]).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let old = out_dir.join("model.onnx");
    std::fs::write(&old, b"yesterday's model").unwrap();
    let env = "pytorch-2.6-cuda12.4";
    type Case<'a> = (&'a str, Option<&'a Path>, PathBuf, &'a [&'a str], &'a str);
    let cases: [Case; 5] = [
        (
            "efficientnet_lite0",
            Some(&truncated),
            old.clone(),
            &[],
            "truncated.pth",
        ),
        (
            "resnet50",
            None,
            old.clone(),
            &[],
            "--model resnet50: not a model the harness knows",
        ),
        (
            "efficientnet_lite0",
            None,
            PathBuf::from("/proc/model.onnx"),
            &[],
            "cannot write in /proc",
        ),
        (
            "efficientnet_lite0",
            None,
            out_dir.join("missing/model.onnx"),
            &[],
            "does not exist",
        ),
        (
            "efficientnet_lite0",
            None,
            old.clone(),
            &["--parity-data", "/nonexistent-folder"],
            "/nonexistent-folder",
        ),
    ];
    for (model, weights, out, extra, says) in cases {
        let o = export(env, model, weights, &out, extra);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{t}");
        assert!(t.contains(says), "expected {says:?} in {t}");
        let left: Vec<_> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["model.onnx"], "{t}");
        assert_eq!(std::fs::read(&old).unwrap(), b"yesterday's model");
    }
}

#[test]
fn eval_export_then_eval_onnx_agree_image_by_image() {
    let dir = tempfile::tempdir().unwrap();
    let eval = |out: &Path, extra: &[&str]| {
        output(
            xtask(&[
                "eval",
                "--image",
                &var("TORCHENV_TEST_IMAGE"),
                "--device",
                "cpu",
                "--workers",
                "2",
            ])
            .arg("--data")
            .arg(fixtures())
            .arg("--out")
            .arg(out)
            .args(extra),
        )
    };
    let torch = dir.path().join("torch");
    let w = var("TORCHENV_TEST_WEIGHTS");
    let o = eval(
        &torch,
        &[
            "--model",
            "efficientnet_lite0",
            "--weights",
            &w,
            "--export",
            "onnx",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let read = |d: &Path| {
        report::parse_eval(&std::fs::read_to_string(d.join("report.json")).unwrap()).unwrap()
    };
    let t = read(&torch);
    let e = t
        .export
        .as_ref()
        .expect("eval --export puts the export in the report");
    assert!(e.parity.passed, "{}", e.parity.summary());
    let summary = std::fs::read_to_string(torch.join("summary.md")).unwrap();
    assert!(summary.contains("| export parity | parity on"), "{summary}");
    // No --model: the file's parity report names it.
    let onnx = dir.path().join("onnx");
    let file = torch.join("model.onnx");
    let o = eval(&onnx, &["--onnx", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let x = read(&onnx);
    assert_eq!(
        (x.model.as_str(), x.settings.runtime.as_str()),
        ("efficientnet_lite0", "onnxruntime")
    );
    assert_eq!(x.weights.source, file.display().to_string());
    assert_eq!(x.metrics.correct_top1, t.metrics.correct_top1);
    for (a, b) in t.samples.iter().zip(&x.samples) {
        assert_eq!(a.top5[0].index, b.top5[0].index, "{}", a.path);
    }
    let summary = std::fs::read_to_string(onnx.join("summary.md")).unwrap();
    assert!(summary.contains("| runtime | onnxruntime"), "{summary}");
}
