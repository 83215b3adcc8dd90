#!/usr/bin/env bash
# GPU measurements in one short call (about 7 minutes on one H100/H200):
#   1. benchmarks/model_speed.py --full-size: Meissonic-1024 with random weights, bf16, 64 steps, batch 1 and 4;
#      eager vanilla, then compiled (torch.compile, default mode) vanilla in both step modes and the listed
#      design choices in fast mode where the fused step expresses them: s/image, s/step, transformer share,
#      peak memory, compile seconds, compiled-vs-eager logits difference;
#   2. benchmarks/step_speed.py --device cuda: one step at Meissonic's shape, ours/reference and logits
#      copies for every preset, exact and fast;
#   3. benchmarks/model_side_speed.py --device cuda: every model-side choice (ToMe, quantization with its
#      packed CUDA layouts, FORA and residual caching, PAG) side by side at Meissonic's size: GFLOPs/image,
#      weight MiB, peak MiB per batch, s/image against plain in the same rounds.
# Logs and JSON go to $OUT (or ./gpu-check-out). Usage: bash benchmarks/gpu_check.sh [--quick]
#   --quick: a CPU smoke test of this script at a tiny size (eager dynamo backend instead of Inductor).
set -uo pipefail
OUT=${OUT:-./gpu-check-out}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
VARIANTS=vanilla,noise-reg,differential,zigzag,top-p,gumbel-max-f64
if [[ "${1:-}" == "--quick" ]]; then
  export MGT_BENCH_COMPILE_BACKEND=eager
  # float32: the CPU has no fast bfloat16 convolutions (the random full-size VQ's decode took minutes in bf16)
  MS=(--allow-cpu --tiny-size 1 --width 64 --steps 2 --batch 1 --dtype fp32)
  SS=(--device cpu --seq-len 256 --vocab 512 --batch 1 --reps 1 --variants vanilla,top-p,noise-reg)
  LIMIT_MS=600; LIMIT_SS=120
  MSS=(--width 256 --mm 1 --single 2 --image-width 64 --steps 2 --batch 1 --rounds 1 --variants vanilla,quant-int8,cache-2)
  LIMIT_MSS=300
else
  MS=(--batch 1 4 --dtype bf16)
  SS=(--device cuda --batch 1,4 --dtype bf16 --reps 3 --variants vanilla,noise-reg,differential,zigzag,top-k,top-p,gumbel-max-f64,greedy,margin,entropy,softmax-temp-0.8,halton,remdm-cap,eb-adaptive,cfg-linear,reveal-arccos)
  LIMIT_MS=290; LIMIT_SS=100
  MSS=(--device cuda --dtype bf16 --width 1024 --mm 14 --single 28 --codebook 8192 --image-width 1024 --steps 8
       --batch 2 --rounds 2)
  LIMIT_MSS=150
  nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv | tee "$OUT/gpu.txt"
fi
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
timeout "$LIMIT_MS" python3 benchmarks/model_speed.py --full-size "${MS[@]}" --compile both \
  --eager-variants vanilla --variants "$VARIANTS" --mode fast --json "$OUT/model_speed.json" 2>&1 \
  | grep -v "Enum subclass\|torchao" | tee "$OUT/model_speed.log"
echo "model_speed rc=${PIPESTATUS[0]}"
timeout "$LIMIT_SS" python3 benchmarks/step_speed.py "${SS[@]}" --mode both --json "$OUT/step_speed.json" 2>&1 \
  | grep -v "Enum subclass\|torchao" | tee "$OUT/step_speed.log"
echo "step_speed rc=${PIPESTATUS[0]}"
timeout "$LIMIT_MSS" python3 benchmarks/model_side_speed.py "${MSS[@]}" --json "$OUT/model_side_speed.json" 2>&1 \
  | grep -v "Enum subclass\|Unable to import" | tee "$OUT/model_side_speed.log"
echo "model_side_speed rc=${PIPESTATUS[0]}"
# the compact table last (the reply shows the end of the output)
python3 - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
try:
    rows = json.loads((out / "model_speed.json").read_text())["results"]
except Exception as exc:  # model_speed did not finish: the rows it printed before it stopped, from its log
    print("no model_speed.json:", exc, "- rows from model_speed.log")
    rows = []
    for line in (out / "model_speed.log").read_text().splitlines() if (out / "model_speed.log").exists() else []:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "seconds_per_image" in row:
            rows.append(row)
print("\n| compiled | B | variant | mode | s/image | ms/step | transformer share | peak GiB | compile s | warm-up s |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['compiled']} | {r['batch']} | {r['variant']} | {r['mode']} | {r['seconds_per_image']:.3f} | "
          f"{1e3 * r['sampling_seconds_per_step']:.2f} | {r['transformer_share']:.4f} | {r['peak_memory_gib']:.2f} | "
          f"{r['compile_seconds']} | {r['warm_up_seconds']} |")
PY
