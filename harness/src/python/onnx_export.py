"""torchenv harness: TorchScript file -> ONNX file, with the image's torch.

Run by `harness export` (embedded in the binary; not a public interface).

usage: onnx_export.py TORCHSCRIPT OUT OPSET BATCH CROP METADATA_JSON
  BATCH: `dynamic` or a positive integer (the file's fixed batch size)
prints one JSON line: {"torch": ..., "onnx": ..., "opset": ...}

The TorchScript-based exporter (`dynamo=False`) is the one that takes a
ScriptModule in every torch this project ships (2.6: the default; 2.9 and
later: the torch.export-based exporter is the default, and it cannot start
from a traced ScriptModule). The file is checked with `onnx.checker` and
tagged with the harness's metadata (model, preprocessing, weights).
"""
import json
import sys
import warnings

import onnx
import torch


def main():
    ts, out, opset, batch, crop, meta = sys.argv[1:7]
    opset, crop = int(opset), int(crop)
    dynamic = batch == "dynamic"
    n = 2 if dynamic else int(batch)
    module = torch.jit.load(ts, map_location="cpu")
    module.eval()
    example = torch.zeros(n, 3, crop, crop)
    kwargs = dict(
        input_names=["input"],
        output_names=["logits"],
        opset_version=opset,
        dynamo=False,
    )
    if dynamic:
        kwargs["dynamic_axes"] = {"input": {0: "batch"}, "logits": {0: "batch"}}
    with warnings.catch_warnings():
        # 2.9+: "You are using the legacy TorchScript-based ONNX export".
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        with torch.no_grad():
            torch.onnx.export(module, (example,), out, **kwargs)
    model = onnx.load(out)
    for key, value in sorted(json.loads(meta).items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "torchenv harness"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, out)
    print(json.dumps({"torch": torch.__version__, "onnx": onnx.__version__, "opset": opset}))


if __name__ == "__main__":
    main()
