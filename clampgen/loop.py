"""The CLIP-guided optimisation loop: a function that knows nothing about files or terminals.

    from clampgen.loop import optimize, Guide, Targets
    result = optimize(generator, [Guide(bundle, targets)], cfg, rng, callback=print_step)

Per step: image = clamp(generator()) -> random augmented cutouts -> CLIP -> spherical distance
to every prompt (the VQGAN+CLIP notebooks' loss) -> backward -> optimizer step. The callback
receives the info dict of DEVELOPERS.md (`step`, `image`, `loss`, `losses`, `model_losses`,
`eval_loss`, `out_of_range`, `grad_norm`, `seconds`, plus `last` and `rng_state`, the cutout
stream's state before the step) at every reported step; returning True from it stops the run.
Several CLIP models (guides) add their losses, each on its own cutouts.

Step `s` reports the image after `s` optimizer updates, so a run of N steps reports steps
0..N and makes N updates; step 0 is the initial image, step N the final one.
"""

import dataclasses
import functools
import math
import operator
import time
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from clampgen.cutouts import Augment, cutouts_from_draws, draw_cutouts, eval_views
from clampgen.keepers import get_keeper
from clampgen.prompts import phase_at

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "adamax": torch.optim.Adamax,
    "nadam": torch.optim.NAdam,
    "radam": torch.optim.RAdam,
}


FUSED = ("adam", "adamw", "sgd", "adagrad")  # torch has fused CPU and CUDA kernels for these


def list_optimizers() -> list[str]:
    return list(OPTIMIZERS)


def trainable(module: torch.nn.Module) -> list:
    """The parameters an optimizer updates: those of module that require grad (a VQGAN image's
    latent, not its frozen decoder)."""
    return [p for p in module.parameters() if p.requires_grad]


def make_optimizer(params, name: str, lr: float) -> torch.optim.Optimizer:
    """An optimizer by name (OPTIMIZERS); ValueError names the valid ones."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer '{name}' (choose from: {', '.join(OPTIMIZERS)})")
    params = list(params)
    if name in FUSED and all(
        p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params
    ):
        return OPTIMIZERS[name](params, lr=lr, fused=True)  # one kernel for the whole update
    return OPTIMIZERS[name](params, lr=lr)


@dataclass
class Targets:
    """What the image is pulled toward: one row per prompt (text and image prompts alike). A
    prompt schedule keeps every phase's prompts here, with one row of weights per phase (a
    prompt's weight, 0 outside its phase); `at(step)` is the active phase's Targets."""

    embeds: torch.Tensor  # (P, D) unit-norm CLIP embeddings
    weights: torch.Tensor  # (P,) negative steers away (the first phase's, with a schedule)
    stops: torch.Tensor  # (P,) floor of each prompt's signed distance (-inf: none)
    labels: list  # P strings, for logs
    phases: Optional[torch.Tensor] = None  # (K, P) weights per phase; None: one phase
    starts: tuple = (0,)  # first step of each phase

    def to(self, device):
        phases = None if self.phases is None else self.phases.to(device)
        return dataclasses.replace(
            self,
            embeds=self.embeds.to(device),
            weights=self.weights.to(device),
            stops=self.stops.to(device),
            phases=phases,
        )

    def at(self, step: int) -> "Targets":
        """The Targets of the phase that step falls in (self when there is one phase)."""
        if self.phases is None:
            return self
        return dataclasses.replace(self, weights=self.phases[phase_at(step, self.starts)])


@dataclass
class Guide:
    """One CLIP model guiding the image: its bundle (clampgen.clip_loader.ClipBundle), the
    prompts embedded by it, and its weight in the sum of the models' losses (pixray, pytti and
    Disco Diffusion let several CLIPs guide one image this way)."""

    bundle: object
    targets: Targets
    weight: float = 1.0

    def at(self, step: int) -> "Guide":
        return dataclasses.replace(self, targets=self.targets.at(step))


class StepOutput(NamedTuple):
    """What one step's forward gives: the raw image (1, 3, H, W), the kept image, the total loss,
    the per-prompt losses (P,) and the per-model losses (M,), weighted."""

    raw: torch.Tensor
    image: torch.Tensor
    loss: torch.Tensor
    losses: torch.Tensor
    model_losses: torch.Tensor


def spherical_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared great-circle distance between unit vectors: x (N, D), y (P, D) -> (N, P).
    The loss of K. Crowson's VQGAN+CLIP notebook: 2 * arcsin(|x - y| / 2) ** 2."""
    return (x[:, None] - y[None]).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


