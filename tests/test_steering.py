"""The bundled model steers the real generator, judged by a measure that is not the guiding model.

The README's main job (the generator's defaults, the shipped shapes CLIP), with a fixed seed and
no files, must turn an almost uniform grey start into an image whose most common palette colour
is the prompted background, with more of the prompted shape colour than at the start
(clampgen.models.judge.colour_shares). Measured at seeds 0 and 1: blue 66% / 65% of the pixels,
red 4.4% / 3.1% (from 0%).
"""

from clampgen.config import GenerateConfig
from clampgen.loop import optimize
from clampgen.models.judge import colour_shares
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
    parts = prepare(cfg)
    before = colour_shares(parts["generator"]().detach().clamp(0, 1))[0]
    result = optimize(**parts, cfg=cfg)
    after = colour_shares(result["image"])[0]
    blue, red = COLOURS.index("blue"), COLOURS.index("red")
    assert int(after.argmax()) == blue, dict(zip(COLOURS, after.tolist()))
    assert after[blue] > 0.5
    assert after[red] > before[red]
