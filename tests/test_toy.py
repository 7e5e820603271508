"""The seed's 1-D experiment: the numbers behind results/toy.png."""

import csv

from clampgen import toy
from clampgen.clamps import get_clamp


def test_curves_match_seed_definitions():
    x, clamped, loss, grad = toy.curves(get_clamp("clamp_with_grad"))
    assert x.shape == clamped.shape == loss.shape == grad.shape == (400,)
    above = x > 1.001
    # above the range the loss slope is -pi, delta > 0: clamp_with_grad blocks it (the seed's flaw)
    assert (grad[above] == 0).all()
    _, _, _, grad_p = toy.curves(get_clamp("clamp_with_grad_proposed"))
    assert (grad_p[above] == 1).all() and (grad_p[x < -1.001] == -1).all()


def test_descent_outcomes():
    """Hand-checked: from x0 = 1.5 clamp_with_grad is stuck, the proposed fix comes back to 1."""
    rows = {
        r["x0"]: r
        for r in toy.summarize(
            toy.descend(get_clamp("clamp_with_grad"), starts=(1.5, -1.5), steps=100)
        )
    }
    assert rows[1.5]["final_x"] == 1.5 and rows[1.5]["ends_outside"]
    assert abs(rows[-1.5]["final_x"] + 0.5) < 1e-3 and rows[-1.5]["steps_to_converge"] is not None
    path = toy.descend(get_clamp("clamp_with_grad_proposed"), starts=(1.5,), steps=100)
    assert abs(float(path[-1, 0]) - 1.0) < 0.1
    path = toy.descend(get_clamp("clamp"), starts=(-1.5,), steps=50)
    assert float(path[-1, 0]) == -1.5  # zero gradient outside: never moves


def test_main_writes_png_and_csv(tmp_path):
    assert toy.main(["--out", str(tmp_path), "--steps", "20"]) == 0
    assert (tmp_path / "toy.png").stat().st_size > 10_000
    rows = list(csv.DictReader(open(tmp_path / "toy.csv")))
    assert len(rows) == len(toy.STARTS) * 2 * 5
    assert {r["clamp"] for r in rows} == {
        "clamp",
        "clamp_with_grad",
        "clamp_with_grad_proposed",
        "clamp_with_grad_scaled",
        "clamp_straight_through",
    }
