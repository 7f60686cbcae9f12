#!/bin/sh
# Installs what building and testing libmm needs on Debian 12 (run as root or with sudo).
set -e
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends \
    build-essential pkg-config binutils \
    libopenblas-dev libpng-dev libjpeg62-turbo-dev libsoxr-dev check \
    meson ninja-build \
    python3 python3-numpy python3-torch python3-pil
# mm-server (libmicrohttpd), its tests (node, and npm: make test installs the openai client),
# and the Python binding's Dask batch module
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends \
    libmicrohttpd-dev python3-distributed
command -v npm >/dev/null ||
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends nodejs npm
