"""clampgen: CLIP-guided image optimisation with honest A/B comparisons of clamp pseudo-gradients.

    from clampgen import get_clamp, GenerateConfig, prepare, optimize, run_one, run_comparison

The clamps are imported at once (they need only torch); everything else is imported on first
use, so `import clampgen` stays cheap and does no work beyond that.
"""

from clampgen.clamps import (
    CLAMPS,
    Clamp,
    clamp,
    clamp_straight_through,
    clamp_with_grad,
    clamp_with_grad_proposed,
    clamp_with_grad_scaled,
    get_clamp,
    list_clamps,
    make_clamp,
    register_clamp,
)

__version__ = "0.4.0"

_LAZY = {  # public name -> module that defines it
    "GenerateConfig": "config",
    "load_toml": "config",
    "merge_config": "config",
    "Prompt": "prompts",
    "parse_prompts": "prompts",
    "ClipBundle": "clip_loader",
    "load_clip": "clip_loader",
    "WeightsUnavailable": "hub",
    "ImageGenerator": "generators",
    "make_generator": "generators",
    "list_generators": "generators",
    "register_generator": "generators",
    "optimize": "loop",
    "Targets": "loop",
    "spherical_dist": "loop",
    "list_optimizers": "loop",
    "prepare": "run",
    "run_one": "run",
    "complete": "run",
    "read_metrics": "rundir",
    "frame_paths": "rundir",
    "run_comparison": "compare.runner",
    "run_suite": "compare.runner",
    "RunsFailed": "compare.runner",
    "write_report": "compare.report",
    "write_suite_report": "compare.report",
    "write_study_report": "compare.report",
    "summarize_comparison": "compare.summary",
    "summarize_suite": "compare.summary",
    "mean_ci": "compare.stats",
    "cluster_bootstrap": "compare.stats",
    "paired_differences": "compare.stats",
    "step_at_fraction": "compare.stats",
    "t_critical": "compare.stats",
    "win_rate": "compare.stats",
    "load_vqgan": "vqgan",
    "VQGANImage": "vqgan",
    "make_vqgan_generator": "vqgan",
    "random_vqgan": "vqgan",
    "load_shapes_clip": "models.shapes_clip",
    "register_shapes_model": "models.shapes_clip",
    "SHAPES_WEIGHTS": "models.shapes_clip",
    "SHAPES_JUDGE_WEIGHTS": "models.shapes_clip",
    "colour_shares": "models.judge",
    "scene_colours": "models.judge",
    "load_shape_judge": "models.judge",
    "judge_shapes": "models.judge",
    "load_judges": "judges",
    "parse_scene": "judges",
    "show_logs": "logs",
    "Keeper": "keepers",
    "get_keeper": "keepers",
    "list_keepers": "keepers",
    "parse_keepers": "keepers",
    "squash_sigmoid": "keepers",
    "squash_tanh": "keepers",
    "range_penalty": "keepers",
}

__all__ = [
    "CLAMPS",
    "Clamp",
    "clamp",
    "clamp_straight_through",
    "clamp_with_grad",
    "clamp_with_grad_proposed",
    "clamp_with_grad_scaled",
    "get_clamp",
    "list_clamps",
    "make_clamp",
    "register_clamp",
    "__version__",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clampgen' has no attribute {name!r}")
