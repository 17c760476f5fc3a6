//! The bad-input fixture set: the run completes, undecodable files are
//! listed with a reason, decodable oddities are evaluated.

mod common;
use common::*;

#[test]
fn corrupt_set_completes_and_lists_failures() {
    let data = fixtures().join("corrupt");
    assert!(data.is_dir(), "missing {}", data.display());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = run(harness()
        .args([
            "eval",
            "--model",
            "efficientnet_lite0",
            "--batch-size",
            "4",
            "--weights",
        ])
        .arg(lite0_weights())
        .arg("--data")
        .arg(&data)
        .arg("--json")
        .arg(&json));
    assert!(out.status.success(), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let failed: Vec<(String, String)> = r["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    println!("failed: {failed:#?}");
    let failed_paths: Vec<&str> = failed.iter().map(|(p, _)| p.as_str()).collect();
    let mut expected_failed = vec![
        "n02123045/truncated_40pct.jpg",
        "n02510455/zero_bytes.jpg",
        "n07930864/not_an_image.jpg",
    ];
    expected_failed.sort();
    let mut got = failed_paths.clone();
    got.sort();
    assert_eq!(got, expected_failed);
    assert!(failed.iter().all(|(_, e)| !e.is_empty()));
    let evaluated: Vec<&str> = r["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    for ok in [
        "n07930864/cmyk.jpg",
        "n02510455/grayscale.jpg",
        "n04540053/rgba.png",
        "n07920052/rgb16.png",
        "n07920052/gray16.png",
        "n04540053/png_named_jpg.jpg",
        "n02980441/huge_8000x6000.jpg",
        "n02510455/progressive.jpg",
    ] {
        assert!(
            evaluated.contains(&ok),
            "{ok} was not evaluated: {evaluated:?}"
        );
    }
    assert_eq!(r["dataset"]["num_failed"], 3);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("failed (3)"), "{stdout}");
    println!("{stdout}");
}
