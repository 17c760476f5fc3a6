//! Round trips of both reports, the field order the harness writes, what
//! the readers accept and refuse.

use super::*;

fn eval_report() -> EvalReport {
    EvalReport {
        schema_version: SCHEMA_VERSION,
        model: "efficientnet_lite0".into(),
        weights: WeightsInfo {
            source: "w.pth".into(),
            sha256: "00".into(),
            format: "torch-zip".into(),
        },
        dataset: DatasetInfo {
            root: "/data".into(),
            labels_file: None,
            layout: "image-folder".into(),
            num_images: 2,
            num_evaluated: 1,
            num_failed: 1,
        },
        settings: Settings {
            device: "cpu".into(),
            batch_size: 32,
            workers: 2,
            dtype: "float32".into(),
            autocast: None,
            channels_last: true,
            deterministic: false,
            preprocess: Preprocess {
                resize: 256,
                crop: 224,
                interpolation: "bicubic".into(),
                mean: [0.485, 0.456, 0.406],
                std: [0.229, 0.224, 0.225],
                antialias: true,
            },
            runtime: "libtorch".into(),
        },
        metrics: Metrics {
            top1: 1.0,
            top5: 1.0,
            correct_top1: 1,
            correct_top5: 1,
            evaluated: 1,
            topk: vec![1.0],
        },
        per_class: vec![ClassAccuracy {
            index: 1,
            synset: "n01443537".into(),
            name: "goldfish, Carassius auratus".into(),
            n: 1,
            correct: 1,
            accuracy: 1.0,
        }],
        confusion: Vec::new(),
        samples: vec![SampleResult {
            path: "n01443537/a.jpg".into(),
            label: 1,
            label_synset: "n01443537".into(),
            top5: vec![Prediction {
                index: 1,
                synset: "n01443537".into(),
                probability: 0.75,
            }],
            correct: true,
            thumbnail: None,
        }],
        misclassified: Vec::new(),
        failed: vec![FailedSample {
            path: "n01443537/b.jpg".into(),
            error: "cannot decode".into(),
        }],
        performance: Performance {
            wall_seconds: 1.5,
            images_per_second: 0.5,
            preprocess_seconds: 0.25,
            inference_seconds: 0.5,
            peak_host_rss_bytes: Some(1024),
            peak_gpu_memory_bytes: None,
            timeline: vec![TimelinePoint {
                seconds: 1.5,
                images: 2,
            }],
        },
        versions: Versions {
            harness: "0.1.0".into(),
            torch: "2.6.0+cpu".into(),
            cuda_runtime: None,
            cudnn: None,
            device_name: "cpu".into(),
            cuda_build: Some("12.4".into()),
            driver: None,
            onnxruntime: None,
        },
        gpu: GpuMonitor::unavailable("NVML not found"),
        export: None,
    }
}

#[test]
fn eval_report_keeps_the_harness_layout() {
    let text = serde_json::to_string(&eval_report()).unwrap();
    let want = concat!(
        r#"{"schema_version":1,"model":"efficientnet_lite0","#,
        r#""weights":{"source":"w.pth","sha256":"00","format":"torch-zip"},"#,
        r#""dataset":{"root":"/data","labels_file":null,"layout":"image-folder","num_images":2,"num_evaluated":1,"num_failed":1},"#,
        r#""settings":{"device":"cpu","batch_size":32,"workers":2,"dtype":"float32","autocast":null,"#,
        r#""channels_last":true,"deterministic":false,"preprocess":{"resize":256,"crop":224,"#,
        r#""interpolation":"bicubic","mean":[0.485,0.456,0.406],"std":[0.229,0.224,0.225],"antialias":true},"#,
        r#""runtime":"libtorch"},"#,
        r#""metrics":{"top1":1.0,"top5":1.0,"correct_top1":1,"correct_top5":1,"evaluated":1,"topk":[1.0]},"#,
        r#""per_class":[{"index":1,"synset":"n01443537","name":"goldfish, Carassius auratus","n":1,"correct":1,"accuracy":1.0}],"#,
        r#""confusion":[],"#,
        r#""samples":[{"path":"n01443537/a.jpg","label":1,"label_synset":"n01443537","#,
        r#""top5":[{"index":1,"synset":"n01443537","probability":0.75}],"correct":true}],"#,
        r#""misclassified":[],"failed":[{"path":"n01443537/b.jpg","error":"cannot decode"}],"#,
        r#""performance":{"wall_seconds":1.5,"images_per_second":0.5,"preprocess_seconds":0.25,"#,
        r#""inference_seconds":0.5,"peak_host_rss_bytes":1024,"peak_gpu_memory_bytes":null,"#,
        r#""timeline":[{"seconds":1.5,"images":2}]},"#,
        r#""versions":{"harness":"0.1.0","torch":"2.6.0+cpu","cuda_runtime":null,"cudnn":null,"device_name":"cpu","#,
        r#""cuda_build":"12.4","driver":null},"#,
        r#""gpu":{"available":false,"reason":"NVML not found","interval_ms":0,"driver_version":null,"devices":[]}}"#,
    );
    assert_eq!(text, want);
    assert_eq!(parse_eval(&text).unwrap(), eval_report());
}

