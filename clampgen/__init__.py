"""clampgen: CLIP-guided image optimisation with honest A/B comparisons of clamp pseudo-gradients."""
from .clamps import (CLAMPS, Clamp, clamp, clamp_straight_through, clamp_with_grad,
                     clamp_with_grad_proposed, clamp_with_grad_scaled, get_clamp, list_clamps,
                     make_clamp, register_clamp)

__version__ = "0.1.0"

__all__ = [
    "CLAMPS", "Clamp", "clamp", "clamp_straight_through", "clamp_with_grad",
    "clamp_with_grad_proposed", "clamp_with_grad_scaled", "get_clamp", "list_clamps",
    "make_clamp", "register_clamp", "__version__",
]
