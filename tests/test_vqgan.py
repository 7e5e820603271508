"""The vqgan generator with a tiny randomly initialised VQGAN written in taming-transformers'
format (a yaml with taming's layout, a Lightning-style .ckpt whose state_dict has taming's keys)."""

import sys
import types

import pytest
import torch
import torch.nn.functional as F
import yaml

from clampgen.clamps import clamp_with_grad
from clampgen.vqgan import (
    IMAGENET_F16,
    VQGANImage,
    load_vqgan,
    load_vqgan_config,
    make_vqgan_generator,
    random_vqgan,
    vector_quantize,
    vqgan_size,
)
from clampgen.vqgan_model import VQModel

# f = 2**(len(ch_mult) - 1) = 4; attention where the config's resolution (16) has shrunk to 4
TINY = dict(
    double_z=False,
    z_channels=4,
    resolution=16,
    in_channels=3,
    out_ch=3,
    ch=32,
    ch_mult=[1, 1, 2],
    num_res_blocks=1,
    attn_resolutions=[4],
    dropout=0.0,
)
# taming's configs/*.yaml layout, as shipped with vqgan_imagenet_f16_16384 (sizes shrunk)
LOSS = {
    "target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
    "params": {
        "disc_conditional": False,
        "disc_in_channels": 3,
        "disc_start": 0,
        "disc_weight": 0.75,
        "codebook_weight": 1.0,
    },
}


def write_yaml(path, n_embed=16, embed_dim=4, target="taming.models.vqgan.VQModel", dd=TINY):
    cfg = {
        "model": {
            "base_learning_rate": 4.5e-06,
            "target": target,
            "params": {
                "embed_dim": embed_dim,
                "n_embed": n_embed,
                "ddconfig": dict(dd),
                "lossconfig": LOSS,
            },
        }
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def write_ckpt(path, state_dict, lightning=True):
    """A checkpoint laid out as PyTorch Lightning 1.x saved taming's: metadata, a callback
    object of a class from pytorch_lightning (absent at load time), optimizer states."""
    ckpt = {"state_dict": dict(state_dict)}
    if not lightning:
        torch.save(ckpt, path)
        return path
    names = (
        "pytorch_lightning",
        "pytorch_lightning.callbacks",
        "pytorch_lightning.callbacks.model_checkpoint",
    )
    module = types.ModuleType(names[-1])
    ModelCheckpoint = type("ModelCheckpoint", (), {"__module__": names[-1]})
    module.ModelCheckpoint = ModelCheckpoint
    callback = ModelCheckpoint()
    callback.best_model_path = "logs/last.ckpt"
    sys.modules.update({n: types.ModuleType(n) for n in names[:-1]}, **{names[-1]: module})
    try:
        ckpt.update(
            {
                "epoch": 3,
                "global_step": 1234,
                "pytorch-lightning_version": "1.0.8",
                "callbacks": {ModelCheckpoint: {"best_model_score": None}, "cb": callback},
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 4.5e-6}]}],
                "lr_schedulers": [],
            }
        )
        torch.save(ckpt, path)
    finally:
        for n in names:
            del sys.modules[n]
    return path


def tiny_state_dict(n_embed=16, embed_dim=4, seed=0, gumbel=False):
    torch.manual_seed(seed)
    sd = VQModel(TINY, n_embed, embed_dim, gumbel=gumbel).state_dict()
    sd["loss.logvar"] = torch.zeros(())  # taming's loss keys: ignored
    sd["loss.discriminator.main.0.weight"] = torch.randn(8, 3, 4, 4)
    return sd


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions: one thread is faster, and on a busy machine by far (no OpenMP waits)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def files(tmp_path):
    return (
        write_yaml(tmp_path / "tiny.yaml"),
        write_ckpt(tmp_path / "tiny.ckpt", tiny_state_dict()),
    )


@pytest.fixture
def gen(files):
    return make_vqgan_generator(*files, width=16, height=16)


