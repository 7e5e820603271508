"""Resuming a run directory from its checkpoint, after Ctrl-C, SIGTERM, kill -9 or a full disk.

    python generate.py --resume RUN_DIR
    from clampgen.resume import resume_run
    summary = resume_run("results/run")

The run continues with every setting it recorded (clampgen.run.resolved_config), its thread
count included, from files cut back to what the checkpoint saw (clampgen.checkpoint): on CPU it
ends with exactly the pixels and metrics of an uninterrupted run. Options that would change the
result are refused.
"""

import logging
from pathlib import Path

import torch

from clampgen import rundir
from clampgen.checkpoint import load_checkpoint, restore
from clampgen.config import GenerateConfig, merge_config
from clampgen.loop import make_optimizer, trainable
from clampgen.run import (
    RESULT_NEUTRAL,
    bundles_of,
    history_rows,
    prepare,
    run_with_writers,
    torch_threads,
    versions,
)

log = logging.getLogger(__name__)

DEFAULTS = GenerateConfig().to_dict()


def resume_run(
    run_dir, bundle=None, progress: bool = True, asked: dict = None, judges=None, callback=None
) -> dict:
    """Continues the interrupted (or killed) run in run_dir from its checkpoint
    (clampgen.checkpoint), with every setting the run recorded, its thread count included.

    asked: options the caller gave; one that would change the result (it differs from the
    run's own) raises ValueError, `progress` aside. A run that already finished is left as it
    is: its run.json comes back with 'already_finished' true. bundle: an already loaded model
    (a comparison's), on a device of the kind the run recorded; judges: loaded
    clampgen.judges.Judges (a comparison's); callback: as run_one's."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"--resume: no run directory {run_dir}")
    if (run_dir / rundir.PLAN_JSON).exists():
        raise ValueError(
            f"--resume: {run_dir} is a comparison or suite: run the command that started it "
            "again (finished runs are kept, killed ones resumed)"
        )
    with rundir.locked(run_dir):
        if rundir.run_finished(run_dir):  # killed between its run.json and removing the checkpoint
            (run_dir / rundir.CHECKPOINT).unlink(missing_ok=True)
            log.info(f"{run_dir} had finished: nothing to resume")
            return {**rundir.read_run_json(run_dir), "already_finished": True}
        if not (run_dir / rundir.CHECKPOINT).exists():
            rundir.remove_leftovers(run_dir)  # an emptied directory takes the same command again
        state = load_checkpoint(run_dir)
        conflicts = config_conflicts(state, asked or {}, run_dir)
        if conflicts:
            raise ValueError(
                f"--resume continues {run_dir} with the settings it recorded; these would change "
                f"its result: {', '.join(conflicts)} (start a new run to change them)"
            )
        _warn_versions(state)
        record = merge_config(GenerateConfig(), state["config"])
        with torch_threads(record.threads):
            parts = prepare(record, bundle)
            _check_device(record, bundles_of(parts)[0])
            optimizer = make_optimizer(trainable(parts["generator"]), record.optimizer, record.lr)
            restore(parts["generator"], optimizer, parts["rng"], state)
            rundir.remove_leftovers(run_dir)
            _cut_files(run_dir, record, state)
            metrics_csv = run_dir / rundir.METRICS_CSV
            history = history_rows(rundir.read_metrics(run_dir) if metrics_csv.exists() else {})
            log.info(
                f"resuming {run_dir} at step {state['step']} of {record.steps} (seed "
                f"{record.seed}, {record.threads} thread{'s' if record.threads > 1 else ''})"
            )
            return run_with_writers(
                record,
                parts,
                run_dir,
                progress,
                asked=state.get("asked") or state["config"],
                resumed=state,
                optimizer=optimizer,
                history=history,
                judges=judges,
                callback=callback,
            )


def config_conflicts(state: dict, given: dict, run_dir) -> list:
    """The options of `given` ({field: value}) that would change the result of resuming the
    checkpoint `state`: each differs both from what the run was asked and from what it resolved
    it to (`threads 0` ran as 2: either is fine). One 'name value (the run has x)' each."""
    record = state["config"]
    asked = state.get("asked") or record
    found = []
    for key, value in given.items():
        if key in RESULT_NEUTRAL:
            continue
        if key == "out":
            if value and Path(value).resolve() != Path(run_dir).resolve():
                found.append(f"out {value} (the run is {run_dir})")
            continue
        wanted = merge_config(GenerateConfig(), {key: value}).to_dict()[key]
        if key not in record and wanted == DEFAULTS[key]:  # an option newer than the run
            continue
        if wanted not in (asked.get(key), record.get(key)):
            found.append(f"{key} {wanted!r} (the run has {record.get(key)!r})")
    return found


def resume_problem(run_dir, cfg: GenerateConfig) -> str:
    """'' when run_dir holds a checkpoint of cfg's run that resume_run can continue (for a
    comparison restarted after a kill), else why not."""
    run_dir = Path(run_dir)
    if not (run_dir / rundir.CHECKPOINT).is_file():
        return f"no {rundir.CHECKPOINT}"
    try:
        state = load_checkpoint(run_dir)
        given = {k: v for k, v in cfg.to_dict().items() if k not in ("out", "threads")}
        conflicts = config_conflicts(state, given, run_dir)
        if conflicts:
            return f"its checkpoint is of another run ({', '.join(conflicts)})"
        for name, size in (state.get("files") or {}).items():
            rundir.check_size(run_dir / name, size)
    except (OSError, ValueError) as e:
        return str(e)
    return ""


def _warn_versions(state):
    old, now = state.get("versions") or {}, versions()
    changed = [
        f"{k} {old[k]} -> {now.get(k)}"
        for k in ("clampgen", "torch")
        if k in old and old[k] != now.get(k)
    ]
    if changed:
        log.warning(
            f"resuming with other versions ({', '.join(changed)}): the pixels may differ from "
            "an uninterrupted run's"
        )


def _check_device(record, bundle):
    if torch.device(record.device).type != bundle.device.type:
        raise ValueError(
            f"--resume: the run computed on {record.device}, the model is on {bundle.device}"
        )


def _cut_files(run_dir, record, state) -> None:
    """The run directory as it was when the checkpoint was taken: each CSV cut back to its
    recorded size (rows of later steps and a row cut short go), frames of later steps removed."""
    step, sizes = state["step"], state.get("files")
    names = [rundir.METRICS_CSV, rundir.JUDGED_CSV]
    names += [rundir.STEP_SIZES_CSV] if record.step_sizes else []
    for name in names:
        if sizes is not None:
            rundir.cut_file(run_dir / name, sizes.get(name, 0))
        elif (run_dir / name).exists():  # a format-1 checkpoint: cut by step
            rundir.truncate_csv(run_dir / name, step)
    for frame_step, path in rundir.frame_paths(run_dir).items():
        if frame_step > step:
            path.unlink()
