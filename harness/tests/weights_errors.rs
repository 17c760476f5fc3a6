//! Weights that do not fit the model are errors naming the offending key.

use harness::checkpoint::StateDict;
use harness::models::{ModelError, ModelKind};
use tch::{nn, Device, Tensor};

fn state_of(model: ModelKind) -> Vec<(String, Tensor)> {
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = model.build(&vs);
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn load(model: ModelKind, tensors: Vec<(String, Tensor)>) -> Result<(), ModelError> {
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = model.build(&vs);
    let sd = StateDict {
        tensors,
        sha256: String::new(),
        format: "test",
    };
    model.load_weights(&vs, sd)
}

#[test]
fn complete_state_loads() {
    load(
        ModelKind::EfficientnetLite0,
        state_of(ModelKind::EfficientnetLite0),
    )
    .unwrap();
}

#[test]
fn shape_mismatch_names_the_key() {
    let mut t = state_of(ModelKind::EfficientnetLite0);
    let i = t.iter().position(|(k, _)| k == "_fc.weight").unwrap();
    t[i].1 = Tensor::zeros([10, 1280], (tch::Kind::Float, Device::Cpu));
    let e = load(ModelKind::EfficientnetLite0, t).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ModelError::ShapeMismatch { .. }), "{msg}");
    assert!(
        msg.contains("_fc.weight") && msg.contains("[10, 1280]") && msg.contains("[1000, 1280]"),
        "{msg}"
    );
}

#[test]
fn unexpected_and_missing_keys_are_named() {
    let mut t = state_of(ModelKind::EfficientnetB0);
    t.push((
        "features.9.0.weight".into(),
        Tensor::zeros([1], (tch::Kind::Float, Device::Cpu)),
    ));
    let msg = load(ModelKind::EfficientnetB0, t).unwrap_err().to_string();
    assert!(msg.contains("unexpected key features.9.0.weight"), "{msg}");

    let mut t = state_of(ModelKind::EfficientnetB0);
    t.retain(|(k, _)| k != "features.1.0.block.1.fc1.bias");
    let msg = load(ModelKind::EfficientnetB0, t).unwrap_err().to_string();
    assert!(
        msg.contains("missing key features.1.0.block.1.fc1.bias"),
        "{msg}"
    );
}

#[test]
fn b0_to_b7_build_with_torchvision_shapes() {
    // Head widths of torchvision's B0..B7 (classifier.1.weight is 1000 x C).
    let expected = [1280, 1280, 1408, 1536, 1792, 2048, 2304, 2560];
    let models = [
        ModelKind::EfficientnetB0,
        ModelKind::EfficientnetB1,
        ModelKind::EfficientnetB2,
        ModelKind::EfficientnetB3,
        ModelKind::EfficientnetB4,
        ModelKind::EfficientnetB5,
        ModelKind::EfficientnetB6,
        ModelKind::EfficientnetB7,
    ];
    for (m, c) in models.iter().zip(expected) {
        let t = state_of(*m);
        let fc = t.iter().find(|(k, _)| k == "classifier.1.weight").unwrap();
        assert_eq!(fc.1.size(), vec![1000, c], "{}", m.name());
    }
}

#[test]
fn b0_to_b7_match_torchvision_state_dicts_exactly() {
    let py = match std::env::var_os("TORCHENV_TEST_PYTHON") {
        Some(p) if !p.is_empty() => p,
        _ => panic!(
            "TORCHENV_TEST_PYTHON is not set: run the harness tests through `cargo xtask test`"
        ),
    };
    let script = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .join("python/dump_torchvision_shapes.py");
    let out = std::process::Command::new(py).arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let models = [
        ModelKind::EfficientnetB0,
        ModelKind::EfficientnetB1,
        ModelKind::EfficientnetB2,
        ModelKind::EfficientnetB3,
        ModelKind::EfficientnetB4,
        ModelKind::EfficientnetB5,
        ModelKind::EfficientnetB6,
        ModelKind::EfficientnetB7,
    ];
    for m in models {
        let mut expected: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{}\t", m.name())))
            .map(|l| l.split_once('\t').unwrap().1.to_string())
            .collect();
        expected.sort();
        let mut ours: Vec<String> = state_of(m)
            .into_iter()
            .map(|(k, t)| {
                let shape: Vec<String> = t.size().iter().map(|d| d.to_string()).collect();
                format!("{k}\t{}", shape.join(","))
            })
            .collect();
        ours.sort();
        assert!(!expected.is_empty());
        assert_eq!(ours, expected, "{} differs from torchvision", m.name());
    }
}
