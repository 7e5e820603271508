"""The clamp study: one suite (prompts x seeds x every clamp) per condition, then one report.

A condition fixes the generator, the initialisation (one that puts many image-tensor values out
of [0, 1], one that puts none) and the optimizer; within a condition every clamp variant of a
prompt and seed starts from the same image and sees the same cutouts (clampgen.compare.runner).
Every run is scored by judges that did not guide it (clampgen.judges: the shapes world's judges
for the study's prompts), and the report puts those judged outcomes first, the guide's loss
second, with cluster-bootstrap intervals over prompts.

    python -m clampgen.study --out results/study                  # the committed study
    python -m clampgen.study --out /tmp/s --steps 10 --seeds 1 --conditions pixel-in
    OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m clampgen.study --out results/study
    # on each of two machines (a filesystem both see; the first to reach HOST:29400 hosts it):
    OMP_NUM_THREADS=1 torchrun --nnodes 2 --nproc-per-node 2 --rdzv-backend c10d \
        --rdzv-endpoint HOST:29400 --rdzv-id study -m clampgen.study --out /shared/study

Every condition runs at the generators' defaults (steps, lr, cutout overhang, smoothness, cutn:
what users run) except for what the condition itself changes (CONDITIONS). Any generate.py
option given here (--steps, --cutn, --lr, --model, --clamp, --device ...) overrides the value of
every condition. Restarting the same command skips the runs that finished and resumes the
killed ones, so the study can run in parts. The study's summary.md, study.png and frame grids
land in --out; each condition's suite (run directories, per-prompt tables, index.html) in
--out/<condition>/.
"""

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from clampgen.config import GenerateConfig, merge_config
from clampgen.generators import with_defaults
from clampgen.keepers import parse_keepers
from clampgen.options import add_options, fields_of, new_parser, option

# name -> what the condition changes from the generators' defaults (GenerateConfig's, then the
# generator's own: clampgen.generators.with_defaults). Out-of-range fractions at step 0 (the
# study's runs at 0.4.0's colour start, mean over prompts): pixel 32%, pixel-in 0%, pixel-out 64%,
# fft-in 8%, fft-out 63%, vqgan-random 0.6%, vqgan 0%. `clamp` is the condition's variant list
# (clampgen.keepers.parse_keepers): the clamps and every keeper that applies to the generator;
# pixel-out adds the two mechanism experiments. To re-point the study at new defaults, change
# nothing here: only what a condition is about (its start, optimizer, learning rate) is pinned.
VQGAN_INIT = "prompts/init_two_orange_crosses.png"  # a scene none of the study's prompts asks for
CONDITIONS = {
    # the pixel generator's default start (the guide's colour start under noise of std 0.25):
    # what users run
    "pixel": dict(generator="pixel", clamp="all+keepers", step_sizes=True),
    "pixel-in": dict(generator="pixel", init="uniform", clamp="all+keepers", step_sizes=True),
    "pixel-out": dict(
        generator="pixel",
        init="noise",
        init_scale=4.0,
        clamp="all+keepers,experiments",
        step_sizes=True,
    ),
    "fft-in": dict(generator="fft", init="noise", clamp="all+keepers"),
    "fft-out": dict(generator="fft", init="noise", init_scale=80.0, clamp="all+keepers"),
    # SGD has no per-element normalisation: lr 200 gives in-range steps of ~1e-2 per pixel
    # (the shapes model's pixel gradient norm is ~0.013 over 3x128x128 values at the start).
    "pixel-out-sgd": dict(
        generator="pixel",
        init="noise",
        init_scale=4.0,
        optimizer="sgd",
        lr=200.0,
        clamp="all+keepers",
        step_sizes=True,
    ),
    # the bundled shapes VQGAN, where clamp_with_grad was born: z from the guide's flat colour
    # (the default start), from random codebook entries (the notebooks' start) or from an
    # image's encoding. 64 px: the decoder's full-resolution convolutions make a step about 4x
    # dearer at 128 px.
    "vqgan": dict(generator="vqgan", init="noise", size=64, clamp="all+keepers"),
    "vqgan-random": dict(
        generator="vqgan", init="noise", init_colour="none", size=64, clamp="all+keepers"
    ),
    "vqgan-image": dict(generator="vqgan", init=VQGAN_INIT, size=64, clamp="all+keepers"),
}
# what every condition shares: the bundled model, the generators' own defaults for everything
# else; frames every 25 steps (the grids' rows) keep the study's disk small
STUDY_DEFAULTS = dict(model="shapes", save_every=25, eval_every=10, progress=False)
PER_RUN = ("prompt", "image_prompts", "out", "seed")  # set by the study for each run
# seeds per prompt of each condition (--seeds N sets every one's): prompts are the unit of
# replication, a prompt's seeds say how much of a difference is the start's
SEEDS = dict.fromkeys(CONDITIONS, 3)


