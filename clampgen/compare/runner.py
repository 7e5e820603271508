"""A/B comparisons of clamp variants and suites of them, optionally sharded with torchrun.

    python generate.py "a red circle" --clamp all --seeds 3 --out results/cmp
    python generate.py --prompts prompts/suite.txt --clamp all --seeds 3 --out results/suite
    torchrun --nproc-per-node 4 generate.py --prompts prompts/suite.txt --clamp all --seeds 3 \
        --out results/suite

Every variant of a comparison runs with the same seed (so the same initial image and the same
cutouts and augmentations, see clampgen.run) and differs only in the clamp. Layout:

    <out>/<variant>/                     one seed: each a complete run directory
    <out>/seed_<s>/<variant>/            several seeds s = seed, seed+1, ...
    <out>/comparison.png grid.png summary.json summary.md index.html   (clampgen.compare.report)
    <out>/plan.json                      what was asked: prompts, seeds, clamps, config

A suite puts one comparison per prompt in `<out>/<NN>-<prompt-slug>/` and writes the aggregate
(summary.json, summary.md, suite.png, index.html) in `<out>/`. A restarted comparison or suite
(the same command after Ctrl-C, kill -9 of the job or of one of its processes, a full disk)
skips every run whose run.json says it finished (interrupted false), and resumes every other run
from its checkpoint (clampgen.resume.resume_run: on CPU the pixels and numbers of an uninterrupted
run, so the report is the same). A run directory without a usable checkpoint of the same run
is moved aside to `<variant>.unfinished[-k]/` and rerun. A full disk (rundir.OutputError)
stops the whole job rather than failing every run after it. Under torchrun (gloo), rank r runs the
remaining runs r, r+W, r+2W, ... of the prompt×seed×variant list; rank 0 writes the reports
after a barrier. With CUDA each rank uses GPU LOCAL_RANK. The output directory must be on a
filesystem every rank sees.

`interleave=True` runs a process's runs side by side, a reported step of each in turn
(clampgen.compare.interleave), with the same pixels and numbers; `callback` sees every run's
reported steps (clampgen.run.run_one), which is how a web page shows a race as it goes.
"""

import dataclasses
import json
import logging
import secrets
import tomllib
import traceback
from pathlib import Path

from clampgen.compare import dist, report
from clampgen.compare.interleave import run_in_turns
from clampgen.config import GenerateConfig
from clampgen.generators import with_defaults
from clampgen.guides import load_bundles
from clampgen.judges import load_judges
from clampgen.keepers import parse_keepers
from clampgen.prompts import slug
from clampgen.resume import resume_problem, resume_run
from clampgen.run import check_config, run_one, torch_threads
from clampgen.rundir import PLAN_JSON, OutputError, RunDirBusy, in_use, run_finished, write_json

log = logging.getLogger(__name__)

PLAN = PLAN_JSON


class RunsFailed(RuntimeError):
    """Some runs of a comparison or suite raised; the report was written from the others."""

    def __init__(self, failures):
        self.failures = failures  # [(run_dir, traceback text)]
        dirs = ", ".join(d for d, _ in failures)
        super().__init__(f"{len(failures)} run(s) failed ({dirs}); the report covers the others")


def read_prompts(path):
    """A suite's prompts: TOML `prompts = [...]`, or else one prompt per line ('#' comments)."""
    path = Path(path)
    if path.suffix == ".toml":
        with path.open("rb") as f:
            data = tomllib.load(f)
        prompts = data.get("prompts", [data["prompt"]] if "prompt" in data else None)
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f'{path}: expected `prompts = ["...", ...]`')
    else:
        prompts = [ln.strip() for ln in path.read_text().splitlines()]
        prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts


def seed_list(seed, seeds):
    """A count N -> [seed, ..., seed+N-1] (random base when seed is None); a list stays as it is."""
    if isinstance(seeds, (list, tuple)):
        return [int(s) for s in seeds]
    if int(seeds) < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    base = secrets.randbelow(2**31) if seed is None else int(seed)
    return [base + i for i in range(int(seeds))]