#[test]
fn eval_reader_needs_only_what_the_gate_reads() {
    let json = r#"{
        "schema_version": 1, "model": "m", "settings": {"device": "cuda:0", "preprocess": {}},
        "metrics": {"top1": 0.5, "top5": 1.0, "correct_top1": 1, "correct_top5": 2, "evaluated": 2},
        "samples": [{"path": "a.jpg", "label_synset": "n01443537", "correct": false,
                     "top5": [{"synset": "n01440764", "probability": 0.5}]}],
        "versions": {"torch": "2.6.0", "device_name": "H100"},
        "something_new": [1, 2, 3]
    }"#;
    let r = parse_eval(json).unwrap();
    assert!(r.settings.is_gpu());
    assert_eq!(r.settings.preprocess, Preprocess::default());
    // Reports from before onnxruntime evals ran on libtorch.
    assert_eq!(r.settings.runtime, "libtorch");
    assert_eq!(r.export, None);
    assert!(r.failed.is_empty());
    assert_eq!(r.versions.cuda_runtime, None);
    assert_eq!(r.samples[0].top5[0].synset, "n01440764");
}

#[test]
fn eval_reader_errors_say_what_is_wrong() {
    let e = parse_eval("{}").unwrap_err();
    assert!(
        e.starts_with("not a harness eval report: missing field"),
        "{e}"
    );
    let mut v = serde_json::to_value(eval_report()).unwrap();
    v["schema_version"] = 2.into();
    assert_eq!(
        parse_eval(&v.to_string()).unwrap_err(),
        "eval report schema_version 2 (the gate reads 1)"
    );
}

fn cuda_report() -> CudaReport {
    CudaReport {
        schema_version: SCHEMA_VERSION,
        harness_version: "0.1.0".into(),
        torch: TorchInfo {
            version: "2.6.0+cu124".into(),
            built_cuda: Some("12.4".into()),
            lib_dir: None,
        },
        cuda_available: true,
        device_count: 1,
        cuda_runtime_version: Some("12.4".into()),
        cuda_driver_api_version: Some("12.8".into()),
        nvidia_driver_version: None,
        cudnn_version: Some("9.1.0".into()),
        no_gpu_reason: None,
        devices: vec![DeviceCheck {
            index: 0,
            name: Some("GPU".into()),
            compute_capability: Some("9.0".into()),
            total_memory_bytes: Some(1 << 30),
            matmul_max_abs_diff: Some(0.0),
            matmul_tolerance: Some(0.5),
            roundtrip_equal: Some(true),
            ok: true,
            error: None,
        }],
        declared: vec![VersionCheck {
            component: "torch".into(),
            env_var: "TORCHENV_TORCH_VERSION".into(),
            declared: None,
            runtime: Some("2.6.0+cu124".into()),
            matches: None,
        }],
        expected_gpus: 1,
        exit_code: 0,
        verdict: "1 GPU(s) usable; versions consistent".into(),
    }
}

#[test]
fn cuda_report_keeps_the_harness_layout() {
    let text = serde_json::to_string(&cuda_report()).unwrap();
    // Every top-level field, in the harness's order.
    let mut at = 0;
    for key in [
        "schema_version",
        "harness_version",
        "torch",
        "cuda_available",
        "device_count",
        "cuda_runtime_version",
        "cuda_driver_api_version",
        "nvidia_driver_version",
        "cudnn_version",
        "no_gpu_reason",
        "devices",
        "declared",
        "expected_gpus",
        "exit_code",
        "verdict",
    ] {
        let found = text[at..]
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("{key} missing or out of order in {text}"));
        at += found;
    }
    assert_eq!(parse_cuda(&text).unwrap(), cuda_report());
}

#[test]
fn cuda_reader_needs_only_what_the_gate_reads() {
    let r = parse_cuda(
        r#"{"schema_version": 1, "cuda_available": false, "device_count": 0,
            "no_gpu_reason": "no NVIDIA driver", "exit_code": 0, "verdict": "ok"}"#,
    )
    .unwrap();
    assert_eq!(r.cuda_runtime_version, None);
    assert!(r.devices.is_empty());
    let e = parse_cuda(r#"{"schema_version": 1}"#).unwrap_err();
    assert!(
        e.starts_with("not a harness cuda report: missing field"),
        "{e}"
    );
    let e = parse_cuda(
        &serde_json::to_string(&CudaReport {
            schema_version: 7,
            ..cuda_report()
        })
        .unwrap(),
    )
    .unwrap_err();
    assert_eq!(e, "cuda report schema_version 7 (the gate reads 1)");
}

