import pytest
import torch

from clampgen.generators import (
    FourierImage,
    PixelImage,
    builtin_init,
    initialise,
    list_generators,
    load_image,
    make_generator,
)


@pytest.mark.parametrize("name", ["pixel", "fft"])
@pytest.mark.parametrize("hw", [(16, 16), (12, 20), (15, 9)])
def test_cardinality(name, hw):
    gen = make_generator(name, height=hw[0], width=hw[1])
    assert gen().shape == (1, 3, *hw)


@pytest.mark.parametrize("name", ["pixel", "fft"])
def test_set_image_round_trip(name):
    image = torch.rand(1, 3, 12, 18, generator=torch.Generator().manual_seed(0))
    gen = make_generator(name, height=12, width=18)
    gen.set_image(image)
    torch.testing.assert_close(gen(), image, atol=1e-5, rtol=0)


def test_fft_default_is_mid_gray_and_noise_is_smooth():
    gen = FourierImage(height=32, width=32)
    torch.testing.assert_close(gen(), torch.full((1, 3, 32, 32), 0.5))
    gen.init_noise(torch.Generator().manual_seed(0))
    img = gen()
    # 1/f spectrum: neighbouring pixels are strongly correlated, unlike white noise
    a, b = img[..., :, :-1].flatten(), img[..., :, 1:].flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.5


def test_fft_gradient_reaches_spectrum():
    gen = FourierImage(height=8, width=8)
    gen().sum().backward()
    assert gen.spectrum.grad is not None and gen.spectrum.grad.abs().sum() > 0


def test_pixel_noise_init_puts_some_values_out_of_range():
    gen = PixelImage(height=64, width=64)
    gen.init_noise(torch.Generator().manual_seed(0), scale=2.0)
    oor = ((gen() < 0) | (gen() > 1)).float().mean()
    assert 0.1 < oor < 0.5


@pytest.mark.parametrize("init", ["noise", "uniform", "gray", "gradient"])
@pytest.mark.parametrize("name", ["pixel", "fft"])
def test_initialise_deterministic(name, init):
    def run():
        gen = make_generator(name, height=10, width=14)
        return initialise(gen, init, torch.Generator().manual_seed(5))

    a, b = run(), run()
    assert torch.equal(a, b) and a.shape == (1, 3, 10, 14)


def test_builtin_inits_in_range():
    for name in ("gray", "gradient"):
        img = builtin_init(name, height=6, width=9)
        assert img.shape == (1, 3, 6, 9) and img.min() >= 0 and img.max() <= 1


def test_load_image_cover_crop(tmp_path):
    from PIL import Image

    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.save(tmp_path / "red.png")
    img = load_image(tmp_path / "red.png", height=16, width=16)
    assert img.shape == (1, 3, 16, 16)
    torch.testing.assert_close(img[0, :, 8, 8], torch.tensor([1.0, 0, 0]))
    gen = make_generator("fft", height=16, width=16)
    out = initialise(gen, str(tmp_path / "red.png"), torch.Generator())
    torch.testing.assert_close(out, img, atol=1e-5, rtol=0)


def test_unknown_generator():
    with pytest.raises(ValueError, match="pixel, fft, vqgan"):
        make_generator("stylegan", height=8, width=8)
    assert list_generators() == ["pixel", "fft", "vqgan"]