def test_taming_key_names():
    """Keys of the real f16 config (vqgan_imagenet_f16_16384.yaml), read off taming's code."""
    with torch.device("meta"):
        sd = VQModel(IMAGENET_F16, n_embed=16384, embed_dim=256).state_dict()
    for key, shape in {
        "encoder.conv_in.weight": (128, 3, 3, 3),
        "encoder.down.2.block.0.nin_shortcut.weight": (256, 128, 1, 1),
        "encoder.down.3.downsample.conv.weight": (256, 256, 3, 3),
        "encoder.down.4.attn.1.q.weight": (512, 512, 1, 1),
        "encoder.mid.attn_1.proj_out.bias": (512,),
        "encoder.conv_out.weight": (256, 512, 3, 3),
        "quant_conv.weight": (256, 256, 1, 1),
        "quantize.embedding.weight": (16384, 256),
        "post_quant_conv.bias": (256,),
        "decoder.conv_in.weight": (512, 256, 3, 3),
        "decoder.mid.block_2.norm2.weight": (512,),
        "decoder.up.4.attn.2.k.weight": (512, 512, 1, 1),
        "decoder.up.3.block.0.nin_shortcut.weight": (256, 512, 1, 1),
        "decoder.up.1.upsample.conv.weight": (128, 128, 3, 3),
        "decoder.up.0.block.2.conv2.weight": (128, 128, 3, 3),
        "decoder.conv_out.weight": (3, 128, 3, 3),
    }.items():
        assert tuple(sd[key].shape) == shape, key
    assert "decoder.up.0.upsample.conv.weight" not in sd
    assert "encoder.down.4.downsample.conv.weight" not in sd
    assert not any("temb" in k for k in sd)
    assert not any("attn" in k for k in sd if k.startswith(("decoder.up.3", "encoder.down.3")))


def test_config_parsing(files):
    cfg = load_vqgan_config(files[0])
    assert cfg["n_embed"] == 16 and cfg["embed_dim"] == 4
    assert cfg["ddconfig"]["ch_mult"] == [1, 1, 2]
    assert cfg["target"] == "taming.models.vqgan.VQModel" and not cfg["gumbel"]


def test_decode_shape_hand_computed(gen):
    """Latent 4x4 with f = 2**(3-1) = 4 -> a 16x16 image; z is the only trainable parameter."""
    assert gen.z.shape == (1, 4, 4, 4)
    assert gen().shape == (1, 3, 16, 16) and (gen.height, gen.width) == (16, 16)
    assert [p for p in gen.parameters() if p.requires_grad] == [gen.z]


def test_size_rounds_down_to_factor(files):
    assert vqgan_size(height=13, width=18, factor=4) == (12, 16)
    assert vqgan_size(height=40, width=3, factor=16) == (32, 16)
    g = make_vqgan_generator(*files, width=18, height=13)
    assert g().shape == (1, 3, 12, 16) and g.z.shape == (1, 4, 3, 4)


def test_output_not_clamped_hand_computed(gen):
    """conv_out = 0 * h + b gives decoder output b, so forward() = (b + 1) / 2 exactly."""
    conv = gen.model.decoder.conv_out
    conv.weight.zero_()
    conv.bias.copy_(torch.tensor([-3.0, 0.0, 1.0]))
    out = gen()
    want = torch.tensor([-1.0, 0.5, 1.0])[None, :, None, None].expand(1, 3, 16, 16)
    torch.testing.assert_close(out, want)
    assert out.min() < 0  # the loop's clamp, not the generator, brings it into [0, 1]


def test_forward_is_decode_of_nearest_codes(gen):
    gen.init_noise(torch.Generator().manual_seed(0))
    with torch.no_grad():
        noise = torch.randn(gen.z.shape, generator=torch.Generator().manual_seed(1))
        gen.z.add_(0.01 * noise)  # off the codebook, same nearest code
    codebook = gen.model.quantize.codebook
    d = torch.cdist(gen.z.detach().flatten(2).transpose(1, 2), codebook[None])  # (1, 16, n_embed)
    z_q = codebook[d.argmin(-1)].transpose(1, 2).reshape(gen.z.shape)
    torch.testing.assert_close(gen(), (gen.model.decode(z_q) + 1) / 2)


