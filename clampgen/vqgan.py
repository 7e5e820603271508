"""The `vqgan` generator: a VQGAN latent optimised through the decoder, as in VQGAN+CLIP.

The parametrisation of K. Crowson's VQGAN+CLIP notebook (2021), the notebook where
clamp_with_grad was born: a latent z of shape (1, embed_dim, H/f, W/f), initialised from random
codebook entries (or by encoding an image), snapped to its nearest codebook entries with a
straight-through gradient `z + (z_q - z).detach()`, decoded, mapped from [-1, 1] to [0, 1] by
`(x + 1) / 2`. forward() stops there: the loop applies the clamp under test to that image, so
its out-of-range share is the decoder's overshoot. The notebook keeps z inside the codebook's
per-channel [min, max] with a plain in-place clamp after every optimizer step
(`z.copy_(z.maximum(z_min).minimum(z_max))`); here forward() applies that same plain clamp to z
(in place, without gradient) before decoding, which puts the identical values into the decoder
without needing a hook in the loop.

Checkpoints are the taming-transformers ones VQGAN+CLIP users already have: a `.yaml` model
config and a PyTorch Lightning `.ckpt` (e.g. vqgan_imagenet_f16_16384, vqgan_imagenet_f16_1024).
Why our own compact network (`clampgen.vqgan_model`) rather than a library: taming-transformers
is unmaintained and pins an old PyTorch Lightning; the maintained re-implementations live inside
large packages (diffusers' VQModel, with differently named keys and a conversion step). Only the
decoder, quantiser and encoder are needed, about 250 lines with taming's exact module names, so a
taming `state_dict` loads directly; every needed key is checked by name and shape, and `loss.*`
(LPIPS, discriminator) is ignored.

    gen = make_vqgan_generator('vqgan_imagenet_f16_16384.yaml', 'vqgan_imagenet_f16_16384.ckpt',
                               height=512, width=512, device='cuda')
    gen.init_noise(torch.Generator('cuda').manual_seed(0))
    image = gen()                                   # (1, 3, 512, 512), may leave [0, 1]
"""

import functools
import logging
import os
from pathlib import Path

import torch
from torch import nn

from clampgen.models.shapes_vqgan import SHAPES_VQGAN_CHECKPOINT, SHAPES_VQGAN_CONFIG
from clampgen.vqgan_model import VQModel, nearest_code

log = logging.getLogger(__name__)

# taming targets we can build, and the key prefix of the VQGAN inside their checkpoints
TARGETS = {
    "taming.models.vqgan.VQModel": "",
    "taming.models.vqgan.GumbelVQ": "",
    "taming.models.cond_transformer.Net2NetTransformer": "first_stage_model.",  # e.g. sflckr
}
_PARTS = ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")
# model.params.ddconfig of vqgan_imagenet_f16_16384.yaml / _f16_1024.yaml (n_embed 16384 / 1024,
# embed_dim 256): the architecture of `random_vqgan`, for benchmarks without a checkpoint
IMAGENET_F16 = dict(
    double_z=False,
    z_channels=256,
    resolution=256,
    in_channels=3,
    out_ch=3,
    ch=128,
    ch_mult=[1, 1, 2, 2, 4],
    num_res_blocks=2,
    attn_resolutions=[16],
    dropout=0.0,
)


def load_vqgan_config(path) -> dict:
    """taming's yaml -> {'target', 'ddconfig', 'n_embed', 'embed_dim', 'gumbel', 'prefix'}."""
    import yaml  # PyYAML: imported here so the rest of clampgen works without it

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VQGAN config not found: {path}")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"VQGAN config {path}: not valid YAML: {e}") from None
    model = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(model, dict) or "target" not in model:
        raise ValueError(
            f"VQGAN config {path}: expected taming-transformers' layout "
            "'model: {target: ..., params: {...}}'"
        )
    target, params = model["target"], model.get("params") or {}
    if target not in TARGETS:
        raise ValueError(
            f"VQGAN config {path}: unsupported model target {target!r} "
            f"(supported: {', '.join(TARGETS)})"
        )
    prefix = TARGETS[target]
    if prefix:  # a transformer: its first stage is the VQGAN
        params = (params.get("first_stage_config") or {}).get("params") or {}
    dd = params.get("ddconfig")
    need = (
        "ch",
        "out_ch",
        "ch_mult",
        "num_res_blocks",
        "attn_resolutions",
        "in_channels",
        "resolution",
        "z_channels",
    )
    missing = [k for k in ("n_embed", "embed_dim") if k not in params]
    missing += [f"ddconfig.{k}" for k in need if not isinstance(dd, dict) or k not in dd]
    if missing:
        raise ValueError(f"VQGAN config {path}: missing {', '.join(missing)} in model.params")
    return dict(
        target=target,
        ddconfig=dict(dd),
        n_embed=int(params["n_embed"]),
        embed_dim=int(params["embed_dim"]),
        gumbel=target.endswith("GumbelVQ"),
        prefix=prefix,
    )


