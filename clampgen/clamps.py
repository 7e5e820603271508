"""Clamps to a range with a choice of pseudo-gradients, and their registry.

Every variant has the same forward, bitwise `torch.clamp(x, min, max)`, and differs only in
the gradient it passes back. With `g` the incoming gradient and `delta = x - clamp(x)`:

| name                       | backward                                   | from |
| -------------------------- | ------------------------------------------ | ---- |
| `clamp`                    | `g` inside, `0` outside (the true gradient) | torch.clamp |
| `clamp_with_grad`          | `g * (g * delta >= 0)`                     | K. Crowson's notebook |
| `clamp_with_grad_proposed` | `g` inside, `sign(delta)` outside          | the seed's fix |
| `clamp_with_grad_scaled`   | `g` inside, `sign(delta) * abs(g)` outside | this project |
| `clamp_straight_through`   | `g` everywhere                             | Bengio et al. (2013) |

Only the int8 sign of `delta` is saved for backward (one byte per element), never a copy
of `x`. Usage in your own loop::

    from clampgen import get_clamp
    clamp = get_clamp("clamp_with_grad_proposed")
    image = clamp(raw, 0.0, 1.0)          # (B, C, H, W), raw may leave [0, 1]
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import nn

Bound = Optional[Union[float, int, torch.Tensor]]
ClampFn = Callable[[torch.Tensor, Bound, Bound], torch.Tensor]
Rule = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# ---------------------------------------------------------------------------------------
# backward rules: rule(g, s) -> gradient w.r.t. x, with s = sign(delta) as int8 (-1, 0, +1)


def _rule_clamp(g, s):
    """True gradient of torch.clamp: g inside [min, max] (bounds included), 0 outside."""
    return g * _inside(s, g)


def _rule_with_grad(g, s):
    """Crowson's rule g * (g * delta >= 0): pass g only where descent moves x toward the range.
    As g * (1 + min(s * sign(g), 0)): the factor is 0 exactly where s and g have opposite signs."""
    return g * (s.to(g.dtype) * g.sign()).clamp_(max=0).add_(1)


def _rule_proposed(g, s):
    """The seed's rule: g inside, sign(delta) outside (a unit pull back toward the range)."""
    return torch.addcmul(s.to(g.dtype), g, _inside(s, g))


def _rule_scaled(g, s):
    """g inside, sign(delta) * |g| outside: the seed's pull-back at the incoming magnitude."""
    return torch.addcmul(g * _inside(s, g), s.to(g.dtype), g.abs())


def _inside(s, g):
    """1 where s == 0 (inside the range), 0 outside, in g's dtype.

    The built-in rules are products and sums with this mask, not masked_fill or where: on CPU
    comparisons and boolean masks cost 3-5 times an arithmetic pass (so with a finite g they
    are exact; an infinite g times a 0 of the mask gives NaN where masked_fill would give 0)."""
    return (1 - s.abs()).to(g.dtype)


def _rule_straight_through(g, s):
    """Identity backward, the straight-through estimator of Bengio et al. (2013)."""
    return g


# ---------------------------------------------------------------------------------------
# the autograd Function shared by every variant


def _sign_outside(x, clamped):
    """int8 sign of x - clamped: -1 below the range, +1 above, 0 inside or NaN (arithmetic
    passes, about half the time of two comparisons and a subtraction of their masks on CPU)."""
    return torch.sub(x, clamped).sign_().nan_to_num_(0.0).to(torch.int8)


class _NoDoubleBackward(torch.autograd.Function):
    """Identity whose backward raises: marks a pseudo-gradient as not differentiable again."""

    @staticmethod
    def forward(ctx, grad, name):
        ctx.name = name
        return grad.view_as(grad)

    @staticmethod
    def backward(ctx, _):
        raise RuntimeError(
            f"{ctx.name}: double backward is not supported; its backward is a "
            "pseudo-gradient with no derivative of its own"
        )


def _make_function(name: str, rule: Rule) -> type:
    """Build a private autograd.Function whose backward is `rule(g, sign(delta))`."""

    def forward(x, lo, hi):
        out = torch.clamp(x, lo, hi)
        return out, _sign_outside(x, out)

    def setup_context(ctx, inputs, output):
        _, s = output
        ctx.mark_non_differentiable(s)
        ctx.save_for_backward(s)
        ctx.lo_is_tensor = isinstance(inputs[1], torch.Tensor)
        ctx.hi_is_tensor = isinstance(inputs[2], torch.Tensor)

    def backward(ctx, g, _gs):
        (s,) = ctx.saved_tensors
        grad = rule(g, s)
        if torch.is_grad_enabled() and grad.requires_grad:  # create_graph=True
            grad = _NoDoubleBackward.apply(grad, name)
        return grad, None, None

    attrs = dict(
        forward=staticmethod(forward),
        setup_context=staticmethod(setup_context),
        backward=staticmethod(backward),
        generate_vmap_rule=True,
    )
    return type(f"_{name}_Function", (torch.autograd.Function,), attrs)