def test_straight_through_gradient_reaches_z(gen):
    """dL/dz equals dL/dz_q: the quantiser passes the gradient unchanged."""
    gen.init_noise(torch.Generator().manual_seed(1))
    weight = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    (gen() * weight).sum().backward()
    z_q = gen.z.detach().clone().requires_grad_()  # on the codebook: its own nearest code
    ((gen.model.decode(z_q) + 1) / 2 * weight).sum().backward()
    assert gen.z.grad.abs().sum() > 0
    torch.testing.assert_close(gen.z.grad, z_q.grad)


def test_vector_quantize_hand_computed():
    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.0]])
    x = torch.tensor([[0.2, 0.1], [0.9, 2.0], [-1.2, 0.3]], requires_grad=True)
    q = vector_quantize(x, codebook)
    assert q.tolist() == codebook.tolist()
    q.backward(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    assert x.grad.tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]


def test_z_kept_inside_codebook_range(gen):
    """As the notebook's z.copy_(z.maximum(z_min).minimum(z_max)): a plain clamp, no gradient."""
    codebook = gen.model.quantize.codebook
    with torch.no_grad():
        gen.z.fill_(100.0)
        gen.z[0, :, 0, 0] = -100.0
    gen()
    torch.testing.assert_close(gen.z[0, :, 1, 1], codebook.amax(0))
    torch.testing.assert_close(gen.z[0, :, 0, 0], codebook.amin(0))


def test_init_noise_draws_codebook_entries_from_rng_only(gen):
    state = torch.random.get_rng_state()
    gen.init_noise(torch.Generator().manual_seed(5))
    first = gen.z.detach().clone()
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    rows = first.flatten(2).transpose(1, 2)[0]  # (16, 4)
    codebook = gen.model.quantize.codebook
    assert all((codebook == row).all(1).any() for row in rows)
    gen.init_noise(torch.Generator().manual_seed(5))
    assert torch.equal(gen.z, first)


def test_set_image_encodes_to_codebook_entries(gen):
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    gen.set_image(image)
    codebook = gen.model.quantize.codebook
    rows = gen.z.detach().flatten(2).transpose(1, 2)[0]
    assert all((codebook == row).all(1).any() for row in rows)
    torch.testing.assert_close(gen.z, gen.model.encode(image * 2 - 1))


