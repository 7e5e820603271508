"""The CLIP-guided optimisation loop: a function that knows nothing about files or terminals.

    from clampgen.loop import optimize, Targets
    result = optimize(generator, bundle, targets, cfg, rng, callback=print_step)

Per step: image = clamp(generator()) -> random augmented cutouts -> CLIP -> spherical distance
to every prompt (the VQGAN+CLIP notebooks' loss) -> backward -> optimizer step. The callback
receives the info dict of DEVELOPERS.md (`step`, `image`, `loss`, `losses`, `eval_loss`,
`out_of_range`, `grad_norm`, `seconds`, plus `last` and `rng_state`, the cutout stream's state
before the step) at every reported step; returning True from it stops the run.

Step `s` reports the image after `s` optimizer updates, so a run of N steps reports steps
0..N and makes N updates; step 0 is the initial image, step N the final one.
"""

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clampgen.cutouts import Augment, cutouts_from_draws, draw_cutouts, eval_views
from clampgen.keepers import get_keeper

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
    """What the image is pulled toward: one row per prompt (text and image prompts alike)."""

    embeds: torch.Tensor  # (P, D) unit-norm CLIP embeddings
    weights: torch.Tensor  # (P,) negative steers away
    stops: torch.Tensor  # (P,) floor of each prompt's signed distance (-inf: none)
    labels: list  # P strings, for logs

    def to(self, device):
        return Targets(
            self.embeds.to(device), self.weights.to(device), self.stops.to(device), self.labels
        )


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


def objective(views, image, bundle, targets, init_image, init_weight, normalized=False):
    """(total loss, per-prompt losses (P,)) for CLIP views of image (views (N, 3, h, w), in
    [0, 1] or, with normalized, already in CLIP's normalised space)."""
    encode = bundle.encode_normalized if normalized else bundle.encode_image
    losses = prompt_losses(encode(views), targets)
    total = losses.sum()
    if init_weight:
        total = total + F.mse_loss(image, init_image) * init_weight / 2
    return total, losses


@torch.no_grad()
def eval_loss(image, bundle, targets, init_image=None, init_weight=0.0) -> float:
    """The objective on the fixed evaluation views (cutouts.eval_views): no randomness, no grad."""
    views = eval_views(image, bundle.input_size)
    return objective(views, image, bundle, targets, init_image, init_weight)[0].item()


def step_loss(generator, bundle, targets, cfg, keeper, aug, rng, init_image=None, forward=None):
    """One step's forward: raw image (1, 3, H, W), kept image, total loss, per-prompt losses.

    The random draws happen here, eagerly; the rest is `forward` (default step_forward, or a
    torch.compile'd copy of it from compile_forward), a pure function of tensors."""
    draws = draw_cutouts(cfg.cutn, 3, bundle.input_size, rng)
    return (forward or step_forward)(
        generator, bundle, targets, cfg, keeper, aug, draws, init_image
    )


def step_forward(generator, bundle, targets, cfg, keeper, aug, draws, init_image=None):
    """The differentiable part of a step, given its random draws: no RNG and no host sync, so
    torch.compile captures it whole (fullgraph) and CUDA graphs can replay it. The keeper
    (clampgen.keepers) makes the image the loss sees and may add a penalty on the raw image."""
    raw = generator()  # (1, 3, H, W)
    image = keeper.forward(raw)  # (1, 3, H, W) in [0, 1]
    cutouts = cutouts_from_draws(
        image, draws, bundle.input_size, cfg.cut_pow, aug, cfg.cut_overhang, bundle.mean, bundle.std
    )  # (cutn, 3, h, w)
    loss, losses = objective(
        cutouts, image, bundle, targets, init_image, cfg.init_weight, normalized=True
    )
    if keeper.penalty is not None:
        loss = loss + keeper.penalty(raw)
    return raw, image, loss, losses


def compile_forward(mode: str = "default"):
    """step_forward under torch.compile(fullgraph=True); mode 'reduce-overhead' adds CUDA graphs.
    The first steps are slow while it compiles (seconds to a minute)."""
    return torch.compile(step_forward, fullgraph=True, mode=mode)


def _grad_norm(params) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def _due(step: int, every: int, last: bool) -> bool:
    return last or (every > 0 and step % every == 0)


def optimize(
    generator,
    bundle,
    targets: Targets,
    cfg,
    rng: torch.Generator,
    callback=None,
    init_image=None,
    optimizer=None,
    start_step: int = 0,
) -> dict:
    """Runs steps start_step..cfg.steps; returns {'image', 'step', 'loss', 'stopped', 'optimizer'}.

    generator: module whose forward() is the unconstrained image (1, 3, H, W); cfg: any object
    with the GenerateConfig loop fields; rng: the cutout/augmentation generator (on the device);
    init_image: target of the init_weight pull (default: the kept image at start). cfg.clamp
    names the clamp or other range keeper (clampgen.keepers)."""
    params = trainable(generator)
    optimizer = optimizer or make_optimizer(params, cfg.optimizer, cfg.lr)
    keeper = get_keeper(cfg.clamp)
    aug = Augment.from_config(cfg)
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
        raw, image, loss, losses = step_loss(
            generator, bundle, targets, cfg, keeper, aug, rng, init_image, forward
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if report or evaluate:  # host syncs only here: one transfer (+ eval_loss's on eval steps)
            loss_, oor, grad_norm, *losses_ = torch.cat(
                [
                    loss.detach().reshape(1),
                    keeper.outside(raw).float().mean().reshape(1),
                    _grad_norm(params).reshape(1).to(loss),
                    losses.detach(),
                ]
            ).tolist()
            info = {
                "step": step,  # a compiled step's outputs are reused by CUDA graphs: copy
                "image": image.detach().clone() if forward else image.detach(),
                "loss": loss_,
                "losses": losses_,
                "eval_loss": eval_loss(image.detach(), bundle, targets, init_image, cfg.init_weight)
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
            optimizer.step()
            if keeper.after_step is not None:
                keeper.after_step(generator, optimizer, raw.detach())
    return {**info, "stopped": False, "optimizer": optimizer}
