//! summary.md and index.html of a tiny hand-made report.

use report::{
    ClassAccuracy, ConfusionEntry, EvalReport, GpuMonitor, GpuSample, GpuSeries, Metrics,
    Prediction, SampleResult, Settings, Versions,
};

use super::html::{escape, gallery_samples, page, relative_url};
use super::summary::markdown;

const TENCH: &str = "n01440764";
const GOLDFISH: &str = "n01443537";

fn pred(index: usize, synset: &str, probability: f64) -> Prediction {
    Prediction {
        index,
        synset: synset.into(),
        probability,
    }
}

fn sample(path: &str, label: (usize, &str), top5: Vec<Prediction>) -> SampleResult {
    SampleResult {
        path: path.into(),
        label: label.0,
        label_synset: label.1.into(),
        correct: top5[0].synset == label.1,
        top5,
        thumbnail: None,
    }
}

fn class(index: usize, synset: &str, n: usize, correct: usize) -> ClassAccuracy {
    ClassAccuracy {
        index,
        synset: synset.into(),
        name: String::new(),
        n,
        correct,
        accuracy: correct as f64 / n as f64,
    }
}

/// 3 images: a tench right, a tench seen as a goldfish (with a thumbnail
/// whose path needs escaping), a goldfish right; on one GPU.
fn tiny() -> EvalReport {
    let mut wrong = sample(
        "val/<tench> & \"co\".JPEG",
        (0, TENCH),
        vec![pred(1, GOLDFISH, 0.9), pred(0, TENCH, 0.05)],
    );
    wrong.thumbnail = Some("thumbs/a b#1.png".into());
    EvalReport {
        schema_version: report::SCHEMA_VERSION,
        model: "efficientnet_b0".into(),
        weights: report::WeightsInfo {
            source: "w.pth".into(),
            sha256: "0123456789abcdef0123".into(),
            format: "torch-zip".into(),
        },
        dataset: report::DatasetInfo {
            root: "/data/val|sub".into(),
            layout: "image-folder".into(),
            num_images: 3,
            num_evaluated: 3,
            ..Default::default()
        },
        settings: Settings {
            device: "cuda:0".into(),
            batch_size: 2,
            workers: 1,
            dtype: "float32".into(),
            autocast: None,
            channels_last: false,
            deterministic: true,
            preprocess: Default::default(),
            runtime: "libtorch".into(),
        },
        metrics: Metrics {
            top1: 2.0 / 3.0,
            top5: 1.0,
            correct_top1: 2,
            correct_top5: 3,
            evaluated: 3,
            topk: vec![2.0 / 3.0, 1.0],
        },
        per_class: vec![class(0, TENCH, 2, 1), class(1, GOLDFISH, 1, 1)],
        confusion: vec![ConfusionEntry {
            true_index: 0,
            true_synset: TENCH.into(),
            predicted_index: 1,
            predicted_synset: GOLDFISH.into(),
            count: 1,
        }],
        samples: vec![
            sample("val/t1.JPEG", (0, TENCH), vec![pred(0, TENCH, 0.8)]),
            wrong,
            sample("val/g1.JPEG", (1, GOLDFISH), vec![pred(1, GOLDFISH, 0.7)]),
        ],
        misclassified: vec![],
        failed: vec![],
        performance: report::Performance {
            images_per_second: 123.45,
            ..Default::default()
        },
        versions: Versions {
            harness: "0.1.0".into(),
            torch: "2.4.1".into(),
            cuda_runtime: Some("12.4".into()),
            cudnn: Some("90100".into()),
            device_name: "NVIDIA H100".into(),
            cuda_build: Some("12.4".into()),
            driver: Some("550.54.15".into()),
            onnxruntime: None,
        },
        gpu: GpuMonitor {
            available: true,
            reason: None,
            interval_ms: 200,
            driver_version: Some("550.54.15".into()),
            devices: vec![GpuSeries {
                index: 0,
                name: "NVIDIA H100".into(),
                samples: vec![GpuSample::default()],
                summary: report::GpuSummary {
                    samples: 1,
                    peak_memory_bytes: Some(3 << 30),
                    mean_utilization_percent: Some(87.5),
                    ..Default::default()
                },
                ..Default::default()
            }],
        },
        export: None,
    }
}

fn cpu(mut r: EvalReport) -> EvalReport {
    r.settings.device = "cpu".into();
    r.versions.device_name = "cpu".into();
    r.versions.cuda_build = None;
    r.versions.cudnn = None;
    r.versions.driver = None;
    r.gpu = GpuMonitor::unavailable("libnvidia-ml.so.1 not found");
    r
}

