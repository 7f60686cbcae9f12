#!/bin/sh
# Runs examples/mm-bench on the models tools/bench_models.py wrote into DIR, with 1 and 2
# threads, each model in its own process (so each peak RSS is its own), and prints the full
# reports followed by the Markdown table of docs/performance.md.
#   tools/bench.sh DIR [RUNS]
set -e
dir=${1:?usage: tools/bench.sh DIR [RUNS]}
runs=${2:-3}
cd "$(dirname "$0")/.."
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
for threads in 1 2; do
    for spec in "--vision $dir/vit-b16.gguf" "--vision $dir/vit-l14-336.gguf" \
                "--audio $dir/whisper-base.gguf" \
                "--text $dir/llama-1b.gguf" "--text $dir/llama-1b-f16.gguf" \
                "--text $dir/llama-1b-q8_0.gguf" "--text $dir/llama-1b-q4_0.gguf" \
                "--text $dir/llama-1b-q4_k_m.gguf"; do
        # shellcheck disable=SC2086
        report=$(examples/mm-bench $spec -t "$threads" -r "$runs")
        printf '%s\n\n' "$report"
        printf '%s\n' "$report" | tail -n 1 >> "$rows"
    done
done
echo "| model | threads | load ms | peak RSS / (weights + KV) | media ms (image: preprocess + encode; audio: features + encode of 30 s) | encode: GEMM parts % of sgemm peak | encode: end to end % | prefill 512 tokens/s | prefill: GEMM parts % | prefill: end to end % | decode tokens/s | decode % of bandwidth bound |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
cat "$rows"
