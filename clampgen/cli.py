"""Command line of generate.py, built from GenerateConfig (one flag per field).

    python generate.py "a red circle on a blue background"
    python generate.py "a watercolor lighthouse:1 | blurry:-0.5" --model ViT-B-32 \\
        --pretrained laion2b_s34b_b79k --size 512 --steps 300
    python generate.py --config prompts/shapes.toml --seed 42
    python generate.py "a red circle" --clamp all        # compare clamp variants (clampgen.compare)
    python generate.py --toy                             # the seed notebook's 1-D experiment
    clampgen ui                                          # the web app (clampgen.ui.server)

Options come from dataclass defaults, then --config FILE.toml, then the flags given. Bad input
prints one line on stderr and exits with status 2; Ctrl-C keeps the work and exits with 130; a
run directory that cannot be written any more (disk full, read-only) exits with 4, its last
checkpoint intact. `--resume RUN_DIR` continues a run however it was stopped (Ctrl-C, SIGTERM,
kill -9, a full disk) with the settings it recorded (main() lists the exit statuses).
"""

import sys

from clampgen.config import GenerateConfig, load_toml, merge_config
from clampgen.hub import WeightsUnavailable
from clampgen.keepers import GROUPS, list_variants, parse_keepers
from clampgen.logs import show_logs
from clampgen.options import add_options, fields_of, new_parser
from clampgen.rundir import OutputError


def build_parser():
    """generate.py's argparse parser: a flag per GenerateConfig field plus the run modes."""
    parser = new_parser("generate.py", __doc__)
    parser.add_argument(
        "--config",
        metavar="FILE.toml",
        default=None,
        help="TOML file of options (keys = option names with _); flags override it",
    )
    parser.add_argument("--list-clamps", action="store_true", help="print the clamp names and exit")
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue a stopped or killed run from its last checkpoint (written at its start "
        "and every --save-every steps) with the options it recorded; other options are "
        "refused where they would change the result (--no-progress is fine)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="N",
        help="comparison: repeat over N seeds (seed, seed+1, ...) (default: 1)",
    )
    parser.add_argument(
        "--prompts",
        metavar="FILE",
        default=None,
        help="suite: a comparison per prompt of FILE (one per line, or TOML `prompts = [...]`)",
    )
    add_options(parser, GenerateConfig, suppress=True)  # only the flags given override the TOML
    return parser


def parse_config(argv=None) -> tuple:
    """argv -> (GenerateConfig, argparse.Namespace of the non-config flags)."""
    cfg, args, _ = parse_given(argv)
    return cfg, args


def parse_given(argv=None) -> tuple:
    """argv -> (GenerateConfig, argparse.Namespace of the non-config flags, {field: value} of
    the options given by flag or --config file)."""
    args = build_parser().parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k in fields_of(GenerateConfig)}
    if "size" in given and len(given["size"]) > 2:
        raise ValueError(f"--size takes W or W H, got {len(given['size'])} numbers")
    toml = load_toml(args.config) if args.config else {}
    return merge_config(GenerateConfig(), toml, given), args, {**toml, **given}


def run(cfg: GenerateConfig, seeds: int = 1, prompts=None) -> dict:
    """A single generation; a comparison (clampgen.compare.runner) when cfg.clamp is 'all' or a
    comma list or seeds > 1; a suite of comparisons when a prompts file is given."""
    from clampgen.run import default_run_dir, run_one

    clamps = parse_keepers(cfg.clamp, generator=cfg.generator, optimizer=cfg.optimizer)
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    if prompts or seeds > 1 or len(clamps) > 1 or cfg.clamp in GROUPS:
        from clampgen.compare.runner import run_comparison, run_suite

        if prompts:
            out = cfg.out or default_run_dir(cfg, name="suite")
            return run_suite(cfg, out, prompts, clamps, seeds=seeds, progress=cfg.progress)
        out = cfg.out or default_run_dir(cfg)
        return run_comparison(cfg, out, clamps, seeds=seeds, progress=cfg.progress)
    return run_one(cfg, cfg.out or default_run_dir(cfg), progress=cfg.progress)


def resume(run_dir, args, given: dict) -> dict:
    """--resume RUN_DIR: the run's own settings; options that would change its result refused."""
    from clampgen.resume import resume_run

    if args.seeds != 1 or args.prompts:
        raise ValueError("--resume continues one run: --seeds and --prompts start new ones")
    return resume_run(run_dir, progress=given.get("progress", True), asked=given)


def main(argv=None) -> int:
    """Entry point of generate.py; returns the exit status:

    0 done (or, with --resume, the run had already finished); 1 some runs of a comparison
    failed (the report covers the others); 2 bad input, nothing written (also --resume with an
    option that would change the run's result); 3 the loss became NaN or infinite (the last
    finite frame kept); 4 the output could not be written any more (disk full, read-only or
    unwritable directory: one line on stderr, the last checkpoint intact, --resume continues
    once there is space); 130 interrupted by SIGINT or SIGTERM (the work kept, resumable)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--toy"]:
        from clampgen.toy import main as toy_main

        return toy_main(argv[1:]) or 0
    show_logs()
    try:
        cfg, args, given = parse_given(argv)
        if args.list_clamps:
            print("\n".join(list_variants()))
            return 0
        from clampgen.malloc import keep_freed_memory

        keep_freed_memory()  # a step's temporaries reuse warm pages (see clampgen/malloc.py)
        if args.resume:  # the run's own thread count, from its record
            result = resume(args.resume, args, given)
        else:
            if cfg.threads > 0:
                import torch

                torch.set_num_threads(cfg.threads)
            result = run(cfg, args.seeds, args.prompts)
        if isinstance(result, dict) and result.get("already_finished"):
            print(f"{result['run_dir']} had already finished: nothing to resume")
        elif isinstance(result, dict) and "final_loss" in result:  # one run (not a comparison)
            loss = result["final_loss"]
            print(
                f"wrote {result['run_dir']}  (final loss "
                f"{'-' if loss is None else f'{loss:.4f}'}, {result['wall_seconds']:.1f} s)"
            )
        if isinstance(result, dict) and result.get("stop_reason"):
            print(
                f"error: run stopped: {result['stop_reason']}; the last finite frame is "
                f"{result['run_dir']}/final.png (try a lower --lr)",
                file=sys.stderr,
            )
            return 3
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 4
    except (ValueError, OSError, WeightsUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        from clampgen.compare.runner import RunsFailed

        if not isinstance(e, RunsFailed):
            raise
        print(f"error: {e}", file=sys.stderr)  # the run directories hold the tracebacks' runs
        return 1
    except KeyboardInterrupt as e:
        print(f"interrupted; work kept in {e}" if str(e) else "interrupted", file=sys.stderr)
        return 130
    return 0


def console(argv=None) -> int:
    """The `clampgen` command: `clampgen ui [...]` starts the web app (clampgen.ui.server);
    anything else is generate.py's command line (main). generate.py itself has no `ui`: there
    "ui" is a prompt."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["ui"]:
        from clampgen.ui.server import main as ui_main

        return ui_main(argv[1:])
    return main(argv)
