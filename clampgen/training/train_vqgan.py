"""
Trains the bundled shapes VQGAN from scratch and writes it in taming-transformers' format.

    python -m clampgen.training.train_vqgan --out clampgen/models/weights

The network is taming's VQModel (clampgen.vqgan_model: Encoder, Decoder, a nearest-neighbour
codebook, taming's parameter names), so the result is a taming `.yaml` + `.ckpt` that
clampgen.vqgan.load_vqgan reads exactly as it reads vqgan_imagenet_f16_16384. Everything comes
from --seed (scenes, crops, initialisation, codebook restarts), so the command reproduces the
shipped weights on the same machine and thread count. Recipe, wall time and held-out figures:
clampgen/models/weights/VQGAN_CARD.md; `python -m clampgen.training.eval_vqgan` measures them.

Training forward (not what the loader does, but what it finds in the weights):
- an L2-normalised ("cosine") codebook: the encoder's output is normalised per position and the
  codebook rows are put back on the unit sphere after every step, so the loader's Euclidean
  nearest-code lookup on the unnormalised output picks the same code (|e| = 1 for every code:
  argmin |z - e|^2 = argmax z.e) (Yu et al., 2022, ViT-VQGAN);
- the straight-through estimator with codebook and commitment losses (van den Oord et al.,
  2017): |sg(z) - e|^2 + beta |z - sg(e)|^2, reconstruction L1 + MSE on images in [-1, 1];
- the codebook initialised from encoder outputs of a first batch, and codes unused for
  `restart_every` steps restarted from encoder outputs of the current batch (dead-code
  restarts, as in Jukebox, Dhariwal et al., 2020);
- fresh scenes every step (clampgen.models.shapes_data) rendered at a size drawn from --sizes and
  cropped to --crop on the latent grid; Adam (beta2 0.99) with linear warm-up and cosine decay,
  the gradient norm clipped at twice its running mean.
"""

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from clampgen.models import shapes_data
from clampgen.options import option, parse_options
from clampgen.training.eval_vqgan import evaluate, format_report
from clampgen.vqgan import save_taming
from clampgen.vqgan_model import VQModel


@dataclass
class VQGANTrainConfig:
    out: str = option("clampgen/models/weights", "folder for shapes_vqgan.yaml and .ckpt")
    seed: int = option(0, "seeds initialisation, scenes, crops and codebook restarts")
    steps: int = option(8000, "optimiser steps")
    batch: int = option(16, "crops per step")
    crop: int = option(64, "side of the training crops in pixels")
    sizes: str = option("64,96,128", "render sizes the crops are taken from (one per step)")
    lr: float = option(8e-4, "peak Adam learning rate (linear warm-up, cosine decay)")
    beta2: float = option(0.99, "Adam's second-moment decay (0.99: a shorter memory than 0.999)")
    clip: float = option(
        2.0, "clip the gradient norm at this multiple of its running mean (0: never)"
    )
    warmup: int = option(100, "warm-up steps")
    min_lr: float = option(0.05, "final learning rate as a fraction of the peak")
    beta: float = option(0.25, "commitment weight")
    restart_every: int = option(100, "steps after which unused codes are restarted (0: never)")
    ch: int = option(64, "taming ddconfig ch: channels at full resolution (x ch_mult)")
    ch_mult: str = option("1,1,1,1", "taming ddconfig ch_mult (factor 2^(len - 1))")
    num_res_blocks: int = option(0, "taming ddconfig num_res_blocks")
    z_channels: int = option(64, "taming ddconfig z_channels")
    embed_dim: int = option(16, "codebook vector size")
    n_embed: int = option(512, "codebook size")
    threads: int = option(1, "torch CPU threads (the shipped weights: 1)")
    eval_every: int = option(500, "steps between held-out PSNR reports on 64 scenes (0: none)")
    eval_n: int = option(500, "held-out scenes of the final report")


def ddconfig(cfg: VQGANTrainConfig) -> dict:
    """The taming ddconfig of cfg (no attention: the latent grids here are small)."""
    return dict(
        double_z=False,
        z_channels=cfg.z_channels,
        resolution=128,
        in_channels=3,
        out_ch=3,
        ch=cfg.ch,
        ch_mult=[int(m) for m in cfg.ch_mult.split(",")],
        num_res_blocks=cfg.num_res_blocks,
        attn_resolutions=[],
        dropout=0.0,
    )


def make_batch(cfg: VQGANTrainConfig, generator, n: int, factor: int) -> torch.Tensor:
    """n crops (n, 3, crop, crop) in [-1, 1] of fresh scenes rendered at one of cfg.sizes, each
    crop at a multiple of the factor (on the latent grid)."""
    sizes = [int(s) for s in cfg.sizes.split(",")]
    size = sizes[int(torch.randint(len(sizes), (1,), generator=generator))]
    images = shapes_data.render(shapes_data.sample_scenes(n, generator), size=size)
    if cfg.crop < size:
        oy, ox = (
            torch.randint(0, size - cfg.crop + 1, (2, n), generator=generator) // factor * factor
        ).tolist()
        images = torch.stack(
            [images[i, :, oy[i] : oy[i] + cfg.crop, ox[i] : ox[i] + cfg.crop] for i in range(n)]
        )
    return (images * 2 - 1).contiguous(memory_format=torch.channels_last)  # (n, 3, c, c)


