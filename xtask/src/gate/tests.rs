//! Unit tests of the gate: comparison, snapshot files, the check flow with
//! a scripted stand-in harness, JUnit and the summary.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::baseline::{Accuracy, SnapFile, Store, Stored, Versions};
use super::check::{check_env, CaseResult, CheckOptions, Device, Outcome, Runner};
use super::ci::{self, CiResult};
use super::compare::{self, compare};
use super::report;
use crate::spec::{Env, Spec, Tolerances};

const TOL: Tolerances = Tolerances {
    top1_drop: 0.0,
    max_flips: 0,
    prob_abs_cpu: 1e-3,
    prob_abs_gpu: 1e-2,
};

/// An eval report as `harness eval --json` writes it: three images, the
/// first two right, the third (`n01443537/fish.jpg`) wrong.
fn report_json(device: &str, torch: &str) -> Value {
    let sample = |path: &str, label: &str, top: &[(&str, f64)]| {
        json!({
            "path": path, "label": 0, "label_synset": label,
            "top5": top.iter().enumerate().map(|(i, (s, p))| json!({"index": i, "synset": s, "probability": p})).collect::<Vec<_>>(),
            "correct": top[0].0 == label,
        })
    };
    json!({
        "schema_version": 1,
        "model": "efficientnet_lite0",
        "weights": {"source": "w.pth", "sha256": "00", "format": "torch-zip"},
        "dataset": {"root": "/data", "labels_file": null, "num_images": 4, "num_evaluated": 3, "num_failed": 1},
        "settings": {"device": device, "batch_size": 32, "workers": 2, "dtype": "float32", "autocast": null,
                     "channels_last": false, "deterministic": true, "preprocess": {}},
        "metrics": {"top1": 2.0 / 3.0, "top5": 1.0, "correct_top1": 2, "correct_top5": 3, "evaluated": 3},
        "per_class": [], "confusion": [],
        "samples": [
            sample("n02123045/cat.jpg", "n02123045", &[("n02123045", 0.812345), ("n02123159", 0.1), ("n02124075", 0.05), ("n02127052", 0.01), ("n02971356", 0.005)]),
            sample("n01882714/koala.jpg", "n01882714", &[("n01882714", 0.97), ("n02137549", 0.01), ("n02500267", 0.005), ("n02134084", 0.004), ("n02120079", 0.001)]),
            sample("n01443537/fish.jpg", "n01443537", &[("n02606052", 0.55), ("n01443537", 0.40), ("n09256479", 0.02), ("n01496331", 0.01), ("n02607072", 0.005)]),
        ],
        "misclassified": ["n01443537/fish.jpg"],
        "failed": [{"path": "n04540053/broken.jpg", "error": "decode: truncated"}],
        "performance": {"wall_seconds": 1.0, "images_per_second": 3.0, "preprocess_seconds": 0.1,
                        "inference_seconds": 0.5, "peak_host_rss_bytes": null, "peak_gpu_memory_bytes": null},
        "versions": {"harness": "0.1.0", "torch": torch, "cuda_runtime": null, "cudnn": null, "device_name": "cpu"},
    })
}

fn accuracy(v: &Value) -> Accuracy {
    let r = report::parse_eval(&v.to_string()).expect("valid report");
    Accuracy::from_report("env-a", &r)
}

fn set_top5(v: &mut Value, sample: usize, top: &[(&str, f64)]) {
    v["samples"][sample]["top5"] = top
        .iter()
        .enumerate()
        .map(|(i, (s, p))| json!({"index": i, "synset": s, "probability": p}))
        .collect();
}

#[test]
fn identical_runs_pass() {
    let a = accuracy(&report_json("cpu", "2.6.0"));
    let c = compare(&a, &a, &TOL, false);
    assert!(c.passed(), "{}", compare::render(&c));
    assert!(c.flips.is_empty());
    assert_eq!(c.max_prob.as_ref().map(|m| m.delta), Some(0.0));
    assert!(compare::render(&c).contains("PASS"));
}

#[test]
fn probabilities_are_rounded_to_four_decimals() {
    let a = accuracy(&report_json("cpu", "2.6.0"));
    assert_eq!(a.samples[0].top5[0].p, 0.8123);
    assert!(a.to_yaml().contains("{ synset: \"n02123045\", p: 0.8123 }"));
}

