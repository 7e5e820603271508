"""From a GenerateConfig to the loop's guides: the CLIP models it names, each with the run's
prompts (a schedule of phases; text and image prompts) embedded by that model.

    bundles = load_bundles(cfg, device)        # --model shapes,ViT-B-32 --pretrained ,openai
    guides = build_guides(cfg, bundles)        # [Guide(bundle, targets, weight), ...]

`--model A,B` with `--pretrained` as a matching comma list (empty entries allowed) and
`--model-weights 1,0.5` (default 1 each) sums the models' losses, each on its own cutouts at its
own input size and normalisation, as pixray, pytti and Disco Diffusion do.
"""

import logging

import torch

from clampgen.clip_loader import load_clip
from clampgen.config import GenerateConfig
from clampgen.cutouts import eval_views
from clampgen.generators import load_image
from clampgen.loop import Guide, Targets
from clampgen.prompts import parse_image_prompt, parse_schedule, phase_starts

log = logging.getLogger(__name__)


def _items(text: str) -> list:
    return [item.strip() for item in text.split(",")]


def model_specs(cfg: GenerateConfig) -> list:
    """[(model, pretrained, weight)] of cfg's --model, --pretrained and --model-weights lists."""
    models = _items(cfg.model)
    pretrained = _items(cfg.pretrained) if cfg.pretrained else [""] * len(models)
    if len(pretrained) == 1 and len(models) > 1 and not pretrained[0]:
        pretrained = [""] * len(models)
    weights = _items(cfg.model_weights) if cfg.model_weights else ["1"] * len(models)
    if "" in models:
        raise ValueError(f"--model {cfg.model!r}: an empty model name")
    for flag, values in (("--pretrained", pretrained), ("--model-weights", weights)):
        if len(values) != len(models):
            raise ValueError(
                f"{flag} gives {len(values)} entries for {len(models)} models "
                f"(--model {cfg.model}): one each, comma separated"
            )
    try:
        numbers = [float(w) for w in weights]
    except ValueError:
        raise ValueError(
            f"--model-weights {cfg.model_weights!r}: numbers, comma separated"
        ) from None
    if len(models) > 1 and "auto" in models:
        raise ValueError("--model auto picks one model: name the models of an ensemble")
    return list(zip(models, pretrained, numbers))


def load_bundles(cfg: GenerateConfig, device) -> list:
    """The CLIP models of cfg on device (clip_loader.load_clip each), logging why each."""
    bundles = []
    for model, pretrained, _ in model_specs(cfg):
        bundles.append(load_clip(model, pretrained, device))
        log.info(bundles[-1].reason)
    return bundles


def schedule(cfg: GenerateConfig) -> tuple:
    """(phases, shared): each phase's own prompts (the prompt schedule; one phase without `^`)
    and the --image-prompt files, which join every phase."""
    phases = parse_schedule(cfg.prompt) or [[]]
    return phases, [parse_image_prompt(spec) for spec in cfg.image_prompts]


def _embed(prompts: list, cfg: GenerateConfig, bundle) -> torch.Tensor:
    """(P, D) unit embeddings in prompt order: texts in one batch, each image the mean
    embedding of its fixed views (cutouts.eval_views)."""
    texts = [p.text for p in prompts if not p.image]
    text_rows = iter(bundle.encode_text(texts)) if texts else iter(())
    rows = []
    with torch.no_grad():
        for p in prompts:
            if not p.image:
                rows.append(next(text_rows))
                continue
            image = load_image(p.text, height=cfg.height, width=cfg.width).to(bundle.device)
            emb = bundle.encode_image(eval_views(image, bundle.input_size)).mean(0)
            rows.append(torch.nn.functional.normalize(emb, dim=-1))
    return torch.stack(rows)


def build_targets(cfg: GenerateConfig, bundle) -> Targets:
    """One Targets row per prompt of every phase, then the shared image prompts, embedded by
    bundle; a schedule gets a row of weights per phase (a prompt's weight in its phase, 0 in
    the others; shared prompts in all)."""
    phases, shared = schedule(cfg)
    prompts = [p for phase in phases for p in phase] + shared
    weights = torch.tensor([p.weight for p in prompts], device=bundle.device)
    phase_weights = None
    if len(phases) > 1:
        phase_weights = torch.zeros(len(phases), len(prompts), device=bundle.device)
        first = 0
        for k, phase in enumerate(phases):
            phase_weights[k, first : first + len(phase)] = weights[first : first + len(phase)]
            first += len(phase)
        phase_weights[:, first:] = weights[first:]
        weights = phase_weights[0]
    starts = tuple(phase_starts(len(phases), cfg.steps, cfg.change_every))
    return Targets(
        _embed(prompts, cfg, bundle),
        weights,
        torch.tensor([p.stop for p in prompts], device=bundle.device),
        [p.text for p in prompts],
        phase_weights,
        starts,
    )


def build_guides(cfg: GenerateConfig, bundles: list) -> list:
    """A Guide per model of cfg (bundles: load_bundles's, in the same order)."""
    return [
        Guide(bundle, build_targets(cfg, bundle), weight)
        for bundle, (_, _, weight) in zip(bundles, model_specs(cfg))
    ]
