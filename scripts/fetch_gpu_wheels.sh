#!/usr/bin/env bash
# Wheels the GPU machine lacks (it has torch, timm, regex, huggingface-hub, safetensors, tqdm),
# for Python 3.12 there, into .whl/ (git-ignored). Run here, where pip reaches PyPI:
#     bash scripts/fetch_gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
ls -la .whl
