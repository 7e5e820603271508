"""
The procedural coloured-shapes world the bundled `shapes` CLIP is trained on.

    from clampgen.models.shapes_data import sample_scenes, render, captions
    g = torch.Generator().manual_seed(0)
    scenes = sample_scenes(16, g)          # attributes, all tensors of shape (16,) or (16, 3)
    images = render(scenes)                # (16, 3, 64, 64) in [0, 1]
    texts = captions(scenes, sample_mentions(scenes, g))  # 16 strings: "two green triangles" ...

A scene is one to three copies of the same shape, in the same colour and size, placed in
distinct cells of a 3x3 grid on a plain background of another colour. Several objects always
share shape, colour and size, so that captions like "two small green triangles" are true.
Everything is vectorised over the batch and driven by an explicit `torch.Generator`.
"""

from dataclasses import dataclass

import torch

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "diamond", "stripes")
COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "pink", "white", "black", "grey")
PALETTE = torch.tensor(
    [  # RGB in [0, 1], one row per entry of COLOURS
        [0.86, 0.12, 0.12],
        [0.12, 0.67, 0.20],
        [0.12, 0.24, 0.86],
        [0.94, 0.86, 0.12],
        [0.96, 0.55, 0.08],
        [0.51, 0.16, 0.67],
        [0.96, 0.51, 0.78],
        [0.96, 0.96, 0.96],
        [0.06, 0.06, 0.06],
        [0.50, 0.50, 0.50],
    ]
)
COUNTS = ("one", "two", "three")
SIZES = ("small", "large")
POSITIONS = (
    "top left",
    "top",
    "top right",
    "left",
    "centre",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)  # index = 3 * row + column
ATTRIBUTES = ("shape", "colour", "background", "count", "size", "position")
RADIUS = (0.10, 0.16)  # object radius as a fraction of the image side, per entry of SIZES
JITTER = 0.03  # random offset of an object from its cell centre, fraction of the side


