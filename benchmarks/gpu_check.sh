#!/usr/bin/env bash
# The repo's GPU check: one script, about 4 minutes on one H200 (torch.compile rows left out: they took minutes), for a session that is lent a GPU.
#   OUT=out/gpu_check bash benchmarks/gpu_check.sh
# Needs only torch and transformers (the project's model, teacher and loss code; no audio libraries), so it runs on
# a bare CUDA image. Writes to $OUT: log.txt (machine, versions, progress), parity.json (CUDA fp32/bf16 vs CPU fp32),
# distill_bf16.json, inference_bf16.json, inference_fp32.json and tables.md (the tables for benchmarks/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
exec 2> >(tee -a "$OUT/log.txt" >&2)
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python -c "import torch, transformers; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'transformers', transformers.__version__)"
  lscpu | grep -E "^Model name|^CPU\(s\)"
} | tee -a "$OUT/log.txt"

echo "## parity (CUDA vs CPU fp32)" >&2
python benchmarks/gpu_parity.py --device cuda --json "$OUT/parity.json" >&2

# Distillation: 16 clips of 15 s per step (4 minutes of audio), bf16 autocast as train_distill.py runs on a GPU.
{ echo "## distillation throughput"; echo; } >> "$OUT/tables.md"
python benchmarks/distill_throughput.py --device cuda --bf16 --steps 10 --batch_seconds $(printf '15 %.0s' {1..16}) \
  --json "$OUT/distill_bf16.json" >> "$OUT/tables.md"

{ echo; echo "## inference, bf16"; echo; } >> "$OUT/tables.md"
python benchmarks/inference.py --device cuda --dtype bf16 --durations 10 30 --batch_sizes 1 16 --repeats 10 \
  --models teacher student student_ctc slim_student --backends eager \
  --json "$OUT/inference_bf16.json" >> "$OUT/tables.md"

{ echo; echo "## inference, fp32"; echo; } >> "$OUT/tables.md"
python benchmarks/inference.py --device cuda --dtype fp32 --durations 10 30 --batch_sizes 1 16 --repeats 5 \
  --models teacher student slim_student --backends eager --json "$OUT/inference_fp32.json" >> "$OUT/tables.md"
echo "done" >&2
