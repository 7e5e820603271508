"""The seed notebook's 1-D experiment, and the gradient descent it never ran.

Loss `sin(pi * clamp(x, -1, 1)) + 1` on x in [-2, 2): its minimum is at x = -0.5. For every
registered clamp the figure shows clamp(x), the loss and dloss/dx as the variant's backward
defines it, then runs gradient descent (SGD and Adam) from several starting points, some of
them outside the range, and shows where each ends and how fast.

    python generate.py --toy                   # writes results/toy.png and results/toy.csv
    python -m clampgen.toy --out /tmp/toy --steps 300
"""

from __future__ import annotations

import csv
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from clampgen.clamps import get_clamp, list_clamps
from clampgen.keepers import parse_keepers
from clampgen.options import option, parse_options

STARTS = (-1.9, -1.5, -1.1, -0.8, 0.2, 0.6, 0.95, 1.1, 1.5, 1.9)  # several outside [-1, 1]
X_STAR = -0.5  # argmin of sin(pi * x) + 1 on [-1, 1]
CONVERGED = 1e-3  # a run has converged once its loss is below this


def toy_loss(x: torch.Tensor, clamp_fn) -> torch.Tensor:
    """The seed's loss, elementwise: sin(pi * clamp(x, -1, 1)) + 1."""
    return torch.sin(clamp_fn(x, -1.0, 1.0) * math.pi) + 1


def curves(clamp_fn, lo: float = -2.0, hi: float = 2.0, step: float = 0.01):
    """x, clamp(x), loss(x) and dloss/dx under `clamp_fn`'s backward, on the seed's grid."""
    x = torch.arange(lo, hi, step, dtype=torch.float64).requires_grad_()
    loss = toy_loss(x, clamp_fn)
    loss.backward(torch.ones_like(loss))
    with torch.no_grad():
        clamped = clamp_fn(x, -1.0, 1.0)
    return x.detach(), clamped, loss.detach(), x.grad


