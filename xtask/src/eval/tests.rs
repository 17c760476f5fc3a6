//! The eval's container, as sent to the engine: what is mounted how, no
//! network, the caller's user, the harness command.

use super::*;
use crate::launch::gpus::GpuPlan;

fn request(dir: &Path) -> Request {
    let yaml = "version: 1\nenvironments:\n  e:\n    torch: 2.6.0\n    torchvision: 0.21.0\n";
    let spec = crate::spec::Spec::parse(Path::new("/repo/environments.yaml"), yaml.into()).unwrap();
    Request {
        env: spec.environments["e"].clone(),
        image: "torchenv/e:0123".into(),
        resources: Resources {
            engine_id: "engine".into(),
            gpu: GpuPlan {
                requests: Vec::new(),
                notice: None,
            },
            ulimits: Vec::new(),
        },
        dataset: Dataset {
            root: "/datasets/val".into(),
            labels: Some("/datasets/LOC_val_solution.csv".into()),
            synsets: None,
            link_targets: Vec::new(),
        },
        model: "efficientnet_b0".into(),
        weights: "/home/u/b0.pth".into(),
        weights_source: "~/b0.pth".into(),
        onnx: false,
        options: vec!["--device".into(), "cuda".into()],
        out: dir.join("reports/run"),
    }
}

#[test]
fn inputs_are_read_only_the_folder_writable_and_there_is_no_network() {
    let dir = tempfile::tempdir().unwrap();
    let req = request(dir.path());
    let body = plan(&req, dir.path()).body();
    let host = body.host_config.unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    let mounts = host.mounts.unwrap_or_default();
    let by_target = |t: &str| {
        mounts
            .iter()
            .find(|m| m.target.as_deref() == Some(t))
            .unwrap_or_else(|| panic!("no mount at {t}: {mounts:?}"))
    };
    for (source, target) in [
        ("/datasets/val", DATA),
        (
            "/datasets/LOC_val_solution.csv",
            "/labels/LOC_val_solution.csv",
        ),
        ("/home/u/b0.pth", "/weights/b0.pth"),
    ] {
        let m = by_target(target);
        assert_eq!(m.source.as_deref(), Some(source));
        assert_eq!(m.read_only, Some(true), "{target} must be read-only");
    }
    let out = by_target(OUT);
    assert_eq!(out.source.as_deref(), Some(dir.path().to_str().unwrap()));
    assert_ne!(out.read_only, Some(true));
    assert_eq!(mounts.len(), 4, "{mounts:?}");
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata(dir.path()).unwrap();
    assert_eq!(body.user, Some(format!("{}:{}", me.uid(), me.gid())));
    assert_eq!(body.entrypoint, Some(vec![IMAGE_HARNESS.to_string()]));
    let cmd = body.cmd.unwrap();
    assert_eq!(cmd[..2], ["eval", "--progress"]);
    let joined = cmd.join(" ");
    for part in [
        "--data /data",
        "--labels /labels/LOC_val_solution.csv",
        "--weights /weights/b0.pth",
        "--model efficientnet_b0",
        "--out /out",
        "--device cuda",
    ] {
        assert!(joined.contains(part), "{part} missing from {joined}");
    }
}

#[test]
fn harness_errors_name_the_host_paths() {
    let dir = tempfile::tempdir().unwrap();
    let req = request(dir.path());
    let stderr = concat!(
        "{\"event\":\"start\",\"total\":3,\"model\":\"m\",\"device\":\"cpu\"}\n",
        "note: TF32 off\n",
        "error: labels file /labels/LOC_val_solution.csv, line 3 names x, which is not in /data\n",
    );
    let e = harness_failed(&req, 2, stderr);
    assert_eq!(e.exit_code(), crate::exit::BAD_INPUT);
    assert_eq!(
        e.to_string(),
        "efficientnet_b0: labels file /datasets/LOC_val_solution.csv, line 3 names x, which is not in /datasets/val"
    );
    let crashed = harness_failed(&req, 139, "Segmentation fault\n");
    assert_eq!(crashed.exit_code(), crate::exit::FAILED);
    assert!(
        crashed.to_string().contains("exited with code 139"),
        "{crashed}"
    );
}

#[test]
fn links_out_of_the_dataset_get_their_folders_mounted_where_they_lead() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    let data = dir.path().join("data/n01440764");
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(photos.join("a.jpg"), b"x").unwrap();
    std::fs::write(data.join("inside.jpg"), b"x").unwrap();
    std::os::unix::fs::symlink(photos.join("a.jpg"), data.join("abs.jpg")).unwrap();
    std::os::unix::fs::symlink("../../photos/a.jpg", data.join("rel.jpg")).unwrap();
    std::os::unix::fs::symlink("inside.jpg", data.join("same.jpg")).unwrap();
    let ds = Dataset::resolve(&dir.path().join("data"), None, None).unwrap();
    let photos = std::fs::canonicalize(&photos).unwrap();
    let mut got = ds.link_targets.clone();
    got.sort();
    // The absolute link's folder at its own path; the relative one where
    // it leads from /data/n01440764 (../../photos = /photos).
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.contains(&(photos.clone(), photos.display().to_string())),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|(h, c)| c == "/photos" && std::fs::canonicalize(h).unwrap() == photos),
        "{got:?}"
    );

    std::os::unix::fs::symlink("/etc/hostname", data.join("bad.jpg")).unwrap();
    let e = Dataset::resolve(&dir.path().join("data"), None, None).unwrap_err();
    assert!(e.to_string().contains("/etc"), "{e}");
    assert_eq!(e.exit_code(), crate::exit::BAD_INPUT);
}

#[test]
fn paths_are_normalized_as_a_link_is_walked() {
    assert_eq!(normalize("/data/n01/../../photos/a.jpg"), "/photos/a.jpg");
    assert_eq!(normalize("/a/./b//c/.."), "/a/b");
    assert_eq!(normalize("/../x"), "/x");
}
