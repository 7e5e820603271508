"""Image parametrisations ("generators"): a module whose forward() is the unconstrained image.

Every generator satisfies `ImageGenerator` (below) and is registered by name, with the
GenerateConfig fields it takes; `build_generator(cfg, device)` makes cfg's one. The clamp is
*not* part of a generator: the loop applies the chosen clamp to what forward()
returns, as the seed notebook does, so values may leave [0, 1] and `out_of_range` is measured
on this tensor.

- `pixel`: the image is the parameter.
- `fft`: a Fourier-space image with 1/f frequency scaling and decorrelated colour, from lucid
  (tensorflow/lucid, `lucid/optvis/param/spatial.py::fft_image` and `color.py::to_valid_rgb`,
  Olah et al., "Feature Visualization", Distill 2017), as ported to PyTorch by lucent and used by
  the CLIP-guided "fft" generators. lucid ends with a sigmoid or a clip; here the clamp under
  test plays that role, on `decorrelated + 0.5`.

- `vqgan`: a VQGAN latent decoded by a taming-transformers VQGAN (clampgen.vqgan).

    gen = make_generator("fft", height=128, width=128)
    gen.init_noise(torch.Generator().manual_seed(0))
    image = gen()                                   # (1, 3, 128, 128), may leave [0, 1]
"""

import dataclasses
import functools
import io
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Union

import torch
from torch import nn

from clampgen import vqgan
from clampgen.devices import available_memory


class ImageGenerator(Protocol):
    """What the loop needs of an image parametrisation (an nn.Module): its trainable parameters
    are what the optimizer updates, forward() the unconstrained image."""

    height: int  # output size in pixels, so nobody runs a forward pass to learn it
    width: int

    def forward(self) -> torch.Tensor:
        """The image (1, 3, height, width), free to leave [0, 1] (the clamp under test follows)."""

    def init_noise(self, rng: torch.Generator, scale: float = 1.0) -> None:
        """Random start drawn from rng only (the `noise` init)."""

    def set_image(self, image: torch.Tensor) -> None:
        """Parameters whose forward() is image (1, 3, height, width) in [0, 1], or its nearest
        representable image (a VQGAN's reconstruction)."""


# lucid's colour correlation (square root of the ImageNet RGB covariance), columns normalised
_COLOR_CORRELATION_SVD_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]]
)
COLOR_CORRELATION = _COLOR_CORRELATION_SVD_SQRT / _COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()


class PixelImage(nn.Module):
    """Raw RGB pixels; forward() is the parameter itself."""

    def __init__(self, *, height: int, width: int):
        super().__init__()
        self.height, self.width = height, width
        self.pixels = nn.Parameter(torch.full((1, 3, height, width), 0.5))  # (1, 3, H, W)

    def forward(self) -> torch.Tensor:
        return self.pixels

    @torch.no_grad()
    def set_image(self, image: torch.Tensor) -> None:
        self.pixels.copy_(image)

    @torch.no_grad()
    def init_noise(self, rng: torch.Generator, scale: float = 1.0) -> None:
        """Gaussian noise around mid-gray, std 0.25 * scale (about 4.6% out of range at 1)."""
        noise = torch.randn(self.pixels.shape, generator=rng, device=rng.device)
        self.pixels.copy_(0.5 + 0.25 * scale * noise.to(self.pixels.device))


def _spectrum_scale(*, height: int, width: int, decay_power: float) -> torch.Tensor:
    """lucid's 1 / max(f, 1/max(H, W)) ** decay_power, times sqrt(H W); shape (H, W//2 + 1)."""
    fy = torch.fft.fftfreq(height)[:, None]  # (H, 1)
    fx = torch.fft.rfftfreq(width)[None, :]  # (1, W//2+1)
    freqs = (fx**2 + fy**2).sqrt()
    scale = 1.0 / freqs.clamp(min=1.0 / max(height, width)) ** decay_power
    return scale * (height * width) ** 0.5


class FourierImage(nn.Module):
    """lucid's fft_image, decorrelated colour: forward() = C @ irfft2(scale spectrum) / 4 + 0.5."""

    def __init__(self, *, height: int, width: int, decay_power: float = 1.0):
        super().__init__()
        self.height, self.width = height, width
        self.register_buffer(
            "scale", _spectrum_scale(height=height, width=width, decay_power=decay_power)
        )  # (H, W//2+1)
        self.register_buffer("color", COLOR_CORRELATION.clone())  # (3, 3)
        self.spectrum = nn.Parameter(torch.zeros(1, 3, height, width // 2 + 1, 2))  # real, imag

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale  # (1, 3, H, W//2+1)
        image = torch.fft.irfft2(spectrum, s=(self.height, self.width)) / 4.0  # (1, 3, H, W)
        image = torch.einsum("ij,bjhw->bihw", self.color, image)  # decorrelated -> RGB
        return image + 0.5

    @torch.no_grad()
    def set_image(self, image: torch.Tensor) -> None:
        """Inverts forward(): spectrum = rfft2(4 * C^-1 (image - 0.5)) / scale."""
        decorrelated = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.color), image - 0.5)
        spectrum = torch.fft.rfft2(decorrelated * 4.0, s=(self.height, self.width)) / self.scale
        self.spectrum.copy_(torch.view_as_real(spectrum))

    @torch.no_grad()
    def init_noise(self, rng: torch.Generator, scale: float = 1.0) -> None:
        """lucid's init: spectrum ~ N(0, 0.01 * scale)."""
        noise = torch.randn(self.spectrum.shape, generator=rng, device=rng.device)
        self.spectrum.copy_(0.01 * scale * noise.to(self.spectrum.device))


