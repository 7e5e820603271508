"""The bundled model steers the real generator, judged by a measure that is not the guiding model.

The README's main job (the generator's defaults, the shipped shapes CLIP), with a fixed seed and
no files, must give an image whose most common palette colour is the prompted background, whose
second is the prompted shape colour, and whose shape sits where a person looks: the red pixels'
centre in the middle third of the image, not in a corner (clampgen.models.judge.colour_classes).
Measured at seeds 0 and 1: blue 96 % of the pixels, red 2.8 % / 2.6 %, centred.
"""

import torch

from clampgen.config import GenerateConfig
from clampgen.loop import optimize
from clampgen.models.judge import colour_classes, colour_shares
from clampgen.models.shapes_data import COLOURS
from clampgen.run import complete, prepare


def test_red_circle_on_blue_judged_by_pixel_colours():
    cfg = complete(
        GenerateConfig(
            prompt="a red circle on a blue background",
            model="shapes",
            seed=0,
            eval_every=0,
            save_every=0,
            progress=False,
        )
    )
    result = optimize(**prepare(cfg), cfg=cfg)
    image = result["image"]  # (1, 3, H, W)
    shares = colour_shares(image)[0]
    blue, red = COLOURS.index("blue"), COLOURS.index("red")
    assert shares.topk(2).indices.tolist() == [blue, red], dict(zip(COLOURS, shares.tolist()))
    assert shares[blue] > 0.5 and shares[red] > 0.005
    ys, xs = torch.nonzero(colour_classes(image)[0] == red, as_tuple=True)  # the red pixels
    height, width = image.shape[-2:]
    assert height / 3 < ys.float().mean() < 2 * height / 3
    assert width / 3 < xs.float().mean() < 2 * width / 3
