"""
Trains the supervised shape judge (a small CNN) on the procedural world; saves fp16 safetensors.

    python -m clampgen.training.train_judge --out clampgen/models/weights/shape_judge.safetensors

Scenes with one to three objects, labelled with their shape. Augmentation is heavier than the
CLIP's (stronger noise, blur and crops, random channel permutations and greyscale), so the
judge reads the shape of imperfect generated images and does not lean on colour.
"""

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from clampgen.models import shapes_data
from clampgen.models.judge import ShapeJudge
from clampgen.options import option, parse_options


def judge_augment(images, generator, strength=2.0):
    """CLIP-style augmentation at double strength, then per image channel permutation/greyscale."""
    g, n = generator, images.shape[0]
    images = shapes_data.augment(images, g, strength, crop=0.12, noise=0.1)
    perm = torch.rand(n, 3, generator=g).argsort(1)  # (B, 3) random channel order
    images = images.gather(1, perm[:, :, None, None].expand_as(images))
    grey = (torch.rand(n, generator=g) < 0.2)[:, None, None, None]
    return torch.where(grey, images.mean(1, keepdim=True).expand_as(images), images)


def make_batch(n, generator, strength):
    scenes = shapes_data.sample_scenes(n, generator)
    return judge_augment(shapes_data.render(scenes), generator, strength), scenes.shape


def train(steps=350, batch_size=128, lr=2e-3, seed=1, threads=1, callback=None):
    """Trains a ShapeJudge from scratch (AdamW, one-cycle schedule); returns it in eval mode."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    judge = ShapeJudge()
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    judge.train()
    for step in range(steps):
        strength = min(2.0, 0.5 + 3 * step / steps)  # curriculum: clean-ish first, heavy from 50 %
        images, labels = make_batch(batch_size, g, strength)
        loss = F.cross_entropy(judge(images), labels, label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if callback:
            callback({"step": step, "loss": loss.item()})
    return judge.eval()


@torch.no_grad()
def accuracy(judge, n=1000, seed=12345, strength=0.0):
    """Shape accuracy on n held-out scenes (clean if strength is 0, else CLIP-style augmented)."""
    g = torch.Generator().manual_seed(seed)
    scenes = shapes_data.sample_scenes(n, g)
    images = shapes_data.render(scenes)
    if strength:
        images = shapes_data.augment(images, g, strength, crop=0.12)
    return (judge(images).argmax(1) == scenes.shape).float().mean().item()


@dataclass
class JudgeConfig:
    out: str = option("clampgen/models/weights/shape_judge.safetensors", "output safetensors")
    steps: int = option(350, "optimiser steps")
    batch_size: int = option(128, "images per step")
    lr: float = option(2e-3, "peak learning rate (one-cycle schedule)")
    seed: int = option(1, "seeds init, scenes and augmentations")
    threads: int = option(1, "torch CPU threads")


def main(argv=None):
    args = parse_options(
        JudgeConfig, argv, prog="python -m clampgen.training.train_judge", description=__doc__
    )
    bar = tqdm(total=args.steps, desc="shape judge", mininterval=5)
    start = time.time()

    def progress(info):
        bar.update(1)
        bar.set_postfix(loss=f"{info['loss']:.3f}", refresh=False)

    judge = train(args.steps, args.batch_size, args.lr, args.seed, args.threads, progress)
    bar.close()
    print(f"trained {args.steps} steps in {(time.time() - start) / 60:.1f} min")
    save_file({k: v.half().contiguous() for k, v in judge.state_dict().items()}, args.out)
    print(f"saved {args.out}")
    for s in (0.0, 1.0, 2.0):
        print(
            f"held-out shape accuracy (augmentation strength {s}): "
            f"{100 * accuracy(judge, strength=s):.1f}%"
        )


if __name__ == "__main__":
    main()