class _Opaque:
    """Stands in for any non-tensor class in a Lightning checkpoint (callbacks, numpy scalars):
    takes whatever it is given and runs none of the original code."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state


def _torch_load(path: Path) -> dict:
    """torch.load with weights_only=True; Lightning objects are unpickled as inert stand-ins.

    A taming `.ckpt` also holds PyTorch Lightning callbacks and numpy scalars. weights_only=True
    refuses those globals, and weights_only=False would execute them (and need pytorch_lightning
    installed). So we list the refused globals (`get_unsafe_globals_in_checkpoint`) and allow
    each under its own name as an `_Opaque` class: tensors load as usual, nothing else runs.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- UnpicklingError, RuntimeError (damaged zip), ...
        error = e
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        stand_ins = [(type(name.rsplit(".", 1)[-1], (_Opaque,), {}), name) for name in names]
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 -- any failure: report the first load's error
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise ValueError(
            f"VQGAN checkpoint {path}: not a loadable PyTorch checkpoint, or an "
            f"incomplete download ({type(error).__name__}: {first_line})"
        ) from None


def _find_state_dict(ckpt, path: Path) -> dict:
    """The tensors of `ckpt['state_dict']`, or of ckpt itself when it is a bare state_dict."""
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        keys = (
            ", ".join(map(str, list(ckpt)[:8])) if isinstance(ckpt, dict) else type(ckpt).__name__
        )
        raise ValueError(f"VQGAN checkpoint {path}: no 'state_dict' of tensors (found: {keys})")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def save_taming(model: VQModel, ddconfig: dict, config_path, ckpt_path) -> tuple:
    """Writes model as taming-transformers does: a `.yaml` (model.target VQModel, its params
    with the ddconfig) and a `.ckpt` holding {'state_dict': ...}; returns the two paths."""
    import yaml

    n_embed, embed_dim = model.quantize.codebook.shape
    config = {
        "model": {
            "base_learning_rate": 4.5e-06,
            "target": "taming.models.vqgan.VQModel",
            "params": {
                "embed_dim": int(embed_dim),
                "n_embed": int(n_embed),
                "ddconfig": dict(ddconfig),
                "lossconfig": {"target": "torch.nn.Identity"},
            },
        }
    }
    config_path, ckpt_path = Path(config_path), Path(ckpt_path)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state}, ckpt_path)
    return config_path, ckpt_path


def _list(keys, n=6) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" ... ({len(keys)} in all)" if len(keys) > n else "")


def load_vqgan(config_path, ckpt_path, device="cpu") -> VQModel:
    """A frozen, eval-mode VQModel built from taming's yaml with the `.ckpt`'s weights.

    Every key of the encoder, decoder, quantiser and the two 1x1 convs must be present with the
    shape the config implies; other keys (`loss.*`, a transformer's own weights) are ignored.
    """
    cfg = load_vqgan_config(config_path)
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"VQGAN checkpoint not found: {ckpt_path}")
    state = _find_state_dict(_torch_load(ckpt_path), ckpt_path)
    prefix = cfg["prefix"]
    state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    state = {k: v for k, v in state.items() if k.startswith(_PARTS)}
    described = (
        f"config {config_path} ({cfg['target']}, n_embed={cfg['n_embed']}, "
        f"embed_dim={cfg['embed_dim']}, ch={cfg['ddconfig']['ch']}, "
        f"ch_mult={cfg['ddconfig']['ch_mult']})"
    )
    if not state:
        raise ValueError(
            f"VQGAN checkpoint {ckpt_path}: not a taming-transformers VQGAN "
            f"checkpoint (no {prefix}encoder./decoder./quantize. keys) "
            f"for {described}"
        )
    with torch.device("meta"):  # shapes only; real tensors come from the checkpoint
        model = VQModel(cfg["ddconfig"], cfg["n_embed"], cfg["embed_dim"], gumbel=cfg["gumbel"])
    expected = model.state_dict()
    missing = expected.keys() - state.keys()
    unexpected = state.keys() - expected.keys()
    wrong = [
        f"{k} {tuple(state[k].shape)} (config expects {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_list(missing)}")
    if unexpected:
        problems.append(f"keys the config has no place for: {_list(unexpected)}")
    if wrong:
        problems.append(
            f"shape mismatches: {'; '.join(wrong[:4])}"
            + (f" ... ({len(wrong)} in all)" if len(wrong) > 4 else "")
        )
    if problems:
        raise ValueError(
            f"VQGAN checkpoint {ckpt_path} does not match {described}: " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device=device, dtype=torch.float32).eval().requires_grad_(False)


