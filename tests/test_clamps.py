"""Clamp variants, kornia style: smoke, shape, value, hand-computed backward, gradcheck, compile."""

import pytest
import torch

from clampgen.clamps import (
    CLAMPS,
    Clamp,
    clamp,
    clamp_with_grad,
    clamp_with_grad_proposed,
    clamp_with_grad_scaled,
    get_clamp,
    list_clamps,
    make_clamp,
    register_clamp,
)

NAMES = list_clamps()
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]

# x: below, at min, inside, at max, above.  delta = x - clamp(x, 0, 1)
X = [-0.5, 0.0, 0.25, 1.0, 1.5]
# hand-computed d/dx for g = +2 and g = -2 at each x
EXPECTED = {
    "clamp": {2.0: [0, 2, 2, 2, 0], -2.0: [0, -2, -2, -2, 0]},
    # g * (g * delta >= 0): below (delta<0) passes only g<0; above (delta>0) passes only g>0
    "clamp_with_grad": {2.0: [0, 2, 2, 2, 2], -2.0: [-2, -2, -2, -2, 0]},
    # g inside, sign(delta) outside
    "clamp_with_grad_proposed": {2.0: [-1, 2, 2, 2, 1], -2.0: [-1, -2, -2, -2, 1]},
    # g inside, sign(delta) * |g| outside
    "clamp_with_grad_scaled": {2.0: [-2, 2, 2, 2, 2], -2.0: [-2, -2, -2, -2, 2]},
    "clamp_straight_through": {2.0: [2, 2, 2, 2, 2], -2.0: [-2, -2, -2, -2, -2]},
}


def grad_of(fn, x, g, lo=0.0, hi=1.0):
    x = x.detach().clone().requires_grad_()
    y = fn(x, lo, hi)
    y.backward(g)
    return x.grad


def test_registry_names():
    assert NAMES == [
        "clamp",
        "clamp_with_grad",
        "clamp_with_grad_proposed",
        "clamp_with_grad_scaled",
        "clamp_straight_through",
    ]
    assert get_clamp("clamp_with_grad") is clamp_with_grad
    assert all(get_clamp(n).__name__ == n for n in NAMES)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="clamp_with_grad_proposed"):
        get_clamp("clamp_with_gradd")


def test_register_and_make_clamp():
    fn = make_clamp("half_pull", lambda g, s: torch.where(s == 0, g, 0.5 * s.to(g.dtype)))
    try:
        register_clamp("half_pull", fn)
        assert get_clamp("half_pull") is fn
        assert grad_of(fn, torch.tensor(X), torch.ones(5)).tolist() == [-0.5, 1, 1, 1, 0.5]
        with pytest.raises(ValueError, match="already registered"):
            register_clamp("half_pull", fn)
    finally:
        CLAMPS.pop("half_pull", None)
    with pytest.raises(ValueError):
        register_clamp("not a name", fn)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("g", [2.0, -2.0])
def test_backward_hand_computed(name, g):
    x = torch.tensor(X, dtype=torch.float64)
    got = grad_of(get_clamp(name), x, torch.full_like(x, g))
    torch.testing.assert_close(got, torch.tensor(EXPECTED[name][g], dtype=torch.float64))


# the brief's definitions, written with masks: the built-in rules use arithmetic instead
DEFINITIONS = {
    "clamp": lambda g, d: torch.where(d == 0, g, torch.zeros_like(g)),
    "clamp_with_grad": lambda g, d: g * (g * d >= 0),
    "clamp_with_grad_proposed": lambda g, d: torch.where(d == 0, g, torch.sign(d)),
    "clamp_with_grad_scaled": lambda g, d: torch.where(d == 0, g, torch.sign(d) * g.abs()),
    "clamp_straight_through": lambda g, d: g,
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_equals_the_masked_definition(name, dtype):
    """On random data (about half out of range, some exactly at the bounds, g of both signs and
    some zeros) every rule equals its definition with delta = x - clamp(x), bitwise."""
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(4096, generator=gen) * 0.6 + 0.5).to(dtype)
    x[:64] = 0.0
    x[64:128] = 1.0
    g = torch.randn(4096, generator=gen).to(dtype)
    g[::17] = 0.0
    got = grad_of(get_clamp(name), x, g)
    want = DEFINITIONS[name](g, x - torch.clamp(x, 0.0, 1.0))
    assert torch.equal(got, want.to(dtype))


