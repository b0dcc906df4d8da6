#!/usr/bin/env bash
# Run once on a machine with CUDA (nothing here needs a connection):
#   bash bench/gpu_check.sh [OUT_DIR]
# 1. the cuda-marked tests (mixed precision, channels_last, faiss on the GPU, pinned streamed batches);
# 2. digits, default settings (its own schedule) on CUDA;
# 3. cifar10-small with the paper's pair WRN-40-2 -> WRN-16-2 (the authors' 240-epoch schedule unless
#    GPU_CHECK_SHORT=1, which runs teacher 30 and student 4 + 32 + 12 epochs, and says so);
# 4. photos: cifar10-small upscaled to 160x160 (2,000 files, made by bench/photos.py) streamed at 224, teacher
#    torchvision:resnet18 fine-tuned (ImageNet weights if TORCH_HOME has them, else a seeded stand-in,
#    said so), student torchvision:mobilenet_v3_small;
# then prints per-epoch seconds and accuracies of every run, and the same digits run on the CPU for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
OUT=${1:-/tmp/amlkd-gpu-check}
DATA=${CIFAR_SMALL:-../shared/data/cifar10-small}
mkdir -p "$OUT"
"$PY" - <<'PYEOF'
import torch, faiss
assert torch.cuda.is_available(), "no CUDA device: this script is for a GPU machine"
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| bf16:", torch.cuda.is_bf16_supported(),
      "| faiss GPU:", hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0)
PYEOF
"$PY" -m pytest -q -m cuda tests/test_gpu.py

"$PY" -m engine run --dataset digits --out "$OUT/digits-cuda" --force
CUDA_VISIBLE_DEVICES= "$PY" -m engine run --dataset digits --threads 4 --out "$OUT/digits-cpu" --force

SHORT=()
if [ "${GPU_CHECK_SHORT:-0}" = 1 ]; then
  SHORT=(--teacher-epochs 30 --warmup-epochs 4 --refine-epochs 32 --mutual-epochs 12)
fi
"$PY" -m engine run --dataset "folder:$DATA" --teacher wrn-40-2 --student wrn-16-2 "${SHORT[@]}" \
    --out "$OUT/cifar10-small-wrn" --force

"$PY" - "$OUT" <<'PYEOF'
import os, sys, torch, torchvision
from pathlib import Path
sys.path.insert(0, "bench")
from photos import make_photos
out = Path(sys.argv[1])
make_photos(out / "photos-2000", 2000, 160)
home = Path(torch.hub.get_dir()) / "checkpoints"
if not (home / "resnet18-f37072fd.pth").exists():
    stand_in = out / "torch" / "hub" / "checkpoints"
    stand_in.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), stand_in / "resnet18-f37072fd.pth")
    print("no ImageNet resnet18 in TORCH_HOME: a seeded stand-in (accuracies mean nothing, times do)")
    (out / "torch_home").write_text(str(out / "torch"))
PYEOF
if [ -f "$OUT/torch_home" ]; then export TORCH_HOME=$(cat "$OUT/torch_home"); fi
"$PY" -m engine run --dataset "folder:$OUT/photos-2000" --teacher torchvision:resnet18 --teacher-mode finetune \
    --student torchvision:mobilenet_v3_small --teacher-epochs 5 --warmup-epochs 2 --refine-epochs 4 \
    --mutual-epochs 2 --out "$OUT/photos-resnet18" --force

"$PY" - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
print(f"\n{'run':<22} {'device':<6} {'phase':<9} {'epochs':>6} {'s/epoch':>8}   teacher acc  student acc  refined prec")
for run in sorted(p for p in Path(sys.argv[1]).iterdir() if (p / "metrics.jsonl").exists()):
    metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run / "summary.json").read_text())
    for phase in dict.fromkeys(m["phase"] for m in metrics):
        rows = [m for m in metrics if m["phase"] == phase]
        seconds = sum(m["step_seconds"] for m in rows) / len(rows)
        print(f"{run.name:<22} {summary['device']:<6} {phase:<9} {len(rows):>6} {seconds:>8.2f}")
    f = lambda v: "-" if v is None else f"{v:.3f}"
    print(f"{'':<22} {'':<6} {'summary':<9} {'':>6} {summary['wall_seconds']:>8.0f}s  "
          f"{f(summary['teacher_test_accuracy']):>10}  {f(summary['student_test_accuracy']):>11}  "
          f"{f(summary['refined_label_precision']):>12}")
PYEOF
