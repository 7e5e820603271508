"""Range keepers: every way clampgen keeps an image in [0, 1], the five clamps among them.

A clamp keeps the forward `torch.clamp` and chooses a pseudo-gradient (clampgen.clamps). The
other keepers are what practitioners use instead:

| name | image (forward) | besides | from |
| --- | --- | --- | --- |
| the 5 clamps | `clamp(x, 0, 1)` | each its own backward | clampgen.clamps |
| `sigmoid` | `sigmoid(x)` | start mapped by `logit` | lucid's, deep-daze's parametrisations |
| `tanh` | `(tanh(x) + 1) / 2` | start mapped by `atanh` | BigGAN's output layer (BigSleep) |
| `project` | `x` | then `x <- clamp(x, 0, 1)` | projected gradient descent (pixel) |
| `range_loss` | `clamp(x, 0, 1)` | `+ 0.12 mean((x - clamp(x))^2)` | Disco Diffusion's range loss |

(`tanh` is `sigmoid(2 x)`: the same squash with twice the slope.)

Two more test why the seed's `clamp_with_grad_proposed` stalls (the study's mechanism check,
pixel generator with Adam only): `proposed_adam_reset` resets Adam's moments of the elements that
come back into range, and `proposed_decoupled` gives Adam only CLIP's gradient and moves
out-of-range elements back by lr per step outside Adam (as AdamW decouples weight decay).

    from clampgen.keepers import get_keeper, parse_keepers, squash_sigmoid, range_penalty
    parse_keepers("all+keepers", generator="fft")   # the clamps, then the keepers fft takes
    image = squash_sigmoid(raw)                     # (B, C, H, W) in (0, 1), your own loop
    loss = clip_loss(image) + 0.12 * range_penalty(raw)

Every keeper starts from the same image: the start the generator made, clamped to [0, 1] (a
squash keeper's start is mapped through the squash's inverse, with values within half a grey
level of 0 or 1 held just inside, so frame 0 is the same 8-bit image for every keeper).
"""

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from clampgen.clamps import CLAMPS, clamp, clamp_with_grad_proposed, get_clamp, list_clamps

EDGE = 0.49 / 255  # a squash keeper's start holds values this far inside (0, 1): same 8-bit image
SATURATED = 1.01 * EDGE  # a squashed value this close to 0 or 1 passes under 1 % of the gradient
# Disco Diffusion weighs its range loss 150 against CLIP's 5000 on images in [-1, 1]; on [0, 1]
# the squared out-of-range part is a quarter as large, so the same balance is 4 * 150 / 5000
RANGE_LOSS_WEIGHT = 0.12


def squash_sigmoid(x: torch.Tensor, min: float = 0.0, max: float = 1.0) -> torch.Tensor:
    """min + (max - min) * sigmoid(x): the range reached smoothly, never left (lucid, deep-daze)."""
    return torch.sigmoid(x) * (max - min) + min


def squash_tanh(x: torch.Tensor, min: float = 0.0, max: float = 1.0) -> torch.Tensor:
    """min + (max - min) * (tanh(x) + 1) / 2 (BigGAN's output layer): sigmoid(2 x), rescaled."""
    return (torch.tanh(x) + 1) * ((max - min) / 2) + min


def range_penalty(x: torch.Tensor, min: float = 0.0, max: float = 1.0) -> torch.Tensor:
    """mean((x - clamp(x, min, max))^2): Disco Diffusion's range loss (K. Crowson's guided
    diffusion notebooks, 2021), zero inside the range."""
    return (x - x.clamp(min, max)).pow(2).mean()


