use super::*;
use crate::lock::{LockedBase, LockedWheel, LOCK_VERSION};

const SPEC: &str = r#"version: 1
environments:
  demo:
    torch: 2.6.0
    torchvision: 0.21.0
    cuda: "12.4"
    pip: [jupyterlab]
"#;

/// A spec in a temporary folder with its own `images/`, and a lock that is
/// fresh for it.
struct Fixture {
    dir: tempfile::TempDir,
    spec: Spec,
    lock: Lock,
}

fn fixture(spec_text: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(IMAGES_DIR)).unwrap();
    for (name, text) in [
        (venv_layer::SCRIPT, "#!/bin/sh\n"),
        (system_layer::SCRIPT, "#!/bin/sh\n"),
        ("entrypoint.sh", "#!/bin/sh\nexec \"$@\"\n"),
    ] {
        std::fs::write(dir.path().join(IMAGES_DIR).join(name), text).unwrap();
    }
    let path = dir.path().join("environments.yaml");
    std::fs::write(&path, spec_text).unwrap();
    let spec = Spec::load(&path).unwrap();
    let env = spec.env(None).unwrap();
    let base = LockedBase {
        suite: "bookworm".into(),
        include: crate::build::bootstrap::include_for(env),
        source_date_epoch: 1_735_689_600,
        rootfs_sha256: "ab".repeat(32),
        packages: vec!["python3=3.11.2-1+b1".into()],
    };
    let mut lock = Lock {
        version: LOCK_VERSION,
        ..Lock::default()
    };
    let key = base.key();
    lock.bases.insert(key.clone(), base);
    lock.environments.insert(
        env.name.clone(),
        LockedEnv {
            inputs: crate::lock::inputs_hash(env),
            base: key,
            python: "3.11".into(),
            torch: "2.6.0".into(),
            torchvision: "0.21.0".into(),
            torchaudio: None,
            cuda: "12.4".into(),
            cudnn: "9.1.0".into(),
            cuda_toolkit: vec![],
            wheels: vec![
                LockedWheel {
                    name: "torch".into(),
                    version: "2.6.0".into(),
                    file: "torch-2.6.0-cp311-cp311-manylinux1_x86_64.whl".into(),
                    sha256: "11".repeat(32),
                },
                LockedWheel {
                    name: "jupyterlab".into(),
                    version: "4.3.5".into(),
                    file: "jupyterlab-4.3.5-py3-none-any.whl".into(),
                    sha256: "22".repeat(32),
                },
            ],
        },
    );
    Fixture { dir, spec, lock }
}

impl Fixture {
    fn plan(&self, harness: Option<&Path>) -> Plan {
        let env = self.spec.env(None).unwrap();
        plan(&self.spec, &self.lock, env, harness).unwrap()
    }
}

#[test]
fn unchanged_inputs_keep_the_tag() {
    let f = fixture(SPEC);
    let a = f.plan(None);
    let b = f.plan(None);
    assert_eq!(a.tag, b.tag);
    assert!(a.tag.starts_with("torchenv/demo:"));
    assert_eq!(a.tag.len(), "torchenv/demo:".len() + 16);
    assert_eq!(a.labels[LABEL_HARNESS], HARNESS_ABSENT);
}

#[test]
fn the_harness_changes_the_tag_but_not_the_venv() {
    let f = fixture(SPEC);
    let h = f.dir.path().join("harness-bin");
    std::fs::write(&h, b"one").unwrap();
    let none = f.plan(None);
    let one = f.plan(Some(&h));
    std::fs::write(&h, b"two").unwrap();
    let two = f.plan(Some(&h));
    assert_ne!(none.tag, one.tag);
    assert_ne!(one.tag, two.tag);
    assert_eq!(none.venv_tag, two.venv_tag);
    assert_eq!(two.labels[LABEL_HARNESS], cache::sha256_bytes(b"two"));
}

#[test]
fn image_files_and_wheels_change_the_tag() {
    let f = fixture(SPEC);
    let before = f.plan(None);
    std::fs::write(f.dir.path().join("images/sshd_config"), "Port 22\n").unwrap();
    let after = f.plan(None);
    assert_ne!(before.tag, after.tag);
    assert_eq!(
        before.venv_tag, after.venv_tag,
        "the venv stage ignores other files"
    );
    assert_ne!(before.system_tag, after.system_tag);
    std::fs::write(f.dir.path().join("images/venv.sh"), "#!/bin/sh\ntrue\n").unwrap();
    let new_script = f.plan(None);
    assert_ne!(new_script.venv_tag, after.venv_tag);
    assert_ne!(
        new_script.system_tag, after.system_tag,
        "the system stage sits on the venv stage"
    );

    let mut f = f;
    f.lock.environments.get_mut("demo").unwrap().wheels[0].sha256 = "33".repeat(32);
    let rewheeled = f.plan(None);
    assert_ne!(rewheeled.tag, after.tag);
    assert_ne!(rewheeled.venv_tag, after.venv_tag);
}

#[test]
fn runtime_settings_do_not_change_the_tag() {
    let a = fixture(SPEC).plan(None);
    let b = fixture(&SPEC.replace(
        "    pip: [jupyterlab]\n",
        "    pip: [jupyterlab]\n    shm_size: 2g\n    ports: [\"9000:9000\"]\n",
    ))
    .plan(None);
    assert_eq!(a.tag, b.tag);
}

#[test]
fn a_stale_lock_is_refused() {
    let mut f = fixture(SPEC);
    f.lock.environments.get_mut("demo").unwrap().inputs = "old".into();
    let env = f.spec.env(None).unwrap();
    assert!(plan(&f.spec, &f.lock, env, None).is_err());
}

#[test]
fn the_harness_layer_has_its_folders_with_or_without_a_harness() {
    let names = |layer: Layer| match layer {
        Layer::Entries(e) => e.into_iter().map(|e| e.path).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        names(harness_layer(None)),
        ["usr", "usr/local", "usr/local/bin"]
    );
    assert_eq!(
        names(harness_layer(Some(Path::new("/x/harness"))))
            .last()
            .unwrap(),
        "usr/local/bin/harness"
    );
}

#[test]
fn generated_text() {
    let f = fixture(SPEC);
    let p = f.plan(None);
    insta::assert_snapshot!(
        "venv_requirements",
        venv_layer::requirements(&p.locked.wheels)
    );
    let base_env = ["PATH=/usr/bin:/bin".to_string(), "LANG=C.UTF-8".to_string()];
    let mut config = runtime_config(&p, &base_env);
    // Hashes of the fixture's inputs, not of interest here.
    config["Labels"] = serde_json::json!("…");
    insta::assert_snapshot!(
        "runtime_config",
        serde_json::to_string_pretty(&config).unwrap()
    );
}

#[test]
fn the_base_layers_of_a_locked_debian_base_are_its_rootfs() {
    let f = fixture(SPEC);
    let p = f.plan(None);
    assert_eq!(
        p.base_layers,
        BaseLayers::Known(vec![format!("sha256:{}", "ab".repeat(32))])
    );
    // An image the build made has exactly the plan's labels over that base.
    let labels: std::collections::HashMap<_, _> = p.labels.clone().into_iter().collect();
    let BaseLayers::Known(base) = &p.base_layers else {
        unreachable!()
    };
    let mut layers = base.clone();
    layers.push("sha256:system".into());
    assert_eq!(
        provenance::difference(&p.labels, base, &labels, &layers),
        None
    );
}
