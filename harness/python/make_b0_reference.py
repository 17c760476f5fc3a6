"""Reference data for the B0 parity tests (run by the Rust tests).

torchvision efficientnet_b0 with torch.manual_seed(0) random init, BatchNorm
affine parameters randomised and running statistics calibrated on the
image batch (so a mis-mapped BN tensor changes the logits, and the logits
depend on the input), saved as torch zip, legacy pickle and safetensors.
Images are preprocessed with PIL + torchvision exactly like
EfficientNet_B0_Weights.IMAGENET1K_V1.transforms(); logits are computed on
that preprocessed batch.

usage: make_b0_reference.py OUT_DIR IMAGE...
writes: b0.pth b0_legacy.pth b0_wrapped.pth [b0.safetensors] pre.npy logits.npy
"""
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torchvision.models import efficientnet_b0


def main():
    out = Path(sys.argv[1])
    images = sys.argv[2:]
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = efficientnet_b0(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 0.05)
    tf = transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in images])
    # Calibrate BatchNorm statistics on the batch (as training would):
    # with random running stats the deep random net's output hardly depends
    # on the input, and a top-1 comparison would be meaningless.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    sd = model.state_dict()
    torch.save(sd, out / "b0.pth")
    torch.save(sd, out / "b0_legacy.pth", _use_new_zipfile_serialization=False)
    # Training-script style: wrapped, DataParallel prefixes, extra entries.
    wrapped = {"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}}
    torch.save(wrapped, out / "b0_wrapped.pth")
    try:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(out / "b0.safetensors"))
    except ImportError:
        pass
    with torch.no_grad():
        logits = model(x)
    np.save(out / "pre.npy", x.numpy().astype(np.float32))
    np.save(out / "logits.npy", logits.numpy().astype(np.float32))
    print("logit std", float(logits.std()), "max", float(logits.abs().max()),
          "per-image spread", float((logits - logits.mean(0)).abs().max()),
          "distinct top-1", len(set(logits.argmax(1).tolist())))


if __name__ == "__main__":
    main()
