use std::path::Path;

use super::*;

const GOOD: &str = "\
version: 1
default: a
defaults:
  jupyter:
    port: 8888
environments:
  a:
    torch: 2.6.0
    torchvision: 0.21.0
    cuda: \"12.4\"
    volumes:
      - { source: ./data, target: /data, read_only: true }
      - source: cache
        target: /cache
  b:
    torch: 2.11.0
    torchvision: 0.26.0
    jupyter:
      port: 8889
    ssh:
      port: 2223
";

fn parse(text: &str) -> Result<Spec, SpecError> {
    Spec::parse(Path::new("/repo/environments.yaml"), text.to_string())
}

/// `file:line:col: message` plus the text of the line pointed at.
fn error(text: &str) -> String {
    let e = parse(text).expect_err("spec should be rejected");
    let line = text
        .lines()
        .nth(e.line.saturating_sub(1))
        .unwrap_or("")
        .trim();
    format!("{e}\n    | {line}")
}

#[test]
fn good_spec_resolves_defaults() {
    let spec = parse(GOOD).unwrap();
    assert_eq!(spec.default, "a");
    let a = &spec.environments["a"];
    assert_eq!(a.python, "3.11");
    assert_eq!(
        a.base,
        Base::Debian {
            suite: "bookworm".into()
        }
    );
    assert_eq!(a.gpus, Gpus::Auto);
    assert_eq!(a.jupyter.as_ref().unwrap().port, 8888);
    assert_eq!(a.ssh.as_ref().unwrap().port, 2222);
    assert_eq!(a.host_ip.to_string(), "127.0.0.1");
    assert_eq!(a.shm_size, 8 << 30);
    assert_eq!(a.volumes[0].source, VolumeSource::Bind("/repo/data".into()));
    assert!(a.volumes[0].read_only);
    assert_eq!(a.volumes[1].source, VolumeSource::Named("cache".into()));
    assert_eq!(a.workspace, Path::new("/repo/workspace/a"));
    assert_eq!(spec.environments["b"].jupyter.as_ref().unwrap().port, 8889);
}

/// The safe defaults: loopback, nothing exposed, no forwarding, the
/// default process limit, no extra capabilities.
#[test]
fn hardening_defaults() {
    let spec = parse(GOOD).unwrap();
    for env in spec.environments.values() {
        assert!(!env.expose && !env.is_exposed());
        assert_eq!(env.exposure_warning(), None);
        assert_eq!(env.display_host(), "127.0.0.1");
        assert!(!env.ssh.as_ref().unwrap().forwarding);
        assert_eq!(
            env.security,
            Security {
                pids_limit: DEFAULT_PIDS_LIMIT,
                cap_add: vec![]
            }
        );
    }
}

