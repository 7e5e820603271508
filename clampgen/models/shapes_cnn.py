"""
The image tower of the `shapes` CLIP: a small CNN registered with timm as `shapes_convnet`.

open_clip builds timm towers from a model config (`"timm_model_name": "shapes_convnet"` in
shapes.json), so the `shapes` CLIP is an ordinary open_clip CLIP (TimmModel image tower with a
linear projection, open_clip text transformer) created and loaded by open_clip's factory.

Why a CNN: on this world, open_clip's built-in towers learn shape far too slowly on 2 CPU cores
(a ViT-8/64 reached 23 % shape accuracy after 400 steps, a ModifiedResNet 14 % after 150
supervised steps) while a full-resolution CNN with max pooling reaches > 99 % supervised in
150 steps. Two coordinate channels let the pooled features carry position.
"""

import torch
import torch.nn as nn
from timm.models import register_model


def _conv(c_in, c_out):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ShapesConvNet(nn.Module):
    """CoordConv CNN: (B, 3, H, W) -> (B, 4 * 2w) concatenated global average and max pool.

    Follows timm's classifier interface (num_features, forward_features, forward_head,
    reset_classifier, default_cfg) so open_clip's TimmModel can wrap it.
    """

    def __init__(self, width=20, num_classes=0, global_pool="avgmax", **kwargs):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv(5, w),
            nn.MaxPool2d(2),  # (B, w, H/2, W/2)
            _conv(w, 2 * w),
            nn.MaxPool2d(2),  # (B, 2w, H/4, W/4)
            _conv(2 * w, 4 * w),
            _conv(4 * w, 4 * w),
            nn.MaxPool2d(2),  # (B, 4w, H/8, W/8)
            _conv(4 * w, 8 * w),  # (B, 8w, H/8, W/8)
        )
        self.num_features = 16 * w  # average and max pool concatenated
        self.default_cfg = self.pretrained_cfg = {"pool_size": None, "num_classes": num_classes}
        self.reset_classifier(num_classes, global_pool)

    def reset_classifier(self, num_classes=0, global_pool="avgmax"):
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x):
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)[:, None].expand(h, w)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)[None, :].expand(h, w)
        coords = torch.stack([xs, ys])[None].expand(b, 2, h, w)
        return self.features(torch.cat([x, coords], dim=1))  # (B, 8w, H/8, W/8)

    def forward_head(self, x, pre_logits=False):
        x = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)  # (B, 16w)
        return x if pre_logits else self.fc(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


@register_model
def shapes_convnet(pretrained=False, **kwargs):
    """The `shapes` CLIP image tower (never pretrained: weights come with the whole CLIP)."""
    kwargs = {k: v for k, v in kwargs.items() if k in ("num_classes", "global_pool", "width")}
    return ShapesConvNet(**kwargs)
