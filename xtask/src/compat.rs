//! Version facts that no package metadata states: which tch release links
//! which libtorch, and which Python each Debian suite ships.
//!
//! CUDA and cuDNN versions are deliberately absent: they are read from the
//! resolved wheels at lock time (see `lock`), never kept by hand.
//!
//! May use: nothing else of the crate.

/// torch version → tch crate version built against exactly that libtorch.
pub const TORCH_TCH: &[(&str, &str)] = &[
    ("2.6.0", "0.19.0"),
    ("2.7.0", "0.20.0"),
    ("2.9.0", "0.22.0"),
    ("2.10.0", "0.23.0"),
    ("2.11.0", "0.24.0"),
];

/// Debian suite → the `python3` it ships (MAJOR.MINOR).
pub const DEBIAN_SUITES: &[(&str, &str)] = &[("bookworm", "3.11"), ("trixie", "3.13")];

/// Debian suite → its glibc (MAJOR, MINOR): the newest manylinux tag its
/// Python can load.
pub const DEBIAN_GLIBC: &[(&str, (u32, u32))] = &[("bookworm", (2, 36)), ("trixie", (2, 41))];

/// The tch version that links `torch`, if any.
pub fn tch_for_torch(torch: &str) -> Option<&'static str> {
    TORCH_TCH
        .iter()
        .find(|(t, _)| *t == torch)
        .map(|(_, tch)| *tch)
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
