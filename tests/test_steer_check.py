"""The judged steering check: held-out prompt sets, the optimisation gap, its files."""

import json

import pytest
import torch

from clampgen.config import GenerateConfig
from clampgen.models import shapes_data
from clampgen.run import complete, prepare
from clampgen.steer_check import main, optimisation_gap, prompts


def test_prompts_are_one_per_shape_and_a_prompt_seed_draws_a_reproducible_other_set():
    fixed, drawn = prompts(), prompts(20261205)
    for chosen in (fixed, drawn):
        assert [shape for _, shape, _, _ in chosen] == list(shapes_data.SHAPES)
        assert all(colour != background for _, _, colour, background in chosen)
        for prompt, shape, colour, background in chosen:
            assert prompt == shapes_data.describe(shape=shape, colour=colour, background=background)
    assert drawn == prompts(20261205)
    assert [p[2:] for p in drawn] != [p[2:] for p in fixed]
    assert prompts(1) != prompts(2)


@pytest.fixture(scope="module")
def guides():
    cfg = complete(GenerateConfig(prompt="a red circle on a blue background", model="shapes"))
    return prepare(cfg)["guides"]


def test_the_clean_render_has_no_gap_and_a_grey_image_a_large_one(guides):
    scene = shapes_data.single_scene("circle", "red", "blue")
    render = shapes_data.render(scene, size=128)
    same = optimisation_gap(render, guides, "circle", "red", "blue")
    assert same["gap"] == pytest.approx(0.0, abs=1e-6)
    assert same["eval_loss"] == pytest.approx(same["render_loss"])
    grey = optimisation_gap(torch.full((1, 3, 128, 128), 0.5), guides, "circle", "red", "blue")
    assert grey["render_loss"] == pytest.approx(same["render_loss"])
    assert grey["gap"] > 0.2  # the guide knows a grey image is far from the prompt


def test_single_scene_draws_one_large_object_in_the_centre():
    image = shapes_data.render(shapes_data.single_scene("square", "yellow", "black"), size=64)
    yellow = (image[0] - shapes_data.PALETTE[3][:, None, None]).norm(dim=0) < 0.05  # (64, 64)
    assert yellow[32, 32] and not yellow[2, 2] and not yellow[62, 62]
    rows, cols = yellow.nonzero().T.float()
    assert rows.mean().item() == pytest.approx(31.5, abs=0.6)
    assert cols.mean().item() == pytest.approx(31.5, abs=0.6)


def test_main_writes_rows_with_the_gap_summary_and_grid(tmp_path):
    out = tmp_path / "steer"
    argv = ["--prompt-seed", "7", "--steps", "2", "--size", "48", "--cutn", "2", "--out", str(out)]
    main(argv + ["--seeds", "1"])
    results = json.loads((out / "rows.json").read_text())
    rows = results["fft"]["rows"]
    assert [r["prompt"] for r in rows] == [p[0] for p in prompts(7)]
    for r in rows:
        assert r["gap"] == pytest.approx(r["eval_loss"] - r["render_loss"])
    summary = (out / "summary.md").read_text()
    assert "drawn with seed 7" in summary and "| gap |" in summary
    assert (out / "grid.jpg").stat().st_size > 0
