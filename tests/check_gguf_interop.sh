#!/bin/sh
# libmm's GGUF reader and writer against the independent Python implementation (tools/gguf.py):
# same decoded values, bit for bit, and byte-identical rewrites. See tests/gguf_interop.py.
cd "$(dirname "$0")/.." || exit 1
exec /usr/bin/python3 tests/gguf_interop.py
