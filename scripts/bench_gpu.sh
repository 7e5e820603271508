#!/usr/bin/env bash
# The performance issue's GPU grid in one run (under 10 minutes on an H100, most of it compiling):
# compiled (CUDA graphs) and eager steps for ViT-B-32 at 512²/cutn 32, ViT-B-16 at 512²/cutn 64
# (random weights: the compute is the same), an eager size x cutn sweep with its plot, the 2048²
# memory run and VQGAN (random imagenet-f16 weights). Each part has its own time limit.
# JSON lines go to $OUT (the device tool's folder) or results/bench/.
#     bash scripts/fetch_gpu_wheels.sh        # here, once: open_clip and ftfy as wheels
#     device run, carry [".whl"]:  bash scripts/bench_gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
    export PYTHONPATH=$PWD
fi
out=${OUT:-results/bench}; mkdir -p "$out"; export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
start=$(date +%s)
bench() { name=$1; limit=$2; shift 2; left=$(( 570 - $(date +%s) + start ))
          (( left < 60 )) && { echo "== $name: skipped, ${left}s left"; return; }
          (( limit > left )) && limit=$left
          echo "== $name (limit ${limit}s): $*"
          timeout "$limit" python3 -m clampgen.bench --device cuda --json "$@" 2>&1 \
              | tee "$out/$name.log" | tail -n 1 > "$out/$name.json"; }
# most important first: the issue's headline target, then its eager baseline
bench b32_compiled 200 --model ViT-B-32 --size 512 --cutn 32 --steps 50 --warmup 5 --compile
bench b32_eager     60 --model ViT-B-32 --size 512 --cutn 32 --steps 30
bench b16_compiled 160 --model ViT-B-16 --size 512 --cutn 64 --steps 30 --warmup 5 --compile
bench b32_sweep     90 --model ViT-B-32 --size 256,512,1024 --cutn 16,32,64 --steps 20 \
                       --plot "$out/bench_gpu.png"
bench b32_2048     120 --model ViT-B-32 --size 2048 --cutn 32 --steps 10 --compile
bench vqgan        100 --model ViT-B-32 --generator vqgan --random-vqgan --size 512 --cutn 32 --steps 10
echo "== done after $(( $(date +%s) - start ))s"
