//! Version facts that no package metadata states: which tch release links
//! which libtorch, and which Python each Debian suite ships.
//!
//! CUDA and cuDNN versions are deliberately absent: they are read from the
//! resolved wheels at lock time (see `lock`), never kept by hand.
//!
//! May use: nothing else of the crate.

/// torch version → tch crate version built against exactly that libtorch
/// (tch's changelog; each has `harness/locks/torch-<torch>.Cargo.lock`
/// pinning it, which a test checks). To add one: a row here, the lockfile
/// (`cd harness && cargo update -p tch --precise <tch>`, then copy
/// `Cargo.lock` there), the range in `harness/Cargo.toml`, then an
/// environment in environments.yaml and `cargo xtask lock`.
pub const TORCH_TCH: &[(&str, &str)] = &[
    ("2.6.0", "0.19.0"),
    ("2.7.0", "0.20.0"),
    ("2.9.0", "0.22.0"),
    ("2.10.0", "0.23.0"),
    ("2.11.0", "0.24.0"),
];

/// torch releases tch skipped: why no harness can link them.
pub const TORCH_WITHOUT_TCH: &[(&str, &str)] = &[
    (
        "2.8.0",
        "tch 0.21.0, its release for PyTorch 2.8, was never published on crates.io",
    ),
    (
        "2.12.0",
        "tch 0.25.0, its release for PyTorch 2.12, was never published on crates.io",
    ),
];

/// Debian suite → the `python3` it ships (MAJOR.MINOR).
pub const DEBIAN_SUITES: &[(&str, &str)] = &[
    ("bullseye", "3.9"),
    ("bookworm", "3.11"),
    ("trixie", "3.13"),
];

/// Debian suite → its glibc (MAJOR, MINOR): the newest manylinux tag its
/// Python can load (PyPI's torch wheels need manylinux_2_28).
pub const DEBIAN_GLIBC: &[(&str, (u32, u32))] = &[
    ("bullseye", (2, 31)),
    ("bookworm", (2, 36)),
    ("trixie", (2, 41)),
];

/// Debian suites whose python writes byte code that differs from run to
/// run (python 3.9's marshal flags objects by their reference count), so
/// two bootstraps of the same packages differ in their `.pyc` files:
/// their bases ship without the system python's byte code (python compiles
/// a module when it imports it).
pub const DEBIAN_UNSTABLE_BYTECODE: &[&str] = &["bullseye"];

/// Whether a base of `suite` leaves its system python's byte code out
/// ([`DEBIAN_UNSTABLE_BYTECODE`]).
pub fn debian_drops_bytecode(suite: &str) -> bool {
    DEBIAN_UNSTABLE_BYTECODE.contains(&suite)
}

/// The tch version that links `torch`, if any.
pub fn tch_for_torch(torch: &str) -> Option<&'static str> {
    TORCH_TCH
        .iter()
        .find(|(t, _)| *t == torch)
        .map(|(_, tch)| *tch)
}

/// Why no tch release links `torch`, when torchenv knows.
pub fn no_tch_reason(torch: &str) -> Option<&'static str> {
    TORCH_WITHOUT_TCH
        .iter()
        .find(|(t, _)| *t == torch)
        .map(|(_, why)| *why)
}

pub fn supported_torch() -> Vec<&'static str> {
    TORCH_TCH.iter().map(|(t, _)| *t).collect()
}

pub fn debian_python(suite: &str) -> Option<&'static str> {
    DEBIAN_SUITES
        .iter()
        .find(|(s, _)| *s == suite)
        .map(|(_, p)| *p)
}

/// glibc of a Debian suite; images from a pinned `base: image:` are assumed
/// to be at least bookworm's.
pub fn debian_glibc(suite: Option<&str>) -> (u32, u32) {
    suite
        .and_then(|s| DEBIAN_GLIBC.iter().find(|(d, _)| *d == s))
        .map_or((2, 36), |(_, g)| *g)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each torch version's harness lockfile pins exactly its tch, and
    /// `harness/Cargo.toml` admits every one of them.
    #[test]
    fn every_torch_has_a_lockfile_pinning_its_tch() {
        let harness = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../harness");
        for (torch, tch) in TORCH_TCH {
            let path = harness.join(format!("locks/torch-{torch}.Cargo.lock"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let lock: toml::Value = toml::from_str(&text).unwrap();
            let version = |name: &str| {
                lock["package"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"].as_str() == Some(name))
                    .and_then(|p| p["version"].as_str())
                    .map(str::to_string)
            };
            assert_eq!(version("tch").as_deref(), Some(*tch), "{}", path.display());
            assert_eq!(
                version("torch-sys").as_deref(),
                Some(*tch),
                "{}",
                path.display()
            );
        }
        let manifest = std::fs::read_to_string(harness.join("Cargo.toml")).unwrap();
        let range = manifest
            .lines()
            .find_map(|l| l.strip_prefix("tch = "))
            .unwrap()
            .trim_matches('"');
        let upper = range.split("<").nth(1).unwrap().trim();
        for (_, tch) in TORCH_TCH {
            let minor = |v: &str| v.split('.').nth(1).unwrap().parse::<u32>().unwrap();
            assert!(minor(tch) < minor(upper), "tch {tch} outside `{range}`");
        }
        for (torch, _) in TORCH_WITHOUT_TCH {
            assert!(tch_for_torch(torch).is_none());
        }
    }

    #[test]
    fn suites_know_their_python_and_glibc() {
        assert_eq!(debian_python("bullseye"), Some("3.9"));
        assert_eq!(debian_glibc(Some("bullseye")), (2, 31));
        for (suite, _) in DEBIAN_SUITES {
            assert!(DEBIAN_GLIBC.iter().any(|(s, _)| s == suite), "{suite}");
        }
    }
}
