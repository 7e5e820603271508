"""Run checkpoints for `generate.py --resume RUN_DIR`.

A checkpoint taken at step s holds what re-running step s needs: the trainable parameters (after
s updates), the optimizer state and the cutout stream's state before step s drew from it, plus
the run's resolved config. Resuming re-runs step s, so on CPU a resumed run ends with exactly
the pixels of an uninterrupted one. Written every `save_every` steps, atomically (a temporary
file, then a rename), and removed when the run finishes.
"""

from pathlib import Path

import torch

from clampgen.rundir import CHECKPOINT, replace_atomically


def trainable_state(module) -> dict:
    """{name: tensor} of the parameters that require grad (a VQGAN's frozen weights stay out)."""
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


class CheckpointWriter:
    """Loop callback: saves a checkpoint at every `every`-th step (not at 0 or the last step)."""

    def __init__(self, run_dir, generator, optimizer, config: dict, every: int):
        self.path = Path(run_dir) / CHECKPOINT
        self.generator, self.optimizer, self.config, self.every = (
            generator,
            optimizer,
            config,
            every,
        )

    def __call__(self, info):
        step = info["step"]
        if self.every <= 0 or step == 0 or step % self.every or info.get("last"):
            return
        state = {
            "step": step,
            "config": self.config,
            "seconds": info["seconds"],
            "generator": trainable_state(self.generator),
            "optimizer": self.optimizer.state_dict(),
            "rng_state": info["rng_state"],
        }
        replace_atomically(self.path, lambda tmp: torch.save(state, tmp))

    def remove(self):
        self.path.unlink(missing_ok=True)


def load_checkpoint(run_dir) -> dict:
    """The checkpoint of run_dir; FileNotFoundError / ValueError with the reason otherwise."""
    path = Path(run_dir) / CHECKPOINT
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"--resume: no run directory {run_dir}")
    if not path.is_file():
        raise FileNotFoundError(
            f"--resume: {run_dir} has no {CHECKPOINT} (it finished, or was "
            "stopped before its first --save-every step)"
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
