"""A compact VQGAN (encoder, quantiser, decoder) whose parameter names are taming-transformers'.

Esser, Rombach & Ommer, "Taming Transformers for High-Resolution Image Synthesis" (CVPR 2021),
github.com/CompVis/taming-transformers. The architecture follows
`taming/modules/diffusionmodules/model.py` (`Encoder`, `Decoder`, `ResnetBlock`, `AttnBlock`,
`Upsample`, `Downsample`, `Normalize`, itself derived from Ho et al.'s DDPM U-Net),
`taming/modules/vqvae/quantize.py` (`VectorQuantizer2`, `GumbelQuantize`) and
`taming/models/vqgan.py` (`VQModel`: encoder, decoder, quantize, quant_conv, post_quant_conv).
Written anew for inference only: no timestep embedding (taming's VQGAN passes temb=None and
builds its blocks with temb_channels=0), no losses, no index remapping. The module tree is
built in the same order with the same attribute names, so `VQModel(...).state_dict()` has
exactly the keys of a taming checkpoint's `state_dict` minus `loss.*` (see `clampgen.vqgan`).

    model = VQModel(ddconfig, n_embed=16384, embed_dim=256)
    image = model.decode(model.quantize.embedding.weight[idx])   # (1, 3, 16 h, 16 w) in ~[-1, 1]
"""

import torch
import torch.nn.functional as F
from torch import nn


