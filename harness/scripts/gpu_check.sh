#!/bin/bash
# GPU check of the harness on a machine with an NVIDIA GPU and a Python
# torch 2.11 (no Docker needed). Prepare on the build machine:
#   cargo xtask build pytorch-2.11        # builds the torch-2.11 harness too
#   mkdir -p .dev/gpu && cp ~/.cache/torchenv/harness/2.11.0/bin/harness .dev/gpu/
#   cp ~/.cache/torchenv/models/*/efficientnet-lite0-57934424.pth .dev/gpu/lite0.pth
# then, on the GPU machine, from the repository root (OUT = a results folder):
#   OUT=/tmp/out bash harness/scripts/gpu_check.sh
cd "$(dirname "$0")/../.."; mkdir -p "${OUT:?set OUT to a results folder}"
H=.dev/gpu/harness; W=.dev/gpu/lite0.pth; D=fixtures/images
TL=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
export LD_LIBRARY_PATH=$TL
echo "== machine"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
python3 -c 'import torch;print("python torch", torch.__version__, torch.version.cuda, torch.backends.cudnn.version())'
echo "== NEEDED"; readelf -d $H | grep NEEDED | grep -E 'torch'; ldd $H | grep -E 'torch_cuda|not found'
echo "== harness cuda"; $H cuda; echo "rc=$?"
$H cuda --json --expect-gpus 1 > $OUT/cuda.json; echo "json rc=$?"
TORCHENV_TORCH_VERSION=2.11.0 TORCHENV_CUDA_VERSION=13.0 TORCHENV_CUDNN_VERSION=9.19.0 $H cuda --expect-gpus 1 >/dev/null; echo "declared-match rc=$? (want 0)"
TORCHENV_CUDA_VERSION=12.4 $H cuda >/dev/null; echo "declared-mismatch rc=$? (want 4)"
$H cuda --expect-gpus 2 >/dev/null; echo "expect-2 rc=$? (want 3)"
echo "== eval"
run() { n=$1; shift; /usr/bin/time -f "$n: %e s wall, %M KB maxrss" $H eval --data $D --model efficientnet_lite0 --weights $W --json $OUT/$n.json "$@" > $OUT/$n.txt 2>&1; echo "$n rc=$?"; tail -4 $OUT/$n.txt; }
run cpu --device cpu
run cuda_det --device cuda --deterministic
run cuda_fp16_cl --device cuda --autocast fp16 --channels-last
run cuda_bf16 --device cuda --autocast bf16
D=fixtures/corrupt run corrupt_cuda --device cuda
mkdir -p /tmp/big; for c in $(ls fixtures/images); do mkdir -p /tmp/big/$c; for f in fixtures/images/$c/*; do for i in $(seq 1 30); do cp $f /tmp/big/$c/${i}_$(basename $f); done; done; done
D=/tmp/big run big_cuda --device cuda --batch-size 64 --workers 16
D=/tmp/big run big_cuda_fp16 --device cuda --batch-size 64 --workers 16 --autocast fp16 --channels-last
echo "== compare"
python3 - <<'PY'
import json, os
o = os.environ["OUT"]
def load(n): return json.load(open(f"{o}/{n}.json"))
cpu = load("cpu")
for n in ["cuda_det", "cuda_fp16_cl", "cuda_bf16"]:
    r = load(n)
    flips = [a["path"].split("/")[-1] for a, b in zip(cpu["samples"], r["samples"]) if a["top5"][0]["index"] != b["top5"][0]["index"]]
    dp = 0.0
    for a, b in zip(cpu["samples"], r["samples"]):
        pa = {p["index"]: p["probability"] for p in a["top5"]}
        pb = {p["index"]: p["probability"] for p in b["top5"]}
        for k in set(pa) & set(pb): dp = max(dp, abs(pa[k] - pb[k]))
    print(f"{n}: top1 {r['metrics']['top1']:.4f} (cpu {cpu['metrics']['top1']:.4f}) flips vs cpu {len(flips)} {flips} max|dp| {dp:.2e}; {r['performance']['images_per_second']:.1f} img/s; gpu peak {r['performance']['peak_gpu_memory_bytes']}")
for n in ["big_cuda", "big_cuda_fp16"]:
    r = load(n); p = r["performance"]
    print(f"{n}: {r['dataset']['num_evaluated']} imgs, {p['images_per_second']:.1f} img/s, preprocess {p['preprocess_seconds']:.2f}s inference {p['inference_seconds']:.2f}s wall {p['wall_seconds']:.2f}s")
print("versions cpu", cpu["versions"]); print("versions cuda", load("cuda_det")["versions"])
c = load("corrupt_cuda"); print("corrupt: evaluated", c["dataset"]["num_evaluated"], "failed", [(f["path"].split("/")[-1], f["error"][:60]) for f in c["failed"]])
PY
