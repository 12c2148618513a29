#!/usr/bin/env bash
# Sets up everything nsh needs on a fresh machine, idempotently: a virtualenv in .venv with the pinned
# stack, torchsort compiled against that torch, Fashion-MNIST from Debian, CIFAR-10 unpacked into data/.
# torchsort ships only as source and must see the installed torch while it builds, so a plain
# `pip install .` cannot do this in one step (see ../shared/ENVIRONMENT.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${NSH_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}

step() { printf '\n== %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  step "creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
export VIRTUAL_ENV=$VENV
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install -U pip wheel setuptools

have() { "$VENV/bin/python" -c "import $1" 2>/dev/null; }

if ! have torchvision; then
  step "torch + torchvision (large; about a minute from the local cache)"
  $PIP install torch==2.14.1 torchvision==0.29.1
fi

if ! have torchsort; then
  step "torchsort (compiled against the installed torch)"
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    # A GPU node: build the CUDA kernel too.
    CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} $PIP install --no-build-isolation torchsort==0.1.10
  else
    # nvcc may be on PATH without a GPU, which breaks torchsort's arch detection: hide it.
    env PATH="$VENV/bin:/usr/bin:/bin" $PIP install --no-build-isolation torchsort==0.1.10
  fi
fi

step "nsh and its pinned dependencies"
$PIP install -e ".[dev]"

if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  step "Fashion-MNIST (Debian package dataset-fashion-mnist)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) \
    || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST tests will report it missing"
fi

CIFAR_TGZ=${NSH_CIFAR_TGZ:-$ROOT/../shared/data/cifar10-jpeg.tar.gz}
if [ ! -d data/cifar10-jpeg ] && [ -f "$CIFAR_TGZ" ]; then
  step "CIFAR-10 (JPEG copy) -> data/cifar10-jpeg"
  mkdir -p data && tar xzf "$CIFAR_TGZ" -C data
fi
step "setup done: activate with 'source $VENV/bin/activate'"