/// What the hardening still lets through, and `defaults:` inheritance of
/// the new keys (an environment's own value wins, key by key).
#[test]
fn hardened_specs_that_load() {
    let text = GOOD
        .replace(
            "  jupyter:\n    port: 8888\n",
            "  jupyter:\n    port: 8888\n  ssh:\n    forwarding: true\n  security:\n    pids_limit: 4096\n    cap_add: [SYS_PTRACE]\n  env:\n    HF_HOME: /workspace/.hf\n",
        )
        .replace(
            "      - source: cache\n        target: /cache",
            "      - source: cache\n        target: /workspace/data\n      - { source: hf, target: /home/dev/.cache/huggingface }",
        )
        .replace(
            "    torch: 2.11.0\n",
            "    torch: 2.11.0\n    host_ip: 0.0.0.0\n    expose: true\n    security:\n      cap_add: [cap_perfmon, SYS_PTRACE]\n    env: { _X1: \"a b\\tc\" }\n    pip: [\"numpy>=1.26\", \"torch-tb-profiler==0.4.3\"]\n",
        );
    let spec = parse(&text).unwrap();
    let a = &spec.environments["a"];
    assert_eq!(a.volumes[1].target, "/workspace/data");
    assert_eq!(a.volumes[2].target, "/home/dev/.cache/huggingface");
    assert!(a.ssh.as_ref().unwrap().forwarding);
    assert_eq!(
        a.security,
        Security {
            pids_limit: 4096,
            cap_add: vec!["SYS_PTRACE".into()]
        }
    );
    assert!(!a.is_exposed());
    let b = &spec.environments["b"];
    assert!(b.expose && b.is_exposed());
    assert_eq!(b.host_ip.to_string(), "0.0.0.0");
    assert!(b.ssh.as_ref().unwrap().forwarding, "inherited");
    assert_eq!(b.security.pids_limit, 4096, "inherited key by key");
    assert_eq!(b.security.cap_add, ["PERFMON", "SYS_PTRACE"]);
    assert_eq!(b.env["_X1"], "a b\tc");
    assert_eq!(b.env["HF_HOME"], "/workspace/.hf");
    let warning = b.exposure_warning().unwrap();
    assert!(
        warning.contains("host ports 8889 (Jupyter) and 2223 (SSH) on 0.0.0.0"),
        "{warning}"
    );
    // Other loopback addresses need no `expose:`.
    for ip in ["127.0.0.2", "\"::1\""] {
        let text = GOOD.replace(
            "    torch: 2.11.0\n",
            &format!("    torch: 2.11.0\n    host_ip: {ip}\n"),
        );
        assert!(!parse(&text).unwrap().environments["b"].expose);
    }
}

#[test]
fn shipped_spec_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../environments.yaml");
    let spec = Spec::load(&path).unwrap();
    assert_eq!(spec.default, "pytorch-2.6-cuda12.4");
    let default = spec.env(None).unwrap();
    assert_eq!(
        (default.torch.as_str(), default.torchvision.as_str()),
        ("2.6.0", "0.21.0")
    );
    assert_eq!(default.cuda.as_deref(), Some("12.4"));
    // Every shipped environment has torchaudio, torch's release of it.
    for env in spec.environments.values() {
        assert_eq!(
            env.torchaudio.as_deref(),
            Some(env.torch.as_str()),
            "{}",
            env.name
        );
    }
    assert_eq!(spec.env(Some("pytorch-2.11")).unwrap().torch, "2.11.0");
}

#[test]
fn gpu_forms() {
    let with = |g: &str| {
        let text = GOOD.replace(
            "    cuda: \"12.4\"\n",
            &format!("    cuda: \"12.4\"\n    gpus: {g}\n"),
        );
        parse(&text).map(|s| s.environments["a"].gpus.clone())
    };
    assert_eq!(with("all").unwrap(), Gpus::All);
    assert_eq!(with("none").unwrap(), Gpus::None);
    assert_eq!(with("0").unwrap(), Gpus::None);
    assert_eq!(with("2").unwrap(), Gpus::Count(2));
    assert_eq!(
        with("[\"0\", \"GPU-1234\"]").unwrap(),
        Gpus::Ids(vec!["0".into(), "GPU-1234".into()])
    );
    assert_eq!(
        with("[nvidia.com/gpu=0, nvidia.com/gpu=1]").unwrap(),
        Gpus::Cdi(vec!["nvidia.com/gpu=0".into(), "nvidia.com/gpu=1".into()])
    );
}

#[test]
fn sizes() {
    assert_eq!(parse_size("512m"), Some(512 << 20));
    assert_eq!(parse_size("16G"), Some(16 << 30));
    assert_eq!(parse_size("1.5g"), Some(3 << 29));
    assert_eq!(parse_size("1024"), Some(1024));
    assert_eq!(parse_size("lots"), None);
    assert_eq!(parse_size("-1g"), None);
}

