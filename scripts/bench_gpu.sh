#!/usr/bin/env bash
# The performance issue's GPU grid in one run (about 5 minutes on an H100): eager and compiled
# steps for ViT-B-32 at 512²/cutn 32 and ViT-B-16 at 512²/cutn 64 (random weights: the compute
# is the same), a size and cutn sweep, the 2048² memory run, and a short compiled generation.
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
bench() { name=$1; shift; echo "== $name: $*"
          timeout 240 python3 -m clampgen.bench --device cuda --json "$@" 2>&1 | tee "$out/$name.log" \
              | tail -n 1 > "$out/$name.json"; }
bench b32_eager        --model ViT-B-32 --size 512 --cutn 32 --steps 30
bench b32_compiled     --model ViT-B-32 --size 512 --cutn 32 --steps 50 --warmup 5 --compile
bench b16_compiled     --model ViT-B-16 --size 512 --cutn 64 --steps 30 --warmup 5 --compile
bench b32_sweep        --model ViT-B-32 --size 256,512,1024 --cutn 8,32,64 --steps 20 --compile
bench b32_2048         --model ViT-B-32 --size 2048 --cutn 32 --steps 10 --compile
bench vqgan_compiled   --model ViT-B-32 --generator vqgan --size 512 --cutn 32 --steps 20 --compile
echo "== generate"
timeout 120 python3 generate.py "a red circle on a blue background" --device cuda \
    --compile reduce-overhead --generator pixel --size 512 --steps 100 --out "$out/gen" \
    --no-progress 2>&1 | tail -n 3
