#!/usr/bin/env bash
# End-to-end benchmarks: synthetic models in the exact shapes of SmolLM2-135M and
# Qwen2.5-0.5B (bf16), measured by `frugal bench` against the machine's limits in the same run.
# usage: bench/run_bench.sh [BUILD_DIR] [THREADS]
set -euo pipefail
build=${1:-build}
threads=${2:-2}
shared=${FRUGAL_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
models=${FRUGAL_BENCH_MODELS:-$build/bench-models}
mkdir -p "$models"
for preset in smollm2-135m qwen2.5-0.5b; do
  if [ ! -f "$models/$preset/config.json" ]; then
    /usr/bin/python3 "$shared/tools/synth_model.py" "$preset" "$models/$preset.tmp" --dtype bf16 >/dev/null
    mv "$models/$preset.tmp" "$models/$preset"
  fi
  echo "== $preset (bf16), $threads threads"
  "$build/frugal" bench -m "$models/$preset" -t "$threads"
done