@dataclass
class StudyOptions:
    out: str = option("results/study", "study directory")
    prompts: str = option("prompts/study.txt", "prompts file (one per line)")
    seeds: int = option(
        0, "seeds per prompt (seed, seed+1, ...); 0: each condition's own (study.SEEDS)"
    )
    seed: int = option(0, "first seed")
    conditions: str = option(
        ",".join(CONDITIONS), f"comma list of conditions: {', '.join(CONDITIONS)}"
    )


def parse_args(argv=None) -> tuple:
    """argv -> (StudyOptions, {GenerateConfig field: value} of the generate options given)."""
    parser = new_parser("python -m clampgen.study", __doc__)
    names = add_options(parser, StudyOptions)
    add_options(parser, GenerateConfig, defaults=STUDY_DEFAULTS, exclude=PER_RUN, suppress=True)
    args = vars(parser.parse_args(argv))
    given = {k: v for k, v in args.items() if k in fields_of(GenerateConfig) and k not in names}
    return StudyOptions(**{n: args[n] for n in names}), given


def condition_config(name: str, opts: StudyOptions, given: dict) -> GenerateConfig:
    """The config of condition `name`: study defaults < the condition < options given; a
    --clamp list given keeps, in each condition, the names that apply to its generator."""
    cfg = merge_config(
        GenerateConfig(), STUDY_DEFAULTS, CONDITIONS[name], given, {"seed": opts.seed}
    )
    names = parse_keepers(cfg.clamp, cfg.generator, cfg.optimizer, strict=False)
    return dataclasses.replace(with_defaults(cfg), clamp=",".join(names))


def condition_seeds(name: str, opts: StudyOptions) -> int:
    """Seeds per prompt of condition `name`: --seeds if given, else SEEDS."""
    return opts.seeds or SEEDS[name]


def main(argv=None) -> int:
    opts, given = parse_args(argv)
    from clampgen.logs import show_logs
    from clampgen.malloc import keep_freed_memory

    show_logs()
    keep_freed_memory()
    names = [n.strip() for n in opts.conditions.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONDITIONS]
    try:
        configs = {n: condition_config(n, opts, given) for n in names if n in CONDITIONS}
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if (
        unknown
        or not configs
        or opts.seeds < 0
        or min(min(c.steps, c.cutn) for c in configs.values()) < 1
    ):
        print(
            f"error: unknown condition {unknown[0]!r} (choose from: {', '.join(CONDITIONS)})"
            if unknown
            else "error: no condition, --seeds below 0, or --steps or --cutn below 1",
            file=sys.stderr,
        )
        return 2
    from clampgen.compare import dist
    from clampgen.compare.report import write_study_report
    from clampgen.compare.runner import load_bundle, run_suite

    out = Path(opts.out)
    ranks = dist.join()  # one process group for every condition's suite
    try:
        bundle = load_bundle(next(iter(configs.values())))
        for name, cfg in configs.items():
            print(f"clampgen.study: condition {name}", file=sys.stderr)
            run_suite(
                cfg,
                out / name,
                opts.prompts,
                cfg.clamp,
                seeds=condition_seeds(name, opts),
                progress=cfg.progress,
                bundle=bundle,
            )
    finally:
        dist.leave(ranks)
    if ranks.rank == 0:  # the suites end with a barrier: every rank's runs are done
        write_study_report(out)
        print(f"wrote {out / 'summary.md'} and {out / 'study.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