def comparison_dirs(out_dir, clamps, seeds):
    """`{seed: {variant: run_dir}}` of one comparison (flat layout for one seed)."""
    out_dir = Path(out_dir)
    base = (lambda s: out_dir) if len(seeds) == 1 else (lambda s: out_dir / f"seed_{s}")
    return {s: {c: base(s) / c for c in clamps} for s in seeds}


def suite_names(prompts):
    """Subdirectory names of a suite's comparisons: `<NN>-<slug>` in prompt order."""
    width = max(2, len(str(len(prompts) - 1)))
    return [f"{i:0{width}d}-{slug(p, empty='prompt')}" for i, p in enumerate(prompts)]


def shard(jobs, rank, world):
    """The jobs rank `rank` of `world` runs: every world-th one starting at rank."""
    return jobs[rank::world]


def _check_plan(out_dir, plan):
    """Write plan.json, or check that a restart asks for the same; returns the plan in force."""
    path = Path(out_dir) / PLAN
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, plan)
        return plan
    old = _with_new_options(json.loads(path.read_text()), plan)
    if old != plan:
        diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
        raise ValueError(
            f"{out_dir} holds a different comparison (differs in {', '.join(diff)}); "
            f"use another --out, or the options recorded in {path} to resume it"
        )
    return old


def _with_new_options(old, plan):
    """old plan with the options it predates (added to GenerateConfig since) as the new plan has
    them, where those are the defaults: a restarted job keeps the runs it finished."""
    defaults = GenerateConfig().to_dict()
    config = old.get("config") or {}
    newer = {
        k: v
        for k, v in plan["config"].items()
        if k not in config and k in defaults and v == defaults[k]
    }
    return {**old, "config": {**config, **newer}} if newer else old


def _move_aside(run_dir):
    """Rename an unfinished run directory to `<name>.unfinished[-k]` so the run can start afresh."""
    k, target = 1, run_dir.with_name(run_dir.name + ".unfinished")
    while target.exists():
        k += 1
        target = run_dir.with_name(f"{run_dir.name}.unfinished-{k}")
    run_dir.rename(target)
    return target


def _clear_unfinished(run_dir):
    """Make way for a (re)run: remove an empty run_dir or move an unfinished one aside."""
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()
    elif run_dir.exists():
        log.warning(f"clampgen: moved unfinished {run_dir} to {_move_aside(run_dir)}")
    run_dir.parent.mkdir(parents=True, exist_ok=True)


def _run_or_resume(one, run_dir, bundle, progress, judges=None, callback=None):
    """Resumes run_dir when it holds a checkpoint of this very run (a killed job's), else runs
    `one` afresh there (moving an unusable directory aside)."""
    if run_dir.exists() and in_use(run_dir):  # an orphan of the killed job still writes it
        raise RunDirBusy(f"{run_dir} is being written by another process")
    why_not = resume_problem(run_dir, one) if run_dir.exists() else "new"
    if not why_not:
        log.info(f"clampgen: resuming {run_dir} from its checkpoint")
        return resume_run(
            run_dir, bundle=bundle, progress=progress, judges=judges, callback=callback
        )
    if run_dir.exists() and any(run_dir.iterdir()):
        log.info(f"clampgen: {run_dir} cannot be resumed ({why_not}): running it again")
    _clear_unfinished(run_dir)
    return run_one(one, run_dir, bundle=bundle, progress=progress, judges=judges, callback=callback)


def _then(first, second):
    """A loop callback: first(info) (when given), then second(info); first's answer."""

    def callback(info):
        answer = first(info) if first else None
        second(info)
        return answer

    return callback


def _run_interleaved(cfg, mine, bundle, judges, callback):
    """The jobs side by side, taking turns (clampgen.compare.interleave); the failures as
    run_jobs's."""

    def run(job, turn):
        prompt, seed, clamp, run_dir = job
        one = dataclasses.replace(cfg, prompt=prompt, seed=seed, clamp=clamp, out=str(run_dir))
        _run_or_resume(one, run_dir, bundle, False, judges, _then(callback, turn))

    with torch_threads(cfg.threads):  # one count for every run, set before their threads start
        failed = run_in_turns(mine, run, stop_all=(KeyboardInterrupt, OutputError))
    failures = []
    for job, e in failed:
        text = "".join(traceback.format_exception(e))
        failures.append((str(job[3]), text))
        log.warning(f"clampgen: run {job[3]} failed:\n{text}")
    return failures


