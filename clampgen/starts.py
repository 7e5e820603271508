"""The start, chosen by the guide: candidate colours scored before the first step, the best kept.

    from clampgen.starts import start_colour, start_image
    colour = start_colour("auto", guides)   # (3,) the flat colour the guides score best
    colour = start_colour("#ff8000", guides) # (3,) as given; "none" gives None
    start, (background, centre) = start_image("auto", "auto", guides, 128, 128)  # (1, 3, H, W)

An optimiser that starts from grey noise settles the background early, in whatever colour the
first steps' gradients favour (pale greens and greys where the prompt asks for red), and rarely
repaints it: one colour for the whole image is many pixels' coherent move, which a step of
per-pixel gradients seldom makes. Yet the guide ranks flat colours right: scored as whole
images, the prompt's background colour is the best of the candidates below for every prompt
of the bundled world's steering sets. So the run starts from the guide's best flat colour (the
noise init is centred on it), found by one batched forward pass over the candidates: "several
starts with the best kept", with each start scored before any step. Nothing reads the prompt's
words; any CLIP chooses by its own loss (docs/generators.md has the judged measurements).

Over that background, a soft disc in the middle (a Gaussian of CENTRE_SIGMA of the half-width)
takes the candidate colour the guide scores best for the whole image: a subject where a person
looks, in the colour the guide asks for, which the optimiser then shapes. From a flat start
alone the first shape grows from the noise wherever it happens to, often in a corner and in a
colour between the background and the prompt's (a cyan blob for "a red circle on a blue
background"), and stays there.
"""

import colorsys
import re

import torch

from clampgen.loop import prompt_losses

# 12 hues at full colour, pastel and dark, then black, white and mid-grey
_HSV_LEVELS = ((1.0, 0.9), (0.5, 0.9), (1.0, 0.5))  # (saturation, value)
CANDIDATES = torch.tensor(
    [colorsys.hsv_to_rgb(h / 12, s, v) for h in range(12) for s, v in _HSV_LEVELS]
    + [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.5, 0.5, 0.5)]
)  # (39, 3) RGB in [0, 1]

_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


def parse_colour(text: str, flag: str = "--init-colour"):
    """'auto' | 'none' | '#rrggbb' | 'r,g,b' (floats in [0, 1]) -> 'auto', None or a (3,) tensor;
    ValueError naming flag for anything else."""
    text = text.strip()
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    match = _HEX.fullmatch(text)
    if match:
        return torch.tensor([int(match[1][i : i + 2], 16) / 255 for i in (0, 2, 4)])
    try:
        rgb = [float(v) for v in text.split(",")]
    except ValueError:
        rgb = []
    if len(rgb) != 3 or not all(0.0 <= v <= 1.0 for v in rgb):
        raise ValueError(f"{flag} '{text}': give auto, none, #rrggbb or R,G,B with each in [0, 1]")
    return torch.tensor(rgb)


def hex_colour(colour: torch.Tensor) -> str:
    """(3,) RGB in [0, 1] -> '#rrggbb'."""
    return "#" + "".join(f"{round(float(v) * 255):02x}" for v in colour.clamp(0, 1))


@torch.no_grad()
def views_losses(make_views, guides: list) -> torch.Tensor:
    """(K,) the guides' weighted loss, at their first step, of K whole-image views that
    make_views(h, w) draws at each model's input size as (K, 3, h, w)."""
    total = 0.0
    for guide in guides:
        b, targets = guide.bundle, guide.at(0).targets
        views = make_views(*b.input_size).to(b.device)  # (K, 3, h, w)
        embeds = b.encode_image(views.contiguous())  # (K, D)
        per_view = torch.stack([prompt_losses(e[None], targets).sum() for e in embeds])
        total = total + guide.weight * per_view
    return total


def flat_losses(colours: torch.Tensor, guides: list) -> torch.Tensor:
    """(K, 3) colours -> (K,) the guides' loss of each as a flat image, at their first step.

    Every view of a flat image is the same flat colour, so one view per colour and model gives
    what the evaluation views would."""
    return views_losses(lambda h, w: colours[:, :, None, None].expand(-1, -1, h, w), guides)


def start_colour(spec: str, guides: list):
    """The colour a noise init is centred on: the guides' best candidate for 'auto', the given
    colour, or None for 'none' (the generator's own noise init)."""
    colour = parse_colour(spec)
    if isinstance(colour, str):
        return CANDIDATES[flat_losses(CANDIDATES, guides).argmin()]
    return colour


CENTRE_SIGMA = 0.3  # the disc's Gaussian radius, as a fraction of the image's half-width


def centre_mask(height: int, width: int, sigma: float = CENTRE_SIGMA) -> torch.Tensor:
    """(H, W) in [0, 1]: a Gaussian bump of std sigma (of the half-size) in the middle."""
    y = torch.linspace(-1, 1, height)[:, None]
    x = torch.linspace(-1, 1, width)[None, :]
    return torch.exp(-(x**2 + y**2) / (2 * sigma**2))


def centred_images(background: torch.Tensor, colours: torch.Tensor, height: int, width: int):
    """(3,) background, (K, 3) colours -> (K, 3, H, W): each colour as a soft disc over it."""
    mask = centre_mask(height, width)  # (H, W)
    return background.view(1, 3, 1, 1) * (1 - mask) + colours.view(-1, 3, 1, 1) * mask


def centre_losses(background: torch.Tensor, colours: torch.Tensor, guides: list) -> torch.Tensor:
    """(K, 3) colours -> (K,) the guides' loss of each as a disc over background, the whole
    image as one view at each model's input size (the disc is drawn at that size directly)."""
    return views_losses(lambda h, w: centred_images(background, colours, h, w), guides)


def start_image(colour_spec: str, centre_spec: str, guides: list, height: int, width: int):
    """The image a noise init is centred on, (1, 3, H, W), or None (the generator's own noise):
    the start colour (start_colour) with, unless centre_spec is 'none', a soft disc in the
    middle in the guides' best candidate colour ('auto') or the given one. Also returns the two
    colours picked, (background, centre or None), for the log."""
    background = start_colour(colour_spec, guides)
    if background is None:
        return None, (None, None)
    centre = parse_colour(centre_spec, "--init-centre")
    if isinstance(centre, str):
        centre = CANDIDATES[centre_losses(background, CANDIDATES, guides).argmin()]
    if centre is None:
        image = background.view(1, 3, 1, 1).expand(1, 3, height, width)
    else:
        image = centred_images(background, centre[None], height, width)
    return image.contiguous(), (background, centre)


def describe_start(background: torch.Tensor, centre=None) -> str:
    """One line for the log: 'start: #0073e5, #e50000 in the middle'."""
    middle = f", {hex_colour(centre)} in the middle" if centre is not None else ""
    return f"start: {hex_colour(background)}{middle}"
