"""Loads a CLIP model through open_clip's normal path, offline-first.

    bundle = load_clip('shapes')                              # the bundled model
    bundle = load_clip('ViT-B-32', 'laion2b_s34b_b79k')      # a tag: the HF cache, else the Hub
    bundle = load_clip('ViT-B-32', '/path/to/checkpoint.pt')  # local file
    bundle = load_clip('hf-hub:chs20/fare2-clip')              # open_clip's Hub layout
    bundle = load_clip('local-dir:/path/to/folder')            # the same layout in a folder
    bundle = load_clip('auto', device='cuda')  # ViT-B-32/laion2b if cached or (on a GPU)
                                               # downloadable, else shapes; bundle.reason says
    emb = bundle.encode_image(images)  # images (N, 3, h, w) in [0, 1] -> (N, D) unit vectors

The weights of an open_clip tag come from the Hugging Face Hub through clampgen.hub: the
cache first without any network call, else one short metadata request, then hf_hub_download
with its progress bar; huggingface_hub's settings apply (HF_ENDPOINT, HF_HUB_OFFLINE, HF_HOME,
HF_TOKEN, proxies), and weights that cannot be had are WeightsUnavailable in one line.

`hf-hub:ORG/NAME` names a Hub repository in open_clip's own layout (open_clip_config.json with
model_cfg and preprocess_cfg, then open_clip_model.safetensors or open_clip_pytorch_model.bin),
as `open_clip.create_model` takes it; both files come through the same path as a tag's weights
(the cache first, one metadata request, one line when unavailable), and open_clip builds the
model from them as from `local-dir:FOLDER`.
"""

import contextlib
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import HF_CONFIG_NAME, HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

from clampgen.devices import autocast, compute_dtype, resolve_device
from clampgen.fold import fold_batchnorm
from clampgen.hub import ask_hub, cached_file, hub_download, one_line

log = logging.getLogger(__name__)

AUTO_MODEL = ("ViT-B-32", "laion2b_s34b_b79k")  # what `--model auto` prefers (see resolve_model)
WHAT_NOW = "use --model shapes, --pretrained FILE, or HF_ENDPOINT=URL of a reachable mirror"
WHAT_NOW_OFFLINE = (
    "unset HF_HUB_OFFLINE to download them, or use --model shapes or --pretrained FILE"
)
HF_HUB, LOCAL_DIR = "hf-hub:", "local-dir:"  # open_clip's model name schemes
HUB_WHAT_NOW = (
    "use --model shapes, --model local-dir:FOLDER (its open_clip_config.json and weights), or "
    "HF_ENDPOINT=URL of a reachable mirror"
)
HUB_WHAT_NOW_OFFLINE = "unset HF_HUB_OFFLINE to download them, or use --model local-dir:FOLDER"
HUB_WEIGHTS = (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME)  # an hf-hub model's, in open_clip's order
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


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
    dtype: torch.dtype = None  # what CLIP computes in; None: the device's (devices.precision)

    def __post_init__(self):
        if self.dtype is None:
            self.dtype = compute_dtype(self.device)

    def autocast(self):
        """Autocast to self.dtype for CLIP (parameters stay fp32); no context for fp32."""
        return autocast(self.device, self.dtype)

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


def hub_files(model: str, tag: str):
    """(repo_id, filenames) of the weights of open_clip tag (model, tag) on the Hugging Face Hub,
    in the order open_clip tries them (a .safetensors twin first); None when the tag names no
    Hub repository."""
    hub = open_clip.get_pretrained_cfg(model, tag).get("hf_hub")
    if not hub:
        return None
    repo, filename = os.path.split(hub)  # 'org/repo/' means open_clip's default file name
    filename = filename or HF_WEIGHTS_NAME
    if filename == HF_WEIGHTS_NAME:
        safe = [HF_SAFE_WEIGHTS_NAME]
    elif filename.endswith((".bin", ".pth")):
        safe = [filename[:-4] + ".safetensors"]
    else:
        safe = []
    return repo, [*safe, filename]


def cached_weights(model: str, tag: str):
    """Local path of the weights of open_clip tag (model, tag) if already cached (the Hugging
    Face cache of HF_HUB_CACHE / HF_HOME, or the tag's own `file`), else None. No network."""
    cfg = open_clip.get_pretrained_cfg(model, tag)
    if cfg.get("file"):
        return cfg["file"] if os.path.isfile(cfg["file"]) else None
    files = hub_files(model, tag)
    return cached_file(*files) if files else None


