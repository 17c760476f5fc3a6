"""PyTorch-Python side of `cargo xtask bench harness`.

Times, in this process, on the same images and the same libtorch as the
Rust harness:
  preprocess  PIL open + convert("RGB") + torchvision transforms, one core;
  eval        DataLoader(PIL + transforms, N workers) + eager torchvision
              EfficientNet-B0 under no_grad, batched;
  best        the same DataLoader + what a careful PyTorch user runs on CPU:
              model and input channels_last, torch.inference_mode(), and
              torch.jit.freeze(torch.jit.script(model)) (BatchNorm folded
              into the convolutions). torch.jit.optimize_for_inference was
              slower here (torch 2.6, CPU: it converts to MKL-DNN tensors).
Both model sides run one untimed warm-up batch (the first BATCH images,
preprocessed in this process) before the timed DataLoader pass over every
image; the thread settings are torch's defaults for both.
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


def eager_model(weights):
    model = efficientnet_b0()
    model.load_state_dict(torch.load(weights, map_location="cpu"))
    return model.eval()


def best_cpu_model(weights):
    """channels_last weights, scripted and frozen (BatchNorm folded)."""
    model = eager_model(weights).to(memory_format=torch.channels_last)
    return torch.jit.freeze(torch.jit.script(model))


def timed_eval(model, paths, workers, batch, grad_off, prepare):
    """Images and seconds of one DataLoader pass, after one warm-up batch.

    `grad_off` is the autograd context (no_grad or inference_mode),
    `prepare` what is done to each input batch (timed with the model).
    """
    images = Images(paths)
    warm = torch.stack([images[i] for i in range(min(batch, len(images)))])
    loader = torch.utils.data.DataLoader(images, batch_size=batch, num_workers=workers)
    with grad_off():
        model(prepare(warm)).argmax(1)
        t = time.perf_counter()
        n = 0
        for x in loader:
            model(prepare(x)).argmax(1)
            n += x.shape[0]
        return n, time.perf_counter() - t


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

    n, eval_s = timed_eval(
        eager_model(weights), paths, workers, batch, torch.no_grad, lambda x: x)
    best_n, best_s = timed_eval(
        best_cpu_model(weights), paths, workers, batch, torch.inference_mode,
        lambda x: x.contiguous(memory_format=torch.channels_last))
    print(json.dumps({
        "images": n,
        "preprocess_seconds": preprocess_s,
        "eval_seconds": eval_s,
        "best_images": best_n,
        "best_eval_seconds": best_s,
        "best_path": "channels_last + inference_mode + jit.freeze(jit.script)",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
