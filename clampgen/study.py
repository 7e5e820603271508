"""The clamp study: one suite (prompts x seeds x every clamp) per condition, then one report.

A condition fixes the generator, the initialisation (one that puts many image-tensor values out
of [0, 1], one that puts none) and the optimizer; within a condition every clamp variant of a
prompt and seed starts from the same image and sees the same cutouts (clampgen.compare).

    python -m clampgen.study --out results/study                  # the committed study
    python -m clampgen.study --out /tmp/s --steps 10 --seeds 1 --conditions pixel-in
    OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m clampgen.study --out results/study

Restarting the same command skips the runs that finished. The study's summary.md and study.png
land in --out; each condition's suite (run directories, per-prompt tables, index.html) in
--out/<condition>/.
"""
import argparse
import dataclasses
import sys
from pathlib import Path

from .config import GenerateConfig

# name -> GenerateConfig overrides. Out-of-range fractions at step 0 (128x128, measured with
# generators.initialise): pixel noise x4 62%, uniform 0%; fft noise x1 0%, fft noise x80 ~55%.
CONDITIONS = {
    "pixel-in": dict(generator="pixel", init="uniform"),
    "pixel-out": dict(generator="pixel", init="noise", init_scale=4.0),
    "fft-in": dict(generator="fft", init="noise", init_scale=1.0),
    "fft-out": dict(generator="fft", init="noise", init_scale=80.0),
    # SGD has no per-element normalisation: lr 200 gives in-range steps of ~1e-2 per pixel
    # (the shapes model's pixel gradient norm is ~0.013 over 3x128x128 values at the start).
    "pixel-out-sgd": dict(generator="pixel", init="noise", init_scale=4.0, optimizer="sgd",
                          lr=200.0),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m clampgen.study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/study", help="study directory")
    p.add_argument("--prompts", default="prompts/study.txt", help="prompts file (one per line)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per prompt (seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--steps", type=int, default=60, help="optimisation steps per run")
    p.add_argument("--cutn", type=int, default=8, help="cutouts per step")
    p.add_argument("--lr", type=float, default=0.1,
                   help="learning rate of the Adam conditions (the SGD condition sets its own)")
    p.add_argument("--clamps", default="all", help="'all' or a comma list of clamp names")
    p.add_argument("--conditions", default=",".join(CONDITIONS),
                   help=f"comma list of conditions: {', '.join(CONDITIONS)}")
    p.add_argument("--model", default="shapes", help="CLIP model (see generate.py --model)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--progress", action="store_true", help="progress bar for every run")
    return p.parse_args(argv)


def base_config(args) -> GenerateConfig:
    """The options every condition shares; frames every 25 steps keep the study's disk small."""
    return GenerateConfig(model=args.model, device=args.device, steps=args.steps, seed=args.seed,
                          cutn=args.cutn, lr=args.lr, save_every=20, eval_every=5,
                          progress=args.progress)


def main(argv=None) -> int:
    args = parse_args(argv)
    from .malloc import keep_freed_memory
    keep_freed_memory()
    names = [n.strip() for n in args.conditions.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown or min(args.seeds, args.steps, args.cutn) < 1:
        print(f"error: unknown condition {unknown[0]!r} (choose from: {', '.join(CONDITIONS)})"
              if unknown else "error: --seeds, --steps and --cutn must be >= 1", file=sys.stderr)
        return 2
    from .compare import runner as compare, report
    base, out = base_config(args), Path(args.out)
    rank, world, owned = compare._dist()  # one process group for every condition's suite
    try:
        bundle = compare.load_bundle(base)
        for name in names:
            cfg = dataclasses.replace(base, **CONDITIONS[name])
            print(f"clampgen.study: condition {name}", file=sys.stderr)
            compare.run_suite(cfg, out / name, args.prompts, args.clamps, seeds=args.seeds,
                              progress=args.progress, bundle=bundle)
    finally:
        compare._finish(world, owned)
    if rank == 0:  # the suites end with a barrier: every rank's runs are done
        report.write_study_report(out)
        print(f"wrote {out / 'summary.md'} and {out / 'study.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