def hub_weights(model: str, tag: str):
    """Local path of the weights of open_clip tag (model, tag): the cached file, or one that
    hf_hub_download fetches now (hub_download); None for a tag that names no Hub repository
    (open_clip fetches those itself). WeightsUnavailable (one line: the endpoint, what happened,
    what to do) when neither works."""
    path = cached_weights(model, tag)
    files = hub_files(model, tag)
    if path or not files:
        return path
    from huggingface_hub import constants

    advice = WHAT_NOW_OFFLINE if constants.HF_HUB_OFFLINE else WHAT_NOW
    return hub_download(*files, f"weights {model}/{tag} are", advice)


def hub_model_files(repo: str) -> tuple:
    """(config, weights): local paths of the hf-hub:repo model's open_clip_config.json and
    weights (HUB_WEIGHTS, the first the repository has), cached or downloaded (hub_download)."""
    from huggingface_hub import constants

    advice = HUB_WHAT_NOW_OFFLINE if constants.HF_HUB_OFFLINE else HUB_WHAT_NOW
    config = hub_download(repo, [HF_CONFIG_NAME], f"{HF_HUB}{repo}: {HF_CONFIG_NAME} is", advice)
    missing = f"{HF_HUB}{repo}: its weights ({' or '.join(HUB_WEIGHTS)}) are"
    return config, hub_download(repo, list(HUB_WEIGHTS), missing, advice)


@contextlib.contextmanager
def model_folder(config: str, weights: str):
    """A folder in open_clip's local-dir layout holding exactly config and weights (links to
    them in a temporary folder: the cache may keep them in different snapshots)."""
    with tempfile.TemporaryDirectory(prefix="clampgen-model-") as folder:
        for path, name in ((config, HF_CONFIG_NAME), (weights, os.path.basename(weights))):
            try:
                os.symlink(os.path.realpath(path), os.path.join(folder, name))
            except OSError:  # no symlinks here (Windows without developer mode)
                shutil.copyfile(path, os.path.join(folder, name))
        yield folder


def _auto(pretrained: str, device: torch.device) -> tuple:
    """resolve_model('auto', ...): AUTO_MODEL when its weights are cached, or when a GPU is here
    and the endpoint has them (a CPU step of ViT-B-32 takes too long for a default); else the
    bundled shapes model. No network call on CPU."""
    from huggingface_hub import constants

    auto = "/".join(AUTO_MODEL)
    if cached_weights(*AUTO_MODEL):
        return (*AUTO_MODEL, f"model: {auto} (auto: its weights are in the Hugging Face cache)")
    if device.type in ("cuda", "mps"):
        files = hub_files(*AUTO_MODEL)
        name, problem = ask_hub(*files) if files else (None, "it names no Hub repository")
        if name:
            return (
                *AUTO_MODEL,
                f"model: {auto} (auto: a GPU ({device}) is here and {constants.ENDPOINT} has "
                "its weights; downloading them once into the Hugging Face cache)",
            )
        why = f"{auto} weights are not in the Hugging Face cache and {problem}"
    else:
        why = (
            f"{auto} weights are not in the Hugging Face cache, and on CPU the bundled model is "
            f"the default; --model {AUTO_MODEL[0]} --pretrained {AUTO_MODEL[1]} downloads them"
        )
    name, weights, _ = resolve_model("shapes", pretrained)
    return name, weights, f"model: shapes, the bundled model (auto: {why})"


def resolve_model(model: str, pretrained: str, device="cpu") -> tuple:
    """(model, pretrained, reason): resolves 'auto' (for `device`, see _auto) and the bundled
    'shapes' weights."""
    if model == "auto":
        return _auto(pretrained, torch.device(device))
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
    if model.startswith((HF_HUB, LOCAL_DIR)):
        return _resolve_scheme(model, pretrained)
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


