#!/usr/bin/env bash
# Run once on a machine with CUDA, from a clone whose Python has requirements.txt installed (nothing here needs
# a connection):
#   bash bench/gpu_check.sh [OUT_DIR]                       # default OUT_DIR /tmp/amlkd-gpu-check
# Parts (GPU_CHECK_PARTS, default "tests digits wrn photos"):
#   tests   the cuda-marked tests (mixed precision, channels_last, faiss on the GPU, pinned streamed batches);
#   digits  digits, default settings (its own schedule), on CUDA and then on the CPU (4 threads) for comparison;
#   wrn     cifar10-small with the paper's pair WRN-40-2 -> WRN-16-2 on the authors' schedule (240 epochs;
#           GPU_CHECK_SHORT=1: teacher 30, student 4 + 32 + 12 epochs, and says so);
#   photos  cifar10-small upscaled to 160x160 (2,000 JPEGs made by bench/photos.py) streamed at 224x224: the
#           features command (resnet18), then a run with torchvision:resnet18 fine-tuned -> mobilenet_v3_small
#           (ImageNet weights when TORCH_HOME has them, else a seeded stand-in, said so).
# Settings:
#   PY               the Python to use (default .venv/bin/python when present, else python3)
#   CIFAR_SMALL      cifar10-small's folder (train/ and test/ class folders; default ../shared/data/cifar10-small,
#                    else shared/data/cifar10-small); without it the wrn and photos parts are skipped, said so
#   GPU_CHECK_LIMIT  seconds each run may take (default 100, so that the whole check fits in about 10 minutes;
#                    0: no limit). A run stopped at its limit keeps its finished epochs, and they are printed.
#   GPU_CHECK_DRY=1  run it on a CPU anyway (the script's own check: every part starts, is cut at its limit and
#                    is reported; default limit 30 s)
# Prints, at the end: per run, every epoch's seconds and test accuracies, then per phase the mean seconds per
# epoch and the epochs planned (so a run stopped at its limit still tells how long the whole schedule takes).
# Every command's own output is in OUT_DIR/NAME.log. Exit status: 0, or 1 when a test or a run failed (a run
# stopped at its limit is not a failure).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/amlkd-gpu-check}
PARTS=${GPU_CHECK_PARTS:-tests digits wrn photos}
if [ "${GPU_CHECK_DRY:-0}" = 1 ]; then LIMIT=${GPU_CHECK_LIMIT:-30}; else LIMIT=${GPU_CHECK_LIMIT:-100}; fi
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
mkdir -p "$OUT"
rm -f "$OUT"/*.status "$OUT/torch_home"
FAILED=0

"$PY" - <<'PYEOF' || exit 2
import importlib.util, sys
missing = [m for m in ("numpy", "torch", "torchvision", "faiss", "PIL", "scipy", "sklearn", "pytest")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"{sys.executable} lacks {', '.join(missing)}: install the requirements first "
             "(python3 -m venv .venv && .venv/bin/pip install -r requirements.txt), or name another Python with PY=")
import faiss, os, torch
if os.environ.get("GPU_CHECK_DRY") == "1":
    print("GPU_CHECK_DRY=1: on this machine's CPU, to check the script itself (the times and accuracies mean nothing)")
elif not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no CUDA device: this check is for a GPU machine "
             "(a CPU-only torch build says +cpu in its version)")
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| bf16:",
          torch.cuda.is_bf16_supported(), "| faiss GPU:",
          hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0)
PYEOF

DATA=${CIFAR_SMALL:-}
if [ -z "$DATA" ]; then
  for d in ../shared/data/cifar10-small shared/data/cifar10-small; do
    if [ -d "$d/train" ]; then DATA=$d; break; fi
  done
fi
if [ -z "$DATA" ] || [ ! -d "$DATA/train" ]; then
  echo "no cifar10-small (train/<class>/ images) at ${DATA:-../shared/data/cifar10-small or shared/data/cifar10-small}:" \
       "the wrn and photos parts are skipped (give its folder with CIFAR_SMALL=DIR)"
  DATA=""
else
  DATA=$(cd "$DATA" && pwd)
fi

has() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# limited NAME CMD...: CMD with its output in OUT/NAME.log, stopped after LIMIT seconds; one line on how it ended
limited() {
  local name=$1 started rc
  shift
  started=$(date +%s)
  if [ "$LIMIT" -gt 0 ]; then
    timeout --signal=TERM --kill-after=20 "$LIMIT" "$@" >"$OUT/$name.log" 2>&1
  else
    "$@" >"$OUT/$name.log" 2>&1
  fi
  rc=$?
  local took=$(( $(date +%s) - started ))
  if [ $rc -eq 0 ]; then
    echo "$name: done in ${took} s" | tee "$OUT/$name.status"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "$name: stopped at the ${LIMIT} s limit" | tee "$OUT/$name.status"
  else
    echo "$name: FAILED (exit $rc after ${took} s): $(grep -v '^\s*$' "$OUT/$name.log" | tail -1)" \
      | tee "$OUT/$name.status"
    FAILED=1
  fi
}

if has tests; then
  if "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_gpu.py >"$OUT/tests.log" 2>&1; then
    echo "cuda tests: $(tail -1 "$OUT/tests.log")"
  else
    echo "cuda tests: FAILED: $(tail -1 "$OUT/tests.log") (details in $OUT/tests.log)"
    FAILED=1
  fi
fi

if has digits; then
  limited digits-cuda "$PY" -m engine run --dataset digits --out "$OUT/digits-cuda" --force
  CUDA_VISIBLE_DEVICES= limited digits-cpu "$PY" -m engine run --dataset digits --threads 4 --out "$OUT/digits-cpu" \
    --force
fi

if has wrn && [ -n "$DATA" ]; then
  SHORT=()
  if [ "${GPU_CHECK_SHORT:-0}" = 1 ]; then
    SHORT=(--teacher-epochs 30 --warmup-epochs 4 --refine-epochs 32 --mutual-epochs 12)
    echo "wrn: a shorter schedule than the authors' (GPU_CHECK_SHORT=1: teacher 30, student 4 + 32 + 12 epochs)"
  fi
  limited cifar10-small-wrn "$PY" -m engine run --dataset "folder:$DATA" --teacher wrn-40-2 --student wrn-16-2 \
    "${SHORT[@]}" --out "$OUT/cifar10-small-wrn" --force
fi

if has photos && [ -n "$DATA" ]; then
  # the photos, and resnet18's ImageNet weights or a seeded stand-in in a TORCH_HOME of its own
  "$PY" - "$OUT" "$DATA/train" >"$OUT/photos-setup.log" 2>&1 <<'PYEOF'
import sys
from pathlib import Path
sys.path.insert(0, "bench")
import torch
from photos import make_photos, seeded_weights
from engine.models.zoo import weights_enum

out, cifar = Path(sys.argv[1]), Path(sys.argv[2])
make_photos(out / "photos-2000", 2000, 160, cifar=cifar)
name = weights_enum("resnet18").url.rsplit("/", 1)[-1]
if not (Path(torch.hub.get_dir()) / "checkpoints" / name).exists():
    seeded_weights(out / "torch", "resnet18")
    (out / "torch_home").write_text(str(out / "torch"))
PYEOF
  if [ $? -ne 0 ]; then
    echo "photos: FAILED making the photos: $(tail -1 "$OUT/photos-setup.log")"
    FAILED=1
  else
    if [ -f "$OUT/torch_home" ]; then
      export TORCH_HOME=$(cat "$OUT/torch_home")
      echo "photos: no ImageNet resnet18 in TORCH_HOME: a seeded stand-in (its accuracies mean nothing, times do)"
    fi
    limited photos-features "$PY" -m engine features --dataset "folder:$OUT/photos-2000" \
      --backbone torchvision:resnet18 --out "$OUT/photos-features.npz"
    limited photos-resnet18 "$PY" -m engine run --dataset "folder:$OUT/photos-2000" --teacher torchvision:resnet18 \
      --teacher-mode finetune --student torchvision:mobilenet_v3_small --teacher-epochs 5 --warmup-epochs 2 \
      --refine-epochs 4 --mutual-epochs 2 --out "$OUT/photos-resnet18" --force
  fi
fi

"$PY" - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
f = lambda v: "-" if v is None else f"{v:.3f}"
PLANNED = {"teacher": "teacher_epochs", "warmup": "warmup_epochs", "refine": "refine_epochs", "mutual": "mutual_epochs"}
runs = {p.name: p for p in out.iterdir() if (p / "metrics.jsonl").exists()}
for status in sorted(out.glob("*.status")):  # a run stopped or failed before its first epoch has no metrics
    if status.stem not in runs and status.stem != "photos-features":
        print(f"\n== {status.stem}: no finished epoch; {status.read_text().strip()}")
for run in sorted(runs.values()):
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else None
    runtime = json.loads((run / "runtime.json").read_text()) if (run / "runtime.json").exists() else {}
    schedule = json.loads((run / "config.json").read_text()).get("schedule", {})
    status = (out / f"{run.name}.status").read_text().strip() if (out / f"{run.name}.status").exists() else ""
    device = (summary or {}).get("device") or runtime.get("device", "?")
    print(f"\n== {run.name} ({device}): {len(metrics)} steps; {status}")
    print(f"{'step':>5} {'phase':<9} {'epoch':>5} {'seconds':>8} {'teacher acc':>11} {'student acc':>11} "
          f"{'refined prec':>12}")
    for m in metrics:
        print(f"{m['step']:>5} {m['phase']:<9} {m.get('phase_epoch', 0):>5} {m['step_seconds']:>8.2f} "
              f"{f(m.get('teacher_test_accuracy')):>11} {f(m.get('student_test_accuracy')):>11} "
              f"{f(m.get('refined_label_precision')):>12}")
    for phase in dict.fromkeys(m["phase"] for m in metrics):
        rows = [m["step_seconds"] for m in metrics if m["phase"] == phase]
        planned = schedule.get(PLANNED.get(phase, ""), len(rows))
        print(f"  {phase:<9} {len(rows):>4} of {planned} epochs, {sum(rows) / len(rows):.2f} s/epoch"
              f" (the phase: about {sum(rows) / len(rows) * planned / 60:.1f} min)")
    if summary is not None:
        print(f"  finished in {summary['wall_seconds']:.0f} s: teacher {f(summary['teacher_test_accuracy'])}, "
              f"student {f(summary['student_test_accuracy'])}, refined label precision "
              f"{f(summary['refined_label_precision'])}")
PYEOF
if [ -f "$OUT/photos-features.status" ] && grep -q done "$OUT/photos-features.status"; then
  echo "features command (resnet18, 1,600 training photos at 224x224): $(cat "$OUT/photos-features.status")"
fi
exit $FAILED
