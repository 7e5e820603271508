"""Prompt schedules ('a ^ b') and several CLIP models at once (--model A,B), end to end: the
loss logged is the active phase's, switches happen where --change-every says (the same for every
variant of a comparison), and an ensemble sums each model's weighted loss on its own cutouts."""

import csv
import json

import pytest
import torch

from clampgen.cli import main
from clampgen.clip_loader import load_clip
from clampgen.config import GenerateConfig, load_toml, merge_config
from clampgen.guides import build_targets, model_specs

TINY = [
    "--model",
    "clampgen-tiny",
    "--size",
    "32",
    "--cutn",
    "2",
    "--no-progress",
    "--seed",
    "4",
    "--no-video",
]


def rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_schedule_switches_the_active_prompts(tmp_path):
    out = tmp_path / "run"
    argv = [
        "a red circle ^ a blue square | a star:-0.5",
        *TINY,
        "--steps",
        "6",
        "--change-every",
        "3",
        "--eval-every",
        "1",
        "--tv-weight",
        "0",  # the loss is then the sum of the prompts' losses
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    table = rows(out)
    assert list(table[0])[:5] == ["step", "loss", "loss_0", "loss_1", "loss_2"]
    for r in table:
        phase = 0 if int(r["step"]) < 3 else 1
        active = [float(r[f"loss_{i}"]) != 0 for i in range(3)]
        assert active == ([True, False, False] if phase == 0 else [False, True, True]), r
        total = sum(float(r[f"loss_{i}"]) for i in range(3))
        assert float(r["loss"]) == pytest.approx(total, abs=1e-5)  # each written to 6 digits


def test_schedule_split_evenly_with_an_image_prompt_in_a_phase(tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "red.png")
    cfg = GenerateConfig(
        prompt=f"a circle ^ a square | [{tmp_path / 'red.png'}]:0.5", steps=8, size=(32, 32)
    )
    targets = build_targets(cfg, load_clip("clampgen-tiny", "", "cpu"))
    assert targets.starts == (0, 4) and targets.labels[1:] == [
        "a square",
        str(tmp_path / "red.png"),
    ]
    torch.testing.assert_close(targets.phases, torch.tensor([[1.0, 0, 0], [0, 1.0, 0.5]]))
    assert torch.equal(targets.at(3).weights, targets.phases[0])
    assert torch.equal(targets.at(4).weights, targets.phases[1])


@pytest.mark.parametrize(
    "prompt, extra, message",
    [
        ("a ^ ^ b", [], "phase 2 (after '^') is empty"),
        ("a ^ b ^ c", ["--change-every", "5"], "phase 3 would start at step 10"),
        ("a ^ [missing.png]", [], "missing.png"),
    ],
)
def test_bad_schedule_is_one_line_exit_2(tmp_path, capsys, prompt, extra, message):
    out = tmp_path / "run"
    assert main([prompt, *TINY, "--steps", "6", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


def test_comparison_variants_share_the_schedule(tmp_path):
    out = tmp_path / "cmp"
    argv = [
        "a red circle ^ a blue square",
        *TINY,
        "--steps",
        "4",
        "--generator",
        "pixel",
        "--init-scale",
        "4",
        "--clamp",
        "clamp,clamp_with_grad",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    for variant in ("clamp", "clamp_with_grad"):
        zero = [float(r["loss_0"]) == 0 for r in rows(out / variant)]
        assert zero == [False, False, True, True, True], variant  # 2 phases of 4 steps: 0, 2


def test_ensemble_sums_each_models_weighted_loss(tmp_path):
    """Model 0 draws its cutouts first, so its step-0 loss is the single model's exactly; the
    weight scales model 1's share; the total is their sum."""
    base = [
        "a red circle",
        "--size",
        "32",
        "--cutn",
        "2",
        "--no-progress",
        "--seed",
        "4",
        "--no-video",
        "--steps",
        "2",
        "--tv-weight",
        "0",  # the loss is then the models' sum
        "--init-colour",
        "none",  # the same start (an ensemble picks its own best colour)
    ]
    assert main([*base, "--model", "shapes", "--out", str(tmp_path / "one")]) == 0
    for name, weights in (("two", "1,1"), ("half", "1,0.5")):
        argv = [
            *base,
            "--model",
            "shapes,clampgen-tiny",
            "--model-weights",
            weights,
            "--out",
            str(tmp_path / name),
        ]
        assert main(argv) == 0
    one, two, half = (rows(tmp_path / n) for n in ("one", "two", "half"))
    assert list(two[0])[-2:] == ["loss_model0", "loss_model1"] and "loss_model0" not in one[0]
    assert two[0]["loss_model0"] == one[0]["loss"]
    assert float(half[0]["loss_model1"]) == pytest.approx(
        float(two[0]["loss_model1"]) / 2, rel=1e-4
    )
    for r in two + half:
        assert float(r["loss"]) == pytest.approx(
            float(r["loss_model0"]) + float(r["loss_model1"]),
            abs=1e-5,  # each written to 6 digits
        )
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["model"] == "shapes,clampgen-tiny"


def test_ensemble_from_toml_and_its_errors(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text('model = "shapes, clampgen-tiny"\npretrained = ","\nmodel_weights = "2,1"\n')
    cfg = merge_config(GenerateConfig(), load_toml(path))
    assert model_specs(cfg) == [("shapes", "", 2.0), ("clampgen-tiny", "", 1.0)]
    for changes, message in (
        ({"pretrained": "a,b,c"}, "--pretrained gives 3 entries for 2"),
        ({"model_weights": "1"}, "--model-weights gives 1 entries"),
        ({"model_weights": "1,x"}, "numbers, comma separated"),
        ({"model": "auto,shapes"}, "--model auto picks one model"),
    ):
        with pytest.raises(ValueError, match=message):
            model_specs(merge_config(cfg, changes))
