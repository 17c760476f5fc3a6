"""Prints `model<TAB>key<TAB>shape` for torchvision efficientnet_b0..b7
state dicts (num_batches_tracked excluded), for the architecture test."""
import torchvision.models as M

for i in range(8):
    sd = getattr(M, f"efficientnet_b{i}")().state_dict()
    for k, v in sd.items():
        if not k.endswith("num_batches_tracked"):
            print(f"efficientnet_b{i}\t{k}\t{','.join(map(str, v.shape))}")