#[test]
fn a_probability_beyond_tolerance_fails_naming_the_image() {
    let base = report_json("cpu", "2.6.0");
    let mut run = base.clone();
    // Same top-1, koala's probability moves by 0.02 (> 1e-3 on CPU).
    set_top5(
        &mut run,
        1,
        &[
            ("n01882714", 0.95),
            ("n02137549", 0.03),
            ("n02500267", 0.005),
            ("n02134084", 0.004),
            ("n02120079", 0.001),
        ],
    );
    let c = compare(&accuracy(&base), &accuracy(&run), &TOL, false);
    assert!(!c.passed());
    assert!(c.flips.is_empty());
    assert_eq!(c.prob_violations.len(), 1);
    let text = compare::render(&c);
    assert!(text.contains("n01882714/koala.jpg"), "{text}");
    assert!(text.contains("0.9700 → 0.9500"), "{text}");
    assert!(text.contains("prob_abs_cpu"), "{text}");
    // The same move is within the GPU tolerance (1e-2)? No: 0.02 > 0.01.
    assert!(!compare(&accuracy(&base), &accuracy(&run), &TOL, true).passed());
    // A smaller move (0.005) passes on GPU, fails on CPU.
    set_top5(
        &mut run,
        1,
        &[
            ("n01882714", 0.965),
            ("n02137549", 0.015),
            ("n02500267", 0.005),
            ("n02134084", 0.004),
            ("n02120079", 0.001),
        ],
    );
    assert!(compare(&accuracy(&base), &accuracy(&run), &TOL, true).passed());
    assert!(!compare(&accuracy(&base), &accuracy(&run), &TOL, false).passed());
}

#[test]
fn a_top1_flip_fails_naming_image_and_classes() {
    let base = report_json("cpu", "2.6.0");
    let mut run = base.clone();
    // The fish is now (rightly) a goldfish: top-1 improves, but it flipped.
    set_top5(
        &mut run,
        2,
        &[
            ("n01443537", 0.5505),
            ("n02606052", 0.3995),
            ("n09256479", 0.02),
            ("n01496331", 0.01),
            ("n02607072", 0.005),
        ],
    );
    run["samples"][2]["correct"] = json!(true);
    let tol = Tolerances {
        prob_abs_cpu: 1.0,
        ..TOL
    };
    let c = compare(&accuracy(&base), &accuracy(&run), &tol, false);
    assert!(!c.passed());
    assert_eq!(c.flips.len(), 1);
    let text = compare::render(&c);
    assert!(
        text.contains("n01443537/fish.jpg [true n01443537 goldfish]: n02606052 rock beauty 0.5500 → n01443537 goldfish 0.5505"),
        "{text}"
    );
    assert!(text.contains("more than max_flips 0"), "{text}");
    // One flip allowed: passes.
    let tol = Tolerances {
        max_flips: 1,
        ..tol
    };
    assert!(compare(&accuracy(&base), &accuracy(&run), &tol, false).passed());
}

#[test]
fn a_top1_drop_beyond_top1_drop_fails() {
    let base = report_json("cpu", "2.6.0");
    let mut run = base.clone();
    set_top5(
        &mut run,
        0,
        &[
            ("n02123159", 0.5),
            ("n02123045", 0.4),
            ("n02124075", 0.05),
            ("n02127052", 0.01),
            ("n02971356", 0.005),
        ],
    );
    run["samples"][0]["correct"] = json!(false);
    run["metrics"]["correct_top1"] = json!(1);
    run["metrics"]["top1"] = json!(1.0 / 3.0);
    let loose = Tolerances {
        max_flips: 5,
        prob_abs_cpu: 1.0,
        top1_drop: 0.0,
        ..TOL
    };
    let c = compare(&accuracy(&base), &accuracy(&run), &loose, false);
    assert!(!c.passed());
    assert!(
        c.failures[0].contains("top-1 dropped 33.33 pp"),
        "{:?}",
        c.failures
    );
    assert!(compare::render(&c).contains("top-1 66.67% → 33.33% (-33.33 pp; 2/3 → 1/3)"));
    // 34 points allowed: passes.
    let c = compare(
        &accuracy(&base),
        &accuracy(&run),
        &Tolerances {
            top1_drop: 34.0,
            ..loose
        },
        false,
    );
    assert!(c.passed(), "{:?}", c.failures);
}

