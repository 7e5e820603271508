"""Run checkpoints for `generate.py --resume RUN_DIR`.

A checkpoint taken at step s holds what re-running step s needs: the trainable parameters (after
s updates), the optimizer state and the cutout stream's state before step s drew from it, plus
the run's record (the resolved config, versions). Resuming re-runs step s, so on CPU a resumed
run ends with exactly the pixels of an uninterrupted one.

It also pins the files it goes with. A run's first checkpoint (step 0, `reported` false) is
written before any other file of the run directory; then one at every `save_every`-th step,
after that step's frame and CSV rows (`reported` true). Before writing it the CSVs are fsynced
and their sizes recorded (`files`), with the state of writers whose rows depend on earlier
steps (`writers`); a resumed run cuts each CSV back to its recorded size and does not write step
s's rows again. So the files a run is resumed with are exactly those of the checkpoint's step:
never a row older or newer, and never a row cut short. The file itself is written atomically
(clampgen.rundir.write_bytes) and removed when the run finishes.
"""

import io
from pathlib import Path

import torch

from clampgen.rundir import CHECKPOINT, write_bytes

FORMAT = 2  # 1: no files/writers/reported (clampgen.run resumes it by cutting rows by step)


def trainable_state(module) -> dict:
    """{name: tensor} of the parameters that require grad (a VQGAN's frozen weights stay out)."""
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


class CheckpointWriter:
    """Loop callback: saves a checkpoint at every `every`-th step (not at the last step);
    `save()` writes one at any step (the run's first, before the loop).

    record: what the checkpoint says about the run (config, asked, versions); files: the run's
    append-only writers (`.path`, `.sync() -> size`), set once they exist; writers:
    {name: object with state_dict()} whose state goes along."""

    def __init__(self, run_dir, generator, optimizer, record: dict, every: int, writers=None):
        self.path = Path(run_dir) / CHECKPOINT
        self.generator, self.optimizer, self.record = generator, optimizer, record
        self.every, self.writers, self.files = every, writers or {}, []
        self.saved_step = None  # the step of the checkpoint on disk, once this run wrote one

    def __call__(self, info):
        step = info["step"]
        if self.every <= 0 or step == 0 or step % self.every or info.get("last"):
            return
        self.save(step, info["rng_state"], info["seconds"], reported=True)

    def save(self, step: int, rng_state, seconds: float, reported: bool) -> None:
        """Writes the checkpoint of step (its callbacks already ran when reported)."""
        sizes = {f.path.name: f.sync() for f in self.files if f is not None}
        state = {
            **self.record,
            "format": FORMAT,
            "step": step,
            "reported": reported,
            "seconds": seconds,
            "generator": trainable_state(self.generator),
            "optimizer": self.optimizer.state_dict(),
            "rng_state": rng_state,
            "files": sizes,
            "writers": {
                k: w.state_dict() for k, w in self.writers.items() if w is not None and reported
            },
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        write_bytes(self.path, buf.getvalue())
        self.saved_step = step

    def remove(self):
        self.path.unlink(missing_ok=True)


def load_checkpoint(run_dir) -> dict:
    """The checkpoint of run_dir; FileNotFoundError / ValueError with the reason otherwise."""
    path = Path(run_dir) / CHECKPOINT
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"--resume: no run directory {run_dir}")
    if not path.is_file():
        raise FileNotFoundError(
            f"--resume: {run_dir} has no {CHECKPOINT}: it is not a clampgen run directory, "
            "or its run stopped before its first step (nothing was computed: start it again)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- a damaged file raises anything pickle can
        raise ValueError(f"--resume: {path} is damaged ({type(e).__name__})") from None
    missing = {"step", "config", "generator", "optimizer", "rng_state"} - set(state)
    if missing:
        raise ValueError(f"--resume: {path} lacks {', '.join(sorted(missing))}")
    return state


@torch.no_grad()
def restore(generator, optimizer, rng: torch.Generator, state: dict) -> None:
    """Puts a checkpoint's parameters, optimizer state and stream state back in place."""
    for name, value in state["generator"].items():
        generator.get_parameter(name).copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    rng.set_state(state["rng_state"])