@dataclass(frozen=True)
class GeneratorSpec:
    """A registered generator: how to build it and which GenerateConfig fields it takes."""

    build: Callable[..., nn.Module]  # build(*, height, width, device, **options) -> ImageGenerator
    options: tuple = ()  # GenerateConfig fields passed to build and check by name
    check: Optional[Callable[..., None]] = None  # check(**options) raises before anything runs
    steps: int = 150  # the run's default length with this generator
    lr: float = 0.1  # its default learning rate at the first step (the schedule lowers it)
    cut_overhang: float = 0.0  # its default cutout overhang
    tv_weight: float = 0.0  # its default smoothness weight
    cut_whole: int = 0  # its default count of whole-image cutouts
    init_scale: float = 1.0  # its default scale of the noise init
    # memory a step takes per output pixel, in bytes (a number, or a function of the options):
    # the image-sized tensors (the parameters and Adam's two moments, the image, the cutouts'
    # pyramid, their gradients); 200 errs on the low side of what pixel and fft measured
    # (docs/performance.md, "Memory per output pixel")
    pixel_bytes: Union[float, Callable[..., float]] = 200.0


def _build_module(cls):
    return lambda *, height, width, device: cls(height=height, width=width).to(device)


GENERATORS = {
    # the defaults below were chosen with the judged steering check (docs/generators.md): a
    # start at the guide's best colours (clampgen.starts) makes the overhang that kept pixel
    # and VQGAN borders from staying grey unneeded; smoothness 10 against speckle for the
    # pixel grids; whole-image views give the VQGAN whole shapes; fft's flat start keeps less
    # of lucid's noise (a third)
    "pixel": GeneratorSpec(_build_module(PixelImage), tv_weight=10.0),
    "fft": GeneratorSpec(_build_module(FourierImage), tv_weight=10.0, init_scale=0.3),
    "vqgan": GeneratorSpec(
        vqgan.build_vqgan_image,
        options=("vqgan_config", "vqgan_checkpoint"),
        check=vqgan.check_vqgan_files,
        steps=75,
        lr=0.2,
        cut_whole=4,
        pixel_bytes=vqgan.pixel_bytes,
    ),
}


def register_generator(name: str, spec: GeneratorSpec) -> GeneratorSpec:
    """Adds your own parametrisation under name (then `--generator name` builds it)."""
    if name in GENERATORS:
        raise ValueError(f"generator {name!r} is already registered")
    GENERATORS[name] = spec
    return spec


def list_generators() -> list[str]:
    return list(GENERATORS)