def run_jobs(
    cfg, jobs, ranks=dist.Ranks(), progress=True, bundle=None, callback=None, interleave=False
):
    """Run this rank's share of `jobs` [(prompt, seed, clamp, run_dir)], skipping finished ones
    and resuming killed ones; side by side with `interleave`, and `callback` called at every
    run's reported steps (see the module's docstring).

    Returns the failures as [(run_dir, error text)]: a failed run does not stop the others,
    but a model that cannot be loaded or a run directory that cannot be written (disk full)
    stops them all (raises).
    """
    rank, world = ranks.rank, ranks.world
    todo = [j for j in jobs if not run_finished(j[3])]
    dist.barrier(ranks)  # every rank has listed the remaining runs before any starts one
    mine = shard(todo, rank, world)
    judges = None
    if mine:  # the models every run shares, loaded once per process
        bundle = bundle or load_bundle(cfg)
        judges = load_judges(cfg, bundle if isinstance(bundle, list) else [bundle])
    if interleave and mine:
        log.info(f"clampgen: [{rank}/{world}] {len(mine)} runs side by side")
        return _run_interleaved(cfg, mine, bundle, judges, callback)
    failures = []
    for i, (prompt, seed, clamp, run_dir) in enumerate(mine):
        log.info(
            f"clampgen: [{rank}/{world}] run {i + 1}/{len(mine)}: {clamp}, seed {seed}, "
            f"{prompt!r} -> {run_dir}"
        )
        one = dataclasses.replace(cfg, prompt=prompt, seed=seed, clamp=clamp, out=str(run_dir))
        try:
            _run_or_resume(
                one, run_dir, bundle, progress and cfg.progress and rank == 0, judges, callback
            )
        except OutputError:
            raise
        except Exception:  # noqa: BLE001 -- one broken run must not lose a whole suite
            failures.append((str(run_dir), traceback.format_exc()))
            log.warning(f"clampgen: run {run_dir} failed:\n{failures[-1][1]}")
    return failures


def _finished_runs(dirs):
    """`{seed: {variant: run_dir}}` restricted to finished runs."""
    return {s: {v: d for v, d in by_v.items() if run_finished(d)} for s, by_v in dirs.items()}


def load_bundle(cfg):
    """The CLIP models every run of a comparison shares (loaded once per process; a list, in
    --model's order); under torchrun with CUDA, on this process's GPU (LOCAL_RANK)."""
    return load_bundles(cfg, dist.use_local_gpu(cfg.device))


def _plan(cfg, prompts, clamps, seeds):
    per_run = ("prompt", "seed", "clamp", "out", "progress", "threads")  # not results
    config = {k: v for k, v in cfg.to_dict().items() if k not in per_run}
    return {"prompts": prompts, "seeds": seeds, "clamps": clamps, "config": config}


def _checked_clamps(cfg, prompts, clamps):
    """parse_keepers, and every prompt×clamp config checked before any run starts."""
    clamps = parse_keepers(clamps, generator=cfg.generator, optimizer=cfg.optimizer)
    for prompt in prompts:
        for clamp in clamps:
            check_config(dataclasses.replace(cfg, prompt=prompt, clamp=clamp))
    return clamps


def _resolve_plan(cfg, out_dir, prompts, clamps, seeds):
    """Check the options, fix the seeds (a restart without --seed reuses plan.json's),
    write or check plan.json."""
    plan = _plan(cfg, prompts, _checked_clamps(cfg, prompts, clamps), None)
    old = Path(out_dir) / PLAN
    if cfg.seed is None and not isinstance(seeds, (list, tuple)) and old.exists():
        previous = json.loads(old.read_text()).get("seeds") or []
        plan["seeds"] = previous if len(previous) == int(seeds) else None
    plan["seeds"] = plan["seeds"] or seed_list(cfg.seed, seeds)
    return _check_plan(out_dir, plan)


