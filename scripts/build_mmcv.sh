#!/usr/bin/env bash
# Builds mmcv 2.1.0 with its compiled CPU ops from PyPI's source distribution into a wheel
# in CACHE (about 36 minutes on 2 cores), with the two changes torch 2.14 needs:
# setuptools<81 (mmcv's setup.py imports pkg_resources) without build isolation, and
# -std=c++17 raised to -std=c++20 (torch's headers need C++20). The wheel is written under
# a temporary name and renamed into place. install_detection.sh calls this when neither
# ../shared/wheels nor CACHE holds the wheel.
# Usage: scripts/build_mmcv.sh CACHE [PYTHON]   (default .venv/bin/python; its torch is built against)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${1:?usage: scripts/build_mmcv.sh CACHE [PYTHON]}
PY=${2:-.venv/bin/python}
MMCV=2.1.0
TAG=$($PY -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
WHEEL=mmcv-$MMCV-$TAG-${TAG}-linux_x86_64.whl

echo "building mmcv $MMCV with CPU ops into $CACHE (about 36 minutes on 2 cores)"
mkdir -p "$CACHE"
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
$PY -m pip install 'setuptools>=77.0.3,<81' wheel ninja
$PY -m pip download --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV" -d "$build"
tar -xzf "$build/mmcv-$MMCV.tar.gz" -C "$build"
sed -i 's/-std=c++17/-std=c++20/g' "$build/mmcv-$MMCV/setup.py"
CUDA_VISIBLE_DEVICES= MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=2 \
  $PY -m pip wheel --no-build-isolation --no-deps -w "$build/dist" "$build/mmcv-$MMCV"
cp "$build/dist/$WHEEL" "$CACHE/.$WHEEL.tmp" && mv "$CACHE/.$WHEEL.tmp" "$CACHE/$WHEEL"
echo "built $CACHE/$WHEEL"