#[test]
fn changed_image_sets_and_decode_failures_fail() {
    let base = report_json("cpu", "2.6.0");
    let mut run = base.clone();
    run["samples"].as_array_mut().unwrap().remove(1);
    run["failed"] = json!([]);
    let c = compare(&accuracy(&base), &accuracy(&run), &TOL, false);
    assert_eq!(c.missing_samples, vec!["n01882714/koala.jpg".to_string()]);
    assert_eq!(c.no_longer_failed, vec!["n04540053/broken.jpg".to_string()]);
    assert_eq!(c.failures.len(), 2, "{:?}", c.failures);
}

#[test]
fn snapshot_files_round_trip_and_survive_insta_rewriting_the_header() {
    let a = accuracy(&report_json("cpu", "2.6.0"));
    let snap = SnapFile {
        expression: "harness eval of efficientnet_lite0 in env-a".into(),
        body: a.to_yaml(),
    };
    let text = snap.render();
    assert!(text.starts_with("---\nsource: xtask/src/gate/baseline.rs\nexpression: "));
    let parsed = SnapFile::parse(&text).unwrap();
    assert_eq!(parsed, snap);
    assert_eq!(Accuracy::from_yaml(&parsed.body).unwrap(), a);
    // What `cargo insta accept` leaves behind: its own header layout.
    let rewritten = format!(
        "---\nsource: xtask/src/gate/baseline.rs\nexpression: harness eval of efficientnet_lite0 in env-a\nsnapshot_kind: text\n---\n{}",
        a.to_yaml()
    );
    assert_eq!(
        Accuracy::from_yaml(&SnapFile::parse(&rewritten).unwrap().body).unwrap(),
        a
    );
    assert!(SnapFile::parse("format: 1\n").is_err());
}

/// A stand-in harness: `cuda` prints `$FAKE_CUDA`; `eval` copies
/// `$FAKE_REPORT` to its `--json` path.
fn fake_harness(dir: &Path) -> PathBuf {
    let path = dir.join("harness");
    std::fs::write(
        &path,
        r#"#!/bin/sh
case "$1" in
  cuda) cat "$FAKE_CUDA"; exit 0 ;;
  eval)
    while [ $# -gt 0 ]; do
      if [ "$1" = "--out" ]; then mkdir -p "$2" && cp "$FAKE_REPORT" "$2/report.json"; exit 0; fi
      shift
    done
    echo "no --out" >&2; exit 2 ;;
esac
exit 2
"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn cuda_json() -> Value {
    json!({
        "schema_version": 1, "harness_version": "0.1.0",
        "torch": {"version": "2.6.0", "built_cuda": null, "lib_dir": null},
        "cuda_available": false, "device_count": 0, "cuda_runtime_version": null,
        "cuda_driver_api_version": null, "nvidia_driver_version": null, "cudnn_version": null,
        "no_gpu_reason": "no NVIDIA driver", "devices": [], "declared": [], "expected_gpus": 0,
        "exit_code": 0, "verdict": "no GPU (none expected); versions consistent",
    })
}

fn env_named(name: &str) -> Env {
    let yaml = format!(
        "version: 1\nenvironments:\n  {name}:\n    torch: 2.6.0\n    torchvision: 0.21.0\n    harness:\n      dataset: /nonexistent\n"
    );
    let spec = Spec::parse(Path::new("/repo/environments.yaml"), yaml).unwrap();
    spec.environments[name].clone()
}

struct Fixture {
    dir: tempfile::TempDir,
    runner: Runner,
    opts: CheckOptions,
}