#[test]
fn summary_md_is_one_table_then_worst_classes_and_pairs() {
    let md = markdown(&tiny());
    for line in [
        "## efficientnet_b0 — evaluation summary",
        "| model | efficientnet_b0 |",
        "| weights sha256 | 0123456789ab |",
        "| dataset | /data/val\\|sub (image-folder): 3 images evaluated, 0 failed |",
        "| top-1 | 66.67 % (2/3) |",
        "| top-5 | 100.00 % (3/3) |",
        "| img/s | 123.5 |",
        "| device | cuda:0 (NVIDIA H100) |",
        "| torch | 2.4.1 |",
        "| CUDA build | 12.4 |",
        "| cuDNN | 90100 |",
        "| driver | 550.54.15 |",
        "| GPU peak memory | GPU 0: 3.00 GiB |",
        "| GPU mean utilization | GPU 0: 87.5 % |",
        "### 2 worst classes",
        "| 1 | tench | n01440764 | 50.00 % | 1 / 2 |",
        "| 2 | goldfish | n01443537 | 100.00 % | 1 / 1 |",
        "### 1 most-confused pairs",
        "| 1 | tench (n01440764) | goldfish (n01443537) | 1 |",
    ] {
        assert!(md.lines().any(|l| l == line), "no line {line:?} in\n{md}");
    }
}

#[test]
fn summary_md_of_a_cpu_run_says_why_there_is_no_gpu() {
    let mut r = cpu(tiny());
    r.per_class.clear();
    r.confusion.clear();
    let md = markdown(&r);
    for line in [
        "| CUDA build | none (CPU-only torch) |",
        "| cuDNN | — |",
        "| driver | — |",
        "| GPU monitoring | unavailable: libnvidia-ml.so.1 not found |",
        "No per-class results.",
        "No confusions.",
    ] {
        assert!(md.lines().any(|l| l == line), "no line {line:?} in\n{md}");
    }
    assert!(!md.contains("GPU peak memory"));
}

#[test]
fn an_onnx_run_and_an_export_are_in_the_summary_and_the_page() {
    let mut r = cpu(tiny());
    r.settings.runtime = "onnxruntime".into();
    r.versions.onnxruntime = Some("1.32.0".into());
    r.weights.format = "onnx".into();
    let parity = report::Parity {
        runtime: "onnxruntime 1.32.0".into(),
        reference: "harness".into(),
        images_root: "/data".into(),
        images: 3,
        max_abs_logit_diff: 9.2e-6,
        mean_abs_logit_diff: 1e-6,
        max_abs_prob_diff: 1e-7,
        top1_agree: 3,
        top1_disagree: vec![],
        unreadable: vec![],
        tolerance: 1e-4,
        passed: true,
    };
    let dim = report::Dim::Fixed;
    r.export = Some(report::ExportReport {
        schema_version: 1,
        model: r.model.clone(),
        format: "onnx".into(),
        file: "model.onnx".into(),
        sha256: "fedcba9876543210".into(),
        bytes: 21_000_000,
        opset: Some(17),
        input: report::TensorSpec {
            name: "input".into(),
            shape: vec![
                report::Dim::Dynamic("batch".into()),
                dim(3),
                dim(224),
                dim(224),
            ],
            dtype: "float32".into(),
        },
        output: report::TensorSpec {
            name: "logits".into(),
            shape: vec![report::Dim::Dynamic("batch".into()), dim(1000)],
            dtype: "float32".into(),
        },
        weights: r.weights.clone(),
        preprocess: Default::default(),
        versions: Default::default(),
        parity: parity.clone(),
    });
    let md = markdown(&r);
    for line in [
        "| runtime | onnxruntime 1.32.0 — an exported onnx file, not the harness's network |",
        "| export | model.onnx (onnx, opset 17, 21000000 bytes, sha256 fedcba987654); input: float32[batch, 3, 224, 224] → logits: float32[batch, 1000] |",
        &format!("| export parity | {} |", parity.summary().replace('|', "\\|")),
    ] {
        assert!(md.lines().any(|l| l == line), "no line {line:?} in\n{md}");
    }
    let html = page(&r, &[], &|_| true);
    assert!(
        html.contains("<tr><th>export parity</th><td>parity on 3 images"),
        "{html}"
    );
}