def Normalize(channels: int) -> nn.GroupNorm:
    """taming's normalisation: GroupNorm with 32 groups, eps 1e-6 (channels must divide by 32)."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2H, 2W)


class Downsample(nn.Module):
    """A 3x3 stride-2 conv after zero-padding right and bottom by one (taming's asymmetric pad)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # (B, C, H/2, W/2)


class ResnetBlock(nn.Module):
    """norm-swish-conv twice plus a skip (1x1 `nin_shortcut` when the channel count changes)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = Normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = Normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))  # silu = taming's swish x * sigmoid(x)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, 1x1 convs for q, k, v and the output."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = Normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (conv(y).flatten(2).transpose(1, 2)[:, None] for conv in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)[:, 0]  # (B, HW, C) softmax(qk^T/sqrt(C)) v
        return x + self.proj_out(y.transpose(1, 2).reshape(b, c, h, w))


def _stage(block_in: int, block_out: int, n_blocks: int, attn: bool, dropout: float):
    """One resolution level: `block` (ResnetBlocks) and `attn` (AttnBlocks, empty when not used)."""
    stage = nn.Module()
    stage.block = nn.ModuleList()
    stage.attn = nn.ModuleList()
    for _ in range(n_blocks):
        stage.block.append(ResnetBlock(block_in, block_out, dropout))
        block_in = block_out
        if attn:
            stage.attn.append(AttnBlock(block_out))
    return stage


def _middle(channels: int, dropout: float) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, dropout)
    mid.attn_1 = AttnBlock(channels)
    mid.block_2 = ResnetBlock(channels, channels, dropout)
    return mid


def _run_stage(stage: nn.Module, h: torch.Tensor) -> torch.Tensor:
    for i, block in enumerate(stage.block):
        h = block(h)
        if len(stage.attn) > 0:
            h = stage.attn[i](h)
    return h


class Encoder(nn.Module):
    """Image (B, in_channels, H, W) in [-1, 1] -> (B, z_channels [x2 if double_z], H/f, W/f),
    f = 2**(len(ch_mult) - 1)."""

    def __init__(
        self,
        *,
        ch,
        ch_mult,
        num_res_blocks,
        attn_resolutions,
        in_channels,
        resolution,
        z_channels,
        double_z=False,
        dropout=0.0,
        **ignore,
    ):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        in_ch_mult = (1,) + tuple(ch_mult)
        curr_res = resolution  # attention placement follows the config's resolution, as in taming
        self.down = nn.ModuleList()
        for level in range(self.num_resolutions):
            block_in, block_out = ch * in_ch_mult[level], ch * ch_mult[level]
            attn = curr_res in attn_resolutions
            down = _stage(block_in, block_out, num_res_blocks, attn, dropout)
            if level != self.num_resolutions - 1:
                down.downsample = Downsample(block_out)
                curr_res //= 2
            self.down.append(down)
        self.mid = _middle(block_out, dropout)
        self.norm_out = Normalize(block_out)
        z_out = 2 * z_channels if double_z else z_channels
        self.conv_out = nn.Conv2d(block_out, z_out, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)  # (B, ch, H, W)
        for level, down in enumerate(self.down):
            h = _run_stage(down, h)
            if level != self.num_resolutions - 1:
                h = down.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, z_channels, H/f, W/f)


class Decoder(nn.Module):
    """Latent (B, z_channels, h, w) -> image (B, out_ch, f h, f w), about [-1, 1], unclamped."""

    def __init__(
        self,
        *,
        ch,
        out_ch,
        ch_mult,
        num_res_blocks,
        attn_resolutions,
        resolution,
        z_channels,
        dropout=0.0,
        **ignore,
    ):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        block_in = ch * ch_mult[-1]
        curr_res = resolution // 2 ** (self.num_resolutions - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = _middle(block_in, dropout)
        self.up = nn.ModuleList()
        for level in reversed(range(self.num_resolutions)):
            block_out = ch * ch_mult[level]
            attn = curr_res in attn_resolutions
            up = _stage(block_in, block_out, num_res_blocks + 1, attn, dropout)
            block_in = block_out
            if level != 0:
                up.upsample = Upsample(block_out)
                curr_res *= 2
            self.up.insert(0, up)  # self.up[0] is the full-resolution level, as in taming
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)

    def forward(self, z):
        h = self.conv_in(z)  # (B, ch * ch_mult[-1], h, w)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for level in reversed(range(self.num_resolutions)):
            h = _run_stage(self.up[level], h)
            if level != 0:
                h = self.up[level].upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, out_ch, f h, f w)


class VectorQuantizer(nn.Module):
    """The codebook of taming's VectorQuantizer2: `embedding.weight` (n_embed, embed_dim)."""

    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    @property
    def codebook(self) -> torch.Tensor:
        return self.embedding.weight  # (n_embed, embed_dim)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest codebook entry (Euclidean) of each position of z (B, D, h, w)."""
        return nearest_code(z.movedim(1, -1), self.codebook)  # (B, h, w)


class GumbelQuantize(nn.Module):
    """taming's GumbelQuantize: a 1x1 `proj` to code logits and the codebook `embed.weight`."""

    def __init__(self, num_hiddens: int, n_embed: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(num_hiddens, n_embed, 1)
        self.embed = nn.Embedding(n_embed, embed_dim)

    @property
    def codebook(self) -> torch.Tensor:
        return self.embed.weight  # (n_embed, embed_dim)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """The most likely code, argmax of the logits. (taming's forward draws a Gumbel sample even
        in eval mode; the argmax keeps an encoded init deterministic and off the global RNG.)"""
        return self.proj(z).argmax(dim=1)  # (B, h, w)


def nearest_code(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """argmin_j |x - e_j|^2 over the last dim, via |x|^2 + |e|^2 - 2 x.e as taming computes it."""
    d = x.pow(2).sum(-1, keepdim=True) + codebook.pow(2).sum(1) - 2 * x @ codebook.T  # (..., n)
    return d.argmin(-1)


class VQModel(nn.Module):
    """taming's VQModel / GumbelVQ without the loss: encode (image -> z), decode (z -> image)."""

    def __init__(self, ddconfig: dict, n_embed: int, embed_dim: int, gumbel: bool = False):
        super().__init__()
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        z_channels = ddconfig["z_channels"]
        if gumbel:
            self.quantize = GumbelQuantize(z_channels, n_embed, embed_dim)
        else:
            self.quantize = VectorQuantizer(n_embed, embed_dim)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.factor = 2 ** (len(ddconfig["ch_mult"]) - 1)  # pixels per latent position

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W) in [-1, 1] -> quantised latent (B, embed_dim, H/f, W/f)."""
        h = self.quant_conv(self.encoder(x))  # (B, embed_dim, H/f, W/f)
        idx = self.quantize.indices(h)  # (B, H/f, W/f)
        return self.quantize.codebook[idx].movedim(-1, 1)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Latent (B, embed_dim, h, w) -> image (B, 3, f h, f w), roughly in [-1, 1]."""
        return self.decoder(self.post_quant_conv(z_q))
