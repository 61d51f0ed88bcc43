#!/usr/bin/env bash
# The repo's GPU check: one script, about 4 minutes on one H200 (torch.compile rows left out: they took minutes), for a session that is lent a GPU.
#   OUT=out/gpu_check bash benchmarks/gpu_check.sh
#   OUT=out/gpu_check_tiny bash benchmarks/gpu_check.sh --device cpu --tiny    # tiny shapes, ~1 min: tests run it
# Needs only torch and transformers (the project's model, teacher and loss code; no audio libraries), so it runs on
# a bare CUDA image. Writes to $OUT: log.txt (machine, versions, progress), parity.json (CUDA fp32/bf16 vs CPU fp32),
# distill_bf16.json, distill_sweep.json (the batch that fills the GPU), inference_bf16.json, inference_fp32.json and tables.md (the tables for benchmarks/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda
TINY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --tiny) TINY=1; shift ;;
    *) echo "usage: gpu_check.sh [--device cuda|cpu] [--tiny]" >&2; exit 2 ;;
  esac
done
if [ "$TINY" = 1 ]; then  # the same steps on tiny shapes (benchmarks/shapes.py), so that a CPU test runs all of it
  export DISTILXLSR_BENCH_TINY=1
  STEPS=2; CLIPS="1 1"; DURATIONS="1 2"; BATCHES="1 2"; REPEATS=1; SWEEP="1 2"
else
  STEPS=10; CLIPS=$(printf '15 %.0s' {1..16}); DURATIONS="10 30"; BATCHES="1 16"; REPEATS=10; SWEEP="32 64 128 256"
fi
OUT=${OUT:-out/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
exec 2> >(tee -a "$OUT/log.txt" >&2)
{
  date -u
  if command -v nvidia-smi > /dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; fi
  python -c "import torch, transformers; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'transformers', transformers.__version__)"
  lscpu | grep -E "^Model name|^CPU\(s\)"
} | tee -a "$OUT/log.txt"

echo "## parity ($DEVICE vs CPU fp32)" >&2
python benchmarks/gpu_parity.py --device "$DEVICE" --json "$OUT/parity.json" >&2

# Distillation: 16 clips of 15 s per step (4 minutes of audio), bf16 autocast as train_distill.py runs on a GPU.
{ echo "## distillation throughput"; echo; } >> "$OUT/tables.md"
python benchmarks/distill_throughput.py --device "$DEVICE" --bf16 --steps $STEPS --batch_seconds $CLIPS \
  --json "$OUT/distill_bf16.json" >> "$OUT/tables.md"

# The batch that fills the GPU: 15 s clips, doubling until out of memory, default and log-mel students.
{ echo; echo "## distillation: the batch that fills the device"; echo; } >> "$OUT/tables.md"
python benchmarks/distill_throughput.py --device "$DEVICE" --bf16 --steps $STEPS --batch_seconds 15 --sweep $SWEEP \
  --rows "ours (8/16/24)" "ours, log-mel front-end (8/16/24)" --json "$OUT/distill_sweep.json" >> "$OUT/tables.md"

{ echo; echo "## inference, bf16"; echo; } >> "$OUT/tables.md"
python benchmarks/inference.py --device "$DEVICE" --dtype bf16 --durations $DURATIONS --batch_sizes $BATCHES \
  --repeats $REPEATS \
  --models teacher student student_ctc slim_student mel_student_ctc --backends eager \
  --json "$OUT/inference_bf16.json" >> "$OUT/tables.md"

{ echo; echo "## inference, fp32"; echo; } >> "$OUT/tables.md"
python benchmarks/inference.py --device "$DEVICE" --dtype fp32 --durations $DURATIONS --batch_sizes $BATCHES \
  --repeats $(( (REPEATS + 1) / 2 )) \
  --models teacher student slim_student --backends eager --json "$OUT/inference_fp32.json" >> "$OUT/tables.md"
if [ "$DEVICE" != cpu ]; then  # fp16 weights: GPUs only (on a CPU, bf16 autocast is the half-precision path)
  { echo; echo "## inference, fp16"; echo; } >> "$OUT/tables.md"
  python benchmarks/inference.py --device "$DEVICE" --dtype fp16 --durations $DURATIONS --batch_sizes $BATCHES \
    --repeats $REPEATS --models teacher student slim_student --backends eager \
    --json "$OUT/inference_fp16.json" >> "$OUT/tables.md"
fi
echo "done" >&2