def descend(clamp_fn, starts=STARTS, optimizer: str = "sgd", lr: float = 0.05, steps: int = 200):
    """Gradient descent on the toy loss from every start at once; the (steps + 1, S) path of x."""
    x = torch.tensor(starts, dtype=torch.float64, requires_grad=True)  # (S,) independent 1-D runs
    opt = torch.optim.SGD([x], lr=lr) if optimizer == "sgd" else torch.optim.Adam([x], lr=lr)
    path = [x.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        toy_loss(x, clamp_fn).sum().backward()
        opt.step()
        path.append(x.detach().clone())
    return torch.stack(path)  # (steps + 1, S)


def summarize(path: torch.Tensor) -> list[dict]:
    """Per start: final x, final loss, and the first step whose loss is below CONVERGED."""
    with torch.no_grad():
        losses = toy_loss(path, get_clamp("clamp"))  # (steps + 1, S); forward is the same for all
    rows = []
    for j in range(path.shape[1]):
        hit = (losses[:, j] < CONVERGED).nonzero()
        rows.append(
            dict(
                x0=float(path[0, j]),
                final_x=float(path[-1, j]),
                final_loss=float(losses[-1, j]),
                ends_outside=bool(path[-1, j].abs() > 1),
                steps_to_converge=int(hit[0]) if len(hit) else None,
            )
        )
    return rows


def run_toy(clamps=None, optimizers=("sgd", "adam"), lr: float = 0.05, steps: int = 200):
    """The whole experiment as data: curves and descent paths for every clamp and optimizer."""
    out = {}
    for name in clamps or list_clamps():
        fn = get_clamp(name)
        paths = {opt: descend(fn, optimizer=opt, lr=lr, steps=steps) for opt in optimizers}
        out[name] = dict(
            curves=curves(fn), paths=paths, rows={opt: summarize(p) for opt, p in paths.items()}
        )
    return out


def write_csv(result: dict, path: Path) -> None:
    """One row per clamp x optimizer x start."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "clamp",
                "optimizer",
                "x0",
                "final_x",
                "final_loss",
                "ends_outside",
                "steps_to_converge",
            ]
        )
        for name, r in result.items():
            for opt, rows in r["rows"].items():
                for row in rows:
                    w.writerow(
                        [
                            name,
                            opt,
                            row["x0"],
                            f"{row['final_x']:.6g}",
                            f"{row['final_loss']:.6g}",
                            int(row["ends_outside"]),
                            "" if row["steps_to_converge"] is None else row["steps_to_converge"],
                        ]
                    )


def plot(result: dict, path: Path) -> None:
    """Row 1: clamp, loss, dloss/dx per variant. Rows 2+: x against step per optimizer."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure  # no pyplot state, as everywhere in clampgen

    names = list(result)
    opts = list(next(iter(result.values()))["paths"])
    fig = Figure(figsize=(4 * len(names), 3.4 * (1 + len(opts))), layout="tight")
    axes = fig.subplots(1 + len(opts), len(names), sharey="row", squeeze=False)
    cmap = colormaps["coolwarm"]
    for col, name in enumerate(names):
        x, clamped, loss, grad = result[name]["curves"]
        ax = axes[0, col]
        ax.plot(x, clamped, label="clamp", alpha=0.7)
        ax.plot(x, loss, label="loss", alpha=0.7)
        ax.plot(x, grad, label="dloss/dx", alpha=0.7)
        ax.axvline(X_STAR, color="gray", lw=0.5, ls=":")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("x")
        for row, opt in enumerate(opts, start=1):
            ax = axes[row, col]
            p = result[name]["paths"][opt]
            rows = result[name]["rows"][opt]
            done = sum(r["steps_to_converge"] is not None for r in rows)
            outside = sum(r["ends_outside"] for r in rows)
            for j in range(p.shape[1]):
                ax.plot(p[:, j].clamp(-3, 3), color=cmap(j / (p.shape[1] - 1)), lw=1)
            ax.axhspan(-1, 1, color="gray", alpha=0.08)
            ax.axhline(X_STAR, color="k", lw=0.6, ls="--")
            ax.set_title(
                f"{opt}: {done}/{len(rows)} reach the minimum, {outside} end outside", fontsize=9
            )
            ax.set_xlabel("step")
            ax.set_ylim(-3.1, 3.1)
    axes[0, 0].legend(fontsize=8)
    for row, opt in enumerate(opts, start=1):
        axes[row, 0].set_ylabel(f"x ({opt}, shown within ±3)")
    fig.suptitle(
        "loss = sin(pi * clamp(x, -1, 1)) + 1; minimum at x = -0.5 (dashed); [-1, 1] shaded"
    )
    fig.savefig(path, dpi=90)


@dataclass
class ToyOptions:
    out: str = option("results", "folder for toy.png and toy.csv")
    steps: int = option(200, "gradient-descent steps per start")
    lr: float = option(0.05, "learning rate for SGD and Adam")
    clamps: str = option("all", "comma-separated clamp names, or 'all'")


def main(argv=None) -> int:
    args = parse_options(ToyOptions, argv, prog="python -m clampgen.toy", description=__doc__)
    if args.steps <= 0 or args.lr <= 0:
        raise SystemExit("error: --steps and --lr must be positive")
    try:
        clamps = parse_keepers(args.clamps)
        others = [c for c in clamps if c not in list_clamps()]
        if others:
            raise ValueError(f"the toy compares clamps only, not {', '.join(others)}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = run_toy(clamps, lr=args.lr, steps=args.steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(result, out / "toy.csv")
    plot(result, out / "toy.png")
    for name, r in result.items():
        parts = [
            f"{opt}: {sum(x['steps_to_converge'] is not None for x in rows)}/{len(rows)} reach "
            f"the minimum, {sum(x['ends_outside'] for x in rows)} end outside [-1, 1]"
            for opt, rows in r["rows"].items()
        ]
        print(f"{name:26s} " + "; ".join(parts))
    print(f"wrote {out / 'toy.png'} and {out / 'toy.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
