//! Supported models, their evaluation presets and strict weight loading.
//!
//! May use: `checkpoint`, `preprocess`.

pub mod efficientnet;
pub mod lite;

use crate::checkpoint::StateDict;
use crate::preprocess::{Interpolation, Preset};
use std::collections::{BTreeSet, HashMap};
use tch::nn::{self, ModuleT};

/// Errors while building a model or loading its weights.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("weights do not fit {model}: missing key {key}{more}")]
    MissingKey {
        model: &'static str,
        key: String,
        more: String,
    },
    #[error("weights do not fit {model}: unexpected key {key}{more}")]
    UnexpectedKey {
        model: &'static str,
        key: String,
        more: String,
    },
    #[error(
        "weights do not fit {model}: key {key} has shape {found:?}, model expects {expected:?}"
    )]
    ShapeMismatch {
        model: &'static str,
        key: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    #[error("copying weights into {model}: {source}")]
    Torch {
        model: &'static str,
        source: tch::TchError,
    },
}

/// Model architectures the harness can evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum ModelKind {
    EfficientnetB0,
    EfficientnetB1,
    EfficientnetB2,
    EfficientnetB3,
    EfficientnetB4,
    EfficientnetB5,
    EfficientnetB6,
    EfficientnetB7,
    EfficientnetLite0,
}

/// ImageNet mean/std used by torchvision's weights.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl ModelKind {
    /// Name as on the command line (`efficientnet_b0`, …).
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::EfficientnetB0 => "efficientnet_b0",
            ModelKind::EfficientnetB1 => "efficientnet_b1",
            ModelKind::EfficientnetB2 => "efficientnet_b2",
            ModelKind::EfficientnetB3 => "efficientnet_b3",
            ModelKind::EfficientnetB4 => "efficientnet_b4",
            ModelKind::EfficientnetB5 => "efficientnet_b5",
            ModelKind::EfficientnetB6 => "efficientnet_b6",
            ModelKind::EfficientnetB7 => "efficientnet_b7",
            ModelKind::EfficientnetLite0 => "efficientnet_lite0",
        }
    }

    fn b_variant(self) -> Option<usize> {
        Some(match self {
            ModelKind::EfficientnetB0 => 0,
            ModelKind::EfficientnetB1 => 1,
            ModelKind::EfficientnetB2 => 2,
            ModelKind::EfficientnetB3 => 3,
            ModelKind::EfficientnetB4 => 4,
            ModelKind::EfficientnetB5 => 5,
            ModelKind::EfficientnetB6 => 6,
            ModelKind::EfficientnetB7 => 7,
            ModelKind::EfficientnetLite0 => return None,
        })
    }

    /// Evaluation preprocessing.
    ///
    /// B0..B7: torchvision's `EfficientNet_BX_Weights.DEFAULT.transforms()`
    /// (resize shorter side, center crop, ImageNet mean/std; bicubic except
    /// B1, whose default IMAGENET1K_V2 weights use bilinear 255/240).
    ///
    /// Lite0: the TensorFlow reference eval (`efficientnet/lite`): center
    /// crop of `224 / (224 + 32)` of the shorter side, bicubic, and
    /// `MEAN_RGB = 127`, `STDDEV_RGB = 128` on 0..255 pixels (inputs in
    /// roughly [-1, 1]). Resize-256-then-crop-224 is the PIL equivalent of
    /// that crop fraction.
    pub fn preset(self) -> Preset {
        let (resize, crop, interpolation) = match self {
            ModelKind::EfficientnetB0 => (256, 224, Interpolation::Bicubic),
            ModelKind::EfficientnetB1 => (255, 240, Interpolation::Bilinear),
            ModelKind::EfficientnetB2 => (288, 288, Interpolation::Bicubic),
            ModelKind::EfficientnetB3 => (320, 300, Interpolation::Bicubic),
            ModelKind::EfficientnetB4 => (384, 380, Interpolation::Bicubic),
            ModelKind::EfficientnetB5 => (456, 456, Interpolation::Bicubic),
            ModelKind::EfficientnetB6 => (528, 528, Interpolation::Bicubic),
            ModelKind::EfficientnetB7 => (600, 600, Interpolation::Bicubic),
            ModelKind::EfficientnetLite0 => {
                return Preset {
                    resize: 256,
                    crop: 224,
                    interpolation: Interpolation::Bicubic,
                    mean: [127.0 / 255.0; 3],
                    std: [128.0 / 255.0; 3],
                    antialias: true,
                }
            }
        };
        Preset {
            resize,
            crop,
            interpolation,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            antialias: true,
        }
    }

    /// Builds the (randomly initialised) network on `vs`.
    pub fn build(self, vs: &nn::VarStore) -> Box<dyn ModuleT + Send> {
        let root = vs.root();
        match self.b_variant() {
            Some(v) => Box::new(efficientnet::EfficientNet::new(&root, v, 1000)),
            None => Box::new(lite::Lite0::new(&root, 1000)),
        }
    }

    /// Copies `weights` into `vs`: every variable must be present with the
    /// same shape and no extra tensors may remain (BatchNorm's
    /// `num_batches_tracked` is ignored).
    pub fn load_weights(self, vs: &nn::VarStore, weights: StateDict) -> Result<(), ModelError> {
        let model = self.name();
        let mut src: HashMap<String, tch::Tensor> = weights.into_map();
        src.retain(|k, _| !k.ends_with("num_batches_tracked"));
        let vars = vs.variables();
        let mut missing: BTreeSet<&String> =
            vars.keys().filter(|k| !src.contains_key(*k)).collect();
        if let Some(first) = missing.pop_first() {
            return Err(ModelError::MissingKey {
                model,
                key: first.clone(),
                more: and_more(missing.len()),
            });
        }
        let mut unexpected: BTreeSet<&String> =
            src.keys().filter(|k| !vars.contains_key(*k)).collect();
        if let Some(first) = unexpected.pop_first() {
            return Err(ModelError::UnexpectedKey {
                model,
                key: first.clone(),
                more: and_more(unexpected.len()),
            });
        }
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        tch::no_grad(|| {
            for name in names {
                let mut var = vars[name].shallow_clone();
                let value = &src[name];
                if var.size() != value.size() {
                    return Err(ModelError::ShapeMismatch {
                        model,
                        key: name.clone(),
                        expected: var.size(),
                        found: value.size(),
                    });
                }
                var.f_copy_(value)
                    .map_err(|source| ModelError::Torch { model, source })?;
            }
            Ok(())
        })
    }
}

fn and_more(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" (and {n} more)")
    }
}
