"""Range keepers (clampgen.keepers): the squash and penalty functions kornia-style, the registry
and its groups, each keeper's step hook by hand, and the fairness rule: every keeper of a
comparison starts from the same 8-bit image and sees the same cutouts."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from clampgen import rundir
from clampgen.clamps import list_clamps
from clampgen.cli import main
from clampgen.generators import PixelImage
from clampgen.keepers import (
    EDGE,
    KEEPERS,
    RANGE_LOSS_WEIGHT,
    get_keeper,
    list_keepers,
    list_variants,
    parse_keepers,
    range_penalty,
    squash_sigmoid,
    squash_tanh,
)

TINY = ["--model", "clampgen-tiny", "--size", "32", "--cutn", "2", "--no-progress", "--seed", "1"]


# ------------------------------------------------------------------ the functions


def test_squash_values_and_bounds():
    x = torch.tensor([-50.0, -1.0, 0.0, 1.0, 50.0])
    torch.testing.assert_close(squash_sigmoid(x), torch.sigmoid(x))
    torch.testing.assert_close(squash_tanh(x), torch.sigmoid(2 * x))  # (tanh(x) + 1) / 2
    torch.testing.assert_close(squash_sigmoid(torch.zeros(1), -1.0, 3.0), torch.ones(1))
    for fn in (squash_sigmoid, squash_tanh):
        y = fn(torch.linspace(-30, 30, 101))
        assert y.min() >= 0 and y.max() <= 1 and torch.all(y[1:] >= y[:-1])


def test_range_penalty_hand_computed():
    x = torch.tensor(
        [-0.5, 0.2, 1.0, 1.25]
    )  # out by 0.5 and 0.25: mean of squares (0.25 + 0.0625) / 4
    assert range_penalty(x).item() == pytest.approx(0.078125)
    assert range_penalty(torch.rand(10)).item() == 0.0


@pytest.mark.parametrize("fn", [squash_sigmoid, squash_tanh, range_penalty])
def test_gradcheck_float64(fn):
    x = torch.tensor([-1.7, -0.3, 0.4, 0.9, 1.6], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x,))  # away from 0 and 1, the penalty's kinks


# ------------------------------------------------------------------ the registry


def test_groups_and_applicability():
    assert parse_keepers("all") == list_clamps()
    assert parse_keepers("keepers") == ["sigmoid", "tanh", "project", "range_loss"]
    assert parse_keepers("all+keepers", generator="fft") == [
        *list_clamps(),
        "sigmoid",
        "tanh",
        "range_loss",
    ]
    assert parse_keepers("all+keepers", generator="vqgan") == [*list_clamps(), "range_loss"]
    assert parse_keepers("experiments") == ["proposed_adam_reset", "proposed_decoupled"]
    assert list_variants() == [*list_clamps(), *KEEPERS] and list_keepers("clamps") == list_clamps()
    for spec, message in (
        ("project", "does not apply to the fft generator"),
        ("clamp,nope", "unknown clamp 'nope'"),
        ("sigmoid,sigmoid", "distinct"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_keepers(spec, generator="fft")


def test_every_keeper_forward_is_in_range():
    raw = torch.linspace(-3, 4, 700).view(1, 7, 10, 10)
    for name in list_variants():
        image = get_keeper(name).forward(raw)
        assert image.shape == raw.shape and image.min() >= 0 or name == "project"
        assert name == "project" or image.max() <= 1


def test_outside_is_out_of_range_for_clamps_and_saturation_for_squashes():
    raw = torch.tensor([-0.1, 0.0, 0.5, 1.0, 1.1])
    assert get_keeper("clamp_with_grad").outside(raw).tolist() == [True, False, False, False, True]
    edge = math.log(EDGE / (1 - EDGE))  # sigmoid(edge) = EDGE: within half a grey level of 0
    wide = torch.tensor([edge - 0.01, edge + 0.01, 0.0, -edge - 0.01, -edge + 0.01])
    assert get_keeper("sigmoid").outside(wide).tolist() == [True, False, False, False, True]
    assert get_keeper("tanh").outside(wide / 2).tolist() == [True, False, False, False, True]
    assert get_keeper("sigmoid").outside(torch.tensor([edge, -edge])).tolist() == [True, True]


# ------------------------------------------------------------------ the step hooks, by hand


def _pixel(values):
    gen = PixelImage(height=1, width=len(values))
    with torch.no_grad():
        gen.pixels.copy_(torch.tensor(values).view(1, 1, 1, -1).expand(1, 3, 1, -1))
    return gen


def test_project_puts_the_pixels_back_into_range():
    gen = _pixel([-0.4, 0.3, 1.7])
    KEEPERS["project"].after_step(gen, None, None)
    assert gen.pixels[0, 0, 0].tolist() == pytest.approx([0.0, 0.3, 1.0])


def test_decoupled_pull_back_moves_lr_toward_the_range_and_not_past_it():
    gen = _pixel([-0.5, -0.02, 0.5, 1.3])
    opt = torch.optim.Adam(gen.parameters(), lr=0.1)
    KEEPERS["proposed_decoupled"].after_step(gen, opt, None)
    assert gen.pixels[0, 0, 0].tolist() == pytest.approx([-0.4, 0.0, 0.5, 1.2])


def test_adam_reset_zeroes_the_moments_of_returning_elements_only():
    gen = _pixel([-0.5, 0.5, 0.05, 1.05])
    opt = torch.optim.Adam(gen.parameters(), lr=0.1)
    before = gen.pixels.detach().clone()
    gen.pixels.grad = torch.ones_like(gen.pixels)
    opt.step()  # Adam's first step moves every pixel by lr: the last comes back, the third leaves
    assert gen.pixels[0, 0, 0].tolist() == pytest.approx([-0.6, 0.4, -0.05, 0.95], abs=1e-6)
    KEEPERS["proposed_adam_reset"].after_step(gen, opt, before)
    for key in ("exp_avg", "exp_avg_sq"):
        zero = opt.state[gen.pixels][key][0, :, 0] == 0  # (3 channels, 4 pixels)
        assert zero[:, 3].all() and not zero[:, :3].any(), key


def test_range_loss_adds_its_weighted_penalty_to_the_loss():
    from clampgen.clip_loader import load_clip
    from clampgen.config import GenerateConfig
    from clampgen.cutouts import Augment, draw_cutouts
    from clampgen.generators import with_defaults
    from clampgen.loop import Guide, Targets, step_forward

    bundle = load_clip("clampgen-tiny", "", "cpu")
    gen = _pixel([-0.5, 0.25, 0.75, 1.5])
    targets = Targets(
        torch.nn.functional.normalize(torch.randn(1, 32), dim=-1),
        torch.ones(1),
        torch.full((1,), -math.inf),
        ["t"],
    )
    draws = (draw_cutouts(2, 3, bundle.input_size, torch.Generator().manual_seed(0)),)
    cfg, guides = (
        with_defaults(GenerateConfig(generator="pixel", cutn=2, tv_weight=0.0)),
        [Guide(bundle, targets)],
    )
    loss = {
        name: step_forward(gen, guides, cfg, get_keeper(name), Augment(), draws).loss
        for name in ("clamp", "range_loss")
    }
    penalty = RANGE_LOSS_WEIGHT * (0.25 + 0.25) / 4  # out by 0.5 twice, in each channel alike
    assert (loss["range_loss"] - loss["clamp"]).item() == pytest.approx(penalty, rel=1e-5)


# ------------------------------------------------------------------ fairness, end to end


def _frame0(run_dir):
    with Image.open(run_dir / "frames" / "step_00000.png") as im:
        return np.asarray(im)


@pytest.mark.parametrize(
    "generator, init", [("pixel", ["--init-scale", "4"]), ("fft", ["--init-colour", "none"])]
)
def test_every_keeper_starts_from_the_same_image(tmp_path, generator, init):
    """A comparison of the clamps, the keepers and the experiments: frame 0 is the same 8-bit
    image for all of them, and their step-0 losses on the fixed views differ only by float
    rounding (a squash start is the clamped start held half a grey level inside). fft starts
    from grey noise here: a start colour at 0 or 1 in a channel puts many values just inside
    the range, which a squash counts as saturated and a clamp as inside."""
    out = tmp_path / "cmp"
    spec = "all+keepers,experiments" if generator == "pixel" else "all+keepers"
    argv = [
        "a red circle",
        *TINY,
        "--generator",
        generator,
        *init,
        "--steps",
        "2",
        "--clamp",
        spec,
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    names = parse_keepers(spec, generator=generator)
    frames = {n: _frame0(out / n) for n in names}
    for n in names:
        assert np.array_equal(frames[n], frames["clamp_with_grad"]), n
    oor = {n: rundir.read_metrics(out / n)["out_of_range"][0] for n in names}
    for n in names:  # out of range (clamps) or saturated (squashes): the same share at step 0
        assert oor[n] == pytest.approx(oor["clamp"], abs=0.01) or n == "project", (n, oor)
    if generator == "pixel":  # the start has values out of range: the keepers then part ways
        assert not np.array_equal(
            np.asarray(Image.open(out / "sigmoid" / "final.png")),
            np.asarray(Image.open(out / "clamp" / "final.png")),
        )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--generator", "fft", "--clamp", "project"], "does not apply to the fft generator"),
        (
            ["--generator", "pixel", "--optimizer", "sgd", "--clamp", "proposed_adam_reset"],
            "needs the optimizer adam or adamw",
        ),
    ],
)
def test_keeper_that_does_not_apply_is_one_line_exit_2(tmp_path, capsys, argv, message):
    assert main(["a red circle", *TINY, "--steps", "1", *argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "r").exists()


# ------------------------------------------------------------------ the mechanism measurement


def test_step_sizes_hand_computed(tmp_path):
    """Three reported steps of four pixels: the groups are taken as the pixels were before each
    update; 'back' means out at an earlier reported step and in range now."""
    import csv

    from clampgen.writers import StepSizeWriter

    gen = _pixel([0.5, -0.2, 0.5, 0.5])
    writer = StepSizeWriter(tmp_path, gen, get_keeper("clamp_with_grad_proposed"))
    for step, values in ((0, None), (1, [0.6, 0.1, 0.5, 1.4]), (2, [0.8, 0.4, 0.5, 1.1])):
        if values is not None:
            with torch.no_grad():
                gen.pixels.copy_(torch.tensor(values).view(1, 1, 1, -1).expand(1, 3, 1, -1))
        writer({"step": step})
    writer.close()
    rows = list(csv.DictReader(open(tmp_path / "step_sizes.csv")))
    # update 0 -> 1: out = pixel 1 (3 channels), never out = pixels 0, 2, 3 (moved .1, 0, .9)
    assert rows[0] == {
        "step": "0",
        "n_back": "0",
        "step_back": "",
        "n_never_out": "9",
        "step_never_out": "0.1",
        "n_out": "3",
        "step_out": "0.3",
    }
    # update 1 -> 2: back = pixel 1 (moved .3), never out = pixels 0, 2 (.2, 0), out = pixel 3 (.3)
    assert rows[1]["n_back"] == "3" and float(rows[1]["step_back"]) == pytest.approx(0.3)
    assert rows[1]["n_never_out"] == "6" and float(rows[1]["step_never_out"]) == pytest.approx(0.0)
    assert rows[1]["n_out"] == "3" and float(rows[1]["step_out"]) == pytest.approx(0.3)


def test_step_sizes_of_a_run(tmp_path):
    out = tmp_path / "run"
    argv = [
        "a red circle",
        *TINY,
        "--generator",
        "pixel",
        "--init-scale",
        "4",
        "--steps",
        "6",
        "--clamp",
        "clamp_with_grad_proposed",
        "--step-sizes",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    import csv

    rows = list(csv.DictReader(open(out / "step_sizes.csv")))
    assert [int(r["step"]) for r in rows] == list(range(6))
    for r in rows:
        assert int(r["n_back"]) + int(r["n_never_out"]) + int(r["n_out"]) == 3 * 32 * 32
    assert any(int(r["n_back"]) > 0 for r in rows)  # the unit pull-back brings pixels back


def test_adam_reset_acts_inside_a_run(tmp_path):
    """The loop hands after_step the image tensor as it was before the step (the pixel
    generator's tensor is its parameter): elements that come back get fresh Adam moments, so
    the run leaves the seed's variant as soon as the first element returns."""
    finals = {}
    for clamp in ("clamp_with_grad_proposed", "proposed_adam_reset"):
        out = tmp_path / clamp
        argv = ["a red circle", *TINY, "--generator", "pixel", "--init-scale", "4"]
        assert main([*argv, "--steps", "6", "--clamp", clamp, "--out", str(out)]) == 0
        finals[clamp] = [line.split(",")[1] for line in open(out / "metrics.csv")][1:]
    same, reset = finals["clamp_with_grad_proposed"], finals["proposed_adam_reset"]
    assert same[:2] == reset[:2] and same != reset  # equal until the first returns are reset
