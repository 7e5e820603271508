"""`GenerateConfig`: the single source of every generator option.

The CLI (`clampgen/cli.py`) and TOML files (`prompts/*.toml`) are both built from this
dataclass: a flag is `--` + the field name with `-` for `_`, a TOML key is the field name.
Precedence: dataclass defaults < `--config FILE.toml` < command-line flags.

    from clampgen.config import GenerateConfig, load_toml, merge_config
    cfg = merge_config(GenerateConfig(), load_toml("prompts/shapes.toml"), {"steps": 50})
"""

import dataclasses
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path

from clampgen.devices import DEVICES
from clampgen.options import check_value, fields_of, option

INITS = (
    "noise",
    "uniform",
    "gray",
    "gradient",
)  # built-in initialisations; anything else is a file
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
LR_SCHEDULES = ("cosine", "constant")


@dataclass
class GenerateConfig:
    # what to make
    prompt: str = option(
        "",
        "text prompts 'text[:weight[:stop]] | ...' (weight<0 steers away, stop floors that "
        "prompt's loss); '^' separates the phases of a schedule ('a red circle ^ a star', see "
        "--change-every), and [FILE][:weight[:stop]] adds an image prompt to a phase",
        positional=True,
    )
    image_prompts: list[str] = option(
        [],
        "image prompt FILE[:weight[:stop]] (as text prompts; FILE may be an http(s):// URL), "
        "repeatable",
        flag="--image-prompt",
        metavar="FILE[:W[:STOP]]",
    )
    init: str = option("noise", f"initial image: one of {', '.join(INITS)}, or an image FILE")
    init_scale: typing.Optional[float] = option(
        None,
        "scale of the 'noise' init (pixel: std 0.25*scale; fft: spectrum std 0.01*scale, as "
        "in lucid; default: the generator's: 0.3 for fft, 1 for pixel)",
    )
    init_colour: str = option(
        "auto",
        "flat colour the noise init is centred on: auto (the one the guiding CLIP scores best "
        "among 39 candidate colours), none (the generator's own noise: mid-grey, a VQGAN's "
        "random codes), #rrggbb or R,G,B in [0, 1]",
    )
    init_centre: str = option(
        "auto",
        "colour of a soft disc in the middle of the noise init's start colour: auto (the one "
        "the guiding CLIP scores best among the same candidates), none (a flat start), "
        "#rrggbb or R,G,B; nothing when --init-colour is none",
    )
    init_weight: float = option(0.0, "weight of the MSE pull toward the initial image")
    tv_weight: typing.Optional[float] = option(
        None,
        "weight of the smoothness (squared total variation) loss on the image, against speckle "
        "(default: the generator's: 10 for pixel and fft, 0 for vqgan)",
    )
    # how to make it
    generator: str = option(
        "fft",
        "image parametrisation: pixel (raw RGB), fft (1/f-scaled "
        "spectrum, decorrelated colour) or vqgan (a VQGAN latent, see "
        "--vqgan-config; size rounded down to the VQGAN's factor, 16 for f16)",
    )
    vqgan_config: str = option(
        "", "taming-transformers model config (--generator vqgan)", metavar="FILE.yaml"
    )
    vqgan_checkpoint: str = option(
        "", "taming-transformers checkpoint (--generator vqgan)", metavar="FILE.ckpt"
    )
    clamp: str = option(
        "clamp_with_grad",
        "clamp applied to the generated image before CLIP "
        "(registry name; 'all' or a comma list runs a comparison)",
    )
    model: str = option(
        "auto",
        "CLIP model: auto, shapes (bundled), any open_clip model name, hf-hub:ORG/NAME "
        "(open_clip's Hub layout, e.g. hf-hub:chs20/fare2-clip) or local-dir:FOLDER; a comma list "
        "(shapes,ViT-B-32) sums the models' losses, each on its own cutouts",
    )
    pretrained: str = option(
        "",
        "open_clip pretrained tag or checkpoint FILE (shapes: bundled weights); a comma list "
        "matching --model, empty entries allowed",
    )
    model_weights: str = option(
        "", "comma list of the --model models' weights in the sum of their losses (default: 1 each)"
    )
    size: tuple[int, int] = option((128, 128), "output size in pixels: W [H]", metavar="PX")
    change_every: int = option(
        0,
        "steps per phase of a prompt schedule 'a ^ b' (0: the run split evenly between phases)",
    )
    steps: typing.Optional[int] = option(
        None, "optimisation steps (default: the generator's: 150 for pixel and fft, 75 for vqgan)"
    )
    lr: typing.Optional[float] = option(
        None,
        "learning rate at the first step (default: the generator's: 0.1 for pixel and fft, "
        "0.2 on the latent for vqgan; twice lucid's and the VQGAN+CLIP notebooks', since the "
        "cosine schedule lowers it)",
    )
    lr_schedule: str = option(
        "cosine",
        "learning-rate schedule: cosine (from --lr at the first step down to 0 at the last, "
        "Loshchilov & Hutter's annealing) or constant",
    )
    optimizer: str = option(
        "adam", "torch optimizer: adam, adamw, sgd, rmsprop, adagrad, adamax, nadam, radam"
    )
    cutn: int = option(16, "random cutouts per step")
    cut_pow: float = option(
        1.0,
        "cutout size power, >= 0: a cutout's side is min + u**cut_pow (max - min), u uniform "
        "in [0, 1] (1: sizes uniform, >1 favours small cutouts, <1 large ones, 0: every cutout "
        "the image's short side)",
    )
    cut_overhang: typing.Optional[float] = option(
        None,
        "cutouts may pass the image edge by this fraction of their side, filled by reflection "
        "(default: the generator's: 0, the notebooks' MakeCutouts, for all three; a border "
        "then gets fewer gradients and keeps more of the start's colour)",
    )
    cut_whole: typing.Optional[int] = option(
        None,
        "how many of the --cutn cutouts of every step show the whole image, still flipped, "
        "rotated and jittered (all of them when more; default: the generator's: 4 for vqgan, "
        "0 for pixel and fft)",
    )
    aug_flip: bool = option(True, "random horizontal flips of cutouts")
    aug_rotate: float = option(5.0, "max random rotation of cutouts, degrees")
    aug_jitter: float = option(0.05, "colour jitter strength (brightness, contrast, saturation)")
    aug_noise: float = option(0.1, "max std of Gaussian noise added to cutouts")
    # judges that did not guide the run (clampgen.judges): judged.csv, and the comparisons' scores
    judge_model: str = option(
        "auto",
        "held-out CLIP that scores the images beside the shapes world's judges: an open_clip "
        "model name (never a guide), none, or auto (the bundled guide: none, its prompts are "
        "judged by the world's judges; a real guide: the first other model with cached weights)",
    )
    judge_pretrained: str = option(
        "", "open_clip pretrained tag or checkpoint FILE of --judge-model (empty: random weights)"
    )
    # bookkeeping
    seed: typing.Optional[int] = option(
        None, "random seed (default: random, always printed and recorded)"
    )
    device: str = option("auto", f"device: {', '.join(DEVICES)}")
    compile: str = option(
        "off",
        f"torch.compile the step: {', '.join(COMPILE_MODES)} "
        "(reduce-overhead adds CUDA graphs); pays off on GPUs, costs a minute of "
        "compiling first",
    )
    threads: int = option(
        0,
        "CPU threads for torch, >= 0 (0: torch's default, one per core; 1 is "
        "faster when other jobs share the cores)",
    )
    eval_every: int = option(10, "evaluation loss on fixed views every N steps (0: last step only)")
    log_every: int = option(1, "report loss/metrics every N steps")
    save_every: int = option(10, "save a frame every N steps (0: only first and last)")
    out: str = option(
        "",
        "run directory; must be new or empty, runs are never overwritten "
        "(default results/<YYYYmmdd-HHMMSS>-<prompt-slug>/, -2, -3... if taken)",
    )
    video: bool = option(
        True, "write progress.mp4 from the frames (H.264; needs the video extra, PyAV)"
    )
    fps: int = option(
        10, "frames per second of progress.mp4, > 0 (one frame per --save-every steps)"
    )
    progress: bool = option(True, "show a progress bar")
    step_sizes: bool = option(
        False,
        "write step_sizes.csv: per reported step, the median update of pixels back in range, "
        "never out of it and out of it (pixel generator; why a clamp stalls, see the study)",
    )

    def __post_init__(self):
        self.size = _normalise_size(self.size)

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["size"] = list(self.size)
        return d