#[test]
fn the_page_escapes_report_text_and_encodes_links() {
    let html = page(&tiny(), &[("topk.png", "Top-k")], &|_| true);
    assert!(html.contains("<code>val/&lt;tench&gt; &amp; &quot;co&quot;.JPEG</code>"));
    assert!(!html.contains("<tench>"));
    assert!(html.contains("<img src=\"thumbs/a%20b%231.png\""), "{html}");
    assert!(html.contains("<img src=\"topk.png\""));
    assert!(html.contains("true: <b>tench</b> n01440764"));
    assert!(html.contains("<li class=\"truth\">tench <small>n01440764</small>"));
    assert!(html
        .contains("<li>goldfish <small>n01443537</small><span class=\"prob\">90.0 %</span></li>"));
    assert!(html.contains("document.body.dataset.brokenImages"));
    assert!(!html.contains("http://") && !html.contains("https://"));
}

#[test]
fn the_page_shows_the_versions_and_why_gpu_monitoring_is_off() {
    let html = page(&cpu(tiny()), &[], &|_| false);
    assert!(html.contains("<tr><th>CUDA build</th><td>none (CPU-only torch)</td></tr>"));
    assert!(html.contains("GPU monitoring unavailable: libnvidia-ml.so.1 not found"));
    // The thumbnail is not in the folder: a box, not a broken image.
    assert!(html.contains("thumbnail missing: thumbs/a b#1.png"));
    assert!(!html.contains("<img"));
    let with_gpu = page(&tiny(), &[], &|_| false);
    assert!(with_gpu.contains("<tr><th>CUDA build</th><td>12.4</td></tr>"));
    assert!(with_gpu.contains("<td>NVIDIA H100</td>"));
}

#[test]
fn the_gallery_is_wrong_images_with_thumbnails_most_confident_first() {
    let mut r = tiny();
    let mut second = r.samples[1].clone();
    second.path = "val/less-sure.JPEG".into();
    second.top5[0].probability = 0.6;
    r.samples.insert(0, second);
    r.samples[3].thumbnail = Some("thumbs/right.png".into()); // correct: not shown
    let paths: Vec<&str> = gallery_samples(&r)
        .iter()
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(paths, ["val/<tench> & \"co\".JPEG", "val/less-sure.JPEG"]);
}

#[test]
fn escaping_and_relative_urls() {
    assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    assert_eq!(
        relative_url("thumbs/x_1.png").as_deref(),
        Some("thumbs/x_1.png")
    );
    assert_eq!(
        relative_url("thumbs/é?.png").as_deref(),
        Some("thumbs/%C3%A9%3F.png")
    );
    for leaving in [
        "/etc/passwd",
        "../x.png",
        "thumbs/../../x",
        "a\\b",
        "",
        "a//b",
    ] {
        assert_eq!(relative_url(leaving), None, "{leaving}");
    }
    assert_eq!(
        relative_url("javascript:x").as_deref(),
        Some("javascript%3Ax")
    );
}

#[test]
fn write_folder_writes_every_file_and_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let written = super::write_folder(&cpu(tiny()), dir.path()).unwrap();
    assert_eq!(written.plots.len(), 7, "no GPU plots without GPU samples");
    for f in written.files() {
        assert!(f.is_file(), "{}", f.display());
    }
    let gpu = super::write_folder(&tiny(), dir.path()).unwrap();
    assert_eq!(gpu.plots.len(), 10);
    let tmp = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "tmp")
        })
        .count();
    assert_eq!(tmp, 0);
}

#[test]
fn an_unwritable_folder_is_a_typed_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = super::write_folder(&tiny(), &missing).unwrap_err();
    assert!(
        matches!(&err, super::ReportViewError::Write { path, .. } if path == &missing.join("summary.md")),
        "{err:?}"
    );
}

#[test]
fn the_environment_comparison_grows_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envs.png");
    let rows: Vec<super::EnvRow> = (0..12)
        .map(|i| super::EnvRow {
            name: format!("env{i}"),
            versions: "torch 2.4.1, CUDA 12.4".into(),
            top1: 0.77,
            images_per_second: 100.0 * i as f64,
        })
        .collect();
    super::env_comparison(&rows, &path).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
    let info = decoder.read_info().unwrap().info().clone();
    assert_eq!(info.width, super::plots::WIDTH);
    assert!(info.height > super::plots::HEIGHT);
    super::env_comparison(&[], &path).unwrap();
}
