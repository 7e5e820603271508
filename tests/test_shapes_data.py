"""Tests of the procedural coloured-shapes world (clampgen.models.shapes_data)."""

import torch

from clampgen.models import shapes_data as sd


def _scenes(n=32, seed=0):
    return sd.sample_scenes(n, torch.Generator().manual_seed(seed))


def _one(shape, colour=0, background=7, size=1, cell=4):
    """A single hand-built scene."""
    return sd.Scenes(
        torch.tensor([shape]),
        torch.tensor([colour]),
        torch.tensor([background]),
        torch.tensor([1]),
        torch.tensor([size]),
        torch.tensor([[cell, -1, -1]]),
        torch.zeros(1, 3, 2),
    )


def test_cardinality():
    scenes = _scenes(16)
    assert len(scenes) == 16 and scenes.cells.shape == (16, 3) and scenes.offset.shape == (16, 3, 2)
    assert sd.render(scenes).shape == (16, 3, 64, 64)
    assert sd.render(scenes, size=32).shape == (16, 3, 32, 32)


def test_determinism():
    a, b = _scenes(seed=3), _scenes(seed=3)
    torch.testing.assert_close(sd.render(a), sd.render(b))
    ga, gb = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert sd.captions(a, sd.sample_mentions(a, ga)) == sd.captions(b, sd.sample_mentions(b, gb))
    assert not torch.equal(sd.render(_scenes(seed=4)), sd.render(a))


def test_attribute_ranges():
    s = _scenes(500)
    assert (s.colour != s.background).all()
    assert s.count.min() == 1 and s.count.max() == 3
    used = s.cells >= 0
    assert (used.sum(1) == s.count).all()
    for row, k in zip(s.cells, s.count):  # distinct cells for the objects of one scene
        assert len(set(row[:k].tolist())) == k


def test_render_values():
    images = sd.render(_scenes(8))
    assert images.min() >= 0 and images.max() <= 1


def test_render_colours_and_area():
    """Background pixels carry the background colour; the shape's colour covers a plausible area."""
    for shape in range(len(sd.SHAPES)):
        img = sd.render(_one(shape))[0]  # (3, 64, 64)
        torch.testing.assert_close(img[:, 0, 0], sd.PALETTE[7])
        fg = (img - sd.PALETTE[0][:, None, None]).abs().amax(0) < 0.02
        assert 0.02 < fg.float().mean() < 0.2, sd.SHAPES[shape]
        ys, xs = fg.nonzero().float().mean(0)  # centred in the image (cell 4)
        assert abs(ys - 32) < 4 and abs(xs - 32) < 4


def test_shapes_differ():
    masks = [sd.render(_one(s))[0, 1] for s in range(len(sd.SHAPES))]
    for i in range(len(masks)):
        for j in range(i):
            assert (masks[i] - masks[j]).abs().mean() > 0.01, (sd.SHAPES[i], sd.SHAPES[j])


def test_captions():
    scenes = sd.Scenes(
        torch.tensor([2, 3, 7]),
        torch.tensor([1, 3, 0]),
        torch.tensor([0, 8, 2]),
        torch.tensor([2, 1, 1]),
        torch.tensor([0, 0, 1]),
        torch.tensor([[0, 1, -1], [0, -1, -1], [4, -1, -1]]),
        torch.zeros(3, 3, 2),
    )
    every = torch.ones(3, 6, dtype=torch.bool)
    every[0, 5] = False  # position is never named for several objects
    assert sd.captions(scenes, every) == [
        "two small green triangles on a red background",
        "a small yellow star in the top left on a black background",
        "large red stripes in the centre on a blue background",
    ]
    only_shape = torch.tensor([[True, False, False, True, False, False]] * 3)
    assert sd.captions(scenes, only_shape) == ["two triangles", "a star", "stripes"]


def test_mentions_and_compatibility():
    s = _scenes(64)
    mentions = sd.sample_mentions(s, torch.Generator().manual_seed(1))
    assert mentions[:, 3].all() and not mentions[s.count > 1, 5].any()
    values = sd.attribute_matrix(s)
    pos = sd.compatible(values, mentions, values)
    assert pos.shape == (64, 64) and pos.diagonal().all()
    texts = sd.captions(s, mentions)
    for i in range(64):  # identical captions are always mutual positives
        for j in range(64):
            if texts[i] == texts[j]:
                assert pos[i, j]


def test_augment():
    g = torch.Generator().manual_seed(0)
    images = sd.render(_scenes(8))
    out = sd.augment(images, g, strength=1.0)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(sd.augment(images, g, strength=0.0), images, atol=1e-5, rtol=0)
