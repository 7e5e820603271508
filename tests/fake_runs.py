"""Write realistic run directories (the DEVELOPERS.md contract) without running the generator.

Used by the report and compare tests: the report code then reads real files.
"""

import csv
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from clampgen.rundir import JUDGED


def loss_curve(steps, start, final, rate):
    """A decaying loss from `start` towards `final`."""
    return [final + (start - final) * math.exp(-rate * s) for s in steps]


def make_run(
    run_dir,
    clamp,
    seed=0,
    prompt="a red circle",
    steps=20,
    eval_every=5,
    rate=0.2,
    start=1.0,
    final=0.6,
    oor_start=0.3,
    save_every=5,
    size=16,
    interrupted=False,
    judged=None,
):
    """A run directory: metrics.csv, frames/, progress.gif, final.png, loss.png, run.json, and
    with `judged` ({score name: final value}) judged.csv, each score growing linearly from 0 at
    step 0 to its final value, at the eval steps."""
    run_dir = Path(run_dir)
    (run_dir / "frames").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    xs = list(range(steps + 1))
    loss = [v + 0.01 * rng.standard_normal() for v in loss_curve(xs, start, final, rate)]
    clean = loss_curve(xs, start, final, rate)
    with open(run_dir / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "loss_0", "eval_loss", "out_of_range", "grad_norm", "seconds"])
        for s in xs:
            ev = f"{clean[s]:.6f}" if s % eval_every == 0 or s == steps else ""
            oor = oor_start * math.exp(-rate * s)
            w.writerow(
                [
                    s,
                    f"{loss[s]:.6f}",
                    f"{loss[s]:.6f}",
                    ev,
                    f"{oor:.6f}",
                    "0.1",
                    f"{0.05 * (s + 1):.3f}",
                ]
            )
    if judged is not None:
        with open(run_dir / "judged.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", *JUDGED])
            for s in xs:
                if s % eval_every == 0 or s == steps:
                    values = [judged.get(m) for m in JUDGED]
                    w.writerow([s, *("" if v is None else f"{v * s / steps:.6f}" for v in values)])
    frames = []
    for s in xs:
        if s % save_every == 0 or s == steps:
            t = s / steps
            img = np.zeros((size, size, 3), np.uint8)
            img[..., 0] = int(255 * t)
            img[..., 2] = np.linspace(0, 255, size, dtype=np.uint8)[None, :]
            im = Image.fromarray(img)
            im.save(run_dir / "frames" / f"step_{s:05d}.png")
            frames.append(im)
    frames[-1].save(run_dir / "final.png")
    frames[0].save(
        run_dir / "progress.gif", save_all=True, append_images=frames[1:], duration=200, loop=0
    )
    frames[-1].save(run_dir / "loss.png")
    run = {
        "config": {"prompt": prompt, "seed": seed, "clamp": clamp, "steps": steps},
        "wall_seconds": 0.05 * (steps + 1),
        "interrupted": interrupted,
    }
    if judged is not None:
        run["judges"] = {"world": f"shapes world: judges {prompt!r}", "clip": "held-out CLIP: none"}
    (run_dir / "run.json").write_text(json.dumps(run))
    return run_dir