def _check_bounds(x: torch.Tensor, lo: Bound, hi: Bound) -> None:
    """Validate bounds: numbers or tensors broadcastable to x, and min <= max."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"clamp input must be a torch.Tensor, got {type(x).__name__}")
    for bound in (lo, hi):
        if isinstance(bound, torch.Tensor):
            shape = torch.broadcast_shapes(bound.shape, x.shape)
            if shape != x.shape:
                raise ValueError(
                    f"bound of shape {tuple(bound.shape)} does not broadcast "
                    f"to the input's shape {tuple(x.shape)}"
                )
        elif bound is not None and not isinstance(bound, (int, float)):
            raise TypeError(f"bounds must be numbers, tensors or None, got {type(bound).__name__}")
    if lo is None or hi is None:
        return
    if isinstance(lo, torch.Tensor) or isinstance(hi, torch.Tensor):
        if torch.compiler.is_compiling():
            return  # a data-dependent check would break the graph; eager calls check it
        lo_t = torch.as_tensor(lo)
        bad = bool(lo_t.gt(torch.as_tensor(hi, device=lo_t.device)).any())
    else:
        bad = lo > hi
    if bad:
        raise ValueError(f"clamp bounds must satisfy min <= max, got min={lo}, max={hi}")


def _as_bound_tensor(bound: Bound, x: torch.Tensor) -> Optional[torch.Tensor]:
    """A bound as a tensor of x's dtype and device (torch.clamp takes 2 tensors or 2 numbers)."""
    if bound is None:
        return None
    return torch.as_tensor(bound, dtype=x.dtype, device=x.device)


def _make_clamp(name: str, rule: Rule, doc: str) -> ClampFn:
    """Public wrapper: validates, then applies the variant's Function."""
    function = _make_function(name, rule)

    def clamp_fn(x: torch.Tensor, min: Bound = None, max: Bound = None) -> torch.Tensor:
        _check_bounds(x, min, max)
        if min is None and max is None:
            raise ValueError(f"{name}: at least one of min and max must be given")
        if isinstance(min, torch.Tensor) or isinstance(max, torch.Tensor):
            min, max = (_as_bound_tensor(b, x) for b in (min, max))
        return function.apply(x, min, max)[0]

    clamp_fn.__name__ = clamp_fn.__qualname__ = name
    clamp_fn.__doc__ = doc
    clamp_fn.rule = rule
    return clamp_fn


clamp = _make_clamp(
    "clamp",
    _rule_clamp,
    """torch.clamp(x, min, max); gradient g inside the range
(bounds included), 0 outside. Saves one byte per element instead of x.""",
)

clamp_with_grad = _make_clamp(
    "clamp_with_grad",
    _rule_with_grad,
    """Forward clamp; backward
g * (g * delta >= 0), delta = x - clamp(x): a gradient passes outside the range only when a
descent step (x -= lr * g) moves x back toward it. From Katherine Crowson's VQGAN+CLIP
notebook (2021), the community default.""",
)

clamp_with_grad_proposed = _make_clamp(
    "clamp_with_grad_proposed",
    _rule_proposed,
    """Forward
clamp; backward g where delta == 0 and sign(delta) outside, so every out-of-range value is
pulled back with unit strength whatever the loss says. The seed notebook's proposal (its
ClampWithGrad2).""",
)

clamp_with_grad_scaled = _make_clamp(
    "clamp_with_grad_scaled",
    _rule_scaled,
    """Forward clamp;
backward g inside, sign(delta) * |g| outside. The seed's pull-back direction at the incoming
gradient's magnitude: a unit pull-back is orders larger than CLIP's gradients (~1e-4) and can
dominate Adam's second-moment estimate, shrinking later in-range steps of that element.""",
)

clamp_straight_through = _make_clamp(
    "clamp_straight_through",
    _rule_straight_through,
    """Forward
clamp; backward g everywhere (identity), the straight-through estimator of Bengio et al.
(2013). The baseline with no gating at all: shows whether the gating of the other variants
matters.""",
)

# ---------------------------------------------------------------------------------------
# registry

CLAMPS: dict[str, ClampFn] = {
    "clamp": clamp,
    "clamp_with_grad": clamp_with_grad,
    "clamp_with_grad_proposed": clamp_with_grad_proposed,
    "clamp_with_grad_scaled": clamp_with_grad_scaled,
    "clamp_straight_through": clamp_straight_through,
}


def list_clamps() -> list[str]:
    """Names of the registered clamps, in registration order."""
    return list(CLAMPS)


def get_clamp(name: str) -> ClampFn:
    """The clamp registered under `name`; an unknown name's ValueError lists the valid ones."""
    try:
        return CLAMPS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown clamp {name!r}; choose one of: {', '.join(CLAMPS)}") from None


def register_clamp(name: str, fn: ClampFn, *, overwrite: bool = False) -> ClampFn:
    """Register an artist's own variant `fn(x, min, max)` under `name` (see `make_clamp`)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"clamp name must be a Python identifier, got {name!r}")
    if not callable(fn):
        raise TypeError(f"clamp {name!r} must be callable")
    if name in CLAMPS and not overwrite:
        raise ValueError(f"clamp {name!r} is already registered; pass overwrite=True to replace it")
    CLAMPS[name] = fn
    return fn


def make_clamp(name: str, rule: Rule, doc: str = "") -> ClampFn:
    """A variant from a backward rule `rule(g, s)`, s = int8 sign(x - clamp(x)); unregistered."""
    return _make_clamp(
        name, rule, doc or f"Forward clamp; backward {rule.__name__}(g, sign(delta))."
    )


class Clamp(nn.Module):
    """Module form: `Clamp("clamp_with_grad", 0.0, 1.0)(x)`; tensor bounds become buffers."""

    def __init__(self, kind: str = "clamp_with_grad", min: Bound = 0.0, max: Bound = 1.0):
        super().__init__()
        self.kind = kind
        self.fn = get_clamp(kind)
        for side, bound in (("min", min), ("max", max)):
            if isinstance(bound, torch.Tensor):
                self.register_buffer(side, bound)
            else:
                setattr(self, side, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, self.min, self.max)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, min={self.min}, max={self.max}"