/// Each malformed spec: the error names file:line:col and the line it shows
/// is the offending one.
#[test]
fn malformed_specs() {
    let cases: Vec<(&str, String)> = vec![
        (
            "unknown key",
            GOOD.replace(
                "    torch: 2.6.0\n",
                "    torch: 2.6.0\n    tourch: 2.6.0\n",
            ),
        ),
        (
            "unknown top-level key",
            GOOD.replace("version: 1\n", "version: 1\nenvironmnets: {}\n"),
        ),
        (
            "wrong type",
            GOOD.replace("      port: 8889", "      port: [8889]"),
        ),
        (
            "port out of range",
            GOOD.replace("      port: 8889", "      port: 70000"),
        ),
        (
            "port zero",
            GOOD.replace("      port: 2223", "      port: 0"),
        ),
        (
            "bad port mapping",
            GOOD.replace(
                "    cuda: \"12.4\"\n",
                "    cuda: \"12.4\"\n    ports: [\"6006\"]\n",
            ),
        ),
        (
            "duplicate host port",
            GOOD.replace("      port: 2223", "      port: 8889"),
        ),
        ("duplicate env", GOOD.replace("  b:\n", "  a:\n")),
        (
            "unknown torch version",
            GOOD.replace("torch: 2.11.0", "torch: 2.8.0"),
        ),
        ("missing torch", GOOD.replace("    torch: 2.11.0\n", "")),
        (
            "torchaudio of another torch",
            GOOD.replace(
                "    torchvision: 0.21.0\n",
                "    torchvision: 0.21.0\n    torchaudio: 2.5.1\n",
            ),
        ),
        (
            "torchaudio not a version",
            GOOD.replace(
                "    torchvision: 0.26.0\n",
                "    torchvision: 0.26.0\n    torchaudio: latest\n",
            ),
        ),
        ("bad cuda", GOOD.replace("cuda: \"12.4\"", "cuda: twelve")),
        (
            "missing volume source",
            GOOD.replace(
                "      - source: cache\n        target: /cache",
                "      - target: /cache",
            ),
        ),
        (
            "relative volume target",
            GOOD.replace("target: /cache", "target: cache"),
        ),
        (
            "volume target /",
            GOOD.replace("target: /cache", "target: /"),
        ),
        (
            "volume target with ..",
            GOOD.replace("target: /cache", "target: /data/../etc"),
        ),
        (
            "volume target /workspace",
            GOOD.replace("target: /cache", "target: /workspace/"),
        ),
        (
            "volume target in the venv",
            GOOD.replace("target: /cache", "target: /opt/venv/lib"),
        ),
        (
            "volume target above the home",
            GOOD.replace("target: /cache", "target: /home"),
        ),
        (
            "volume target /usr",
            GOOD.replace("target: /data,", "target: /usr,"),
        ),
        (
            "duplicate volume target",
            GOOD.replace("target: /cache", "target: /data/"),
        ),
        (
            "inherited volume target",
            GOOD.replace(
                "  jupyter:\n    port: 8888\n",
                "  volumes:\n    - { source: cache, target: /run/torchenv }\n",
            ),
        ),
        (
            "workspace is a file",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    workspace: /dev/null\n",
            ),
        ),
        (
            "bad volume source",
            GOOD.replace("source: cache", "source: \"my cache\""),
        ),
        (
            "bad gpus",
            GOOD.replace(
                "    cuda: \"12.4\"\n",
                "    cuda: \"12.4\"\n    gpus: many\n",
            ),
        ),
        (
            "mixed gpus",
            GOOD.replace(
                "    cuda: \"12.4\"\n",
                "    cuda: \"12.4\"\n    gpus: [\"0\", nvidia.com/gpu=1]\n",
            ),
        ),
        (
            "python mismatch",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    python: \"3.12\"\n",
            ),
        ),
        (
            "unpinned base image",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    base: { image: debian:bookworm }\n    python: \"3.11\"\n",
            ),
        ),
        (
            "unknown suite",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    base: { debian: sid }\n",
            ),
        ),
        (
            "bad host ip",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    host_ip: localhost:80\n",
            ),
        ),
        (
            "exposed host ip",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    host_ip: 0.0.0.0\n",
            ),
        ),
        (
            "exposed ipv6 host ip",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    host_ip: \"::\"\n    expose: false\n",
            ),
        ),
        (
            "inherited LAN host ip",
            GOOD.replace(
                "defaults:\n",
                "defaults:\n  host_ip: 192.168.1.20\n",
            ),
        ),
        (
            "zero pids limit",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    security:\n      pids_limit: 0\n",
            ),
        ),
        (
            "negative pids limit",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    security: { pids_limit: -1 }\n",
            ),
        ),
        (
            "cap_add ALL",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    security:\n      cap_add: [ALL]\n",
            ),
        ),
        (
            "cap_add SYS_MODULE",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    security:\n      cap_add: [SYS_MODULE]\n",
            ),
        ),
        (
            "cap_add SYS_ADMIN",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    security:\n      cap_add:\n        - SYS_PTRACE\n        - CAP_SYS_ADMIN\n",
            ),
        ),
        (
            "unknown capability",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    security:\n      cap_add:\n        - SYS_PTRAC\n",
            ),
        ),
        (
            "duplicate capability",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    security:\n      cap_add:\n        - SYS_PTRACE\n        - cap_sys_ptrace\n",
            ),
        ),
        (
            "inherited bad capability",
            GOOD.replace(
                "defaults:\n",
                "defaults:\n  security:\n    cap_add: [SYS_ADMIN]\n",
            ),
        ),
        (
            "unknown security key",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    security:\n      pid_limit: 100\n",
            ),
        ),
        (
            "unknown ssh key",
            GOOD.replace("      port: 2223", "      port: 2223\n      forward: true"),
        ),
        (
            "bad shm size",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    shm_size: lots\n",
            ),
        ),
        (
            "bad env var",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    env: { 1BAD: x }\n",
            ),
        ),
        (
            "reserved env var",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    env:\n      OK: yes\n      TORCHENV_UID: \"0\"\n",
            ),
        ),
        (
            "env var for the dynamic loader",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    env: { LD_LIBRARY_PATH: /workspace/lib }\n",
            ),
        ),
        (
            "env var for shell start-up",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    env: { BASH_ENV: /workspace/x.sh }\n",
            ),
        ),
        (
            "env var granting GPUs",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    env: { NVIDIA_VISIBLE_DEVICES: all }\n",
            ),
        ),
        (
            "env PATH",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    env: { PATH: /workspace/bin }\n",
            ),
        ),
        (
            "volume target below /etc",
            GOOD.replace("target: /cache", "target: /etc/profile.d"),
        ),
        (
            "env value with a newline",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    env: { A: \"x\\ny\" }\n",
            ),
        ),
        (
            "env value with a carriage return",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    env: { A: \"x\\ry\" }\n",
            ),
        ),
        (
            "env value with NUL",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    env: { A: \"x\\0y\" }\n",
            ),
        ),
        (
            "inherited bad env var",
            GOOD.replace("  jupyter:\n    port: 8888\n", "  env:\n    TORCHENV_X: y\n"),
        ),
        (
            "pip option injection",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    pip: [\"--index-url=http://x\"]\n",
            ),
        ),
        (
            "pip editable option",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    pip: [jupyterlab, \"-e .\"]\n",
            ),
        ),
        (
            "pip entry with spaces",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    pip:\n      - numpy >=1.26\n",
            ),
        ),
        (
            "pip entry with a newline",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    pip: [\"numpy\\n--extra-index-url=http://x\"]\n",
            ),
        ),
        (
            "apt option",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    apt: [\"-oAPT::Get::AllowUnauthenticated=1\"]\n",
            ),
        ),
        (
            "bad apt package",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    apt: [\"Vim!\"]\n",
            ),
        ),
        (
            "unknown model",
            GOOD.replace(
                "    torch: 2.11.0\n",
                "    torch: 2.11.0\n    harness: { models: [resnet50] }\n",
            ),
        ),
        ("unknown default", GOOD.replace("default: a", "default: c")),
        ("bad env name", GOOD.replace("  b:\n", "  B c:\n")),
        (
            "short jupyter token",
            GOOD.replace("      port: 8889", "      port: 8889\n      token: abc"),
        ),
        ("wrong version", GOOD.replace("version: 1", "version: 2")),
        (
            "yaml syntax",
            GOOD.replace("    torch: 2.6.0\n", "    torch: [2.6.0\n"),
        ),
    ];
    let mut report = String::new();
    for (name, text) in &cases {
        assert_ne!(text, GOOD, "case `{name}` did not change the spec");
        report.push_str(&format!("## {name}\n{}\n", error(text)));
    }
    insta::assert_snapshot!(report);
}

