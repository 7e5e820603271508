"""Loads a CLIP model through open_clip's normal path, offline-first.

    bundle = load_clip('shapes')                              # the bundled model
    bundle = load_clip('ViT-B-32', 'laion2b_s34b_b79k')      # hub tag (cache first)
    bundle = load_clip('ViT-B-32', '/path/to/checkpoint.pt')  # local file
    bundle = load_clip('auto')                         # ViT-B-32/laion2b if cached, else shapes
    emb = bundle.encode_image(images)  # images (N, 3, h, w) in [0, 1] -> (N, D) unit vectors

A hub tag whose weights are in the local cache is loaded from the cached file (no network
call at all); otherwise the download is attempted only if huggingface.co answers within two
seconds, so an offline machine gets a clear error instead of a long retry loop.
"""

import contextlib
import logging
import os
import socket
from dataclasses import dataclass

import open_clip
import torch
import torch.nn.functional as F

from clampgen.devices import resolve_device
from clampgen.fold import fold_batchnorm

AUTO_MODEL = ("ViT-B-32", "laion2b_s34b_b79k")  # what `--model auto` prefers when cached
HUB_HOST = "huggingface.co"


class WeightsUnavailable(RuntimeError):
    """Pretrained weights can be neither found locally nor downloaded."""


@dataclass
class ClipBundle:
    model: torch.nn.Module  # open_clip CLIP, eval mode, frozen, fp32
    tokenizer: object  # open_clip tokenizer for `model`
    mean: torch.Tensor  # (1, 3, 1, 1) normalisation the model was trained with
    std: torch.Tensor  # (1, 3, 1, 1)
    input_size: tuple  # (h, w) the image tower expects
    name: str  # open_clip model name
    pretrained: str  # tag or file the weights came from ('' = random init)
    device: torch.device
    reason: str = ""  # one line: which model and why (for `auto`)

    def autocast(self):
        """bf16 autocast for CLIP on CUDA (parameters stay fp32); nothing on CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, h, w) in [0, 1] -> (N, D) unit-norm fp32 embeddings."""
        return self.encode_normalized((images - self.mean) / self.std)

    def encode_normalized(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, h, w) already normalised with mean and std -> (N, D) unit-norm fp32."""
        with self.autocast():
            emb = self.model.encode_image(images)
        return F.normalize(emb.float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: list) -> torch.Tensor:
        """list of N strings -> (N, D) unit-norm fp32 embeddings."""
        tokens = self.tokenizer(texts).to(self.device)
        with self.autocast():
            emb = self.model.encode_text(tokens)
        return F.normalize(emb.float(), dim=-1)


TINY_MODEL = "clampgen-tiny"  # a tiny open_clip config for smoke tests (random weights only)
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def register_tiny_model() -> str:
    """Registers TINY_CONFIG with open_clip as 'clampgen-tiny' (idempotent); returns the name.

    Random weights exercise the whole code path in seconds: tests and smoke runs use it."""
    if TINY_MODEL not in open_clip.list_models():
        import json
        import tempfile
        from pathlib import Path

        path = Path(tempfile.mkdtemp(prefix="clampgen-")) / f"{TINY_MODEL}.json"
        path.write_text(json.dumps(TINY_CONFIG))
        open_clip.add_model_config(path)
    return TINY_MODEL


def cached_weights(model: str, tag: str):
    """Local path of the weights of open_clip tag (model, tag) if already cached, else None."""
    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        return None
    if cfg.get("file"):
        return cfg["file"] if os.path.isfile(cfg["file"]) else None
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(cfg["hf_hub"])
        candidates = (
            [filename]
            if filename
            else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        )
        if filename.endswith((".bin", ".pth")):
            candidates.insert(0, filename[:-4] + ".safetensors")
        for name in candidates:
            path = try_to_load_from_cache(repo, name)
            if isinstance(path, str) and os.path.isfile(path):
                return path
    if cfg.get("url"):
        path = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(cfg["url"]))
        return path if os.path.isfile(path) else None
    return None


def hub_reachable(host: str = HUB_HOST, timeout: float = 2.0) -> bool:
    """True if a TCP connection to host:443 opens within timeout seconds."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_model(model: str, pretrained: str) -> tuple:
    """(model, pretrained, reason): resolves 'auto' and the bundled 'shapes' weights."""
    if model == "auto":
        auto = "/".join(AUTO_MODEL)
        if cached_weights(*AUTO_MODEL):
            return (*AUTO_MODEL, f"model: {auto} (auto: its weights are in the local cache)")
        name, weights, _ = resolve_model("shapes", pretrained)
        return (
            name,
            weights,
            (
                f"model: shapes, the bundled model (auto: {auto} weights are not "
                "in the local cache; --model NAME --pretrained TAG|FILE for others)"
            ),
        )
    if model == "shapes":
        from clampgen.models.shapes_clip import SHAPES_WEIGHTS, register_shapes_model

        register_shapes_model()
        pretrained = pretrained or str(SHAPES_WEIGHTS)
        if not os.path.isfile(pretrained):
            raise FileNotFoundError(
                f"bundled shapes weights not found at {pretrained} "
                "(reinstall clampgen, or pass --pretrained FILE)"
            )
        return model, pretrained, f"model: shapes, the bundled model ({pretrained})"
    if model == TINY_MODEL:
        register_tiny_model()
    if model not in open_clip.list_models():
        raise ValueError(
            f"unknown model '{model}' (use auto, shapes, or an open_clip model name "
            f"such as ViT-B-32; see open_clip.list_models())"
        )
    return (
        model,
        pretrained,
        f"model: {model}"
        + (f" / {pretrained}" if pretrained else " with random weights (seed 0; no --pretrained)"),
    )