def _resolve_scheme(model: str, pretrained: str) -> tuple:
    """resolve_model for `hf-hub:ORG/NAME` and `local-dir:FOLDER` (open_clip's schemes)."""
    if pretrained:
        raise ValueError(
            f"--model {model} brings its own weights: leave out --pretrained {pretrained}"
        )
    scheme, _, name = model.partition(":")
    if scheme == "hf-hub":
        if not _REPO_ID.fullmatch(name):
            raise ValueError(f"--model {model}: give a Hub repository as hf-hub:ORG/NAME")
        return model, "", f"model: {model} (open_clip's Hub layout, through huggingface_hub)"
    folder = Path(name)
    if not (folder / HF_CONFIG_NAME).is_file():
        raise FileNotFoundError(f"--model {model}: no {HF_CONFIG_NAME} in {folder}")
    if not any(p.suffix in (".safetensors", ".bin", ".pth") for p in folder.iterdir()):
        raise FileNotFoundError(f"--model {model}: no weights (.safetensors, .bin) in {folder}")
    return model, "", f"model: {model} (open_clip's local-dir layout)"


def _weights_path(model: str, pretrained: str):
    """A local file for pretrained (a file, or a tag's cached or downloaded weights), or None
    (no weights; or a tag open_clip fetches itself)."""
    if not pretrained or os.path.isfile(pretrained):
        return pretrained or None
    if not open_clip.get_pretrained_cfg(model, pretrained):
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise ValueError(
            f"--pretrained '{pretrained}' is neither a file nor a known tag for {model} "
            f"(tags: {', '.join(tags) or 'none'})"
        )
    return hub_weights(model, pretrained)


def _normalisation(model_obj, model: str, pretrained: str):
    """(mean, std) from the pretrained tag if any, else the model's preprocess config."""
    cfg = open_clip.get_pretrained_cfg(model, pretrained) if pretrained else {}
    pp = open_clip.get_model_preprocess_cfg(model_obj)
    mean = cfg.get("mean") or pp.get("mean") or open_clip.OPENAI_DATASET_MEAN
    std = cfg.get("std") or pp.get("std") or open_clip.OPENAI_DATASET_STD
    return torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)


def _from_folder(source: str, model: str, device) -> tuple:
    """(model, tokenizer) through open_clip's `local-dir:` loading; a config or weights that do
    not build a model are a ValueError naming --model."""
    try:
        return open_clip.create_model(source, device=device), open_clip.get_tokenizer(source)
    except Exception as e:  # noqa: BLE001 -- a bad config or file raises anything
        raise ValueError(f"--model {model}: not a usable open_clip model ({one_line(e)})") from None


def _create(model: str, pretrained: str, device) -> tuple:
    """(open_clip model, its tokenizer) for a resolved model name (resolve_model)."""
    if model.startswith(HF_HUB):
        with model_folder(*hub_model_files(model[len(HF_HUB) :])) as folder:
            return _from_folder(f"{LOCAL_DIR}{folder}", model, device)
    if model.startswith(LOCAL_DIR):
        return _from_folder(model, model, device)
    weights = _weights_path(model, pretrained)
    tag = {} if weights == pretrained else open_clip.get_pretrained_cfg(model, pretrained)
    root = logging.getLogger()
    root.disabled = not weights  # open_clip warns "initialized randomly"; `reason` says so already
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # random weights (no --pretrained) are the same in every run
            net = open_clip.create_model(
                model,
                pretrained=weights or pretrained or None,
                device=device,
                # a tag's file loads as a file: the tag's activation must come along
                force_quick_gelu=bool(tag.get("quick_gelu")),
            )
    except Exception as e:  # a bad file raises anything from pickle to safetensors
        if not (weights and os.path.isfile(weights)):
            raise
        raise ValueError(
            f"--pretrained {weights}: not a usable checkpoint for model {model} ({one_line(e)})"
        ) from None
    finally:
        root.disabled = False
    return net, open_clip.get_tokenizer(model)


def load_clip(model: str = "auto", pretrained: str = "", device="cpu") -> ClipBundle:
    """A frozen open_clip model and what the loop needs to use it (see ClipBundle)."""
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    model, pretrained, reason = resolve_model(model, pretrained, device)
    net, tokenizer = _create(model, pretrained, device)
    net = net.eval().requires_grad_(False)
    fold_batchnorm(net.visual)  # eval BatchNorm merged into its conv: same function, faster
    # convolutions run faster on channels-last weights (oneDNN on CPU, tensor cores on CUDA);
    # a ViT has one conv, so it changes little there
    net.visual.to(memory_format=torch.channels_last)
    mean, std = _normalisation(net, model, pretrained)
    size = open_clip.get_model_preprocess_cfg(net).get("size", net.visual.image_size)
    size = (size, size) if isinstance(size, int) else tuple(size)
    return ClipBundle(
        net, tokenizer, mean.to(device), std.to(device), size, model, pretrained, device, reason
    )