def _start(cfg, out_dir, prompts, clamps, seeds):
    """Join torchrun if present; every rank gets rank 0's out_dir and plan.

    Returns (ranks, out_dir, plan)."""
    ranks, plan = dist.join(), None
    if ranks.rank == 0:  # rank 0 alone checks the options, picks random seeds, writes plan.json
        try:
            plan = _resolve_plan(cfg, out_dir, prompts, clamps, seeds)
        except (ValueError, KeyError, FileNotFoundError) as e:
            plan = {"error": str(e)}
    out_dir, plan = dist.broadcast((str(out_dir), plan), ranks)
    if "error" in plan:
        dist.leave(ranks)
        raise ValueError(plan["error"])
    return ranks, Path(out_dir), plan


def _gather_failures(failures, ranks):
    """Every rank's failures (after the barrier the gathering implies)."""
    failures = [f for fs in dist.gather(failures, ranks) for f in fs]
    for run_dir, _ in failures:
        log.warning(f"clampgen: run failed, left out of the report: {run_dir}")
    return failures


def _run_then_report(cfg, jobs, write, ranks, progress, bundle, callback=None, interleave=False):
    """This rank's share of `jobs`, then `write()` on rank 0; raises RunsFailed after the report
    when some runs failed. Returns what write() returned (None on other ranks)."""
    try:
        done = run_jobs(cfg, jobs, ranks, progress, bundle, callback, interleave)
        failures = _gather_failures(done, ranks)
        result = write() if ranks.rank == 0 else None
        dist.barrier(ranks)
    finally:
        dist.leave(ranks)
    if failures:
        raise RunsFailed(failures)
    return result


def run_comparison(
    cfg, out_dir, clamps, seeds=1, progress=True, bundle=None, callback=None, interleave=False
):
    """Run every clamp in `clamps` from the same start, for each seed, then write the report.

    `clamps`: 'all', 'a,b' or a list; `seeds`: a count N (seeds cfg.seed, cfg.seed+1, ...;
    random base when cfg.seed is None) or an explicit list; `callback`, `interleave`: see the
    module's docstring. Returns the summary dict (None on ranks other than 0, or when no run
    finished).
    """
    cfg = with_defaults(cfg)  # the plan records the steps and lr every run uses
    ranks, out_dir, plan = _start(cfg, out_dir, [cfg.prompt], clamps, seeds)
    dirs = comparison_dirs(out_dir, plan["clamps"], plan["seeds"])
    jobs = [(cfg.prompt, s, c, d) for s, by_c in dirs.items() for c, d in by_c.items()]

    def write():
        finished = _finished_runs(dirs)
        if not any(finished.values()):
            return None
        summary = report.write_report(out_dir, finished)
        log.info(f"clampgen: comparison written to {out_dir / 'index.html'}")
        return summary

    return _run_then_report(cfg, jobs, write, ranks, progress, bundle, callback, interleave)


def run_suite(cfg, out_dir, prompts, clamps, seeds=1, progress=True, bundle=None):
    """A comparison per prompt (a list, or a file for read_prompts), then the aggregate report.

    Returns the suite summary dict (None on ranks other than 0, or when no run finished).
    """
    prompts = read_prompts(prompts) if isinstance(prompts, (str, Path)) else list(prompts)
    cfg = with_defaults(cfg)
    ranks, out_dir, plan = _start(cfg, out_dir, prompts, clamps, seeds)
    comps = {
        name: comparison_dirs(out_dir / name, plan["clamps"], plan["seeds"])
        for name in suite_names(prompts)
    }
    jobs = [
        (p, s, c, d)
        for p, dirs in zip(prompts, comps.values())
        for s, by_c in dirs.items()
        for c, d in by_c.items()
    ]

    def write():
        finished = {n: _finished_runs(d) for n, d in comps.items()}
        if not any(any(runs.values()) for runs in finished.values()):
            return None
        suite = report.write_suite_report(out_dir, finished)
        log.info(f"clampgen: suite written to {out_dir / 'index.html'}")
        return suite

    return _run_then_report(cfg, jobs, write, ranks, progress, bundle)