def prompt_losses(embeds: torch.Tensor, targets: Targets) -> torch.Tensor:
    """embeds (N, D) -> (P,) per-prompt losses |w| * mean_n max(sign(w) * dist, stop).

    As in the notebooks' `Prompt`, the sign of the weight flips the distance (steer away) and
    `stop` floors it: a cutout already past the floor is not pushed further."""
    dists = spherical_dist(embeds, targets.embeds) * targets.weights.sign()  # (N, P)
    return targets.weights.abs() * torch.maximum(dists, targets.stops).mean(dim=0)


def clip_loss(views, bundle, targets, normalized=False):
    """(CLIP loss, per-prompt losses (P,)) for CLIP views (N, 3, h, w) of the image, in [0, 1]
    or, with normalized, already in the model's normalised space."""
    encode = bundle.encode_normalized if normalized else bundle.encode_image
    losses = prompt_losses(encode(views), targets)
    return losses.sum(), losses


def _weighted(value, weight: float):
    return value if weight == 1.0 else value * weight


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels of (B, C, H, W): the total-variation
    regulariser of Mahendran & Vedaldi 2015 (squared, as Disco Diffusion's tv_scale uses it)."""
    dx = image[..., :, 1:] - image[..., :, :-1]  # (B, C, H, W-1)
    dy = image[..., 1:, :] - image[..., :-1, :]  # (B, C, H-1, W)
    return dx.pow(2).mean() + dy.pow(2).mean()


def combine(parts, image, init_image, init_weight, tv_weight=0.0):
    """(total, per-prompt (P,), per-model (M,)) from each guide's (weight, loss, losses), plus
    the init_weight pull toward init_image and the tv_weight smoothness term, counted once."""
    total = functools.reduce(operator.add, [_weighted(loss, w) for w, loss, _ in parts])
    losses = functools.reduce(operator.add, [_weighted(each, w) for w, _, each in parts])
    model_losses = torch.stack([_weighted(loss, w) for w, loss, _ in parts])
    if init_weight:
        total = total + F.mse_loss(image, init_image) * init_weight / 2
    if tv_weight:
        total = total + tv_loss(image) * tv_weight
    return total, losses, model_losses


@torch.no_grad()
def eval_loss(image, guides, init_image=None, init_weight=0.0, tv_weight=0.0) -> float:
    """The objective on each model's fixed evaluation views (cutouts.eval_views): no
    randomness, no gradient."""
    parts = [
        (g.weight, *clip_loss(eval_views(image, g.bundle.input_size), g.bundle, g.targets))
        for g in guides
    ]
    return combine(parts, image, init_image, init_weight, tv_weight)[0].item()


def step_loss(generator, guides, cfg, keeper, aug, rng, init_image=None, forward=None):
    """One step's forward (a StepOutput). The random draws happen here, eagerly, each model's
    cutouts in turn at its own input size; the rest is `forward` (default step_forward, or a
    torch.compile'd copy of it from compile_forward), a pure function of tensors."""
    draws = tuple(draw_cutouts(cfg.cutn, 3, g.bundle.input_size, rng) for g in guides)
    forward = forward or step_forward
    return forward(generator, guides, cfg, keeper, aug, draws, init_image)


def step_forward(generator, guides, cfg, keeper, aug, draws, init_image=None) -> StepOutput:
    """The differentiable part of a step, given its random draws: no RNG and no host sync, so
    torch.compile captures it whole (fullgraph) and CUDA graphs can replay it. The keeper
    (clampgen.keepers) makes the image the loss sees and may add a penalty on the raw image;
    each model scores its own cutouts, with its own normalisation."""
    raw = generator()  # (1, 3, H, W)
    image = keeper.forward(raw)  # (1, 3, H, W) in [0, 1]
    parts = []
    for guide, guide_draws in zip(guides, draws):
        b = guide.bundle
        cutouts = cutouts_from_draws(
            image,
            guide_draws,
            b.input_size,
            cfg.cut_pow,
            aug,
            cfg.cut_overhang,
            b.mean,
            b.std,
            whole=getattr(cfg, "cut_whole", 0),
        )  # (cutn, 3, h, w)
        parts.append((guide.weight, *clip_loss(cutouts, b, guide.targets, normalized=True)))
    loss, losses, model_losses = combine(parts, image, init_image, cfg.init_weight, cfg.tv_weight)
    if keeper.penalty is not None:
        loss = loss + keeper.penalty(raw)
    return StepOutput(raw, image, loss, losses, model_losses)


def compile_forward(mode: str = "default"):
    """step_forward under torch.compile(fullgraph=True); mode 'reduce-overhead' adds CUDA graphs.
    The first steps are slow while it compiles (seconds to a minute)."""
    return torch.compile(step_forward, fullgraph=True, mode=mode)


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """The learning rate of the update after `step` of `steps`, as a fraction of the initial one:
    1 throughout for constant; for cosine, (1 + cos(pi step / steps)) / 2, from 1 to 0 (SGDR's
    cosine annealing without restarts, Loshchilov & Hutter 2017)."""
    if schedule == "constant" or steps <= 0:
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / steps))
    raise ValueError(f"unknown lr schedule '{schedule}' (choose from: cosine, constant)")