@dataclass(frozen=True)
class Keeper:
    """How a run keeps its image in range: the image the loop scores, an optional loss term, an
    optional start mapping and an optional update after each optimizer step."""

    name: str
    forward: Callable  # raw (1, 3, H, W) -> image in [0, 1], inside the compiled step
    about: str  # one line: what it does and where it comes from
    group: str = "keepers"  # 'clamps', 'keepers' or 'experiments' (see parse_keepers)
    penalty: Optional[Callable] = None  # raw -> scalar added to the loss
    start: Optional[Callable] = None  # start(generator): makes its image the clamped start
    after_step: Optional[Callable] = None  # after_step(generator, optimizer, raw_before)
    generators: Optional[tuple] = None  # the generators it applies to (None: all)
    optimizers: Optional[tuple] = None  # the optimizers it works with (None: all)
    saturates: bool = False  # a squash: "outside" means an image within EDGE of 0 or 1

    def outside(self, raw: torch.Tensor) -> torch.Tensor:
        """Bool mask of raw values out of range (clamps) or saturated (squash keepers)."""
        if self.saturates:  # the squashed start holds such values exactly EDGE inside: they count
            image = self.forward(raw)
            return (image <= SATURATED) | (image >= 1 - SATURATED)
        return (raw < 0) | (raw > 1)

    def applies_to(self, generator: str, optimizer: Optional[str] = None) -> bool:
        """Whether it works with that generator (and optimizer, when given)."""
        return not self.why_not(generator, optimizer)

    def why_not(self, generator: str, optimizer: Optional[str] = None) -> str:
        """'' if it works with that generator and optimizer, else why not (for an error)."""
        if self.generators is not None and generator not in self.generators:
            return (
                f"--clamp {self.name} does not apply to the {generator} generator "
                f"(only to: {', '.join(self.generators)})"
            )
        if (
            optimizer is not None
            and self.optimizers not in (None, ())
            and (optimizer not in self.optimizers)
        ):
            return (
                f"--clamp {self.name} needs the optimizer {' or '.join(self.optimizers)}, "
                f"not {optimizer}"
            )
        return ""


def _clamp_keeper(name: str) -> Keeper:
    fn = get_clamp(name)
    return Keeper(
        name,
        lambda raw: fn(raw, 0.0, 1.0),
        (fn.__doc__ or name).split(".")[0].strip(),
        group="clamps",
    )


@torch.no_grad()
def _set_start(generator, inverse, edge: float) -> None:
    """Sets generator so that its forward is inverse(clamped start), the start held edge inside."""
    generator.set_image(inverse(generator().clamp(edge, 1 - edge)))


@torch.no_grad()
def _project(generator, optimizer, raw_before) -> None:
    """x <- clamp(x, 0, 1) on the image's own parameters (the pixel generator's pixels)."""
    generator.set_image(generator().clamp(0, 1))


@torch.no_grad()
def _reset_returning(generator, optimizer, raw_before) -> None:
    """Zeroes Adam's moments of the elements that came back into range in this step."""
    (param,) = [p for p in generator.parameters() if p.requires_grad]
    back = _out_of_range(raw_before) & ~_out_of_range(param)
    state = optimizer.state[param]
    for key in ("exp_avg", "exp_avg_sq"):
        state[key].masked_fill_(back, 0.0)


@torch.no_grad()
def _pull_back(generator, optimizer, raw_before) -> None:
    """Moves every out-of-range element lr toward the range (but not past it), outside Adam."""
    (param,) = [p for p in generator.parameters() if p.requires_grad]
    lr = optimizer.param_groups[0]["lr"]
    clamped = param.clamp(0, 1)
    param.copy_(clamped + (param - clamped).sign() * ((param - clamped).abs() - lr).clamp(min=0))


def _out_of_range(x: torch.Tensor) -> torch.Tensor:
    return (x < 0) | (x > 1)


def _logit(image: torch.Tensor) -> torch.Tensor:
    return torch.logit(image)


def _atanh_half(image: torch.Tensor) -> torch.Tensor:
    return torch.atanh(image * 2 - 1)