@functools.lru_cache(maxsize=1)
def _load_cached(config_path: str, ckpt_path: str, stamp: tuple, device: str) -> VQModel:
    return load_vqgan(config_path, ckpt_path, device)


def load_vqgan_cached(config_path, ckpt_path, device="cpu") -> VQModel:
    """load_vqgan, keeping the last model loaded: the runs of a comparison share one frozen model
    instead of re-reading a ~1 GB checkpoint per clamp. A changed file is read again."""
    config_path, ckpt_path = Path(config_path).resolve(), Path(ckpt_path).resolve()
    stamp = tuple(p.stat().st_mtime_ns if p.is_file() else None for p in (config_path, ckpt_path))
    return _load_cached(str(config_path), str(ckpt_path), stamp, str(torch.device(device)))


def random_vqgan(ddconfig=None, n_embed=16384, embed_dim=256, device="cpu", seed=0) -> VQModel:
    """A frozen VQModel with random weights (default: the imagenet f16 architecture): a
    decoder's compute without a checkpoint, for benchmarks and smoke tests."""
    with torch.random.fork_rng(devices=[]), torch.device(device):  # global CPU RNG left as it was
        torch.manual_seed(seed)
        model = VQModel(dict(ddconfig or IMAGENET_F16), n_embed, embed_dim)
    return model.eval().requires_grad_(False)