def schedule_lr(optimizer, schedule: str, step: int, steps: int) -> None:
    """Sets every param group's lr to its initial one (kept in the group as `initial_lr`, as
    torch's LR schedulers keep it, so a resumed optimizer knows it) times lr_factor."""
    factor = lr_factor(schedule, step, steps)
    for group in optimizer.param_groups:
        group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor


def _grad_norm(params) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def _due(step: int, every: int, last: bool) -> bool:
    return last or (every > 0 and step % every == 0)


def optimize(
    generator,
    guides: list,
    cfg,
    rng: torch.Generator,
    callback=None,
    init_image=None,
    optimizer=None,
    start_step: int = 0,
) -> dict:
    """Runs steps start_step..cfg.steps; returns {'image', 'step', 'loss', 'stopped', 'optimizer'}.

    generator: module whose forward() is the unconstrained image (1, 3, H, W); guides: the CLIP
    models (Guide) and what they pull toward, each phase of a schedule at its steps; cfg: any object
    with the GenerateConfig loop fields; rng: the cutout/augmentation generator (on the device);
    init_image: target of the init_weight pull (default: the kept image at start). cfg.clamp
    names the clamp or other range keeper (clampgen.keepers)."""
    params = trainable(generator)
    optimizer = optimizer or make_optimizer(params, cfg.optimizer, cfg.lr)
    keeper = get_keeper(cfg.clamp)
    aug = Augment.from_config(cfg)
    schedule = getattr(cfg, "lr_schedule", "constant")
    mode = getattr(cfg, "compile", "off")
    forward = compile_forward(mode) if mode != "off" else None
    if init_image is None:
        with torch.no_grad():
            init_image = keeper.forward(generator()).detach()
    start, info = time.perf_counter(), {}
    for step in range(start_step, cfg.steps + 1):
        last = step == cfg.steps
        report = _due(step, cfg.log_every, last) or _due(step, cfg.save_every, last)
        evaluate = _due(step, cfg.eval_every, last)
        # the stream's state before this step's draws: what resuming at this step needs
        rng_state = rng.get_state() if report or evaluate else None
        active = [guide.at(step) for guide in guides]
        raw, image, loss, losses, model_losses = step_loss(
            generator, active, cfg, keeper, aug, rng, init_image, forward
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if report or evaluate:  # host syncs only here: one transfer (+ eval_loss's on eval steps)
            loss_, oor, grad_norm, *values = torch.cat(
                [
                    loss.detach().reshape(1),
                    keeper.outside(raw).float().mean().reshape(1),
                    _grad_norm(params).reshape(1).to(loss),
                    losses.detach(),
                    model_losses.detach(),
                ]
            ).tolist()
            losses_, model_losses_ = values[: len(values) - len(guides)], values[-len(guides) :]
            info = {
                "step": step,  # a compiled step's outputs are reused by CUDA graphs: copy
                "image": image.detach().clone() if forward else image.detach(),
                "loss": loss_,
                "losses": losses_,
                "model_losses": model_losses_,
                "eval_loss": eval_loss(
                    image.detach(), active, init_image, cfg.init_weight, cfg.tv_weight
                )
                if evaluate
                else None,
                "out_of_range": oor,
                "grad_norm": grad_norm,
                "seconds": time.perf_counter() - start,
                "last": last,
                "rng_state": rng_state,
            }
            if callback is not None and callback(info):
                return {**info, "stopped": True, "optimizer": optimizer}
        if not last:
            # a copy: the pixel generator's image tensor is its parameter, which step() updates
            before = raw.detach().clone() if keeper.after_step is not None else None
            schedule_lr(optimizer, schedule, step, cfg.steps)
            optimizer.step()
            if before is not None:
                keeper.after_step(generator, optimizer, before)
    return {**info, "stopped": False, "optimizer": optimizer}
