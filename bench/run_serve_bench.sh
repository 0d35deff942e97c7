#!/usr/bin/env bash
# The server benchmark (bench/serve_bench.py) on a synthetic model in the shapes of
# SmolLM2-135M: bf16 as written by synth_model.py, and Q4_0 (RTN) quantized from it.
# The synthetic model has no tokenizer and `frugal quantize` needs one to write a GGUF, so the
# quantized copy carries wiki-7m's tokenizer.model. The benchmark sends token ids and counts
# token ids, so that tokenizer takes no part in anything measured.
# usage: bench/run_serve_bench.sh [BUILD_DIR] [THREADS]
set -euo pipefail
build=${1:-build}
threads=${2:-2}
here=$(cd "$(dirname "$0")" && pwd)
shared=${FRUGAL_SHARED:-$(cd "$here/../.." && pwd)/shared}
models=${FRUGAL_BENCH_MODELS:-$build/bench-models}
mkdir -p "$models"
if [ ! -f "$models/smollm2-135m/config.json" ]; then
  /usr/bin/python3 "$shared/tools/synth_model.py" smollm2-135m "$models/smollm2-135m.tmp" --dtype bf16 >/dev/null
  mv "$models/smollm2-135m.tmp" "$models/smollm2-135m"
fi
q4="$models/smollm2-135m-q4_0.gguf"
if [ ! -f "$q4" ]; then
  with_tok="$models/smollm2-135m-borrowed-tokenizer"
  mkdir -p "$with_tok"
  ln -sf "$(cd "$models/smollm2-135m" && pwd)/model.safetensors" "$with_tok/model.safetensors"
  cp "$models/smollm2-135m/config.json" "$with_tok/"
  cp "$shared/models/wiki-7m/tokenizer.model" "$shared/models/wiki-7m/tokenizer_config.json" "$with_tok/"
  "$build/frugal" quantize -m "$with_tok" -o "$q4" --type q4_0 -t "$threads" >/dev/null
fi
for model in "$models/smollm2-135m" "$q4"; do
  echo "### $(basename "$model"), $threads threads; $(uptime)"
  /usr/bin/python3 "$here/serve_bench.py" "$build/frugal" "$model" --threads "$threads"
done
# Sampled as OpenAI clients send it (a temperature; and with top_p), on the 4-bit copy: the
# sampler's cost per token is paid by every stream each step, which greedy does not show.
echo "### $(basename "$q4") sampled, $threads threads; $(uptime)"
/usr/bin/python3 "$here/serve_bench.py" "$build/frugal" "$q4" --threads "$threads" --levels 1,16 --skip-prefix --temperature 1
/usr/bin/python3 "$here/serve_bench.py" "$build/frugal" "$q4" --threads "$threads" --levels 1,16 --skip-prefix --temperature 1 --top-p 0.9
