"""Independent judges: pixel colour shares and the supervised shape classifier."""

import pytest
import torch

from clampgen.models import shapes_data as sd
from clampgen.models.judge import colour_shares, judge_shapes, load_shape_judge, scene_colours
from clampgen.models.shapes_clip import SHAPES_JUDGE_WEIGHTS


def _scenes(n, seed=0):
    return sd.sample_scenes(n, torch.Generator().manual_seed(seed))


def test_colour_shares_sum_to_one():
    shares = colour_shares(sd.render(_scenes(8)))
    assert shares.shape == (8, 10)
    torch.testing.assert_close(shares.sum(1), torch.ones(8))


def test_colour_shares_of_palette_images():
    images = sd.PALETTE[:, :, None, None].expand(10, 3, 4, 4)
    torch.testing.assert_close(colour_shares(images), torch.eye(10))


def test_scene_colours_identify_rendered_scene():
    scenes = _scenes(64)
    background, colour = scene_colours(sd.render(scenes))
    assert torch.equal(background, scenes.background)
    assert torch.equal(colour, scenes.colour)


def test_scene_colours_survive_noise():
    scenes = _scenes(64, seed=1)
    g = torch.Generator().manual_seed(0)
    images = (sd.render(scenes) + 0.05 * torch.randn(64, 3, 64, 64, generator=g)).clamp(0, 1)
    background, colour = scene_colours(images)
    assert (background == scenes.background).float().mean() >= 0.95
    assert (colour == scenes.colour).float().mean() >= 0.9


@pytest.mark.skipif(not SHAPES_JUDGE_WEIGHTS.exists(), reason="judge weights not trained yet")
def test_shape_judge_accuracy():
    scenes = _scenes(200, seed=99)
    images = sd.render(scenes)
    probs = judge_shapes(load_shape_judge(), images)
    assert probs.shape == (200, len(sd.SHAPES))
    torch.testing.assert_close(probs.sum(1), torch.ones(200))
    assert (probs.argmax(1) == scenes.shape).float().mean() >= 0.9
    big = sd.render(scenes[:8], size=128)  # other sizes are resized to the judge's input
    assert (
        judge_shapes(load_shape_judge(), big).argmax(1) == scenes.shape[:8]
    ).float().mean() >= 0.75
