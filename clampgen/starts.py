"""The start's colour, chosen by the guide: several flat starts, the best kept.

    from clampgen.starts import start_colour
    colour = start_colour("auto", guides)   # (3,) the flat colour the guides score best
    colour = start_colour("#ff8000", guides) # (3,) as given; "none" gives None

An optimiser that starts from grey noise settles the background early, in whatever colour the
first steps' gradients favour (pale greens and greys where the prompt asks for red), and rarely
repaints it: one colour for the whole image is many pixels' coherent move, which a step of
per-pixel gradients seldom makes. Yet the guide ranks flat colours right: scored as whole
images, the prompt's background colour is the best of the candidates below for every prompt
of the bundled world's steering sets. So the run starts from the guide's best flat colour (the
noise init is centred on it), found by one batched forward pass over the candidates: "several
starts with the best kept", with each start scored before any step. Nothing reads the prompt's
words; any CLIP chooses by its own loss (docs/generators.md has the judged measurements).
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


def parse_colour(text: str):
    """'auto' | 'none' | '#rrggbb' | 'r,g,b' (floats in [0, 1]) -> 'auto', None or a (3,) tensor;
    ValueError for anything else."""
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
        raise ValueError(
            f"--init-colour '{text}': give auto, none, #rrggbb or R,G,B with each in [0, 1]"
        )
    return torch.tensor(rgb)


def hex_colour(colour: torch.Tensor) -> str:
    """(3,) RGB in [0, 1] -> '#rrggbb'."""
    return "#" + "".join(f"{round(float(v) * 255):02x}" for v in colour.clamp(0, 1))


@torch.no_grad()
def flat_losses(colours: torch.Tensor, guides: list) -> torch.Tensor:
    """(K, 3) colours -> (K,) the guides' loss of each as a flat image, at their first step.

    Every view of a flat image is the same flat colour, so one view per colour and model gives
    what the evaluation views would."""
    total = 0.0
    for guide in guides:
        b, targets = guide.bundle, guide.at(0).targets
        views = colours[:, :, None, None].expand(-1, -1, *b.input_size).to(b.device)  # (K, 3, h, w)
        embeds = b.encode_image(views.contiguous())  # (K, D)
        per_colour = torch.stack([prompt_losses(e[None], targets).sum() for e in embeds])
        total = total + guide.weight * per_colour
    return total


def start_colour(spec: str, guides: list):
    """The colour a noise init is centred on: the guides' best candidate for 'auto', the given
    colour, or None for 'none' (the generator's own noise init)."""
    colour = parse_colour(spec)
    if isinstance(colour, str):
        return CANDIDATES[flat_losses(CANDIDATES, guides).argmin()]
    return colour
