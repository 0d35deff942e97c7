#!/usr/bin/env bash
# Decode and prefill speed per weight format on the synthetic SmolLM2-135M and Qwen2.5-0.5B:
# each bf16 model is quantized with `frugal quantize --pure` (round to nearest; every matrix in
# the format where its row length allows, else the quantizer's fallback type) and measured by
# `frugal bench`, whose bandwidth bound is measured in the same run.
# usage: bench/quant_bench.sh [BUILD_DIR] [THREADS] [TYPES...]
# FRUGAL_BENCH_FLAGS adds flags to every `frugal bench` (e.g. --no-repack for the file layout).
set -euo pipefail
build=${1:-build}
threads=${2:-2}
shift 2 || true
types=${*:-bf16 q8_0 q4_0 q4_1 iq4_nl nf4 int4_g32 int4_g64 int4_g128 int8_row q4_k q6_k}
shared=${FRUGAL_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
models=${FRUGAL_BENCH_MODELS:-$build/bench-models}
presets=${FRUGAL_BENCH_PRESETS:-smollm2-135m qwen2.5-0.5b}
mkdir -p "$models"
printf "%-14s %-10s %9s %8s %9s %10s %8s\n" model type "MB/tok" "decode" "%bw" "prefill" "load"
for preset in $presets; do
  if [ ! -f "$models/$preset/config.json" ]; then
    /usr/bin/python3 "$shared/tools/synth_model.py" "$preset" "$models/$preset.tmp" --dtype bf16 >/dev/null
    mv "$models/$preset.tmp" "$models/$preset"
  fi
  for type in $types; do
    model="$models/$preset"
    if [ "$type" != bf16 ]; then
      model="$models/$preset-$type.gguf"
      [ -f "$model" ] || "$build/frugal" quantize -m "$models/$preset${FRUGAL_BENCH_SRC_SUFFIX:-}" -o "$model" --type "$type" --pure -t "$threads" >/dev/null 2>&1
    fi
    json=$("$build/frugal" bench -m "$model" -t "$threads" -p 128 -n 64 -r 3 --json ${FRUGAL_BENCH_FLAGS:-} 2>/dev/null)
    load=$(cut -d' ' -f1 /proc/loadavg)
    /usr/bin/python3 -c "
import json, sys
j = json.loads(sys.argv[1])
pct = j['decode_pct_of_bandwidth']  # null: the weights fit in the L3 cache, no bandwidth bound
print('%-14s %-10s %9.1f %8.1f %9s %10.1f %8s' % ('$preset', '$type', j['weight_bytes_per_token'] / 1e6,
      j['decode_tokens_per_second'], 'in L3' if pct is None else '%.1f%%' % pct, j['prefill_tokens_per_second'],
      '$load'))" "$json"
  done
done