/// A series recorded from NVML on an H100 (memory in bytes; the second
/// sample has no power reading, as boards without power sensors report).
fn recorded_series() -> Vec<GpuSample> {
    let s = |t, mem, util, temp, power, clock| GpuSample {
        t,
        memory_used_bytes: Some(mem),
        utilization_percent: Some(util),
        temperature_c: Some(temp),
        power_watts: power,
        sm_clock_mhz: Some(clock),
    };
    vec![
        s(0.0, 629_145_600, 0, 31, Some(71.5), 345),
        s(0.2, 4_919_918_592, 87, 36, None, 1980),
        s(0.4, 5_368_709_120, 99, 41, Some(402.25), 1980),
        s(0.6, 5_100_273_664, 94, 44, Some(388.0), 1965),
    ]
}

#[test]
fn gpu_summary_of_a_recorded_series() {
    let sum = gpu::summarize(&recorded_series());
    assert_eq!(sum.samples, 4);
    assert_eq!(sum.peak_memory_bytes, Some(5_368_709_120));
    assert_eq!(sum.mean_utilization_percent, Some(70.0));
    assert_eq!(sum.max_temperature_c, Some(44));
    // The sample without power is left out, not counted as 0 W.
    assert_eq!(sum.mean_power_watts, Some((71.5 + 402.25 + 388.0) / 3.0));
    assert_eq!(sum.peak_power_watts, Some(402.25));
    assert_eq!(sum.max_sm_clock_mhz, Some(1980));
}

#[test]
fn gpu_summary_of_nothing_is_nulls_not_zeros() {
    let sum = gpu::summarize(&[]);
    assert_eq!(sum, GpuSummary::default());
    let no_figures = gpu::summarize(&[GpuSample::default()]);
    assert_eq!(no_figures.samples, 1);
    assert_eq!(no_figures.mean_utilization_percent, None);
    assert_eq!(no_figures.peak_memory_bytes, None);
}

#[test]
fn progress_lines_round_trip_and_ordinary_lines_are_not_events() {
    let e = ProgressEvent::Batch {
        done: 64,
        failed: 1,
        total: 3000,
        seconds: 2.5,
    };
    let line = e.to_line();
    assert_eq!(
        line,
        r#"{"event":"batch","done":64,"failed":1,"total":3000,"seconds":2.5}"#
    );
    assert_eq!(ProgressEvent::parse(&line), Some(e));
    assert_eq!(ProgressEvent::parse("note: TF32 off"), None);
    assert_eq!(ProgressEvent::parse("{not json"), None);
    assert_eq!(
        ProgressEvent::parse(r#"{"event":"writing"}"#),
        Some(ProgressEvent::Writing)
    );
}

fn export_report() -> ExportReport {
    ExportReport {
        schema_version: SCHEMA_VERSION,
        model: "efficientnet_b0".into(),
        format: "onnx".into(),
        file: "b0.onnx".into(),
        sha256: "ab".into(),
        bytes: 21_000_000,
        opset: Some(17),
        input: TensorSpec {
            name: "input".into(),
            shape: vec![
                Dim::Dynamic("batch".into()),
                Dim::Fixed(3),
                Dim::Fixed(224),
                Dim::Fixed(224),
            ],
            dtype: "float32".into(),
        },
        output: TensorSpec {
            name: "logits".into(),
            shape: vec![Dim::Dynamic("batch".into()), Dim::Fixed(1000)],
            dtype: "float32".into(),
        },
        weights: WeightsInfo::default(),
        preprocess: Preprocess::default(),
        versions: ExportVersions::default(),
        parity: Parity {
            runtime: "onnxruntime (CPUExecutionProvider)".into(),
            reference: "harness (libtorch, CPU, float32)".into(),
            images_root: "/data".into(),
            images: 2,
            max_abs_logit_diff: 2.5e-6,
            mean_abs_logit_diff: 1e-7,
            max_abs_prob_diff: 1e-8,
            top1_agree: 1,
            top1_disagree: vec!["n01443537/a.jpg".into()],
            unreadable: vec!["b.jpg: cannot decode".into()],
            tolerance: 1e-4,
            passed: false,
        },
    }
}

#[test]
fn export_report_round_trips_with_named_dynamic_dimensions() {
    let r = export_report();
    let text = serde_json::to_string(&r).unwrap();
    assert!(
        text.contains(r#""shape":["batch",3,224,224]"#),
        "a dynamic dimension is its name, a fixed one its size: {text}"
    );
    assert_eq!(parse_export(&text).unwrap(), r);
    assert_eq!(r.input.describe(), "input: float32[batch, 3, 224, 224]");
    let line = r.parity.summary();
    assert!(
        line.contains("top-1 agrees on 1/2") && line.ends_with("FAILED"),
        "{line}"
    );
    assert!(
        line.starts_with("parity on 2 images (1 unreadable left out)"),
        "{line}"
    );
    assert_eq!(
        parity_path(std::path::Path::new("/x/m.onnx")),
        std::path::PathBuf::from("/x/m.onnx.parity.json")
    );
    let other = text.replace(r#""schema_version":1"#, r#""schema_version":7"#);
    assert!(parse_export(&other)
        .unwrap_err()
        .contains("schema_version 7"));
}

#[test]
fn an_eval_report_carries_its_export() {
    let mut r = eval_report();
    r.export = Some(export_report());
    let back = parse_eval(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back.export, Some(export_report()));
}
