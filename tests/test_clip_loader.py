import open_clip
import pytest
import torch

from clampgen.clip_loader import (
    AUTO_MODEL,
    TINY_MODEL,
    cached_weights,
    hub_files,
    load_clip,
    register_tiny_model,
    resolve_model,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small architecture with random weights saved to a file: what a user's download is."""
    register_tiny_model()
    torch.manual_seed(123)
    model = open_clip.create_model(TINY_MODEL)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    return path, model.state_dict()


def test_local_checkpoint_loads_through_open_clip(checkpoint):
    path, state = checkpoint
    bundle = load_clip(TINY_MODEL, str(path), "cpu")
    assert bundle.pretrained == str(path) and bundle.name == TINY_MODEL
    for key, value in bundle.model.state_dict().items():
        torch.testing.assert_close(value, state[key])
    assert not any(p.requires_grad for p in bundle.model.parameters())


def test_bundle_encoders(checkpoint):
    bundle = load_clip(TINY_MODEL, str(checkpoint[0]), "cpu")
    assert bundle.input_size == (32, 32)
    img = bundle.encode_image(torch.rand(3, 3, 32, 32))
    txt = bundle.encode_text(["a red circle", "a blue square"])
    assert img.shape == (3, 32) and txt.shape == (2, 32)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(3))
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    torch.testing.assert_close(bundle.mean, mean)


def test_cli_runs_with_local_checkpoint(checkpoint, tmp_path):
    from clampgen.cli import main

    out = tmp_path / "run"
    assert (
        main(
            [
                "a red circle",
                "--model",
                TINY_MODEL,
                "--pretrained",
                str(checkpoint[0]),
                "--size",
                "32",
                "--steps",
                "2",
                "--cutn",
                "2",
                "--seed",
                "0",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (out / "final.png").exists()


def test_auto_on_cpu_without_cache_is_shapes_with_no_network(monkeypatch, tmp_path):
    """On CPU `auto` never asks the Hub: an empty cache means the bundled model, and why."""
    import huggingface_hub
    import huggingface_hub.constants as c

    asked = []
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *a, **k: asked.append(a))
    assert cached_weights(*AUTO_MODEL) is None
    name, _, reason = resolve_model("auto", "", "cpu")
    assert name == "shapes" and "not in the Hugging Face cache" in reason
    assert "on CPU" in reason and "\n" not in reason and not asked


def test_hub_files_follow_open_clip():
    """Where a tag's weights live on the Hub, safetensors first, as open_clip looks for them."""
    assert hub_files(*AUTO_MODEL) == (
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"],
    )
    repo, names = hub_files("ViT-B-32", "openai")
    assert names[-1] == "open_clip_pytorch_model.bin" and names[0].endswith(".safetensors")
    assert hub_files("ViT-B-32", "no_such_tag") is None


def test_tag_loads_with_the_tags_activation(checkpoint, monkeypatch):
    """A tag's weights load as a file, and the tag's QuickGELU comes along (openai tags)."""
    path, state = checkpoint
    tags = {"gelu": {"file": str(path)}, "quickgelu": {"file": str(path), "quick_gelu": True}}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY_MODEL, tags)  # no public API
    for tag, quick in (("gelu", False), ("quickgelu", True)):
        bundle = load_clip(TINY_MODEL, tag, "cpu")
        kinds = {type(m).__name__ for m in bundle.model.modules()}
        assert ("QuickGELU" in kinds) == quick and bundle.pretrained == tag
        torch.testing.assert_close(bundle.model.state_dict()["logit_scale"], state["logit_scale"])


def test_unknown_model_and_tag():
    with pytest.raises(ValueError, match="unknown model 'ViT-Q-99'"):
        resolve_model("ViT-Q-99", "")
    with pytest.raises(ValueError, match="neither a file nor a known tag"):
        load_clip("ViT-B-32", "no_such_tag", "cpu")


@pytest.mark.parametrize("kind", ["corrupt", "other_architecture"])
def test_bad_pretrained_file_is_one_line_exit_2(checkpoint, tmp_path, capsys, kind):
    """A corrupt file, or a checkpoint of another architecture: one line, exit 2, no run dir."""
    from clampgen.cli import main

    bad = tmp_path / "bad.pt"
    if kind == "corrupt":
        bad.write_bytes(checkpoint[0].read_bytes()[:1000])
        model = TINY_MODEL
    else:
        bad = checkpoint[0]  # the tiny model's weights offered to the shapes architecture
        model = "shapes"
    out = tmp_path / "run"
    assert (
        main(
            [
                "a red circle",
                "--model",
                model,
                "--pretrained",
                str(bad),
                "--steps",
                "1",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a usable checkpoint" in err[0] and "Traceback" not in err[0]
    assert not out.exists()
