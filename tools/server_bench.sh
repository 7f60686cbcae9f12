#!/bin/sh
# mm-server's overhead: the bundled model's 36 held-out questions (models/images/questions.tsv,
# each with its image) as chat requests, answered by mm-server at 1, 2 and 4 parallel sessions
# and by the same number of sessions in one process through the C API
# (examples/mm-server-bench); prints requests/s, p50/p99 latency, CPU time per request and the
# server's share of the in-process throughput (best of the rounds; CPU: least). A short run (ROUNDS x REQUESTS per setting, default 3 x 144). Not a test.
#   [ROUNDS=3] tools/server_bench.sh [REQUESTS]
cd "$(dirname "$0")/.." || exit 1
requests=${1:-144}
m=models
tmp=$(mktemp -d) || exit 1
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
export OPENBLAS_NUM_THREADS=1
/usr/bin/python3 - "$m" "$tmp" <<'PY'
import base64, json, sys
models, out = sys.argv[1], sys.argv[2]
for i, line in enumerate(open(models + "/images/questions.tsv")):
    image, question, _ = line.rstrip("\n").split("\t")
    data = base64.b64encode(open(models + "/images/" + image, "rb").read()).decode()
    with open("%s/%02d.json" % (out, i), "w") as f:
        json.dump({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + data}},
            {"type": "text", "text": question}]}]}, f)
PY
# Best of ROUNDS alternating runs of each, as other work on the machine only ever slows a run.
rounds=${ROUNDS:-3}
best() { sort -n | tail -1; }
least() { sort -n | head -1; }
rate() { sed -n 's|.* \([0-9.]*\) requests/s.*|\1|p'; }
cpu() { sed -n 's|.*CPU \([0-9.]*\) ms per request.*|\1|p'; }
for n in 1 2 4; do
    server/mm-server -m $m/scenes-llava.gguf --mmproj $m/scenes-mmproj.gguf --port 0 \
        --parallel $n -t 1 >"$tmp/out" 2>&1 &
    pid=$!
    url=
    while [ -z "$url" ]; do
        sleep 0.1
        url=$(sed -n 's|.*listening on \(http://[^ ]*\).*|\1|p' "$tmp/out")
    done
    : >"$tmp/http"
    : >"$tmp/inproc"
    for r in $(seq "$rounds"); do
        examples/mm-server-bench -u "$url" -p $pid -np $n -r "$requests" "$tmp"/*.json >>"$tmp/http"
        examples/mm-server-bench -m $m/scenes-llava.gguf --mmproj $m/scenes-mmproj.gguf \
            -np $n -r "$requests" "$tmp"/*.json >>"$tmp/inproc"
    done
    kill $pid
    wait $pid 2>/dev/null
    pid=
    cat "$tmp/http" "$tmp/inproc"
    http=$(rate <"$tmp/http" | best)
    inproc=$(rate <"$tmp/inproc" | best)
    http_cpu=$(cpu <"$tmp/http" | least)
    inproc_cpu=$(cpu <"$tmp/inproc" | least)
    echo "$n $http $inproc $http_cpu $inproc_cpu" | awk '{
        printf "parallel %d: best %.1f requests/s through the server, %.1f in-process (%.0f %%); ", $1, $2, $3, 100 * $2 / $3
        printf "CPU per request %.2f ms in the server, %.2f in-process (%.0f %%)\n", $4, $5, 100 * $5 / $4 }'
done
