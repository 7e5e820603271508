"""Which numbers of a seeded run agree across CPU kernels and thread counts, and how closely?

    python scripts/cross_cpu.py --out /tmp/cross -- "a red circle on a blue background" --seed 0
    python scripts/cross_cpu.py --threads 1 --repeat 2 -- "a red circle" --model shapes \\
        --generator pixel --size 48 32 --cutn 4 --steps 5 --seed 11 --init-scale 3

Runs `python generate.py ARGS` in a fresh process for every ATEN_CPU_CAPABILITY of
--capabilities (torch's kernels: `default` is its portable code, `avx2` and `avx512` its
vectorised builds; `own` is what torch picks on this CPU; `avx2+libs` also caps MKL and oneDNN
at AVX2, the closest this CPU comes to an AVX2-only one) and every --threads count (set with
--threads and OMP_NUM_THREADS), --repeat times each, then compares every run with the first one
(the reference: the first capability and thread count):

- pixels: whether final.png's RGB values are identical, their largest difference in grey
  levels, the share of values that differ at all and the mean difference;
- metrics: whether metrics.csv's text (without seconds) is identical, the first step whose row
  differs (any column) and the first whose loss differs, the loss's largest difference
  relative to the reference's value at that step, and the final loss's and final eval_loss's
  (with --json, every column's largest difference relative to its largest value).

Prints one markdown table row per run (docs/reproducibility.md quotes them) and, with --json,
every figure as one JSON object. The run directories stay under --out.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def own_capability() -> str:
    """The capability torch picks on this CPU (lower case, as ATEN_CPU_CAPABILITY takes it)."""
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return out.stdout.strip().lower()


# `CAPABILITY+libs` caps MKL (matrix products, FFTs) and oneDNN (convolutions) at the same
# instruction set: ATEN_CPU_CAPABILITY alone chooses only torch's own kernels
LIBS = {
    "default": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx512": {"MKL_ENABLE_INSTRUCTIONS": "AVX512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
}


def environment(capability: str, threads: int) -> dict:
    """os.environ with torch's kernels (and with +libs, MKL's and oneDNN's) chosen."""
    aten, _, libs = capability.partition("+")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": aten, "OMP_NUM_THREADS": str(threads)}
    return {**env, **LIBS[aten]} if libs else env


def run(args: list, out: Path, capability: str, threads: int) -> Path:
    """generate.py ARGS into out under that capability and thread count."""
    env = environment(capability, threads)
    cmd = [sys.executable, str(ROOT / "generate.py"), *args, "--threads", str(threads)]
    cmd += ["--no-progress", "--no-video", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with {done.returncode}:\n{done.stderr}")
    return out


def read_run(run_dir: Path) -> tuple:
    """(pixels uint8 (H, W, 3), {column: float array}, metrics text without seconds)."""
    pixels = np.asarray(Image.open(run_dir / "final.png").convert("RGB"))
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [k for k in rows[0] if k != "seconds"]
    numbers = {k: np.array([float(r[k]) if r[k] else np.nan for r in rows]) for k in columns}
    text = "\n".join(",".join(r[k] for k in columns) for r in rows)
    return pixels, numbers, text


def _relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| / |b| where both are numbers (NaN elsewhere: steps without eval_loss)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a == b, 0.0, np.abs(a - b) / np.abs(b))


def _first(differs: np.ndarray, ref_numbers: dict):
    """The step of the first True in differs (one per row), None if none."""
    return int(ref_numbers["step"][differs.argmax()]) if differs.any() else None


def compare(run: tuple, ref: tuple) -> dict:
    """The figures of the module docstring for run against ref (both read_run's)."""
    (pixels, numbers, text), (ref_pixels, ref_numbers, ref_text) = run, ref
    diff = np.abs(pixels.astype(int) - ref_pixels.astype(int))
    rows = np.array([a != b for a, b in zip(text.splitlines(), ref_text.splitlines())])
    loss = _relative(numbers["loss"], ref_numbers["loss"])
    evals = _relative(numbers["eval_loss"], ref_numbers["eval_loss"])
    columns = {}  # each column's largest difference relative to its largest value
    for k, ref_col in ref_numbers.items():
        scale = np.nanmax(np.abs(ref_col)) or 1.0
        delta = np.abs(numbers[k] - ref_col) / scale
        columns[k] = float(np.nanmax(delta)) if np.isfinite(delta).any() else 0.0
    return {
        "pixels_identical": bool(diff.max() == 0),
        "pixels_max_levels": int(diff.max()),
        "pixels_share_differing": float((diff > 0).mean()),
        "pixels_mean_levels": float(diff.mean()),
        "metrics_identical": text == ref_text,
        "first_differing_step": _first(rows, ref_numbers),
        "first_differing_loss": _first(numbers["loss"] != ref_numbers["loss"], ref_numbers),
        "loss_max_rel": float(np.nanmax(loss)),
        "loss_final_rel": float(loss[-1]),
        "eval_loss_final_rel": float(evals[~np.isnan(evals)][-1]),
        "columns": columns,
    }


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="results/cross_cpu", help="where the runs go")
    parser.add_argument(
        "--capabilities",
        default="default,avx2,own",
        help="comma list of ATEN_CPU_CAPABILITY values ('own': this CPU's)",
    )
    parser.add_argument("--threads", default="1,2", help="comma list of thread counts")
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting")
    parser.add_argument(
        "--reuse", action="store_true", help="read the run directories already under --out"
    )
    parser.add_argument("--json", action="store_true", help="print every figure as JSON too")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then generate.py's arguments")
    opts = parser.parse_args(argv)
    opts.args = opts.args[1:] if opts.args[:1] == ["--"] else opts.args
    return opts


def main(argv=None) -> int:
    opts = parse_args(argv)
    own = own_capability()
    capabilities = list(
        dict.fromkeys(own if c == "own" else c for c in opts.capabilities.split(","))
    )
    threads = [int(t) for t in opts.threads.split(",")]
    out = Path(opts.out)
    runs = []
    for capability in capabilities:
        for t in threads:
            for k in range(opts.repeat):
                run_dir = out / f"{capability}-t{t}-{k}"
                if not (opts.reuse and (run_dir / "final.png").exists()):
                    run(opts.args, run_dir, capability, t)
                runs.append((capability, t, k, read_run(run_dir)))
    ref = runs[0][3]
    print(f"generate.py {' '.join(opts.args)}  (this CPU: {own}; reference: the first row)")
    print(
        "| capability | threads | run | pixels identical | max diff (grey levels) "
        "| share differing | mean diff | metrics.csv identical | first row differing "
        "| first loss differing | loss: max rel diff | final loss | final eval_loss |"
    )
    print("| --- " * 13 + "|")
    results = []
    for capability, t, k, data in runs:
        got = compare(data, ref)
        row, loss = got["first_differing_step"], got["first_differing_loss"]
        print(
            f"| {capability} | {t} | {k + 1} | {_yes(got['pixels_identical'])} "
            f"| {got['pixels_max_levels']} | {got['pixels_share_differing']:.2%} "
            f"| {got['pixels_mean_levels']:.2f} | {_yes(got['metrics_identical'])} "
            f"| {'-' if row is None else row} | {'-' if loss is None else loss} "
            f"| {got['loss_max_rel']:.1e} "
            f"| {got['loss_final_rel']:.1e} | {got['eval_loss_final_rel']:.1e} |"
        )
        results.append({"capability": capability, "threads": t, "run": k + 1, **got})
    if opts.json:
        print(json.dumps({"args": opts.args, "own": own, "runs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
