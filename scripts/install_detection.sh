#!/usr/bin/env bash
# The detection extra: mmcv 2.1.0 with its compiled CPU ops, then the rest of
# pyproject's `detection` extra (mmdet, mmengine, pycocotools).
#
# mmcv has no wheel on PyPI for this Python/torch, and mmcv-lite cannot serve (mmdet.models
# imports mmcv.ops). So: a wheel from ../shared/wheels when present, else one built earlier
# on this machine (EMBER_WHEEL_CACHE, default ~/.cache/ember/wheels), else build it there
# from PyPI's source distribution with scripts/build_mmcv.sh (about 36 minutes on 2 cores).
# Usage: scripts/install_detection.sh [PYTHON]   (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
MMCV=2.1.0
CACHE=${EMBER_WHEEL_CACHE:-$HOME/.cache/ember/wheels}
TAG=$($PY -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
WHEEL=mmcv-$MMCV-$TAG-${TAG}-linux_x86_64.whl

if $PY -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '$MMCV')" 2>/dev/null; then
  echo "mmcv $MMCV with ops already installed"
else
  if [ -f "../shared/wheels/$WHEEL" ]; then
    src="../shared/wheels/$WHEEL"
  elif [ -f "$CACHE/$WHEEL" ]; then
    src="$CACHE/$WHEEL"
  else
    scripts/build_mmcv.sh "$CACHE" "$PY"
    src="$CACHE/$WHEEL"
  fi
  $PY -m pip install "$src"
fi
# The rest of the extra, as pyproject.toml lists it (mmcv is satisfied by now).
$PY -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["detection"]))' \
  | xargs $PY -m pip install
$PY -c "import mmdet.models, mmcv.ops, pycocotools; print('detection extra ready: mmdet', __import__('mmdet').__version__)"