fn fixture(report: &Value) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let harness = fake_harness(dir.path());
    std::fs::write(dir.path().join("cuda.json"), cuda_json().to_string()).unwrap();
    std::fs::write(dir.path().join("report.json"), report.to_string()).unwrap();
    let runner = Runner::Host {
        harness,
        env: vec![
            (
                "FAKE_CUDA".into(),
                dir.path().join("cuda.json").display().to_string(),
            ),
            (
                "FAKE_REPORT".into(),
                dir.path().join("report.json").display().to_string(),
            ),
        ],
    };
    let opts = CheckOptions {
        device: Device::Cpu,
        expect_gpus: 0,
        weights: [("efficientnet_lite0".to_string(), dir.path().join("w.pth"))].into(),
        store: Store::new(dir.path().join("baselines")),
        reports: None,
    };
    Fixture { dir, runner, opts }
}

fn case<'a>(cases: &'a [CaseResult], name: &str) -> &'a CaseResult {
    cases
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}: {cases:?}"))
}

async fn run_check(f: &Fixture, env: &Env) -> super::EnvResult {
    check_env(&f.runner, env, &f.opts).await
}

#[tokio::test]
async fn a_missing_baseline_writes_snap_new_and_fails_until_accepted() {
    let f = fixture(&report_json("cpu", "2.6.0"));
    let env = env_named("env-a");
    let r = run_check(&f, &env).await;
    assert!(!r.passed());
    assert_eq!(case(&r.cases, "cuda").outcome, Outcome::Pass);
    let eval = case(&r.cases, "eval efficientnet_lite0");
    assert_eq!(eval.outcome, Outcome::Fail);
    assert!(eval.message.contains("no baseline"), "{}", eval.message);
    assert!(
        eval.detail.contains("cargo insta review"),
        "{}",
        eval.detail
    );
    assert_eq!(case(&r.cases, "versions").outcome, Outcome::Fail);
    let store = &f.opts.store;
    let pending = store.new_path("env-a__efficientnet_lite0");
    assert!(pending.exists());
    assert!(store.new_path("env-a__versions").exists());
    assert!(matches!(
        store.read("env-a__efficientnet_lite0"),
        Ok(Stored::Missing)
    ));

    // Accept (what `cargo insta accept` does: rename .snap.new to .snap).
    for name in ["env-a__efficientnet_lite0", "env-a__versions"] {
        std::fs::rename(store.new_path(name), store.path(name)).unwrap();
    }
    let r = run_check(&f, &env).await;
    assert!(r.passed(), "{:?}", r.cases);
    assert!(r.notices.is_empty(), "{:?}", r.notices);
    assert!(!pending.exists());
    let _ = &f.dir;
}

#[tokio::test]
async fn a_version_change_is_a_notice_not_a_failure() {
    let f = fixture(&report_json("cpu", "2.6.0"));
    let env = env_named("env-a");
    run_check(&f, &env).await;
    let store = &f.opts.store;
    for name in ["env-a__efficientnet_lite0", "env-a__versions"] {
        std::fs::rename(store.new_path(name), store.path(name)).unwrap();
    }
    // Same predictions, new torch.
    std::fs::write(
        f.dir.path().join("report.json"),
        report_json("cpu", "2.6.1").to_string(),
    )
    .unwrap();
    let r = run_check(&f, &env).await;
    assert!(r.passed(), "{:?}", r.cases);
    assert_eq!(r.notices.len(), 1, "{:?}", r.notices);
    assert!(
        r.notices[0].contains("torch 2.6.0 → 2.6.1"),
        "{}",
        r.notices[0]
    );
    assert!(store.new_path("env-a__versions").exists());
    assert!(!store.new_path("env-a__efficientnet_lite0").exists());
    let pending =
        SnapFile::parse(&std::fs::read_to_string(store.new_path("env-a__versions")).unwrap())
            .unwrap();
    assert_eq!(Versions::from_yaml(&pending.body).unwrap().torch, "2.6.1");
}

