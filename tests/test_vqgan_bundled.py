"""The shipped shapes VQGAN (clampgen/models/weights/shapes_vqgan.*): the `vqgan` generator's
default, read through the taming loader, judged on held-out scenes by the judges that did not
train it. Its card (VQGAN_CARD.md) reports 33.2 dB, shape judge 97.8 % on 500 scenes at 128 px."""

import torch
from PIL import Image

from clampgen.config import GenerateConfig
from clampgen.generators import build_generator, initialise
from clampgen.models import shapes_data
from clampgen.models.shapes_vqgan import SHAPES_VQGAN_CHECKPOINT, SHAPES_VQGAN_CONFIG
from clampgen.training.eval_vqgan import evaluate, psnr, save_grid
from clampgen.vqgan import VQGANImage, load_vqgan


def test_the_vqgan_generator_without_files_is_the_bundled_model(caplog):
    with caplog.at_level("INFO"):
        gen = build_generator(GenerateConfig(generator="vqgan", size=(64, 64)), "cpu")
    assert isinstance(gen, VQGANImage) and "bundled shapes VQGAN" in caplog.text
    bundled = load_vqgan(SHAPES_VQGAN_CONFIG, SHAPES_VQGAN_CHECKPOINT).state_dict()
    assert all(torch.equal(v, bundled[k]) for k, v in gen.model.state_dict().items())
    assert tuple(gen.z.shape) == (1, 16, 8, 8)  # factor 8, embed_dim 16


def test_bundled_vqgan_reconstructs_held_out_scenes():
    model = load_vqgan(SHAPES_VQGAN_CONFIG, SHAPES_VQGAN_CHECKPOINT)
    figures = evaluate(model, n=24, sizes=(128,))[128]
    assert figures["psnr_mean"] > 31
    assert figures["shape_judge_recon"] >= 90 and figures["background_recon"] == 100
    assert figures["out_of_range"] < 0.01


def test_init_file_starts_the_vqgan_at_the_image(tmp_path):
    """--init FILE through the generator: the file's encoding decodes back to the scene."""
    scene = shapes_data.sample_scenes(1, torch.Generator().manual_seed(3))
    image = shapes_data.render(scene, size=128)  # (1, 3, 128, 128)
    path = tmp_path / "scene.png"
    Image.fromarray((image[0].permute(1, 2, 0) * 255).round().byte().numpy()).save(path)
    gen = build_generator(GenerateConfig(generator="vqgan", size=(128, 128)), "cpu")
    start = initialise(gen, str(path), torch.Generator().manual_seed(0))
    assert psnr(start.clamp(0, 1), image).item() > 25


def test_grid_has_an_originals_and_a_reconstructions_row_per_size(tmp_path):
    model = load_vqgan(SHAPES_VQGAN_CONFIG, SHAPES_VQGAN_CHECKPOINT)
    save_grid(model, tmp_path / "grid.png", n=3, sizes=(32, 16))
    assert Image.open(tmp_path / "grid.png").size == (3 * 34 + 2, 4 * 34 + 2)  # 2 px padding