def _weights_path(model: str, pretrained: str):
    """A local file for pretrained (a file, or a cached tag), or None to let open_clip download."""
    if not pretrained or os.path.isfile(pretrained):
        return pretrained or None
    if not open_clip.get_pretrained_cfg(model, pretrained):
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise ValueError(
            f"--pretrained '{pretrained}' is neither a file nor a known tag for {model} "
            f"(tags: {', '.join(tags) or 'none'})"
        )
    path = cached_weights(model, pretrained)
    if path is None and not hub_reachable():
        raise WeightsUnavailable(
            f"weights {model}/{pretrained} are not cached and {HUB_HOST} is not "
            "reachable (offline?): use --model shapes or --pretrained FILE"
        )
    return path


def _normalisation(model_obj, model: str, pretrained: str):
    """(mean, std) from the pretrained tag if any, else the model's preprocess config."""
    cfg = open_clip.get_pretrained_cfg(model, pretrained) if pretrained else {}
    pp = open_clip.get_model_preprocess_cfg(model_obj)
    mean = cfg.get("mean") or pp.get("mean") or open_clip.OPENAI_DATASET_MEAN
    std = cfg.get("std") or pp.get("std") or open_clip.OPENAI_DATASET_STD
    return torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)


def load_clip(model: str = "auto", pretrained: str = "", device="cpu") -> ClipBundle:
    """A frozen open_clip model and what the loop needs to use it (see ClipBundle)."""
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    model, pretrained, reason = resolve_model(model, pretrained)
    weights = _weights_path(model, pretrained)
    root = logging.getLogger()
    root.disabled = not weights  # open_clip warns "initialized randomly"; `reason` says so already
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # random weights (no --pretrained) are the same in every run
            net = open_clip.create_model(
                model, pretrained=weights or pretrained or None, device=device
            )
    except Exception as e:  # a bad file raises anything from pickle to safetensors
        if not (weights and os.path.isfile(weights)):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(
            f"--pretrained {weights}: not a usable checkpoint for model {model} "
            f"({type(e).__name__}: {first})"
        ) from None
    finally:
        root.disabled = False
    net = net.eval().requires_grad_(False)
    fold_batchnorm(net.visual)  # eval BatchNorm merged into its conv: same function, faster
    # convolutions run faster on channels-last weights (oneDNN on CPU, tensor cores on CUDA);
    # a ViT has one conv, so it changes little there
    net.visual.to(memory_format=torch.channels_last)
    mean, std = _normalisation(net, model, pretrained)
    size = open_clip.get_model_preprocess_cfg(net).get("size", net.visual.image_size)
    size = (size, size) if isinstance(size, int) else tuple(size)
    return ClipBundle(
        net,
        open_clip.get_tokenizer(model),
        mean.to(device),
        std.to(device),
        size,
        model,
        pretrained,
        device,
        reason,
    )
