"""The bundled `shapes` VQGAN: a taming-transformers VQModel trained on the shapes world.

    from clampgen.models.shapes_vqgan import SHAPES_VQGAN_CONFIG, SHAPES_VQGAN_CHECKPOINT
    from clampgen.vqgan import load_vqgan
    model = load_vqgan(SHAPES_VQGAN_CONFIG, SHAPES_VQGAN_CHECKPOINT)

It ships as a taming `.yaml` and a `.ckpt` whose `state_dict` has taming's key names, and loads
through the same loader as vqgan_imagenet_f16_16384 (clampgen.vqgan). `--generator vqgan` with no
--vqgan-config/--vqgan-checkpoint uses it. It knows only the shapes world (flat colours, eight
shapes): clampgen/models/weights/VQGAN_CARD.md has its recipe and held-out figures;
`python -m clampgen.training.train_vqgan` reproduces it.
"""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).with_name("weights")
SHAPES_VQGAN_CONFIG = WEIGHTS_DIR / "shapes_vqgan.yaml"
SHAPES_VQGAN_CHECKPOINT = WEIGHTS_DIR / "shapes_vqgan.ckpt"
