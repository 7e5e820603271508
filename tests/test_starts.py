"""The start: the guide's best flat colour and centre colour, parsed colours, the noise
centred on the start image."""

import math

import pytest
import torch

from clampgen.config import GenerateConfig
from clampgen.generators import initialise, make_generator
from clampgen.models import shapes_data
from clampgen.run import complete, prepare
from clampgen.starts import (
    CANDIDATES,
    centre_losses,
    centre_mask,
    centred_images,
    flat_losses,
    hex_colour,
    parse_colour,
    start_colour,
    start_image,
)


def test_parse_colour():
    assert parse_colour("auto") == "auto"
    assert parse_colour("none") is None
    assert torch.equal(parse_colour("#ff8000"), torch.tensor([1.0, 128 / 255, 0.0]))
    assert torch.equal(parse_colour("0.5,0,1"), torch.tensor([0.5, 0.0, 1.0]))
    for bad in ("red", "#ff80", "1,2,3", "0.5,0.5", "nan,0,0"):
        with pytest.raises(ValueError, match="--init-colour"):
            parse_colour(bad)
    assert hex_colour(torch.tensor([1.0, 128 / 255, 0.0])) == "#ff8000"
    with pytest.raises(ValueError, match="--init-centre 'red'"):
        parse_colour("red", "--init-centre")


def test_candidates_span_hues_greys_and_stay_in_range():
    assert CANDIDATES.shape == (39, 3)
    assert CANDIDATES.min() >= 0 and CANDIDATES.max() <= 1
    for grey in ([0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5]):
        assert (CANDIDATES == torch.tensor(grey, dtype=torch.float32)).all(1).any()


@pytest.fixture(scope="module")
def guides_of():
    def guides(prompt):
        cfg = complete(GenerateConfig(prompt=prompt, model="shapes", seed=0))
        return prepare(cfg)["guides"]

    return guides


@pytest.mark.parametrize("background", ["red", "blue", "yellow", "white", "black"])
def test_the_bundled_guide_picks_the_named_background(guides_of, background):
    prompt = shapes_data.describe(shape="circle", colour="green", background=background)
    colour = start_colour("auto", guides_of(prompt))
    judged = shapes_data.COLOURS[
        ((shapes_data.PALETTE - colour) ** 2).sum(1).argmin()
    ]  # the palette colour nearest the pick
    assert judged == background


def test_flat_losses_agree_with_the_eval_loss_of_a_flat_image(guides_of):
    from clampgen.loop import eval_loss

    guides = guides_of("a red circle on a blue background")
    colours = CANDIDATES[:3]
    losses = flat_losses(colours, guides)
    for colour, loss in zip(colours, losses):
        flat = colour.view(1, 3, 1, 1).expand(1, 3, 64, 64).contiguous()
        assert loss.item() == pytest.approx(eval_loss(flat, guides), abs=1e-4)


@pytest.mark.parametrize("name", ["pixel", "fft"])
def test_the_noise_is_centred_on_the_start_image(name):
    start = centred_images(torch.tensor([0.9, 0.1, 0.2]), torch.tensor([[0.0, 0.5, 1.0]]), 32, 32)
    gen = make_generator(name, height=32, width=32)
    grey = initialise(gen, "noise", torch.Generator().manual_seed(0))
    gen = make_generator(name, height=32, width=32)
    centred = initialise(gen, "noise", torch.Generator().manual_seed(0), start=start)
    assert torch.allclose(centred - grey, start - 0.5, atol=1e-5)


def test_the_centre_disc_by_hand():
    mask = centre_mask(5, 5, sigma=0.5)  # x, y in (-1, -0.5, 0, 0.5, 1)
    assert mask[2, 2] == 1 and mask[2, 3].item() == pytest.approx(math.exp(-0.5))
    assert mask[0, 0].item() == pytest.approx(math.exp(-4))  # (1 + 1) / (2 * 0.25)
    images = centred_images(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([[1.0, 0, 0]]), 5, 5)
    assert images.shape == (1, 3, 5, 5)
    assert images[0, :, 2, 2].tolist() == [1, 0, 0]  # the centre: the disc's colour
    assert torch.allclose(images[0, 0] + images[0, 2], torch.ones(5, 5))  # a blend of the two


@pytest.mark.parametrize("colour, background", [("red", "blue"), ("yellow", "black")])
def test_the_bundled_guide_picks_the_shape_colour_for_the_centre(guides_of, colour, background):
    prompt = shapes_data.describe(shape="circle", colour=colour, background=background)
    guides = guides_of(prompt)
    _, (bg, centre) = start_image("auto", "auto", guides, 64, 64)
    nearest = ((shapes_data.PALETTE - centre) ** 2).sum(1).argmin()
    assert shapes_data.COLOURS[nearest] == colour
    losses = centre_losses(bg, CANDIDATES, guides)  # a disc of the background's colour is flat
    assert losses[(CANDIDATES == bg).all(1)].item() == pytest.approx(
        flat_losses(bg[None], guides).item(), abs=1e-4
    )


def test_the_start_image_follows_the_flags(guides_of):
    guides = guides_of("a red circle on a blue background")
    assert start_image("none", "auto", guides, 8, 8) == (None, (None, None))
    flat, (bg, centre) = start_image("#00ff00", "none", guides, 8, 8)
    assert centre is None and torch.equal(
        flat, torch.tensor([0.0, 1, 0]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    )
    given, (_, centre) = start_image("#00ff00", "#ff0000", guides, 9, 9)
    assert centre.tolist() == [1, 0, 0] and given[0, :, 4, 4].tolist() == [1, 0, 0]


def test_a_run_starts_from_the_picked_colour_and_none_is_the_grey_start(guides_of):
    base = dict(prompt="a white star on a purple background", model="shapes", seed=3)
    auto = prepare(complete(GenerateConfig(**base, generator="fft")))["init_image"]
    none = prepare(complete(GenerateConfig(**base, generator="fft", init_colour="none")))
    assert none["init_image"].mean().item() == pytest.approx(0.5, abs=0.02)
    mean = auto[..., :8, :].mean((0, 2, 3))  # the top rows, far from the disc: the picked colour
    assert shapes_data.COLOURS[((shapes_data.PALETTE - mean) ** 2).sum(1).argmin()] == "purple"
    middle = auto[..., 60:68, 60:68].mean((0, 2, 3))  # (3,) the disc: the star's colour
    assert shapes_data.COLOURS[((shapes_data.PALETTE - middle) ** 2).sum(1).argmin()] == "white"
    green = dict(init_colour="#00ff00", init_centre="none")
    given = prepare(complete(GenerateConfig(**base, generator="fft", **green)))
    assert given["init_image"].mean((0, 2, 3)).tolist() == pytest.approx([0, 1, 0], abs=0.05)


def test_the_vqgan_starts_from_the_flat_colour_itself():
    cfg = GenerateConfig(
        prompt="a red circle on a blue background",
        model="shapes",
        seed=0,
        generator="vqgan",
        size=(64, 64),
        init_colour="#1f3ddb",
        init_centre="none",
    )
    image = prepare(complete(cfg))["init_image"]  # (1, 3, 64, 64): the decoder's flat blue
    assert (image.mean((0, 2, 3)) - torch.tensor([0x1F, 0x3D, 0xDB]) / 255).norm() < 0.1
    assert image.std((2, 3)).max() < 0.05