def quantize_forward(model: VQModel, x: torch.Tensor):
    """Training forward: (reconstruction, unit encoder outputs (N, D), code indices (N,),
    codebook loss, commitment loss), codes by cosine similarity, straight-through."""
    z = F.normalize(model.quant_conv(model.encoder(x)), dim=1)  # (B, D, h, w)
    codebook = model.quantize.embedding.weight  # (K, D)
    flat = z.movedim(1, -1).reshape(-1, z.shape[1])  # (N, D)
    with torch.no_grad():
        idx = (flat @ codebook.T).argmax(1)  # (N,)
    q = codebook[idx]  # (N, D)
    codebook_loss, commitment = F.mse_loss(q, flat.detach()), F.mse_loss(flat, q.detach())
    z_q = (flat + (q - flat).detach()).reshape(z.shape[0], *z.shape[2:], -1).movedim(-1, 1)
    return model.decode(z_q), flat, idx, codebook_loss, commitment


def lr_at(cfg: VQGANTrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to min_lr x lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    low = cfg.lr * cfg.min_lr
    return low + (cfg.lr - low) * 0.5 * (1 + math.cos(math.pi * t))


class NormClipper:
    """Clips the total gradient norm at cfg.clip x its running mean (after warm-up), so that one
    odd batch (a flat crop, where a GroupNorm group of two channels has almost no variance)
    cannot throw the weights out of their basin; counts the steps it clipped."""

    def __init__(self, cfg: VQGANTrainConfig, decay: float = 0.99):
        self.multiple, self.warmup, self.decay = cfg.clip, cfg.warmup, decay
        self.mean, self.clipped = None, 0

    def __call__(self, params, step: int) -> None:
        if not self.multiple:
            return
        limit = math.inf if self.mean is None or step < self.warmup else self.multiple * self.mean
        norm = float(torch.nn.utils.clip_grad_norm_(list(params), limit))
        self.clipped += norm > limit
        kept = min(norm, limit)
        self.mean = kept if self.mean is None else self.decay * self.mean + (1 - self.decay) * kept


@torch.no_grad()
def _init_codebook(model, cfg, generator) -> None:
    """Codebook rows from (normalised) encoder outputs of a first batch."""
    z = model.quant_conv(
        model.encoder(make_batch(cfg, generator, max(cfg.batch, 64), model.factor))
    )
    z = z.movedim(1, -1).reshape(-1, z.shape[1])
    z = z + 0.01 * torch.randn(z.shape, generator=generator)  # identical outputs: distinct codes
    rows = z[torch.randint(len(z), (cfg.n_embed,), generator=generator)]
    model.quantize.embedding.weight.copy_(F.normalize(rows, dim=1))


@torch.no_grad()
def _restart_dead(model, optimizer, used, flat, generator) -> int:
    """Codes unused since the last restart take random encoder outputs of this batch, with fresh
    Adam moments; returns how many."""
    dead = (~used).nonzero().flatten()
    if len(dead):
        weight = model.quantize.embedding.weight
        weight[dead] = flat[torch.randint(len(flat), (len(dead),), generator=generator)]
        state = optimizer.state.get(weight)
        if state:
            state["exp_avg"][dead] = 0
            state["exp_avg_sq"][dead] = 0
    used.zero_()
    return len(dead)


def train(cfg: VQGANTrainConfig, callback=None) -> VQModel:
    """Trains from scratch; returns the model (eval mode). callback(info) each step: step, loss,
    lr, restarts, and `eval` (evaluate()'s figures on 64 scenes) every eval_every steps."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = VQModel(ddconfig(cfg), cfg.n_embed, cfg.embed_dim).to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, cfg.beta2))
    _init_codebook(model, cfg, generator)
    used, restarts, clipper = torch.zeros(cfg.n_embed, dtype=torch.bool), 0, NormClipper(cfg)
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(cfg, step)
        x = make_batch(cfg, generator, cfg.batch, model.factor)
        recon, flat, idx, codebook_loss, commitment = quantize_forward(model, x)
        loss = (
            (recon - x).abs().mean()
            + (recon - x).pow(2).mean()
            + codebook_loss
            + cfg.beta * commitment
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clipper(model.parameters(), step)
        optimizer.step()
        with torch.no_grad():
            weight = model.quantize.embedding.weight
            weight.copy_(F.normalize(weight, dim=1))  # stored normalised: see the docstring
            used[idx] = True
        if cfg.restart_every and (step + 1) % cfg.restart_every == 0:
            restarts += _restart_dead(model, optimizer, used, flat.detach(), generator)
        info = {
            "step": step,
            "loss": loss.item(),
            "lr": optimizer.param_groups[0]["lr"],
            "clipped": clipper.clipped,
            "restarts": restarts,
        }
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
            info["eval"] = evaluate(model.eval(), n=64)
            model.train()
        if callback is not None:
            callback(info)
    return model.to(memory_format=torch.contiguous_format).eval()


def main(argv=None):
    cfg = parse_options(
        VQGANTrainConfig, argv, prog="python -m clampgen.training.train_vqgan", description=__doc__
    )
    bar = tqdm(total=cfg.steps, desc="shapes VQGAN", mininterval=5)
    start = time.time()

    def progress(info):
        bar.update(1)
        bar.set_postfix(
            loss=f"{info['loss']:.4f}",
            lr=f"{info['lr']:.1e}",
            restarts=info["restarts"],
            clipped=info["clipped"],
            refresh=False,
        )
        if "eval" in info:
            psnr = ", ".join(f"{s}px {r['psnr_mean']:.2f} dB" for s, r in info["eval"].items())
            bar.write(f"step {info['step'] + 1} ({(time.time() - start) / 60:.1f} min): {psnr}")

    model = train(cfg, progress)
    bar.close()
    print(f"trained {cfg.steps} steps in {(time.time() - start) / 60:.1f} min")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = save_taming(model, ddconfig(cfg), out / "shapes_vqgan.yaml", out / "shapes_vqgan.ckpt")
    print(f"saved {paths[0]} and {paths[1]}")
    print(format_report(evaluate(model, n=cfg.eval_n)))


if __name__ == "__main__":
    main()