def _normalise_size(size):
    """int, [w] or [w, h] -> (w, h)."""
    if isinstance(size, int) and not isinstance(size, bool):
        return (size, size)
    size = tuple(size)
    if len(size) == 1:
        return (size[0], size[0])
    if len(size) != 2:
        raise ValueError(f"size takes W or W H, got {list(size)}")
    return size


def check_keys(d: dict, source: str) -> dict:
    """Checks that d has only GenerateConfig keys with values of the right type; returns d."""
    known = fields_of(GenerateConfig)
    for name, value in d.items():
        if name not in known:
            raise ValueError(f"{source}: unknown key '{name}' (known: {', '.join(known)})")
        check_value(name, value, known[name].type)
    return d


def load_toml(path) -> dict:
    """Reads a TOML config file whose keys are GenerateConfig field names."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {path}: TOML syntax error: {e}") from None
    if isinstance(data.get("size"), float):
        raise ValueError(f"config file {path}: size must be an int or [W, H]")
    return check_keys(data, f"config file {path}")


def merge_config(base: GenerateConfig, *updates: dict) -> GenerateConfig:
    """base with each dict of {field: value} applied in order (later wins), type-checked."""
    merged = base.to_dict()
    for u in updates:
        merged.update(check_keys(dict(u), "option"))
    return GenerateConfig(**merged)
