"""
Trains the bundled `shapes` CLIP from scratch on the procedural world and saves fp16 safetensors.

    python -m clampgen.training.train_shapes --out clampgen/models/weights/shapes_clip.safetensors

Everything (scenes, captions, augmentations, init) comes from --seed, so the command reproduces
the shipped weights (up to floating-point differences across machines and thread counts).
The loss is CLIP's symmetric contrastive loss with multi-positive targets: every caption in the
batch that is true of an image (all attributes it names match the scene) is a positive for it,
so "a red shape" is not pushed away from the other red shapes in the batch. A training-only
linear probe on the image embedding adds supervised attribute losses (see AttributeProbe).
Recipe, wall time and measured accuracies: clampgen/models/weights/MODEL_CARD.md.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from clampgen.models import shapes_data
from clampgen.models.shapes_clip import normalize, register_shapes_model
from clampgen.options import option, parse_options
from clampgen.training.eval_shapes import evaluate, format_report


@dataclass
class TrainConfig:
    out: str = option(
        "clampgen/models/weights/shapes_clip.safetensors", "where the fp16 safetensors go"
    )
    seed: int = option(0, "seeds init, scenes, captions and augmentations")
    steps: int = option(3000, "optimiser steps")
    batch_size: int = option(96, "images per step (and as many captions)")
    lr: float = option(2e-3, "peak AdamW learning rate (linear warmup, cosine decay)")
    warmup: int = option(100, "warmup steps")
    weight_decay: float = option(0.05, "AdamW weight decay on matrices")
    aug_ramp: float = option(
        0.3, "fraction of training over which augmentation strength grows 0 -> 1"
    )
    threads: int = option(1, "torch CPU threads (1 is fastest on a shared 2-core machine)")
    eval_every: int = option(500, "steps between held-out zero-shot evaluations (0 = never)")
    aux_weight: float = option(
        1.0, "weight of the auxiliary attribute-probe loss on image features"
    )
    model_config: str = option(
        "", "JSON of another architecture to try (its file stem is the model name); '' = shapes"
    )


class AttributeProbe(torch.nn.Module):
    """Training-only linear heads on the image embedding, one per attribute (then discarded).

    They give the image tower a direct, dense signal for every attribute, which speeds up learning
    shape; the contrastive loss then aligns captions with the same embedding.
    """

    WEIGHTS = (3.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # per attribute: shape is the hard one

    def __init__(self, dim):
        super().__init__()
        sizes = [
            len(shapes_data.SHAPES),
            len(shapes_data.COLOURS),
            len(shapes_data.COLOURS),
            3,
            len(shapes_data.SIZES),
            len(shapes_data.POSITIONS),
        ]
        self.heads = torch.nn.ModuleList(torch.nn.Linear(dim, k) for k in sizes)

    def forward(self, features, values, count):
        """Weighted mean cross-entropy over attributes; position of single objects; count 0..2."""
        targets = values.clone()
        targets[:, 3] -= 1
        loss = 0.0
        for a, head in enumerate(self.heads):
            rows = count == 1 if shapes_data.ATTRIBUTES[a] == "position" else slice(None)
            loss = loss + self.WEIGHTS[a] * F.cross_entropy(head(features[rows]), targets[rows, a])
        return loss / sum(self.WEIGHTS)


def make_batch(n, generator, strength):
    """A batch: augmented images, unique captions, the (n, U) positive mask, scene attributes."""
    scenes = shapes_data.sample_scenes(n, generator)
    images = shapes_data.augment(shapes_data.render(scenes), generator, strength, crop=0.15)
    mentions = shapes_data.sample_mentions(scenes, generator)
    texts = shapes_data.captions(scenes, mentions)
    first = {}
    for i, t in enumerate(texts):
        first.setdefault(t, i)
    keep = torch.tensor(list(first.values()))  # one column per distinct caption
    values = shapes_data.attribute_matrix(scenes)
    positives = shapes_data.compatible(values[keep], mentions[keep], values)  # (n, U)
    return normalize(images), list(first), positives, values


def multi_positive_clip_loss(image_features, text_features, positives, logit_scale):
    """Symmetric InfoNCE where targets are uniform over each row's / column's positives."""
    logits = logit_scale * image_features @ text_features.T  # (B, U)
    p = positives.float()
    loss_i = -(p / p.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    loss_t = -(p / p.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
    return (loss_i + loss_t) / 2


def lr_at(step, cfg):
    """Linear warmup then cosine decay to zero."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + torch.cos(torch.tensor(t * torch.pi)).item())


