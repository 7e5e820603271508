"""
Zero-shot accuracy of a `shapes` CLIP on held-out scenes, per attribute and per shape.

    python -m clampgen.training.eval_shapes                       # the shipped weights, 2000 scenes
    python -m clampgen.training.eval_shapes --weights my.safetensors --n 500 --augment 1.0

Each attribute is classified over all its values with prompts that name only that attribute
(and the object count, which every caption names, taken from the scene): "a circle" ..
"stripes" for shape (single-object scenes), "two red shapes" for colour, "a shape on a blue
background" for background, "a shape" / "two shapes" / "three shapes" for count, and so on.
Held-out scenes come from --seed, which training never uses (training draws from its own seed).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clampgen.models import shapes_data
from clampgen.models.shapes_clip import SHAPES_WEIGHTS, load_shapes_clip, normalize
from clampgen.options import option, parse_options

CLASSES = {
    "shape": shapes_data.SHAPES,
    "colour": shapes_data.COLOURS,
    "background": shapes_data.COLOURS,
    "count": shapes_data.COUNTS,
    "size": shapes_data.SIZES,
    "position": shapes_data.POSITIONS,
}
SINGLE_ONLY = ("shape", "position")  # attributes scored on single-object scenes only
EVAL_SEED = 12345


def prompts(attribute, count):
    """Prompts for every value of attribute, for scenes with count objects."""
    if attribute == "count":
        return [shapes_data.describe(count=k) for k in (1, 2, 3)]
    return [shapes_data.describe(count=count, **{attribute: v}) for v in CLASSES[attribute]]


@torch.no_grad()
def encode_texts(model, tokenizer, texts):
    return F.normalize(model.encode_text(tokenizer(texts)), dim=-1)


@torch.no_grad()
def predict(model, tokenizer, image_features, counts, attribute):
    """(B,) predicted class index of attribute, using prompts matched to each scene's count."""
    pred = torch.zeros(len(counts), dtype=torch.long)
    for k in (1, 2, 3):
        rows = counts == k
        if rows.any():
            text_features = encode_texts(model, tokenizer, prompts(attribute, k))
            pred[rows] = (image_features[rows] @ text_features.T).argmax(1)
    return pred


def truth(scenes, attribute):
    """(B,) true class index of attribute."""
    value = shapes_data.attribute_matrix(scenes)[:, shapes_data.ATTRIBUTES.index(attribute)]
    return value - 1 if attribute == "count" else value


@torch.no_grad()
def evaluate(model, tokenizer, n=2000, seed=EVAL_SEED, augment=0.0, batch=250):
    """Returns {attribute: accuracy, 'per_shape': {shape: accuracy}} on n held-out scenes."""
    g = torch.Generator().manual_seed(seed)
    scenes = shapes_data.sample_scenes(n, g)
    images = shapes_data.render(scenes)
    if augment:
        images = shapes_data.augment(images, g, augment, crop=0.15)
    feats = torch.cat(
        [F.normalize(model.encode_image(normalize(x)), dim=-1) for x in images.split(batch)]
    )  # (n, D)
    single = scenes.count == 1
    result = {}
    for attribute in CLASSES:
        mask = single if attribute in SINGLE_ONLY else torch.ones(n, dtype=torch.bool)
        pred = predict(model, tokenizer, feats[mask], scenes.count[mask], attribute)
        correct = pred == truth(scenes[mask], attribute)
        result[attribute] = correct.float().mean().item()
        if attribute == "shape":
            shapes = scenes.shape[mask]
            result["per_shape"] = {
                s: correct[shapes == i].float().mean().item()
                for i, s in enumerate(shapes_data.SHAPES)
            }
    return result


def format_report(result):
    """One line per attribute group, accuracies in percent."""
    main = " ".join(f"{k} {100 * v:.1f}%" for k, v in result.items() if k != "per_shape")
    per = " ".join(f"{k} {100 * v:.0f}%" for k, v in result["per_shape"].items())
    return f"{main} | per shape: {per}"


@dataclass
class EvalOptions:
    weights: str = option(str(SHAPES_WEIGHTS), "safetensors file of a shapes CLIP")
    n: int = option(2000, "number of held-out scenes")
    seed: int = option(EVAL_SEED, "seed of the held-out scenes")
    augment: float = option(0.0, "augmentation strength applied to them (0 = clean)")


def main(argv=None):
    args = parse_options(
        EvalOptions, argv, prog="python -m clampgen.training.eval_shapes", description=__doc__
    )
    torch.set_num_threads(2)
    model, tokenizer = load_shapes_clip(weights=args.weights)
    print(format_report(evaluate(model, tokenizer, args.n, args.seed, args.augment)))


if __name__ == "__main__":
    main()