#[test]
fn gpus_on_the_command_line_use_the_spec_words() {
    let p = |s: &str| s.parse::<Gpus>();
    assert_eq!(p("all"), Ok(Gpus::All));
    assert_eq!(p("none"), Ok(Gpus::None));
    assert_eq!(p("0"), Ok(Gpus::None));
    assert_eq!(p("auto"), Ok(Gpus::Auto));
    assert_eq!(p("2"), Ok(Gpus::Count(2)));
    assert_eq!(p("0,1"), Ok(Gpus::Ids(vec!["0".into(), "1".into()])));
    assert_eq!(
        p("GPU-3f2a,GPU-77"),
        Ok(Gpus::Ids(vec!["GPU-3f2a".into(), "GPU-77".into()]))
    );
    assert_eq!(
        p("nvidia.com/gpu=0"),
        Ok(Gpus::Cdi(vec!["nvidia.com/gpu=0".into()]))
    );
    assert!(p("0,nvidia.com/gpu=1").unwrap_err().contains("mixes"));
    assert!(p("0,,1").unwrap_err().contains("invalid GPU selection"));
    // Docker's own form, also for a single device (a bare `1` is a count).
    assert_eq!(p("device=1"), Ok(Gpus::Ids(vec!["1".into()])));
    assert_eq!(p("device=0,2"), Ok(Gpus::Ids(vec!["0".into(), "2".into()])));
    assert!(p("gpu=0").unwrap_err().contains("VENDOR/CLASS=NAME"));
}