def vector_quantize(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Nearest codebook entry of each x[..., :] with a straight-through gradient (dq/dx = I).

    From the VQGAN+CLIP notebook: one_hot(argmin distance) @ codebook in the forward,
    `x + (q - x).detach()` so the gradient reaches x unchanged (van den Oord et al., 2017).
    """
    with torch.no_grad():
        q = codebook[nearest_code(x, codebook)]  # (..., embed_dim)
    return x + (q - x).detach()


class VQGANImage(nn.Module):
    """forward() = (decode(vector_quantize(z)) + 1) / 2, (1, 3, H, W); z is the only parameter."""

    def __init__(self, model: VQModel, *, height: int, width: int):
        super().__init__()
        f = model.factor
        if height % f or width % f or height < f or width < f:
            raise ValueError(
                f"VQGAN image size must be a positive multiple of {f}, got {width}x{height} (W x H)"
            )
        self.height, self.width = height, width
        codebook = model.quantize.codebook  # (n_embed, embed_dim)
        self.z = nn.Parameter(
            torch.zeros(1, codebook.shape[1], height // f, width // f, device=codebook.device)
        )  # (1, D, H/f, W/f)
        self.model = model.requires_grad_(False)  # frozen: only z is optimised
        self.register_buffer("z_min", codebook.amin(0)[None, :, None, None], persistent=False)
        self.register_buffer("z_max", codebook.amax(0)[None, :, None, None], persistent=False)

    def forward(self) -> torch.Tensor:
        with torch.no_grad():  # the notebook's z.copy_(z.maximum(z_min).minimum(z_max))
            self.z.copy_(torch.maximum(torch.minimum(self.z, self.z_max), self.z_min))
        z_q = vector_quantize(self.z.movedim(1, 3), self.model.quantize.codebook).movedim(3, 1)
        return (self.model.decode(z_q) + 1) / 2  # (1, 3, H, W), not clamped

    @torch.no_grad()
    def set_image(self, image: torch.Tensor) -> None:
        """z = the quantised encoding of image (1, 3, H, W) in [0, 1], as the notebook's init
        image; forward() is then the VQGAN's reconstruction of it, not the image itself."""
        self.z.copy_(self.model.encode(image.to(self.z) * 2 - 1))

    @torch.no_grad()
    def init_noise(self, rng: torch.Generator, scale: float = 1.0) -> None:
        """z = codebook entries at indices drawn uniformly from rng: the notebook's
        one_hot(randint) @ codebook, as an exact lookup. `scale` has no effect here (it is part
        of the common interface)."""
        codebook = self.model.quantize.codebook  # (n_embed, D)
        _, d, h, w = self.z.shape
        idx = torch.randint(codebook.shape[0], (h, w), generator=rng, device=rng.device)
        self.z.copy_(codebook[idx.to(codebook.device)].permute(2, 0, 1)[None])  # (1, D, h, w)


def vqgan_size(*, height: int, width: int, factor: int) -> tuple[int, int]:
    """(height, width) rounded down to multiples of the VQGAN's factor (as the notebook), at
    least one factor each."""
    return max(factor, height // factor * factor), max(factor, width // factor * factor)


def make_vqgan_generator(
    config_path, ckpt_path, *, height: int, width: int, device="cpu"
) -> VQGANImage:
    """Loads a taming VQGAN and returns its generator at height x width rounded down to its
    factor (16 for the f16 models); the actual size is in .height and .width."""
    model = load_vqgan_cached(config_path, ckpt_path, device)
    rounded = vqgan_size(height=height, width=width, factor=model.factor)
    if rounded != (height, width):
        log.info(f"vqgan: size {width}x{height} rounded down to {rounded[1]}x{rounded[0]}")
    return VQGANImage(model, height=rounded[0], width=rounded[1])


def vqgan_files(vqgan_config: str, vqgan_checkpoint: str) -> tuple:
    """(config, checkpoint) to load: the given files, or the bundled shapes VQGAN when neither
    is given. ValueError when only one is given, FileNotFoundError when one is missing."""
    if not vqgan_config and not vqgan_checkpoint:
        return str(SHAPES_VQGAN_CONFIG), str(SHAPES_VQGAN_CHECKPOINT)
    for flag, path in (("--vqgan-config", vqgan_config), ("--vqgan-checkpoint", vqgan_checkpoint)):
        if not path:
            raise ValueError(
                f"--generator vqgan: give both --vqgan-config and --vqgan-checkpoint "
                f"(or neither, for the bundled shapes VQGAN); {flag} is missing"
            )
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{flag}: file not found: {path}")
    return vqgan_config, vqgan_checkpoint


def check_vqgan_files(vqgan_config: str, vqgan_checkpoint: str) -> None:
    """Raises ValueError / FileNotFoundError unless the files to load exist (vqgan_files)."""
    for path in vqgan_files(vqgan_config, vqgan_checkpoint):
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"bundled VQGAN not found at {path} (reinstall clampgen, or "
                "give --vqgan-config and --vqgan-checkpoint)"
            )


# bytes per output pixel that a step of the bundled VQGAN took (the peak RSS of 512x512 and
# 1024x1024 runs less a 64x64 one's, 4.7-4.9 KB, measured as for GeneratorSpec.pixel_bytes in
# clampgen/generators.py) and that decoder's width: its levels'
# channels weighted by their share of the pixels, times the res blocks per level (ch 64, four
# levels of 64 channels, one block each: 64 (1 + 1/4 + 1/16 + 1/64))
BUNDLED_PIXEL_BYTES, BUNDLED_WIDTH = 4700, 85


def pixel_bytes(vqgan_config: str, vqgan_checkpoint: str) -> float:
    """Memory a step takes per output pixel, estimated from the decoder's activations kept for
    the backward pass: the bundled VQGAN's measured figure scaled by the decoder's width
    (channels of each level by its share of the pixels, times its res blocks per level).
    imagenet-f16's decoder is about 6 times the bundled one's: 30 KB per pixel."""
    dd = load_vqgan_config(vqgan_files(vqgan_config, vqgan_checkpoint)[0])["ddconfig"]
    levels = sum(dd["ch"] * m / 4**i for i, m in enumerate(dd["ch_mult"]))
    return BUNDLED_PIXEL_BYTES * levels * (dd["num_res_blocks"] + 1) / BUNDLED_WIDTH


def build_vqgan_image(
    *, height: int, width: int, device, vqgan_config: str, vqgan_checkpoint: str
) -> VQGANImage:
    """The `vqgan` generator of clampgen.generators: the given taming files' VQGAN, or the
    bundled shapes VQGAN when none are given (which says so in one log line)."""
    config, checkpoint = vqgan_files(vqgan_config, vqgan_checkpoint)
    check_vqgan_files(vqgan_config, vqgan_checkpoint)
    if not vqgan_config:
        log.info(
            f"vqgan: the bundled shapes VQGAN ({checkpoint}); it knows only the shapes world "
            "(--vqgan-config/--vqgan-checkpoint for others)"
        )
    return make_vqgan_generator(config, checkpoint, height=height, width=width, device=device)
