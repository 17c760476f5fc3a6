"""Independent PyTorch EfficientNet-Lite0 (written from the architecture
description, not from the package's model code) loading the packaged
lukemelas-style weights.

Architecture: TensorFlow "SAME" padding computed from the input size at run
time (stride 2 pads (k-2)//2 before and the rest after), ReLU6, no
squeeze-excitation, BatchNorm eps 1e-3, stem 32 and head 1280 not scaled.
Preprocessing: Resize(256, bicubic, antialias) -> CenterCrop(224) -> [0,1]
-> (x - 127/255) / (128/255), i.e. TF's (pixel - 127) / 128.

usage: lite0_reference.py WEIGHTS OUT_DIR IMAGE...
writes: pre.npy logits.npy; prints top-1 per image
"""
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

STAGES = [  # repeats, kernel, stride, expand, in, out
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


def conv_same(x, w, stride, groups=1):
    k = w.shape[-1]
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: W then H
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), w, None, stride, 0, 1, groups)


def bn(x, sd, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"], False, 0.0, 1e-3)


def forward(sd, x):
    x = F.relu6(bn(conv_same(x, sd["_conv_stem.weight"], 2), sd, "_bn0"))
    i = 0
    for repeats, k, s, e, cin, cout in STAGES:
        for r in range(repeats):
            p = f"_blocks.{i}."
            inp = x
            bin_, stride = (cin, s) if r == 0 else (cout, 1)
            if e != 1:
                x = F.relu6(bn(conv_same(x, sd[p + "_expand_conv.weight"], 1), sd, p + "_bn0"))
            ch = x.shape[1]
            x = F.relu6(bn(conv_same(x, sd[p + "_depthwise_conv.weight"], stride, groups=ch), sd, p + "_bn1"))
            x = bn(conv_same(x, sd[p + "_project_conv.weight"], 1), sd, p + "_bn2")
            if stride == 1 and bin_ == cout:
                x = x + inp
            i += 1
    x = F.relu6(bn(conv_same(x, sd["_conv_head.weight"], 1), sd, "_bn1"))
    x = x.mean(dim=(2, 3))
    return F.linear(x, sd["_fc.weight"], sd["_fc.bias"])


def main():
    weights, out = sys.argv[1], Path(sys.argv[2])
    images = sys.argv[3:]
    out.mkdir(parents=True, exist_ok=True)
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    if "state_dict" in sd:
        sd = sd["state_dict"]
    sd = {k.removeprefix("module."): v.float() for k, v in sd.items()}
    tf = transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([127 / 255] * 3, [128 / 255] * 3),
        ]
    )
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in images])
    with torch.no_grad():
        logits = forward(sd, x)
    np.save(out / "pre.npy", x.numpy().astype(np.float32))
    np.save(out / "logits.npy", logits.numpy().astype(np.float32))
    for p, t in zip(images, logits.argmax(1).tolist()):
        print(t, p)


if __name__ == "__main__":
    main()