#[test]
fn registry_is_checked_where_it_is_written() {
    let with = |r: &str| GOOD.replacen("default: a\n", &format!("default: a\nregistry: {r}\n"), 1);
    assert_eq!(parse(GOOD).unwrap().registry, None);
    assert_eq!(
        parse(&with("HOST:5000/ml/")).unwrap().registry.as_deref(),
        Some("HOST:5000/ml")
    );
    for (bad, why) in [
        (
            "http://HOST:5000",
            "has a scheme: write HOST[:PORT][/PREFIX], e.g. `HOST:5000`",
        ),
        ("HOST:99999/ml", "has port `99999`, not one of 1-65535"),
        ("HOST:5000/ML", "has the prefix `ML`, not a repository path"),
        ("HOST:5000/ml:tag", "has the prefix `ml:tag`"),
        ("bad_host:5000", "names `bad_host:5000`, not a host name"),
    ] {
        let e = error(&with(bad));
        assert!(e.starts_with("/repo/environments.yaml:3:"), "{e}");
        assert!(e.contains(why), "{bad}: {e}");
        assert!(e.ends_with(&format!("| registry: {bad}")), "{e}");
    }
}

#[test]
fn registry_locations() {
    assert_eq!(
        registry_location(" 127.0.0.1:5000 ").unwrap(),
        "127.0.0.1:5000"
    );
    assert_eq!(registry_location("reg.lan/a/b-c").unwrap(), "reg.lan/a/b-c");
    assert!(registry_location("").unwrap_err().contains("empty"));
    assert!(registry_location("host:0").is_err());
    assert!(registry_location("/ml").is_err());
    assert!(registry_location("host//ml").is_err());
}
