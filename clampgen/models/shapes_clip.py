"""
The bundled `shapes` CLIP, registered with open_clip so it loads like any other open_clip model.

    from clampgen.models.shapes_clip import load_shapes_clip
    model, tokenizer = load_shapes_clip()            # fp32, eval mode, offline

or through open_clip directly once registered:

    register_shapes_model()
    model, _, preprocess = open_clip.create_model_and_transforms(
        'shapes', pretrained=str(SHAPES_WEIGHTS))
    tokenizer = open_clip.get_tokenizer('shapes')  # SimpleTokenizer with open_clip's bundled vocab

The architecture is open_clip's own CLIP class: a timm image tower (the small CNN of
`shapes_cnn.py`, registered with timm here) and open_clip's text transformer, described by
`shapes.json` beside this file. Images are normalised with open_clip's default
(OpenAI) mean and std, like every open_clip model without a pretrained tag.
"""

from pathlib import Path

import open_clip
import torch

MODEL_NAME = "shapes"
CONFIG_PATH = Path(__file__).with_name("shapes.json")
WEIGHTS_DIR = Path(__file__).with_name("weights")
SHAPES_WEIGHTS = WEIGHTS_DIR / "shapes_clip.safetensors"
SHAPES_JUDGE_WEIGHTS = WEIGHTS_DIR / "shape_judge.safetensors"


MEAN = torch.tensor(open_clip.OPENAI_DATASET_MEAN)[:, None, None]  # (3, 1, 1)
STD = torch.tensor(open_clip.OPENAI_DATASET_STD)[:, None, None]


def normalize(images):
    """[0, 1] images (B, 3, H, W) -> the model's input (open_clip's default, OpenAI's, mean/std)."""
    return (images - MEAN) / STD


def register_shapes_model():
    """Adds the `shapes` config to open_clip's registry (idempotent); returns the model name."""
    from clampgen.models import shapes_cnn  # noqa: F401  registers the `shapes_convnet` tower with timm

    if MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_PATH)
    return MODEL_NAME


def load_shapes_clip(device="cpu", weights=SHAPES_WEIGHTS):
    """The `shapes` model from open_clip's factory with the shipped weights (fp32, eval mode).

    Returns (model, tokenizer). The fp16 weights on disk are cast to the fp32 model on load.
    """
    register_shapes_model()
    model = open_clip.create_model(MODEL_NAME, pretrained=str(weights), device=device)
    return model.eval(), open_clip.get_tokenizer(MODEL_NAME)