@dataclass
class Scenes:
    """Attributes of a batch of scenes; every field is a long tensor indexing the tuples above."""

    shape: torch.Tensor  # (B,) index into SHAPES
    colour: torch.Tensor  # (B,) index into COLOURS, never equal to background
    background: torch.Tensor  # (B,) index into COLOURS
    count: torch.Tensor  # (B,) number of objects, 1..3
    size: torch.Tensor  # (B,) index into SIZES
    cells: torch.Tensor  # (B, 3) grid cells (index into POSITIONS) of the objects; -1 = unused
    offset: torch.Tensor  # (B, 3, 2) float jitter of each object, fraction of the side

    def __len__(self):
        return self.shape.shape[0]

    @property
    def position(self):
        """(B,) cell of the first object: the position a caption names for single objects."""
        return self.cells[:, 0]

    def __getitem__(self, idx):
        return Scenes(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def sample_scenes(n, generator, max_count=3, single_prob=0.5):
    """Draws n random scenes: half have one object, the rest 2..max_count objects."""
    g = generator
    shape = torch.randint(len(SHAPES), (n,), generator=g)
    background = torch.randint(len(COLOURS), (n,), generator=g)
    colour = (background + torch.randint(1, len(COLOURS), (n,), generator=g)) % len(COLOURS)
    many = torch.randint(2, max(max_count, 2) + 1, (n,), generator=g)
    single = (torch.rand(n, generator=g) < single_prob) | (max_count == 1)
    count = torch.where(single, torch.ones_like(many), many)
    size = torch.randint(len(SIZES), (n,), generator=g)
    cells = torch.rand(n, len(POSITIONS), generator=g).argsort(dim=1)[:, :3]  # 3 distinct cells
    cells = torch.where(torch.arange(3) < count[:, None], cells, torch.full_like(cells, -1))
    offset = (torch.rand(n, 3, 2, generator=g) * 2 - 1) * JITTER
    return Scenes(shape, colour, background, count, size, cells, offset)


def _sd_star(x, y, r, rf=0.45):
    """Signed distance to a five-pointed star pointing up (Inigo Quilez's sdStar5)."""
    k1x, k1y = 0.809016994375, -0.587785252292
    px, py = x.abs(), -y  # y points down in images
    for kx, ky in ((k1x, k1y), (-k1x, k1y)):
        d = (kx * px + ky * py).clamp(min=0)
        px, py = px - 2 * d * kx, py - 2 * d * ky
    px, py = px.abs(), py - r
    bax, bay = -rf * k1y, rf * k1x - 1
    h = torch.minimum((px * bax + py * bay) / (bax * bax + bay * bay), r).clamp(min=0)
    dist = torch.sqrt((px - bax * h) ** 2 + (py - bay * h) ** 2)
    return dist * torch.sign(py * bax - px * bay)


def _sd_stripes(x, y, r):
    """Three vertical bars filling a square of half-side 0.9 r."""
    half = 0.9 * r
    u = (x / half + 1) % 0.8  # five bands of width 0.4 across the square; bars on bands 0, 2, 4
    d_bars = ((u - 0.2).abs() - 0.2) * half
    return torch.maximum(torch.maximum(x.abs(), y.abs()) - half, d_bars)


def shape_sdf(shape, x, y, r):
    """Signed distance (pixels, negative inside) to each object's shape.

    shape: (...) shape indices; x, y: (..., H, W) offsets from the object centre; r: (...) radius.
    """
    r = r[..., None, None]
    rho = torch.sqrt(x * x + y * y)
    cross_w = 0.32 * r
    tri = torch.maximum(y, torch.maximum(0.866 * x - 0.5 * y, -0.866 * x - 0.5 * y)) - 0.6 * r
    sdfs = torch.stack(
        [
            rho - r,  # circle
            torch.maximum(x.abs(), y.abs()) - 0.85 * r,  # square
            tri,  # triangle (apex up)
            _sd_star(x, y, 1.2 * r),  # star
            (rho - 0.72 * r).abs() - 0.28 * r,  # ring
            torch.minimum(
                torch.maximum(x.abs() - cross_w, y.abs() - r),
                torch.maximum(y.abs() - cross_w, x.abs() - r),
            ),  # cross
            (x.abs() + y.abs() - 1.15 * r) * 0.7071,  # diamond
            _sd_stripes(x, y, r),  # stripes
        ]
    )  # (8, ..., H, W)
    index = shape[None, ..., None, None].expand(1, *x.shape)
    return sdfs.gather(0, index)[0]


def render(scenes, size=64):
    """Renders scenes as images: (B, 3, size, size) float in [0, 1], anti-aliased edges."""
    n = len(scenes)
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    cell = scenes.cells.clamp(min=0)
    centre = (
        torch.stack([cell % 3, cell // 3], -1).float() * (1 / 3) + 1 / 6 + scenes.offset
    )  # (B, 3, 2)
    centre = centre * size
    radius = torch.tensor(RADIUS)[scenes.size] * size  # (B,)
    x = xs - centre[..., 0, None, None]  # (B, 3, H, W)
    y = ys - centre[..., 1, None, None]
    sdf = shape_sdf(scenes.shape[:, None].expand(n, 3), x, y, radius[:, None].expand(n, 3))
    alpha = (0.5 - sdf).clamp(0, 1) * (scenes.cells >= 0)[..., None, None]
    alpha = alpha.amax(dim=1, keepdim=True)  # (B, 1, H, W)
    fg = PALETTE[scenes.colour][..., None, None]  # (B, 3, 1, 1)
    bg = PALETTE[scenes.background][..., None, None]
    return bg + (fg - bg) * alpha


def single_scene(shape, colour, background, size="large", position="centre"):
    """The Scenes (a batch of one) of one object named by its attributes (names, not indices):
    what a caption such as "a red circle on a blue background" shows at its plainest."""
    return Scenes(
        shape=torch.tensor([SHAPES.index(shape)]),
        colour=torch.tensor([COLOURS.index(colour)]),
        background=torch.tensor([COLOURS.index(background)]),
        count=torch.tensor([1]),
        size=torch.tensor([SIZES.index(size)]),
        cells=torch.tensor([[POSITIONS.index(position), -1, -1]]),
        offset=torch.zeros(1, 3, 2),
    )


def noun_phrase(shape, count, colour=None, size=None):
    """'a small red circle', 'two green triangles', 'red stripes', 'three shapes' ..."""
    words = [w for w in (size, colour) if w is not None]
    if shape == "stripes":
        noun = "stripes" if count == 1 else "patches of " + " ".join(words + ["stripes"])
        words = words if count == 1 else []
    else:
        noun = (shape or "shape") + ("s" if count > 1 else "")
    if count == 1:
        article = [] if shape == "stripes" else ["a"]
    else:
        article = [COUNTS[count - 1]]
    return " ".join(article + words + [noun])


POSITION_PHRASES = {
    "top": "at the top",
    "bottom": "at the bottom",
    "left": "on the left",
    "right": "on the right",
}  # the rest read "in the <position>"


def describe(shape=None, count=1, colour=None, background=None, size=None, position=None):
    """One caption naming exactly the given attributes (names, not indices), and the count."""
    text = noun_phrase(shape, count, colour, size)
    if position is not None:
        text += " " + POSITION_PHRASES.get(position, f"in the {position}")
    if background is not None:
        text += f" on a {background} background"
    return text


MENTION_PROBS = {"shape": 0.85, "colour": 0.7, "background": 0.6, "size": 0.4, "position": 0.4}


def sample_mentions(scenes, generator, probs=None):
    """(B, 6) bool: which ATTRIBUTES each caption names.

    Count is always named (article or number word); position only for single objects.
    """
    probs = {**MENTION_PROBS, **(probs or {})}
    p = torch.tensor(
        [
            probs["shape"],
            probs["colour"],
            probs["background"],
            1.0,
            probs["size"],
            probs["position"],
        ]
    )
    mentions = torch.rand(len(scenes), len(ATTRIBUTES), generator=generator) < p
    mentions[:, 5] &= scenes.count == 1
    return mentions


def captions(scenes, mentions):
    """Captions (a list of strings) of scenes, naming the attributes in mentions (B, 6)."""
    out = []
    for i in range(len(scenes)):
        m = dict(zip(ATTRIBUTES, mentions[i].tolist()))
        out.append(
            describe(
                shape=SHAPES[scenes.shape[i]] if m["shape"] else None,
                count=int(scenes.count[i]),
                colour=COLOURS[scenes.colour[i]] if m["colour"] else None,
                background=COLOURS[scenes.background[i]] if m["background"] else None,
                size=SIZES[scenes.size[i]] if m["size"] else None,
                position=POSITIONS[scenes.position[i]] if m["position"] else None,
            )
        )
    return out


def attribute_matrix(scenes):
    """(B, 6) long: each of ATTRIBUTES per scene (count 1..3, the first object's position)."""
    return torch.stack(
        [
            scenes.shape,
            scenes.colour,
            scenes.background,
            scenes.count,
            scenes.size,
            scenes.position,
        ],
        dim=1,
    )


def compatible(values, mentions, scene_values):
    """(B, N) bool: caption j (attribute values (N, 6), mentions (N, 6)) is true of scene i
    (values (B, 6)).

    Used as multi-positive contrastive targets: a caption is a positive for every image it
    describes.
    Position is only named for single objects, so it never constrains multi-object scenes' captions.
    """
    agree = scene_values[:, None, :] == values[None, :, :]  # (B, N, 6)
    return (agree | ~mentions[None, :, :]).all(dim=-1)


def _gaussian_blur(images, sigma=1.0):
    """Depthwise 5x5 gaussian blur, reflect padding: (B, C, H, W) -> (B, C, H, W)."""
    k = torch.exp(-((torch.arange(5) - 2.0) ** 2) / (2 * sigma**2))
    k = (k[:, None] * k[None, :]) / k.sum() ** 2
    c = images.shape[1]
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="reflect")
    return torch.nn.functional.conv2d(padded, k.expand(c, 1, 5, 5).to(images), groups=c)


def augment(images, generator, strength=1.0, crop=0.25, noise=0.08, blur=0.7, jitter=0.06):
    """Random crop-and-resize, blur, brightness/colour jitter and gaussian noise, per image.

    Mimics what a guiding CLIP sees: random cutouts of a noisy, imperfect image. strength scales
    every effect (0 = identity). images: (B, 3, H, W) in [0, 1]; returns the same shape in [0, 1].
    """
    g, n = generator, images.shape[0]

    def u(*shape):
        return torch.rand(*shape, generator=g)

    scale = 1 - crop * strength * u(n)  # side of the crop as a fraction of the image
    shift = (1 - scale)[:, None] * (u(n, 2) * 2 - 1)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = scale, scale, shift
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(images, grid, padding_mode="border", align_corners=False)
    out = torch.lerp(out, _gaussian_blur(out), (blur * strength * u(n))[:, None, None, None])
    gain = 1 + jitter * strength * (u(n, 1, 1, 1) * 2 - 1)
    bias = 0.5 * jitter * strength * (u(n, 3, 1, 1) * 2 - 1)
    sigma = noise * strength * u(n, 1, 1, 1)
    out = out * gain + bias + sigma * torch.randn(out.shape, generator=g)
    return out.clamp(0, 1)
