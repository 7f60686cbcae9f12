#!/bin/sh
# mm-server on 127.0.0.1 (a free port), driven by the official `openai` npm client
# (tests/server/test.mjs): the bundled model's answers non-streamed and streamed, Anthropic's
# shape, CLIP embeddings, a load of 8 clients x 25 requests, hostile requests; then, on a
# random-weight model that never stops by itself, a client leaving mid-stream, a full queue and
# SIGTERM during a long stream. Runs where the server is built (libmicrohttpd: tests/run_all.sh, meson);
# there it fails if anything it needs is missing: node and tests/server/node_modules
# (`npm ci --prefix tests/server`, which `make test` runs).
cd "$(dirname "$0")/../.." || exit 1
bin=${MM_TEST_BIN:-tests}
server=${MM_SERVER:-server/mm-server}
models=models
node=${NODE:-node}
for need in "$server" "$bin/endless_llama"; do
    [ -x "$need" ] || { echo "FAIL: $need is not built"; exit 1; }
done
command -v "$node" >/dev/null || { echo "FAIL: node is not installed"; exit 1; }
[ -f tests/server/node_modules/openai/package.json ] ||
    { echo "FAIL: the openai client is not installed: npm ci --prefix tests/server"; exit 1; }
tmp=$(mktemp -d) || exit 1
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$tmp"' EXIT

# Starts the server with the given arguments and sets $pid and $url (fails after 60 s).
start() {
    "$server" --host 127.0.0.1 --port 0 "$@" >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    i=0
    while ! grep -q 'listening on' "$tmp/out"; do
        i=$((i + 1))
        if [ $i -gt 600 ] || ! kill -0 $pid 2>/dev/null; then
            echo "FAIL: the server did not start"; cat "$tmp/out" "$tmp/err"; return 1
        fi
        sleep 0.1
    done
    url=$(sed -n 's|.*listening on \(http://[^ ]*\).*|\1|p' "$tmp/out")
}

# Waits up to 30 s for the server to exit; its exit status in $rc.
stopped() {
    i=0
    while kill -0 $pid 2>/dev/null && [ $i -lt 300 ]; do i=$((i + 1)); sleep 0.1; done
    if kill -0 $pid 2>/dev/null; then
        echo "FAIL: the server is still running"; return 1
    fi
    wait $pid
    rc=$?
    pid=
}

status=0
start -m $models/scenes-llava.gguf --mmproj $models/scenes-mmproj.gguf \
      --clip $models/scenes-clip.gguf --parallel 2 --queue 16 --timeout 2 --max-body 2 \
      --api-key test-key -t 1 || exit 1
"$node" tests/server/test.mjs main "$url" test-key "$pid" "$models" || status=1
kill -TERM $pid
stopped || status=1
# (under ASan a leak makes the exit status non-zero)
[ "$rc" = 0 ] || { echo "FAIL: the server exited with $rc"; cat "$tmp/err"; status=1; }

"$bin/endless_llama" "${MM_SHARED_DIR:-tests}/vectors/tokenizer/ggml-vocab-llama-spm.gguf" \
    "$tmp/endless.gguf" || exit 1
start -m "$tmp/endless.gguf" --parallel 1 --queue 1 --max-tokens-limit 100000 -t 1 || exit 1
"$node" tests/server/test.mjs cancel "$url" "$pid" || status=1
stopped || status=1
if [ "$rc" != 0 ] || ! grep -q 'mm-server: stopped' "$tmp/err"; then
    echo "FAIL: after SIGTERM the server exited with $rc"; cat "$tmp/err"; status=1
else
    echo "ok   SIGTERM: the server finished its request and exited with 0"
fi
[ $status -eq 0 ] && echo "mm-server: all checks passed"
exit $status
