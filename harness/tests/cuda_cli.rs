//! `harness cuda` on the machine running the tests. Where no NVIDIA driver
//! is present (CI, developer machines) it must say so and exit 0, and exit 3
//! when a GPU is demanded. Where a GPU is present, the checks must pass.

mod common;
use common::*;

fn has_nvidia_driver() -> bool {
    std::path::Path::new("/proc/driver/nvidia/version").exists()
}

#[test]
fn cuda_check_reports_no_gpu_or_passes() {
    let out = run(harness()
        .arg("cuda")
        .env_remove("TORCHENV_TORCH_VERSION")
        .env_remove("TORCHENV_CUDA_VERSION")
        .env_remove("TORCHENV_CUDNN_VERSION"));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    if has_nvidia_driver() {
        assert!(t.contains("GPU 0:") && t.contains("-> ok"), "{t}");
    } else {
        assert!(t.contains("no GPU"), "{t}");
        assert!(t.contains("nothing to compare"), "{t}");
    }
}

#[test]
fn expecting_a_gpu_without_one_exits_3_with_reason() {
    if has_nvidia_driver() {
        let out = run(harness().args(["cuda", "--expect-gpus", "64"]));
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        return;
    }
    let out = run(harness().args(["cuda", "--expect-gpus", "1"]));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("expected 1 usable GPU(s), found 0"), "{t}");
    assert!(
        t.contains("libcuda.so.1 not found") || t.contains("not available"),
        "{t}"
    );
}

#[test]
fn json_report_and_declared_versions() {
    let out = run(harness()
        .args(["cuda", "--json"])
        .env("TORCHENV_TORCH_VERSION", "0.0.1"));
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cuda --json is not JSON");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["exit_code"], 4);
    let torch = v["torch"]["version"].as_str().unwrap().to_string();
    assert!(
        torch.chars().next().unwrap().is_ascii_digit(),
        "torch version {torch}"
    );
    let torch_check = v["declared"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "torch")
        .unwrap();
    assert_eq!(torch_check["matches"], false);

    // The real version (without local suffix) is consistent.
    let plain = torch.split('+').next().unwrap();
    let out = run(harness()
        .args(["cuda"])
        .env("TORCHENV_TORCH_VERSION", plain));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