#[tokio::test]
async fn a_regression_writes_snap_new_with_the_run_and_a_diff_naming_the_image() {
    let base = report_json("cpu", "2.6.0");
    let f = fixture(&base);
    let env = env_named("env-a");
    run_check(&f, &env).await;
    let store = &f.opts.store;
    for name in ["env-a__efficientnet_lite0", "env-a__versions"] {
        std::fs::rename(store.new_path(name), store.path(name)).unwrap();
    }
    let mut run = base.clone();
    set_top5(
        &mut run,
        1,
        &[
            ("n02137549", 0.6),
            ("n01882714", 0.3),
            ("n02500267", 0.005),
            ("n02134084", 0.004),
            ("n02120079", 0.001),
        ],
    );
    std::fs::write(f.dir.path().join("report.json"), run.to_string()).unwrap();
    let r = run_check(&f, &env).await;
    assert!(!r.passed());
    let eval = case(&r.cases, "eval efficientnet_lite0");
    assert_eq!(eval.outcome, Outcome::Fail);
    assert!(
        eval.detail.contains("n01882714/koala.jpg [true n01882714 koala]: n01882714 koala 0.9700 → n02137549 mongoose 0.6000"),
        "{}",
        eval.detail
    );
    let pending = SnapFile::parse(
        &std::fs::read_to_string(store.new_path("env-a__efficientnet_lite0")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        Accuracy::from_yaml(&pending.body).unwrap().samples[1].top5[0].synset,
        "n02137549"
    );
    // The baseline itself is untouched.
    let stored = match store.read("env-a__efficientnet_lite0").unwrap() {
        Stored::Found(f) => Accuracy::from_yaml(&f.body).unwrap(),
        Stored::Missing => panic!("baseline gone"),
    };
    assert_eq!(stored.samples[1].top5[0].synset, "n01882714");
}

#[tokio::test]
async fn a_harness_that_crashes_is_an_error_not_a_pass() {
    let f = fixture(&report_json("cpu", "2.6.0"));
    let Runner::Host { env, .. } = &f.runner else {
        unreachable!()
    };
    let runner = Runner::Host {
        harness: PathBuf::from("/bin/false"),
        env: env.clone(),
    };
    let r = check_env(&runner, &env_named("env-a"), &f.opts).await;
    assert!(!r.passed());
    assert_eq!(case(&r.cases, "cuda").outcome, Outcome::Error);
    assert_eq!(
        case(&r.cases, "eval efficientnet_lite0").outcome,
        Outcome::Error
    );
}

/// Two environments checked against accepted baselines; the second has one
/// flipped image relative to the first.
async fn two_env_ci(dir: &Path) -> CiResult {
    let base = report_json("cpu", "2.6.0");
    let mut other = base.clone();
    set_top5(
        &mut other,
        2,
        &[
            ("n01443537", 0.5505),
            ("n02606052", 0.3995),
            ("n09256479", 0.02),
            ("n01496331", 0.01),
            ("n02607072", 0.005),
        ],
    );
    let (ea, eb) = (env_named("env-a"), env_named("env-b"));
    struct Fake {
        fixtures: Vec<(String, Fixture)>,
        /// The fixtures' folders, alive until the run is over.
        kept: Vec<tempfile::TempDir>,
    }
    impl ci::Setup for Fake {
        async fn prepare(&mut self, env: &Env) -> Result<(Runner, CheckOptions), String> {
            let i = self
                .fixtures
                .iter()
                .position(|(n, _)| *n == env.name)
                .ok_or("unknown")?;
            let (_, f) = self.fixtures.remove(i);
            self.kept.push(f.dir);
            Ok((f.runner, f.opts))
        }
    }
    let mut fixtures = Vec::new();
    for (name, report) in [("env-a", &base), ("env-b", &other)] {
        let mut f = fixture(report);
        f.opts.store = Store::new(dir.join("baselines"));
        fixtures.push((name.to_string(), f));
    }
    let mut fake = Fake {
        fixtures,
        kept: Vec::new(),
    };
    // Record baselines: the first run writes .snap.new; accept them.
    let first = ci::run(&[&ea, &eb], &mut fake).await;
    assert!(!first.passed());
    for entry in std::fs::read_dir(dir.join("baselines")).unwrap() {
        let p = entry.unwrap().path();
        if let Some(s) = p.to_str().and_then(|s| s.strip_suffix(".new")) {
            std::fs::rename(&p, s).unwrap();
        }
    }
    let mut fixtures = Vec::new();
    for (name, report) in [("env-a", &base), ("env-b", &other)] {
        let mut f = fixture(report);
        f.opts.store = Store::new(dir.join("baselines"));
        fixtures.push((name.to_string(), f));
    }
    ci::run(
        &[&ea, &eb],
        &mut Fake {
            fixtures,
            kept: Vec::new(),
        },
    )
    .await
}

#[tokio::test]
async fn ci_compares_envs_and_writes_valid_junit_and_one_summary_row_per_env() {
    let dir = tempfile::tempdir().unwrap();
    let result = two_env_ci(dir.path()).await;
    // Each env matches its own baseline; the pair disagrees on one image.
    assert!(result.envs.iter().all(|e| e.passed()), "{:?}", result.envs);
    assert_eq!(result.pairs.len(), 1);
    let pair = &result.pairs[0];
    assert_eq!((pair.agreement.common, pair.agreement.same_top1), (3, 2));
    assert!(!pair.case.passed());
    assert!(!result.passed());
    assert!(
        pair.case.detail.contains("n01443537/fish.jpg"),
        "{}",
        pair.case.detail
    );

    let out = dir.path().join("ci-out");
    result.write(&out).unwrap();
    let xml = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("junit.xml is XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suites: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    let names: Vec<_> = suites
        .iter()
        .map(|s| s.attribute("name").unwrap())
        .collect();
    assert_eq!(names, ["env-a", "env-b", "cross-env"]);
    let mut total = 0;
    for s in &suites {
        let cases: Vec<_> = s
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(s.attribute("tests").unwrap(), cases.len().to_string());
        let failures = cases
            .iter()
            .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
            .count();
        assert_eq!(s.attribute("failures").unwrap(), failures.to_string());
        for c in &cases {
            assert!(c.attribute("name").is_some() && c.attribute("classname").is_some());
            assert!(c.attribute("time").unwrap().parse::<f64>().is_ok());
        }
        total += cases.len();
    }
    // cuda + eval per env; one agreement case.
    let case_names: Vec<_> = suites[0]
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|c| c.attribute("name").unwrap())
        .collect();
    assert_eq!(case_names, ["cuda", "eval efficientnet_lite0"]);
    assert_eq!(root.attribute("tests").unwrap(), total.to_string());
    assert_eq!(root.attribute("failures").unwrap(), "1");
    let failure = suites[2]
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .expect("the agreement failure");
    assert!(failure.text().unwrap().contains("n01443537/fish.jpg"));

    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    let rows: Vec<_> = md
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("| env-"))
        .collect();
    assert_eq!(rows.len(), 2, "{md}");
    assert!(
        rows[0].starts_with(
            "| env-a | 2.6.0 | - | - | cpu | [efficientnet_lite0](env-a/efficientnet_lite0/index.html) | 66.67% | 100.00% | pass |"
        ),
        "{}",
        rows[0]
    );
    // Each linked report folder and the per-environment chart exist.
    for env in ["env-a", "env-b"] {
        let folder = out.join(env).join("efficientnet_lite0");
        for f in ["report.json", "summary.md", "index.html", "topk.png"] {
            assert!(folder.join(f).is_file(), "{}/{f} missing", folder.display());
        }
    }
    assert!(
        md.contains("![top-1 and images/s per environment](envs.png)"),
        "{md}"
    );
    assert!(out.join("envs.png").is_file());
    assert!(rows[1].starts_with("| env-b |"), "{}", rows[1]);
    assert!(md.contains("## Agreement between environments"));
}

#[test]
fn junit_escapes_diff_text() {
    let suite = super::junit::Suite {
        name: "e<1>".into(),
        properties: vec![("torch".into(), "2.6.0 \"x\"".into())],
        cases: vec![CaseResult {
            name: "eval m".into(),
            outcome: Outcome::Fail,
            message: "a & b".into(),
            detail: "p < 0.5 → q > 0.1 ]]> \u{1b}[31m".into(),
            seconds: 0.5,
        }],
    };
    let xml = super::junit::render(&[suite]);
    let doc = roxmltree::Document::parse(&xml).expect("valid XML");
    let f = doc
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .unwrap();
    assert_eq!(f.attribute("message"), Some("a & b"));
    assert_eq!(f.text(), Some("p < 0.5 → q > 0.1 ]]> [31m"));
}