def get_generator(name: str) -> GeneratorSpec:
    """The registered generator `name`; ValueError names the valid ones."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator '{name}' (choose from: {', '.join(GENERATORS)})")
    return GENERATORS[name]


def make_generator(name: str, *, height: int, width: int, device="cpu", **options) -> nn.Module:
    """The generator `name` of the given output size on device (options: its spec's fields)."""
    return get_generator(name).build(height=height, width=width, device=device, **options)


def _options(cfg) -> dict:
    return {k: getattr(cfg, k) for k in get_generator(cfg.generator).options}


def check_generator(cfg) -> None:
    """Raises ValueError / FileNotFoundError if cfg's generator cannot be built."""
    spec = get_generator(cfg.generator)
    if spec.check is not None:
        spec.check(**_options(cfg))


def memory_estimate(cfg) -> int:
    """Bytes a step of cfg takes beyond the models: the generator's pixel_bytes per output
    pixel (an estimate of the image-sized tensors, made before any is allocated)."""
    per_pixel = get_generator(cfg.generator).pixel_bytes
    if callable(per_pixel):
        per_pixel = per_pixel(**_options(cfg))
    return int(per_pixel * cfg.height * cfg.width)


def check_memory(cfg, device) -> None:
    """ValueError in one line when cfg's run would need more memory (memory_estimate) than
    device has available (devices.available_memory): refused before anything is allocated,
    rather than ended by the kernel's out-of-memory killer."""
    need, free = memory_estimate(cfg), available_memory(device)
    if free is not None and need > free:
        raise ValueError(
            f"--size {cfg.width} {cfg.height} needs about {_bytes(need)} of memory for the "
            f"{cfg.generator} generator's image-sized tensors, but {device} has "
            f"{_bytes(free)} available: give a smaller --size"
        )


def _bytes(n: float) -> str:
    """2e12 -> '2 TB'."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


# the GenerateConfig fields whose None means the generator's default
GENERATOR_DEFAULTS = ("steps", "lr", "cut_overhang", "tv_weight", "cut_whole", "init_scale")


def with_defaults(cfg):
    """cfg with the generator's defaults (GENERATOR_DEFAULTS) where cfg leaves them None."""
    spec = get_generator(cfg.generator)
    return dataclasses.replace(
        cfg, **{k: getattr(spec, k) for k in GENERATOR_DEFAULTS if getattr(cfg, k) is None}
    )


def build_generator(cfg, device) -> nn.Module:
    """cfg's generator (cfg: a GenerateConfig, or any object with its fields) on device."""
    return make_generator(
        cfg.generator, height=cfg.height, width=cfg.width, device=device, **_options(cfg)
    )


def builtin_init(name: str, *, height: int, width: int) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1] for the inits that need no randomness: gray, gradient."""
    if name == "gray":
        return torch.full((1, 3, height, width), 0.5)
    if name == "gradient":  # red grows to the right, green downward, blue to the left
        x = torch.linspace(0, 1, width)[None, :].expand(height, width)
        y = torch.linspace(0, 1, height)[:, None].expand(height, width)
        return torch.stack([x, y, 1 - x])[None] * 0.8 + 0.1
    raise ValueError(f"no built-in init '{name}'")


URL_TIMEOUT = 10.0  # seconds to fetch an image given as an http(s):// URL


def is_url(path) -> bool:
    return str(path).startswith(("http://", "https://"))


@functools.lru_cache(maxsize=4)  # fetched once for the check before a run and once for its use
def fetch_url(url: str) -> bytes:
    """The bytes at an http(s):// URL (urllib: HTTP(S)_PROXY and NO_PROXY apply); ValueError in
    one line when they cannot be fetched (offline, unknown host, an HTTP error)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT) as answer:
            return answer.read()
    except urllib.error.HTTPError as e:
        why = f"HTTP {e.code}"
    except (OSError, ValueError) as e:  # URLError, timeouts and refused connections are OSErrors
        reason = getattr(e, "reason", None) or e
        why = f"{type(reason).__name__}: {str(reason).strip()[:200]}".rstrip(": ")
    raise ValueError(f"{url} could not be fetched ({why}): download it and give the file")


def load_image(path, *, height: int, width: int) -> torch.Tensor:
    """An image file (or http(s):// URL, see fetch_url) as (1, 3, H, W) in [0, 1]: resized to
    cover H x W, centre-cropped."""
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(fetch_url(path)) if is_url(path) else path)
    except OSError as e:  # PIL's UnidentifiedImageError is an OSError
        raise ValueError(
            f"{path}: not a readable image ({type(e).__name__}); give a PNG, JPEG "
            "or other Pillow-readable file"
        ) from None
    with im:
        im = im.convert("RGB")
        w, h = im.size
        s = max(width / w, height / h)
        im = im.resize((max(width, round(w * s)), max(height, round(h * s))), Image.LANCZOS)
        left, top = (im.width - width) // 2, (im.height - height) // 2
        im = im.crop((left, top, left + width, top + height))
        data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    return data.view(height, width, 3).permute(2, 0, 1)[None].float() / 255


def initialise(
    gen: nn.Module, init: str, rng: torch.Generator, scale: float = 1.0, start=None
) -> torch.Tensor:
    """Sets gen's parameters from `init` (noise, uniform, gray, gradient or a file) drawing only
    from rng; returns the initial image gen produces, detached (1, 3, H, W).

    start (1, 3, H, W) in [0, 1], for the noise init (clampgen.starts.start_image): its noise is
    centred on that image instead of mid-grey (noise + start - 0.5); a generator whose noise is
    not around a colour (`additive_noise = False`: a VQGAN's random codes) starts from the
    image itself."""
    height, width = gen.height, gen.width
    if init == "noise":
        gen.init_noise(rng, scale)
        if start is not None:
            start = start.to(next(gen.parameters()).device, torch.float32)  # (1, 3, H, W)
            with torch.no_grad():
                centred = gen() + (start - 0.5) if getattr(gen, "additive_noise", True) else start
            gen.set_image(centred.contiguous())
    else:
        if init == "uniform":
            image = torch.rand((1, 3, height, width), generator=rng, device=rng.device)
        elif init in ("gray", "gradient"):
            image = builtin_init(init, height=height, width=width)
        else:
            image = load_image(init, height=height, width=width)
        gen.set_image(image.to(next(gen.parameters()).device))
    with torch.no_grad():
        return gen().detach().clone()