KEEPERS = {
    "sigmoid": Keeper(
        "sigmoid",
        squash_sigmoid,
        "image = sigmoid(x) (lucid, deep-daze)",
        start=lambda g: _set_start(g, _logit, EDGE),
        generators=("pixel", "fft"),
        saturates=True,
    ),
    "tanh": Keeper(
        "tanh",
        squash_tanh,
        "image = (tanh(x) + 1) / 2 (BigGAN's output layer, BigSleep)",
        start=lambda g: _set_start(g, _atanh_half, EDGE),
        generators=("pixel", "fft"),
        saturates=True,
    ),
    "project": Keeper(
        "project",
        lambda raw: raw,
        "image = x, projected into [0, 1] after every step (PGD)",
        start=lambda g: _set_start(g, lambda image: image, 0.0),
        after_step=_project,
        generators=("pixel",),
    ),
    "range_loss": Keeper(
        "range_loss",
        lambda raw: clamp(raw, 0.0, 1.0),
        f"torch.clamp plus {RANGE_LOSS_WEIGHT} x Disco Diffusion's range loss",
        penalty=lambda raw: range_penalty(raw) * RANGE_LOSS_WEIGHT,
    ),
    "proposed_adam_reset": Keeper(
        "proposed_adam_reset",
        lambda raw: clamp_with_grad_proposed(raw, 0.0, 1.0),
        "clamp_with_grad_proposed, Adam's moments reset where an element re-enters the range",
        group="experiments",
        after_step=_reset_returning,
        generators=("pixel",),
        optimizers=("adam", "adamw"),
    ),
    "proposed_decoupled": Keeper(
        "proposed_decoupled",
        lambda raw: clamp(raw, 0.0, 1.0),
        "Adam sees CLIP's gradient only; out-of-range elements move lr back per step",
        group="experiments",
        after_step=_pull_back,
        generators=("pixel",),
    ),
}
GROUPS = {  # names a variant list may use for several keepers at once
    "all": "clamps",
    "keepers": "keepers",
    "all+keepers": ("clamps", "keepers"),
    "experiments": "experiments",
}


def list_keepers(group: str = "keepers") -> list[str]:
    """Names of the keepers of a group ('clamps', 'keepers', 'experiments'), registry order."""
    if group == "clamps":
        return list_clamps()
    return [n for n, k in KEEPERS.items() if k.group == group]


def list_variants() -> list[str]:
    """Every clamp and keeper name, clamps first (what --clamp accepts besides the groups)."""
    return [*list_clamps(), *KEEPERS]


def get_keeper(name: str) -> Keeper:
    """The keeper `name`: a registered clamp or one of KEEPERS; ValueError lists the valid ones."""
    if name in CLAMPS:
        return _clamp_keeper(name)
    if name in KEEPERS:
        return KEEPERS[name]
    raise ValueError(
        f"unknown clamp {name!r} (choose a clamp or keeper: {', '.join(list_variants())})"
    )


def parse_keepers(
    spec, generator: Optional[str] = None, optimizer: Optional[str] = None, strict: bool = True
) -> list[str]:
    """'all' (the clamps), 'keepers', 'all+keepers', 'experiments', 'a,b' or a list -> names.

    A group gives its members that apply to `generator` and `optimizer` (when given); a name
    given explicitly must apply to them (strict) or is left out. ValueError for an unknown,
    repeated or (strict) inapplicable name, or for none left."""
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = []
    for item in filter(None, items):
        explicit = item not in GROUPS
        groups = () if explicit else GROUPS[item]
        members = (
            [item]
            if explicit
            else [
                n
                for g in (groups if isinstance(groups, tuple) else (groups,))
                for n in list_keepers(g)
            ]
        )
        for name in members:
            keeper = get_keeper(name)
            if generator is None or keeper.applies_to(generator, optimizer):
                names.append(name)
            elif explicit and strict:
                raise ValueError(keeper.why_not(generator, optimizer))
    if not names or len(set(names)) != len(names):
        raise ValueError(f"need distinct clamp or keeper names, got {spec!r}")
    return names
