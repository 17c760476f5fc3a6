//! torchvision EfficientNet-B0..B7 (`torchvision.models.efficientnet_bX`),
//! with torchvision's parameter names (`features.0.0.weight`, …,
//! `classifier.1.weight`) so its state dicts load unchanged.
//!
//! Architecture as in torchvision's `efficientnet.py`: SiLU activations,
//! squeeze-excitation with `max(1, in_channels / 4)` squeeze channels,
//! BatchNorm eps 1e-5 (torchvision's V1 models use the `nn.BatchNorm2d`
//! default), symmetric `(k - 1) / 2` padding, stochastic depth disabled in
//! eval mode (identity), dropout before the classifier (identity in eval).
//!
//! May use: nothing else of the crate.

use std::sync::OnceLock;
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// Width and depth multipliers of B0..B7.
const SCALES: [(f64, f64); 8] = [
    (1.0, 1.0),
    (1.0, 1.1),
    (1.1, 1.2),
    (1.2, 1.4),
    (1.4, 1.8),
    (1.6, 2.2),
    (1.8, 2.6),
    (2.0, 3.1),
];

/// B0 stages: (expand ratio, kernel, stride, in channels, out channels, layers).
const STAGES: [(i64, i64, i64, i64, i64, i64); 7] = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
];

const BN_EPS: f64 = 1e-5;

/// torchvision's `_make_divisible(v, 8)`.
fn make_divisible(v: f64) -> i64 {
    let divisor = 8.0;
    let new_v = ((v + divisor / 2.0) / divisor).floor() * divisor;
    let new_v = new_v.max(divisor);
    let new_v = if new_v < 0.9 * v {
        new_v + divisor
    } else {
        new_v
    };
    new_v as i64
}

/// Conv (no bias) + BatchNorm (+ optional SiLU): torchvision's
/// `Conv2dNormActivation`, parameters at `p/0` and `p/1`.
#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    act: bool,
    /// (stride, padding, groups) of `conv`.
    geom: (i64, i64, i64),
    /// Eval mode: BatchNorm folded into the conv (weight, bias), computed
    /// on the first eval forward, i.e. after weights are loaded and moved.
    folded: OnceLock<(Tensor, Tensor)>,
}

/// `t` with PyTorch's channels_last strides if `like` has them.
fn same_layout(t: Tensor, like: &Tensor) -> Tensor {
    let s = like.size();
    if s.len() == 4
        && !like.is_contiguous()
        && like.stride() == [s[1] * s[2] * s[3], 1, s[3] * s[1], s[1]]
    {
        t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
    } else {
        t
    }
}

impl ConvBn {
    /// `conv(x, w * s) + (beta - mean * s)` with `s = gamma / sqrt(var + eps)`,
    /// computed in float64 and rounded once to the weights' dtype.
    fn fold(&self) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let w = &self.conv.ws;
            let kind = w.kind();
            let d = Kind::Double;
            let var = self.bn.running_var.to_kind(d);
            let mean = self.bn.running_mean.to_kind(d);
            let gamma = self
                .bn
                .ws
                .as_ref()
                .map_or_else(|| var.ones_like(), |g| g.to_kind(d));
            let beta = self
                .bn
                .bs
                .as_ref()
                .map_or_else(|| var.zeros_like(), |b| b.to_kind(d));
            let scale = gamma / (var + BN_EPS).sqrt();
            let bias = (beta - &mean * &scale).to_kind(kind);
            let fw = (w.to_kind(d) * scale.view([-1, 1, 1, 1])).to_kind(kind);
            (same_layout(fw, w), bias)
        })
    }
}

impl ConvBn {
    fn new(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, groups: i64, act: bool) -> Self {
        let cfg = nn::ConvConfig {
            stride,
            padding: (k - 1) / 2,
            groups,
            bias: false,
            ..Default::default()
        };
        let bn_cfg = nn::BatchNormConfig {
            eps: BN_EPS,
            ..Default::default()
        };
        ConvBn {
            conv: nn::conv2d(&p / 0, cin, cout, k, cfg),
            bn: nn::batch_norm2d(&p / 1, cout, bn_cfg),
            act,
            geom: (stride, (k - 1) / 2, groups),
            folded: OnceLock::new(),
        }
    }
}

impl ModuleT for ConvBn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = if train {
            xs.apply(&self.conv).apply_t(&self.bn, train)
        } else {
            let (w, b) = self.folded.get_or_init(|| self.fold());
            let (stride, padding, groups) = self.geom;
            xs.conv2d(w, Some(b), [stride; 2], [padding; 2], [1, 1], groups)
        };
        if self.act {
            ys.silu()
        } else {
            ys
        }
    }
}