def build_optimizer(model, cfg):
    """AdamW with weight decay on matrices only (not on norms, biases, embeddings' scale)."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def train_step(model, probe, tokenizer, optimizer, batch, aux_weight):
    """One optimiser step on a make_batch() batch; returns the loss."""
    images, texts, positives, values = batch
    image_features = F.normalize(model.encode_image(images), dim=-1)  # (B, D)
    text_features = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)  # (U, D)
    loss = multi_positive_clip_loss(
        image_features, text_features, positives, model.logit_scale.exp()
    )
    if aux_weight:
        loss = loss + aux_weight * probe(image_features * 10, values, values[:, 3])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(
        [p for group in optimizer.param_groups for p in group["params"]], 1.0
    )
    optimizer.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, 4.6052)  # ln(100), as in open_clip training
    return loss.item()


def save_fp16(model, path):
    """Writes the state dict as fp16 safetensors (what open_clip's `pretrained=path` loads)."""
    state = {
        k: (v.half() if v.is_floating_point() else v).detach().contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(path), metadata={"format": "pt", "model": "shapes"})


def train(cfg, callback=None):
    """Trains from scratch; returns the model. callback(dict(step, loss, lr)) is called every
    step, with 'eval' (a format_report line) added on evaluation steps."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    name = register_shapes_model()
    if cfg.model_config:
        open_clip.add_model_config(cfg.model_config)
        name = Path(cfg.model_config).stem
    model = open_clip.create_model(name)
    tokenizer = open_clip.get_tokenizer(name)
    probe = AttributeProbe(model.text_projection.shape[1])
    optimizer = build_optimizer(torch.nn.ModuleDict({"clip": model, "probe": probe}), cfg)
    g = torch.Generator().manual_seed(cfg.seed)
    model.train()
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        strength = min(1.0, step / max(1, cfg.aug_ramp * cfg.steps))
        batch = make_batch(cfg.batch_size, g, strength)
        loss = train_step(model, probe, tokenizer, optimizer, batch, cfg.aux_weight)
        info = {"step": step, "loss": loss, "lr": optimizer.param_groups[0]["lr"]}
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
            model.eval()
            info["eval"] = format_report(evaluate(model, tokenizer, n=400))
            model.train()
        if callback:
            callback(info)
    return model.eval()


def parse_args(argv=None) -> TrainConfig:
    return parse_options(
        TrainConfig, argv, prog="python -m clampgen.training.train_shapes", description=__doc__
    )


def main(argv=None):
    cfg = parse_args(argv)
    bar = tqdm(total=cfg.steps, desc="shapes CLIP", mininterval=5)
    start = time.time()

    def progress(info):
        bar.update(1)
        bar.set_postfix(loss=f"{info['loss']:.3f}", lr=f"{info['lr']:.1e}", refresh=False)
        if "eval" in info:
            bar.write(f"step {info['step'] + 1}: {info['eval']}")

    model = train(cfg, progress)
    bar.close()
    print(f"trained {cfg.steps} steps in {(time.time() - start) / 60:.1f} min")
    save_fp16(model, cfg.out)
    print(f"saved {cfg.out}")
    print(format_report(evaluate(model, open_clip.get_tokenizer("shapes"), n=2000)))


if __name__ == "__main__":
    main()