@pytest.mark.parametrize("name", NAMES)
def test_zero_incoming_gradient(name):
    """g == 0: every variant but the proposed one passes 0; the proposed still pulls back."""
    x = torch.tensor(X)
    got = grad_of(get_clamp(name), x, torch.zeros(5))
    want = [-1, 0, 0, 0, 1] if name == "clamp_with_grad_proposed" else [0] * 5
    assert got.tolist() == want


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_bitwise_torch_clamp(name, dtype):
    x = (torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2).to(dtype)
    x[0, 0, 0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    y = get_clamp(name)(x, 0.0, 1.0)
    ref = torch.clamp(x, 0.0, 1.0)
    assert y.dtype == dtype and y.shape == x.shape
    assert torch.equal(y.isnan(), ref.isnan())
    assert torch.equal(y.nan_to_num(), ref.nan_to_num())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_dtype(name, dtype):
    x = torch.linspace(-1, 2, 30).to(dtype)
    g = grad_of(get_clamp(name), x, torch.ones_like(x))
    assert g.dtype == dtype and g.shape == x.shape


@pytest.mark.parametrize("name", ["clamp", "clamp_straight_through", "clamp_with_grad"])
def test_gradcheck_inside_range(name):
    """Strictly inside the range every variant's backward is the true one (identity)."""
    x = torch.rand(3, 5, dtype=torch.float64) * 0.8 + 0.1
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: get_clamp(name)(t, 0.0, 1.0), (x,))


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_inside_range_all(name):
    x = (torch.rand(4, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: get_clamp(name)(t, 0.0, 1.0) ** 2, (x,))


def test_tensor_bounds_per_channel():
    x = torch.randn(2, 3, 4, 4) * 2
    lo = torch.tensor([0.0, -1.0, 0.5]).view(1, 3, 1, 1)
    hi = torch.tensor([1.0, 0.0, 2.0]).view(1, 3, 1, 1)
    for name in NAMES:
        y = get_clamp(name)(x, lo, hi)
        assert torch.equal(y, torch.clamp(x, lo, hi))
    g = grad_of(clamp_with_grad_proposed, x, torch.zeros_like(x), lo, hi)
    want = torch.sign(x - torch.clamp(x, lo, hi))
    torch.testing.assert_close(g, want)


def test_one_sided_bounds():
    x = torch.tensor([-1.0, 0.5, 2.0])
    assert grad_of(clamp_with_grad_proposed, x, torch.zeros(3), None, 1.0).tolist() == [0, 0, 1]
    assert grad_of(clamp_with_grad_proposed, x, torch.zeros(3), 0.0, None).tolist() == [-1, 0, 0]
    with pytest.raises(ValueError, match="at least one"):
        clamp(x, None, None)


def test_bad_bounds():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="min <= max"):
        clamp_with_grad(x, 1.0, 0.0)
    with pytest.raises(ValueError, match="min <= max"):
        clamp_with_grad(x, torch.tensor([0.0, 2.0, 0.0]), torch.ones(3))
    with pytest.raises(ValueError, match="broadcast"):
        clamp_with_grad(x, torch.zeros(2, 3), 1.0)
    with pytest.raises(TypeError):
        clamp_with_grad(x, "0", 1.0)


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_preserved(name):
    x = torch.randn(2, 3, 5, 5).to(memory_format=torch.channels_last).requires_grad_()
    y = get_clamp(name)(x, 0.0, 1.0)
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.backward(torch.ones_like(y))
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("name", NAMES)
def test_saved_bytes_at_most_one_per_element(name):
    x = torch.randn(64, 64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = get_clamp(name)(x * 3, 0.0, 1.0)
    assert sum(t.numel() * t.element_size() for t in saved) <= x.numel()
    y.sum().backward()


def test_double_backward_errors_clearly():
    x = torch.randn(6, requires_grad=True)
    (gx,) = torch.autograd.grad((clamp_with_grad(x, 0.0, 1.0) ** 2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        gx.sum().backward()


@pytest.mark.parametrize("name", NAMES)
def test_func_grad_and_vmap(name):
    fn = get_clamp(name)
    xs = torch.tensor([X, [v * 2 for v in X]])

    def loss(v):
        return (fn(v, 0.0, 1.0) * 2.0).sum()

    per_row = torch.func.vmap(torch.func.grad(loss))(xs)
    for i in range(2):
        torch.testing.assert_close(per_row[i], grad_of(fn, xs[i], torch.full((5,), 2.0)))


def test_compile_fullgraph():
    fn = torch.compile(
        lambda t: (clamp_with_grad_proposed(t * 2, 0.0, 1.0) ** 2).sum(), fullgraph=True
    )
    x = torch.linspace(-1, 1, 9, requires_grad=True)
    fn(x).backward()
    x2 = x.detach().clone().requires_grad_()
    (clamp_with_grad_proposed(x2 * 2, 0.0, 1.0) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_module_wrapper():
    m = Clamp("clamp_with_grad_scaled", torch.zeros(1, 3, 1, 1), 1.0)
    x = torch.randn(1, 3, 4, 4, requires_grad=True)
    y = m(x)
    assert torch.equal(y, x.clamp(0, 1))
    assert "min" in dict(m.named_buffers())
    y.sum().backward()
    assert x.grad is not None
    x2 = x.detach().clone().requires_grad_()  # the named variant's rule, with the buffer as min
    clamp_with_grad_scaled(x2, torch.zeros(1, 3, 1, 1), 1.0).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    with pytest.raises(ValueError, match="unknown clamp"):
        Clamp("nope")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_cuda(name):
    x = torch.randn(1000, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    y = get_clamp(name)(x, 0.0, 1.0)
    y.backward(torch.ones_like(y))
    assert x.grad.device.type == "cuda" and x.grad.dtype == torch.bfloat16


def test_tensor_bound_keeps_input_dtype():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float16)
    y = clamp_with_grad(x, torch.zeros(1, 3, 1, 1), 1.0)
    assert y.dtype == torch.float16
    assert torch.equal(y, x.clamp(0, 1))


def test_package_exports_resolve():
    import clampgen

    for name in clampgen.__all__:
        assert getattr(clampgen, name) is not None
