"""torchenv harness: runs an ONNX file with onnxruntime for the harness.

Run by the harness (embedded in the binary; not a public interface).

usage: ort_worker.py MODEL.onnx THREADS
First line on stdout: JSON {"onnxruntime", "providers", "inputs", "outputs",
"metadata"}. Then, per request on stdin: u32 LE n, c, h, w and n*c*h*w
float32 LE values; answer on stdout: u32 LE rows, cols and rows*cols
float32 LE values. n = 0 or end of input ends the worker.
"""
import json
import struct
import sys

import numpy as np
import onnxruntime as ort


def spec(arg):
    shape = [d if isinstance(d, int) else (d or "?") for d in arg.shape]
    return {"name": arg.name, "shape": shape, "type": arg.type}


def read_exact(stream, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def main():
    path, threads = sys.argv[1], int(sys.argv[2])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Every graph optimization but the CPU layout ones (NCHWc): those
    # reorder float sums enough to move a logit by ~2e-4, which would hide
    # what the parity check is for (an export that computes something else).
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta()
    out = sys.stdout.buffer
    hello = {
        "onnxruntime": ort.__version__,
        "providers": session.get_providers(),
        "optimization": "extended",
        "inputs": [spec(a) for a in session.get_inputs()],
        "outputs": [spec(a) for a in session.get_outputs()],
        "metadata": dict(meta.custom_metadata_map),
    }
    out.write((json.dumps(hello) + "\n").encode())
    out.flush()
    name = session.get_inputs()[0].name
    inp = sys.stdin.buffer
    while True:
        header = read_exact(inp, 16)
        if header is None:
            return
        n, c, h, w = struct.unpack("<4I", header)
        if n == 0:
            return
        data = read_exact(inp, 4 * n * c * h * w)
        if data is None:
            sys.exit("ort_worker: input ended inside a batch")
        x = np.frombuffer(data, dtype="<f4").reshape(n, c, h, w)
        y = session.run(None, {name: x})[0]
        y = np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype="<f4")
        out.write(struct.pack("<2I", *y.shape))
        out.write(y.tobytes())
        out.flush()


if __name__ == "__main__":
    main()
