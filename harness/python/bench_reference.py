"""PyTorch-Python side of `cargo xtask bench harness`.

Times, in this process, on the same images and the same libtorch as the
Rust harness:
  preprocess  PIL open + convert("RGB") + torchvision transforms, one core;
  eval        DataLoader(PIL + transforms, N workers) + eager torchvision
              EfficientNet-B0 under no_grad, batched.
Prints one JSON object.

usage: bench_reference.py WEIGHTS.pth WORKERS BATCH IMAGE...
"""

import json
import sys
import time

import torch
from PIL import Image
from torchvision import transforms
from torchvision.models import efficientnet_b0

TRANSFORM = transforms.Compose([
    transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
])


class Images(torch.utils.data.Dataset):
    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as im:
            return TRANSFORM(im.convert("RGB"))


def main():
    weights, workers, batch, paths = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per core: PIL is single-threaded, keep torch so too
    t = time.perf_counter()
    for p in paths:
        with Image.open(p) as im:
            TRANSFORM(im.convert("RGB"))
    preprocess_s = time.perf_counter() - t
    torch.set_num_threads(threads)

    model = efficientnet_b0()
    model.load_state_dict(torch.load(weights, map_location="cpu"))
    model.eval()
    loader = torch.utils.data.DataLoader(Images(paths), batch_size=batch, num_workers=workers)
    t = time.perf_counter()
    n = 0
    with torch.no_grad():
        for x in loader:
            model(x).argmax(1)
            n += x.shape[0]
    eval_s = time.perf_counter() - t
    print(json.dumps({
        "images": n,
        "preprocess_seconds": preprocess_s,
        "eval_seconds": eval_s,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
