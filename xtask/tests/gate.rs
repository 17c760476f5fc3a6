//! Mutation tests of the regression gate with the real harness, the real
//! EfficientNet-Lite0 weights and the fixture images: the unbroken setup
//! passes against the committed baselines, and every mutation makes the
//! gate fail with a diff naming flipped images.
//!
//! They need a host-built harness and the environment's torch; run them
//! with `cargo xtask test`, which sets:
//! - `TORCHENV_TEST_HARNESS`: the harness binary for the default env's torch;
//! - `TORCHENV_TEST_PYTHON`: that torch's venv python (writes mutated weights);
//! - `TORCHENV_TEST_WEIGHTS`: `efficientnet-lite0-57934424.pth`.
//!
//! Without them the tests fail (they never pass vacuously).

use std::path::{Path, PathBuf};
use std::process::Command;

use xtask::gate::baseline::Store;
use xtask::gate::check::{check_env, CheckOptions, Device, Outcome, Runner};
use xtask::spec::Spec;

const MODEL: &str = "efficientnet_lite0";

fn var(name: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!(
            "{name} is not set: these tests need the host-built harness, the venv python \
             and the Lite0 weights; run them with `cargo xtask test` \
             (or set TORCHENV_TEST_HARNESS, TORCHENV_TEST_PYTHON, TORCHENV_TEST_WEIGHTS)"
        ),
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What a mutation does to the setup.
enum Weights {
    /// The published checkpoint.
    Original,
    /// The checkpoint with Gaussian noise (std = `scale` × the tensor's std,
    /// fixed seed) added to one conv layer.
    Noisy { tensor: &'static str, scale: f64 },
}

struct Mutation {
    name: &'static str,
    weights: Weights,
    /// Extra environment of the harness (for harness-side mutation switches).
    harness_env: &'static [(&'static str, &'static str)],
    /// Whether the gate must pass.
    passes: bool,
}

/// One line per mutation. Harness-side switches (wrong normalization, no
/// antialias, …) are added as e.g.
/// `Mutation { name: "wrong_normalization", weights: Weights::Original, harness_env: &[("TORCHENV_HARNESS_MUTATION", "wrong-normalization")], passes: false },`
const MUTATIONS: &[Mutation] = &[
    Mutation {
        name: "unbroken",
        weights: Weights::Original,
        harness_env: &[],
        passes: true,
    },
    Mutation {
        name: "noisy_stem_conv",
        weights: Weights::Noisy {
            tensor: "_conv_stem.weight",
            scale: 0.5,
        },
        harness_env: &[],
        passes: false,
    },
    Mutation {
        name: "wrong_normalization",
        weights: Weights::Original,
        harness_env: &[("TORCHENV_HARNESS_NORMALIZATION", "imagenet")],
        passes: false,
    },
    Mutation {
        name: "resize_without_antialias",
        weights: Weights::Original,
        harness_env: &[("TORCHENV_HARNESS_NO_ANTIALIAS", "true")],
        passes: false,
    },
];

fn mutated_weights(dir: &Path, original: &Path, weights: &Weights) -> PathBuf {
    let Weights::Noisy { tensor, scale } = weights else {
        return original.to_path_buf();
    };
    let out = dir.join("mutated.pth");
    let script = format!(
        "import torch\n\
         sd = torch.load({original:?}, map_location='cpu', weights_only=True)\n\
         t = sd[{tensor:?}]\n\
         g = torch.Generator().manual_seed(1234)\n\
         sd[{tensor:?}] = t + torch.randn(t.shape, generator=g) * t.std() * {scale}\n\
         torch.save(sd, {out:?})\n",
        original = original.display().to_string(),
        out = out.display().to_string(),
    );
    let python = var("TORCHENV_TEST_PYTHON");
    let status = Command::new(&python)
        .arg("-c")
        .arg(&script)
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(status.success(), "writing the mutated checkpoint failed");
    out
}

async fn run(m: &Mutation) {
    let harness = var("TORCHENV_TEST_HARNESS");
    let weights = var("TORCHENV_TEST_WEIGHTS");
    let spec = Spec::load(&repo().join("environments.yaml")).expect("spec");
    let env = spec.env(None).expect("default env").clone();
    let work = tempfile::tempdir().unwrap();
    // The committed baselines, copied so a failing run's .snap.new stays out
    // of the repository.
    let store = Store::new(work.path().join("baselines"));
    std::fs::create_dir_all(&store.dir).unwrap();
    for name in [
        Store::accuracy_name(&env.name, MODEL),
        Store::versions_name(&env.name),
    ] {
        let committed = Store::for_spec(&spec.path).path(&name);
        std::fs::copy(&committed, store.path(&name))
            .unwrap_or_else(|e| panic!("{}: {e} (record the baseline first)", committed.display()));
    }
    let runner = Runner::Host {
        harness,
        env: m
            .harness_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let opts = CheckOptions {
        device: Device::Cpu,
        expect_gpus: 0,
        weights: [(
            MODEL.to_string(),
            mutated_weights(work.path(), &weights, &m.weights),
        )]
        .into(),
        store,
        reports: None,
    };
    let result = check_env(&runner, &env, &opts).await;
    let eval = result
        .cases
        .iter()
        .find(|c| c.name == format!("eval {MODEL}"))
        .expect("an eval case");
    let report = format!(
        "{}: {} — {}\n{}",
        m.name, eval.message, eval.name, eval.detail
    );
    assert_ne!(eval.outcome, Outcome::Error, "{report}");
    if m.passes {
        assert!(result.passed(), "{report}\n{:?}", result.cases);
    } else {
        assert_eq!(eval.outcome, Outcome::Fail, "{report}");
        let comparison = result.models[0].comparison.as_ref().expect("compared");
        assert!(!comparison.flips.is_empty(), "no flipped image: {report}");
        for flip in &comparison.flips {
            assert!(eval.detail.contains(&flip.path), "{report}");
        }
        assert!(eval.detail.contains("flipped top-1"), "{report}");
        assert!(opts
            .store
            .new_path(&Store::accuracy_name(&env.name, MODEL))
            .exists());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gate_mutations() {
    for m in MUTATIONS {
        eprintln!("mutation {}", m.name);
        run(m).await;
    }
}