def test_optimisation_through_clamp_reduces_loss(gen):
    """The notebook's loop in miniature: Adam on z, the image through clamp_with_grad, an MSE
    target (a stand-in for CLIP): the loss goes down."""
    target = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    gen.init_noise(torch.Generator().manual_seed(0))
    opt = torch.optim.Adam([gen.z], lr=0.1)
    losses = []
    for _ in range(10):
        loss = F.mse_loss(clamp_with_grad(gen(), 0.0, 1.0), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < losses[0]


def test_loads_without_lightning_and_ignores_loss_keys(files):
    model = load_vqgan(*files)
    assert not any(k.startswith("loss.") for k in model.state_dict())
    with pytest.raises(ModuleNotFoundError, match="pytorch_lightning"):
        torch.load(files[1], weights_only=False)  # what a plain load would need


def test_gumbel_and_first_stage_checkpoints(tmp_path):
    cfg = write_yaml(tmp_path / "g.yaml", target="taming.models.vqgan.GumbelVQ")
    ckpt = write_ckpt(tmp_path / "g.ckpt", tiny_state_dict(gumbel=True), lightning=False)
    g = make_vqgan_generator(cfg, ckpt, height=16, width=16)
    g.set_image(torch.full((1, 3, 16, 16), 0.5))
    assert g().shape == (1, 3, 16, 16)
    # a Net2NetTransformer (e.g. sflckr): the VQGAN is its first_stage_model
    cfg = {
        "model": {
            "target": "taming.models.cond_transformer.Net2NetTransformer",
            "params": {
                "first_stage_config": {
                    "target": "taming.models.vqgan.VQModel",
                    "params": {"embed_dim": 4, "n_embed": 16, "ddconfig": TINY},
                }
            },
        }
    }
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
    sd = {f"first_stage_model.{k}": v for k, v in tiny_state_dict().items()}
    sd["transformer.tok_emb.weight"] = torch.zeros(16, 8)
    write_ckpt(tmp_path / "t.ckpt", sd, lightning=False)
    g = make_vqgan_generator(tmp_path / "t.yaml", tmp_path / "t.ckpt", height=16, width=16)
    assert g().shape == (1, 3, 16, 16)


def test_missing_files(files, tmp_path):
    with pytest.raises(FileNotFoundError, match="VQGAN config not found"):
        make_vqgan_generator(tmp_path / "nope.yaml", files[1], height=16, width=16)
    with pytest.raises(FileNotFoundError, match="VQGAN checkpoint not found"):
        make_vqgan_generator(files[0], tmp_path / "nope.ckpt", height=16, width=16)


def test_bad_yaml(tmp_path):
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_vqgan_config(tmp_path / "bad.yaml")
    (tmp_path / "flat.yaml").write_text("n_embed: 16\n")
    with pytest.raises(ValueError, match="taming-transformers' layout"):
        load_vqgan_config(tmp_path / "flat.yaml")
    kl = "ldm.models.autoencoder.AutoencoderKL"
    with pytest.raises(ValueError, match=f"unsupported model target '{kl}'"):
        load_vqgan_config(write_yaml(tmp_path / "kl.yaml", target=kl))
    dd = {k: v for k, v in TINY.items() if k != "ch_mult"}
    with pytest.raises(ValueError, match="missing ddconfig.ch_mult"):
        load_vqgan_config(write_yaml(tmp_path / "short.yaml", dd=dd))


def test_unknown_checkpoint(files, tmp_path):
    write_ckpt(tmp_path / "clip.ckpt", {"visual.conv1.weight": torch.zeros(2, 3, 1, 1)})
    with pytest.raises(ValueError, match="not a taming-transformers VQGAN checkpoint"):
        load_vqgan(files[0], tmp_path / "clip.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ValueError, match="not a loadable PyTorch checkpoint"):
        load_vqgan(files[0], tmp_path / "junk.ckpt")
    torch.save({"epoch": 1}, tmp_path / "meta.ckpt")
    with pytest.raises(ValueError, match="no 'state_dict' of tensors"):
        load_vqgan(files[0], tmp_path / "meta.ckpt")


def test_mismatched_checkpoint_names_keys_and_config(files, tmp_path):
    """An f16_1024 checkpoint with the f16_16384 yaml, in miniature: n_embed 32 vs 16."""
    ckpt = write_ckpt(tmp_path / "big.ckpt", tiny_state_dict(n_embed=32))
    with pytest.raises(ValueError) as err:
        load_vqgan(files[0], ckpt)
    msg = str(err.value)
    assert "does not match config" in msg and str(files[0]) in msg and "n_embed=16" in msg
    assert "quantize.embedding.weight (32, 4) (config expects (16, 4))" in msg


def test_missing_and_extra_keys(files, tmp_path):
    sd = tiny_state_dict()
    del sd["decoder.conv_out.weight"]
    sd["decoder.up.3.block.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="missing keys: decoder.conv_out.weight") as err:
        load_vqgan(files[0], write_ckpt(tmp_path / "broken.ckpt", sd))
    assert "keys the config has no place for: decoder.up.3.block.0.conv1.weight" in str(err.value)


def test_module_generator_interface(gen):
    assert isinstance(gen, VQGANImage) and isinstance(gen, torch.nn.Module)
    assert next(gen.parameters()) is gen.z  # generators.initialise() takes the device from it


def test_comparison_runs_share_one_loaded_model(files):
    a = make_vqgan_generator(*files, height=16, width=16)
    b = make_vqgan_generator(*files, height=8, width=8)
    assert a.model is b.model and a.z is not b.z


def test_random_vqgan_is_imagenet_f16_sized():
    """The benchmark's stand-in: f16 decoder, latent 2x2 -> 32x32 (the full 512² is for a GPU)."""
    state = torch.random.get_rng_state()
    gen = VQGANImage(random_vqgan(device="meta"), height=32, width=32)  # shapes only
    assert torch.equal(torch.random.get_rng_state(), state)
    assert gen.z.shape == (1, 256, 2, 2)
    assert sum(p.numel() for p in gen.model.decoder.parameters()) > 40_000_000


# --------------------------------------------------------------------------- generate.py end to end


def vqgan_cli(files, out, *extra):
    from clampgen.cli import main

    return main(
        [
            "a red circle",
            "--model",
            "clampgen-tiny",
            "--cutn",
            "2",
            "--no-progress",
            "--generator",
            "vqgan",
            "--vqgan-config",
            str(files[0]),
            "--vqgan-checkpoint",
            str(files[1]),
            "--steps",
            "2",
            "--seed",
            "0",
            "--out",
            str(out),
            *extra,
        ]
    )


def test_generate_cli_end_to_end(files, tmp_path, capsys):
    """Size 34x30 rounds down to 32x28 (f = 4); an --init file goes through the encoder."""
    import json

    from PIL import Image

    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "red.png")
    out = tmp_path / "run"
    assert vqgan_cli(files, out, "--size", "34", "30", "--init", str(tmp_path / "red.png")) == 0
    assert "rounded down to 32x28" in capsys.readouterr().out
    assert Image.open(out / "final.png").size == (32, 28)
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["generator"] == "vqgan"
    assert run["config"]["vqgan_checkpoint"] == str(files[1])


def test_generate_cli_clamp_all_same_init(files, tmp_path):
    """A comparison: every variant starts from the same codebook draw (the A/B fairness rule)."""
    import numpy as np
    from PIL import Image

    from clampgen.clamps import list_clamps

    out = tmp_path / "cmp"
    assert vqgan_cli(files, out, "--size", "16", "--clamp", "all", "--steps", "1") == 0
    first = [np.asarray(Image.open(out / c / "frames" / "step_00000.png")) for c in list_clamps()]
    assert all(np.array_equal(first[0], f) for f in first[1:])


@pytest.mark.parametrize(
    "drop, message",
    [
        ("--vqgan-config", "--vqgan-config is missing"),
        ("--vqgan-checkpoint", "--vqgan-checkpoint is missing"),
    ],
)
def test_generate_cli_missing_vqgan_flag(files, tmp_path, capsys, drop, message):
    from clampgen.cli import main

    argv = [
        "a red circle",
        "--model",
        "clampgen-tiny",
        "--generator",
        "vqgan",
        "--vqgan-config",
        str(files[0]),
        "--vqgan-checkpoint",
        str(files[1]),
        "--out",
        str(tmp_path / "x"),
    ]
    i = argv.index(drop)
    assert main(argv[:i] + argv[i + 2 :]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_generate_cli_mismatched_checkpoint_exit_2(files, tmp_path, capsys):
    ckpt = write_ckpt(tmp_path / "big.ckpt", tiny_state_dict(n_embed=32))
    assert vqgan_cli((files[0], ckpt), tmp_path / "x") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: VQGAN checkpoint") and "does not match config" in err


def test_vqgan_step_compiles_as_one_graph(gen):
    """The whole differentiable step through the decoder (z's in-place range clamp included) is
    one torch.compile graph: no host sync, so CUDA graphs can take it (aot_eager here, on CPU)."""
    from clampgen.clip_loader import load_clip
    from clampgen.config import GenerateConfig
    from clampgen.cutouts import Augment, draw_cutouts
    from clampgen.generators import with_defaults
    from clampgen.keepers import get_keeper
    from clampgen.loop import Guide, Targets, step_forward

    bundle = load_clip("clampgen-tiny", "", "cpu")
    targets = Targets(F.normalize(torch.randn(1, 32), dim=-1), torch.ones(1), torch.zeros(1), ["t"])
    cfg = with_defaults(GenerateConfig(generator="vqgan", cutn=2))
    gen.init_noise(torch.Generator().manual_seed(0))
    draws = (draw_cutouts(2, 3, bundle.input_size, torch.Generator().manual_seed(0)),)
    args = ([Guide(bundle, targets)], cfg, get_keeper("clamp_with_grad"), Augment(), draws, None)
    compiled = torch.compile(step_forward, fullgraph=True, backend="aot_eager", dynamic=False)
    results = []
    for fn in (step_forward, compiled):
        gen.z.grad = None
        loss = fn(gen, *args)[2]
        loss.backward()
        results.append((loss.detach(), gen.z.grad.clone()))
    torch.testing.assert_close(results[1], results[0])