#[derive(Debug)]
struct MbConv {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    se_fc1: nn::Conv2D,
    se_fc2: nn::Conv2D,
    project: ConvBn,
    residual: bool,
}

impl MbConv {
    fn new(p: nn::Path, expand_ratio: i64, k: i64, stride: i64, cin: i64, cout: i64) -> Self {
        let b = &p / "block";
        let exp = make_divisible((cin * expand_ratio) as f64);
        let mut idx = 0;
        let expand = (exp != cin).then(|| {
            idx += 1;
            ConvBn::new(&b / 0, cin, exp, 1, 1, 1, true)
        });
        let depthwise = ConvBn::new(&b / idx, exp, exp, k, stride, exp, true);
        let se = &b / (idx + 1);
        let squeeze = (cin / 4).max(1);
        let conv1 = nn::ConvConfig::default();
        let se_fc1 = nn::conv2d(&se / "fc1", exp, squeeze, 1, conv1);
        let se_fc2 = nn::conv2d(&se / "fc2", squeeze, exp, 1, conv1);
        let project = ConvBn::new(&b / (idx + 2), exp, cout, 1, 1, 1, false);
        MbConv {
            expand,
            depthwise,
            se_fc1,
            se_fc2,
            project,
            residual: stride == 1 && cin == cout,
        }
    }
}

impl ModuleT for MbConv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = match &self.expand {
            Some(e) => e.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        ys = self.depthwise.forward_t(&ys, train);
        let scale = ys
            .adaptive_avg_pool2d([1, 1])
            .apply(&self.se_fc1)
            .silu()
            .apply(&self.se_fc2)
            .sigmoid();
        ys = self.project.forward_t(&(ys * scale), train);
        if self.residual {
            ys + xs
        } else {
            ys
        }
    }
}

/// An EfficientNet-B`variant` built on `p` (the VarStore root).
#[derive(Debug)]
pub struct EfficientNet {
    stem: ConvBn,
    blocks: Vec<MbConv>,
    head: ConvBn,
    classifier: nn::Linear,
}

impl EfficientNet {
    /// `variant` in 0..=7.
    pub fn new(p: &nn::Path, variant: usize, num_classes: i64) -> Self {
        let (width, depth) = SCALES[variant];
        let features = p / "features";
        let adjust = |c: i64| make_divisible(c as f64 * width);
        let stem_out = adjust(STAGES[0].3);
        let stem = ConvBn::new(&features / 0, 3, stem_out, 3, 2, 1, true);
        let mut blocks = Vec::new();
        let mut last_out = stem_out;
        for (stage_idx, &(e, k, s, cin, cout, layers)) in STAGES.iter().enumerate() {
            let stage = &features / (stage_idx + 1);
            let layers = (layers as f64 * depth).ceil() as i64;
            let (cin, cout) = (adjust(cin), adjust(cout));
            for j in 0..layers {
                let (bin, bstride) = if j == 0 { (cin, s) } else { (cout, 1) };
                blocks.push(MbConv::new(&stage / j, e, k, bstride, bin, cout));
            }
            last_out = cout;
        }
        let head_out = 4 * last_out;
        let head = ConvBn::new(
            &features / (STAGES.len() + 1),
            last_out,
            head_out,
            1,
            1,
            1,
            true,
        );
        let classifier = nn::linear(
            p / "classifier" / 1,
            head_out,
            num_classes,
            Default::default(),
        );
        EfficientNet {
            stem,
            blocks,
            head,
            classifier,
        }
    }
}

impl ModuleT for EfficientNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.stem.forward_t(xs, train);
        for b in &self.blocks {
            ys = b.forward_t(&ys, train);
        }
        self.head
            .forward_t(&ys, train)
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&self.classifier)
    }
}

#[cfg(test)]
mod tests {
    use super::make_divisible;

    #[test]
    fn channel_rounding_matches_torchvision() {
        // B7 stem: 32 * 2.0 = 64; B2 head input: 320 * 1.1 = 352; B1 == B0.
        assert_eq!(make_divisible(64.0), 64);
        assert_eq!(make_divisible(352.0), 352);
        assert_eq!(make_divisible(16.0 * 1.1), 16);
        assert_eq!(make_divisible(40.0 * 1.4), 56);
        assert_eq!(make_divisible(24.0 * 1.2), 32);
    }
}
