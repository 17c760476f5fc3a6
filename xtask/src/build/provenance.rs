//! Whether an image found under an environment's tag is the one spec +
//! lock would build, before anything uses it: on a shared engine anyone
//! may tag other content as `torchenv/<env>:<tag>`.
//!
//! Two things are checked, on the one `inspect` that finds the image:
//! every label the build writes ([`super::image::Plan::labels`]: inputs
//! hash, spec, lock hash, torch/CUDA/cuDNN versions, harness, base and
//! stage image) has the value the current spec + lock give; and the base's
//! layer chain is a prefix of the image's (`RootFS.Layers`). For a locked
//! Debian base that chain is known without the engine: the one layer whose
//! diff id is the lock's `rootfs_sha256` (what loading
//! `torchenv/base:<key>` gives); for a pinned `REF@sha256:…` base it is that
//! content-addressed image's own chain. Labels alone can be copied; the
//! layer chain cannot be had without the locked root file system.
//!
//! A mismatch is refused, never rebuilt over: [`BuildError::ImageMismatch`]
//! names the label or field that differs and how to rebuild.
//!
//! May use: `build`, `docker`.

use std::collections::{BTreeMap, HashMap};

use bollard::models::ImageInspect;

use super::BuildError;
use crate::docker::Docker;

/// The layers the base contributes to an environment image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseLayers {
    /// Known from the lock: a locked Debian base's one layer,
    /// `sha256:<rootfs_sha256>`.
    Known(Vec<String>),
    /// A pinned base image (`REF@sha256:…`): its own layers, read from the
    /// engine.
    Image(String),
}

/// What differs between an image and what it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The label (`dev.torchenv.torch`) or field (`RootFS.Layers`).
    pub field: String,
    pub expected: String,
    pub found: String,
}

/// The first difference of an image with `labels` and `layers` from one
/// with `expected` labels over `base` layers: a label missing or with
/// another value (in label order), else the base layers not a prefix of
/// `layers`. `None` when it matches.
pub fn difference(
    expected: &BTreeMap<String, String>,
    base: &[String],
    labels: &HashMap<String, String>,
    layers: &[String],
) -> Option<Difference> {
    for (key, want) in expected {
        let got = labels.get(key);
        if got != Some(want) {
            return Some(Difference {
                field: format!("label {key}"),
                expected: want.clone(),
                found: got.cloned().unwrap_or_else(|| "(absent)".into()),
            });
        }
    }
    if base.is_empty() || !layers.starts_with(base) {
        let n = base.len().min(layers.len());
        return Some(Difference {
            field: "RootFS.Layers (the base's layers must come first)".into(),
            expected: base.join(", "),
            found: if layers.is_empty() {
                "(no layers)".into()
            } else {
                layers[..n.max(1)].join(", ")
            },
        });
    }
    None
}

/// Checks `image` (found under `tag`) against `expected` labels over the
/// `base` layers ([`difference`]); a pinned base must be in the engine
/// ([`BuildError::BaseImageMissing`] otherwise: its chain cannot be known).
pub async fn verify(
    docker: &Docker,
    tag: &str,
    image: &ImageInspect,
    expected: &BTreeMap<String, String>,
    base: &BaseLayers,
) -> Result<(), BuildError> {
    let base_layers = match base {
        BaseLayers::Known(layers) => layers.clone(),
        BaseLayers::Image(reference) => match docker.image_inspect(reference).await? {
            Some(b) => layers_of(&b),
            None => {
                return Err(BuildError::BaseImageMissing {
                    reference: reference.clone(),
                })
            }
        },
    };
    let labels = image
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    match difference(expected, &base_layers, &labels, &layers_of(image)) {
        None => Ok(()),
        Some(d) => Err(BuildError::ImageMismatch {
            image: tag.to_string(),
            env: expected
                .get(crate::docker::LABEL_ENV)
                .cloned()
                .unwrap_or_default(),
            field: d.field,
            expected: short(&d.expected),
            found: short(&d.found),
        }),
    }
}

fn layers_of(image: &ImageInspect) -> Vec<String> {
    image
        .root_fs
        .as_ref()
        .and_then(|r| r.layers.clone())
        .unwrap_or_default()
}

/// At most 200 characters of a value (the spec label is a JSON document).
fn short(s: &str) -> String {
    if s.chars().count() <= 200 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(199).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;

    fn expected() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("dev.torchenv.inputs".to_string(), "abc".to_string()),
            ("dev.torchenv.torch".to_string(), "2.6.0".to_string()),
        ])
    }

    fn labels(torch: &str) -> HashMap<String, String> {
        HashMap::from([
            ("dev.torchenv.inputs".to_string(), "abc".to_string()),
            ("dev.torchenv.torch".to_string(), torch.to_string()),
            ("maintainer".to_string(), "anyone".to_string()),
        ])
    }

    fn layers(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|i| format!("sha256:{i}")).collect()
    }

    #[test]
    fn a_matching_image_has_no_difference() {
        let base = layers(&["b0"]);
        let image = layers(&["b0", "l1", "l2"]);
        assert_eq!(
            difference(&expected(), &base, &labels("2.6.0"), &image),
            None
        );
    }

    #[test]
    fn the_first_differing_label_is_named() {
        let d = difference(
            &expected(),
            &layers(&["b0"]),
            &labels("2.5.1"),
            &layers(&["b0"]),
        )
        .unwrap();
        assert_eq!(d.field, "label dev.torchenv.torch");
        assert_eq!((d.expected.as_str(), d.found.as_str()), ("2.6.0", "2.5.1"));
        let mut missing = labels("2.6.0");
        missing.remove("dev.torchenv.inputs");
        let d = difference(&expected(), &layers(&["b0"]), &missing, &layers(&["b0"])).unwrap();
        assert_eq!(d.field, "label dev.torchenv.inputs");
        assert_eq!(d.found, "(absent)");
    }

    #[test]
    fn copied_labels_over_another_base_are_refused() {
        let d = difference(
            &expected(),
            &layers(&["b0"]),
            &labels("2.6.0"),
            &layers(&["other", "b0"]),
        )
        .unwrap();
        assert!(d.field.starts_with("RootFS.Layers"), "{d:?}");
        assert_eq!(d.expected, "sha256:b0");
        assert_eq!(d.found, "sha256:other");
        assert!(difference(&expected(), &layers(&["b0"]), &labels("2.6.0"), &[]).is_some());
        // No known base chain never passes.
        assert!(difference(&expected(), &[], &labels("2.6.0"), &layers(&["b0"])).is_some());
    }

    #[test]
    fn long_values_are_cut() {
        assert_eq!(short("x").len(), 1);
        assert_eq!(short(&"y".repeat(500)).chars().count(), 200);
    }
}
