"""Property tests (hypothesis): the prompt parser, the config loader and the clamps."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clampgen.clamps import get_clamp, list_clamps
from clampgen.config import GenerateConfig, load_toml, merge_config
from clampgen.prompts import parse_prompts

WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", min_size=1, max_size=20).filter(
    lambda t: t.strip()
)
NUMBERS = st.floats(-100, 100, allow_nan=False).map(lambda v: round(v, 3))


@given(st.lists(st.tuples(WORDS, NUMBERS, st.one_of(st.none(), NUMBERS)), min_size=1, max_size=4))
def test_prompt_round_trip(items):
    spec = " | ".join(f"{t}:{w}" + ("" if s is None else f":{s}") for t, w, s in items)
    parsed = parse_prompts(spec)
    assert [p.text for p in parsed] == [t.strip() for t, _, _ in items]
    assert [p.weight for p in parsed] == [w for _, w, _ in items]
    assert [p.stop for p in parsed] == [-math.inf if s is None else s for _, _, s in items]


@settings(max_examples=40, deadline=None)
@given(
    steps=st.integers(1, 10_000),
    lr=st.floats(1e-6, 10),
    cutn=st.integers(1, 256),
    clamp=st.sampled_from(list_clamps()),
    flip=st.booleans(),
)
def test_toml_config_round_trip(tmp_path_factory, steps, lr, cutn, clamp, flip):
    path = tmp_path_factory.mktemp("cfg") / "c.toml"
    path.write_text(
        f'steps = {steps}\nlr = {lr!r}\ncutn = {cutn}\nclamp = "{clamp}"\n'
        f"aug_flip = {str(flip).lower()}\n"
    )
    cfg = merge_config(GenerateConfig(), load_toml(path))
    assert (cfg.steps, cfg.lr, cfg.cutn, cfg.clamp, cfg.aug_flip) == (steps, lr, cutn, clamp, flip)
    assert merge_config(cfg, {}) == cfg


FLOATS = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    xs=st.lists(FLOATS, min_size=1, max_size=16),
    a=FLOATS,
    b=FLOATS,
    g=FLOATS,
    name=st.sampled_from(list_clamps()),
)
def test_clamp_properties(xs, a, b, g, name):
    """Forward is torch.clamp; inside the range every variant passes g; outside, the gradient
    is g, 0, sign(delta) or sign(delta)|g| as the variant says."""
    lo, hi = min(a, b), max(a, b)
    x = torch.tensor(xs, requires_grad=True)
    y = get_clamp(name)(x, lo, hi)
    assert torch.equal(y, torch.clamp(x.detach(), lo, hi))
    y.backward(torch.full_like(y, g))
    inside = (x.detach() >= lo) & (x.detach() <= hi)
    assert torch.equal(x.grad[inside], torch.full_like(x.grad[inside], g))
    s = torch.sign(x.detach() - torch.clamp(x.detach(), lo, hi))[~inside]
    out = x.grad[~inside]
    expected = {
        "clamp": torch.zeros_like(s),
        "clamp_straight_through": torch.full_like(s, g),
        "clamp_with_grad": torch.where(s * g >= 0, torch.full_like(s, g), 0.0),
        "clamp_with_grad_proposed": s,
        "clamp_with_grad_scaled": s * abs(g),
    }[name]
    assert torch.equal(out, expected)
