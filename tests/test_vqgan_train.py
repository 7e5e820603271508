"""The shapes VQGAN's training (clampgen.training.train_vqgan) on a few steps of a tiny config:
deterministic from its seed, its files read by the project's taming-format loader, its codebook
on the unit sphere so the loader's Euclidean lookup picks the training's cosine codes."""

import torch

from clampgen.training.eval_vqgan import evaluate, reconstruct
from clampgen.training.train_vqgan import VQGANTrainConfig, ddconfig, main, quantize_forward, train
from clampgen.vqgan import load_vqgan

TINY = dict(
    steps=3,
    batch=2,
    crop=32,
    sizes="32,48",
    ch=32,
    ch_mult="1,1",
    z_channels=8,
    embed_dim=4,
    n_embed=16,
    threads=1,
    eval_every=0,
    eval_n=4,
    restart_every=2,
    warmup=1,
)


def test_training_is_deterministic_from_its_seed():
    a, b = (train(VQGANTrainConfig(**TINY)).state_dict() for _ in range(2))
    c = train(VQGANTrainConfig(**{**TINY, "seed": 1})).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_saved_files_load_through_the_taming_loader_and_pick_the_training_codes(tmp_path):
    main([*[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()], "--out", str(tmp_path)])
    model = load_vqgan(tmp_path / "shapes_vqgan.yaml", tmp_path / "shapes_vqgan.ckpt")
    codebook = model.quantize.codebook
    torch.testing.assert_close(codebook.norm(dim=1), torch.ones(16))  # stored normalised
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        _, _, cosine_codes, _, _ = quantize_forward(model, images * 2 - 1)
    _, euclidean_codes = reconstruct(model, images)
    assert torch.equal(cosine_codes, euclidean_codes.flatten())
    figures = evaluate(model, n=4, sizes=(32,))[32]
    assert 0 <= figures["code_share"] <= 1 and figures["perplexity"] >= 1
    assert ddconfig(VQGANTrainConfig(**TINY))["ch_mult"] == [1, 1]
