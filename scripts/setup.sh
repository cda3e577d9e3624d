#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: Debian's Fashion-MNIST package (where apt exists),
# a virtual environment with the CPU torch wheel, and the package with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing dataset-fashion-mnist (Debian package)"
    (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ||
        (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) ||
        echo "setup: apt could not install dataset-fashion-mnist; the loader will try to download it"
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch, rem_unlearn, pytest, xdist, ray, transformers, datasets, submitit, tensorboard, mlflow" >/dev/null 2>&1; then
    echo "setup: installing torch==2.13.0 (CPU wheel) and rem-unlearn[test]"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    # torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
    "$VENV/bin/python" -m pip install -q "torch==2.13.0"
    "$VENV/bin/python" -m pip install -q -e ".[test]"
fi
