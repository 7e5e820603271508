"""
Judges of generated images that are independent of the guiding CLIP.

    from clampgen.models.judge import colour_shares, load_shape_judge, judge_shapes
    shares = colour_shares(images)           # (B, 10): share of pixels nearest each palette colour
    judge = load_shape_judge()
    probs = judge_shapes(judge, images)      # (B, 8) probabilities over SHAPES

(a) Pixel statistics: every pixel is assigned the nearest of the ten palette colours (RGB distance).
(b) A supervised shape classifier (a small all-convolutional net, unlike the CLIP's tower)
    trained on the same
    procedural world with heavy augmentation (noise, blur, crops, colour permutations), so that
    it reads shapes in imperfect generated images. `python -m clampgen.training.train_judge`
    trains it.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from clampgen.models.shapes_clip import SHAPES_JUDGE_WEIGHTS
from clampgen.models.shapes_data import COLOURS, PALETTE, SHAPES

JUDGE_SIZE = 64  # the shape judge's input side; other sizes are resized


def colour_classes(images):
    """(B, 3, H, W) in [0, 1] -> (B, H, W) index of the nearest palette colour per pixel."""
    pixels = images.permute(0, 2, 3, 1)[..., None, :]  # (B, H, W, 1, 3)
    return ((pixels - PALETTE.to(images)) ** 2).sum(-1).argmin(-1)


def colour_shares(images):
    """(B, 3, H, W) in [0, 1] -> (B, 10) share of pixels per palette colour; rows sum to 1."""
    classes = colour_classes(images).flatten(1)  # (B, H*W)
    counts = F.one_hot(classes, len(COLOURS)).sum(1).float()
    return counts / classes.shape[1]


def scene_colours(images):
    """(background, shape colour) per image: the most and second most common palette colours."""
    top = colour_shares(images).topk(2, dim=1).indices
    return top[:, 0], top[:, 1]


def _conv(c_in, c_out, kernel=3, stride=1):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.GELU(),
    )


class ShapeJudge(nn.Module):
    """A small all-convolutional net (strided convs, no pooling, global max): 64x64 RGB -> logits.

    Deliberately unlike the CLIP's image tower (max-pooling CoordConv CNN with average+max
    pooling): other downsampling, no coordinates, 5x5 stem, GELU, trained supervised.
    """

    def __init__(self, width=16, n_classes=len(SHAPES)):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv(3, w, kernel=5),  # (B, w, 64, 64)
            _conv(w, 2 * w, stride=2),
            _conv(2 * w, 2 * w),  # (B, 2w, 32, 32)
            _conv(2 * w, 4 * w, stride=2),
            _conv(4 * w, 4 * w),  # (B, 4w, 16, 16)
            _conv(4 * w, 8 * w, stride=2),  # (B, 8w, 8, 8)
        )
        self.head = nn.Linear(8 * w, n_classes)

    def forward(self, images):
        """images: (B, 3, 64, 64) in [0, 1] -> (B, n_classes) logits."""
        x = self.features((images - 0.5) / 0.25)
        return self.head(x.amax(dim=(2, 3)))  # global max pool: shapes are small, anywhere


def load_shape_judge(weights=SHAPES_JUDGE_WEIGHTS, device="cpu"):
    """The shipped shape judge in eval mode (fp16 on disk, fp32 in memory)."""
    from safetensors.torch import load_file

    judge = ShapeJudge()
    judge.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
    return judge.to(device).eval()


@torch.no_grad()
def judge_shapes(judge, images):
    """(B, 3, H, W) in [0, 1] -> (B, len(SHAPES)) shape probabilities (images resized to 64x64)."""
    if images.shape[-2:] != (JUDGE_SIZE, JUDGE_SIZE):
        images = F.interpolate(
            images, size=(JUDGE_SIZE, JUDGE_SIZE), mode="bilinear", antialias=True
        )
    return judge(images.clamp(0, 1)).softmax(-1)
