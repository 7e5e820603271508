"""clampgen.judges: the world's captions read back, distractor captions, the judges' scores on
rendered scenes (known answers), the held-out CLIP, and what a run records in judged.csv."""

import json

import open_clip
import pytest
import torch

from clampgen.clip_loader import TINY_MODEL, load_clip, register_tiny_model
from clampgen.config import GenerateConfig
from clampgen.cutouts import eval_views
from clampgen.judges import (
    Judges,
    Scene,
    check_judge,
    distractors,
    judge_scene,
    judged_prompts,
    load_judges,
    parse_scene,
    resolve_judge,
)
from clampgen.models import shapes_data as sd
from clampgen.models.judge import load_shape_judge
from clampgen.rundir import JUDGED, read_csv_columns


def _scenes(n, seed=0):
    return sd.sample_scenes(n, torch.Generator().manual_seed(seed))


def test_every_caption_of_the_world_is_read_back():
    """The world's own captions (every attribute mention pattern) parse to the scene they name."""
    g = torch.Generator().manual_seed(1)
    scenes = _scenes(300)
    mentions = sd.sample_mentions(scenes, g)
    for i, text in enumerate(sd.captions(scenes, mentions)):
        scene = parse_scene(text)
        assert scene is not None and scene.caption() == text, text
        m = dict(zip(sd.ATTRIBUTES, mentions[i].tolist()))
        assert scene.count == int(scenes.count[i])
        if m["shape"]:
            assert scene.shape == sd.SHAPES[scenes.shape[i]]
        if m["colour"]:
            assert scene.colour == sd.COLOURS[scenes.colour[i]]
        if m["background"]:
            assert scene.background == sd.COLOURS[scenes.background[i]]


@pytest.mark.parametrize(
    "text, scene",
    [
        ("A yellow star on a black background.", Scene("star", 1, "yellow", "black")),
        ("an orange circle on an purple background", Scene("circle", 1, "orange", "purple")),
        ("blue stripes on a white background", Scene("stripes", 1, "blue", "white")),
        (
            "a large green triangle on a white background",
            Scene("triangle", 1, "green", "white", "large"),
        ),
    ],
)
def test_prompts_in_the_vocabulary(text, scene):
    assert parse_scene(text) == scene


@pytest.mark.parametrize(
    "text",
    [
        "a watercolor lighthouse",
        "a red circle on a red background",  # the world never draws that
        "a red circle on a blue background with a moon",
        "a teal circle",
        "",
    ],
)
def test_prompts_outside_the_vocabulary(text):
    assert parse_scene(text) is None


def test_world_distractors_swap_one_attribute_or_the_two_colours():
    found = distractors("a red circle on a blue background")
    # 7 other shapes, 8 other shape colours and 8 other backgrounds (neither red nor blue), 1 swap
    assert len(found) == 7 + 8 + 8 + 1 == len(set(found))
    assert "a blue circle on a red background" in found
    assert (
        "a red star on a blue background" in found and "red stripes on a blue background" in found
    )
    assert "a red circle on a blue background" not in found
    assert all(parse_scene(t) is not None for t in found)


def test_other_prompts_get_their_colour_and_shape_words_swapped():
    found = distractors("A red lighthouse under a blue sky")
    assert "a blue lighthouse under a red sky" in found  # the binding swap
    assert "a green lighthouse under a blue sky" in found
    assert distractors("a watercolor lighthouse") == []  # nothing to swap: no R-precision


def test_judged_prompts_are_the_last_phase_positive_texts():
    assert judged_prompts("a red circle:1 | blurry:-1 ^ a star | a moon:0.5") == [
        "a star",
        "a moon",
    ]


@pytest.fixture(scope="module")
def world_judges():
    return Judges(load_shape_judge())


def test_world_judges_on_a_rendered_scene(world_judges):
    """A rendered scene scores what its pixels say: the background is the most common colour,
    the shape colour share is the share of pixels nearest it (counted here directly)."""
    scenes = _scenes(64, seed=5)
    images = sd.render(scenes, size=64)
    right = 0
    for i in range(8):
        names = (sd.SHAPES[scenes.shape[i]], sd.COLOURS[scenes.colour[i]])
        s = Scene(names[0], 1, names[1], sd.COLOURS[scenes.background[i]])
        image = images[i : i + 1]
        scores = world_judges.for_prompt(s.caption())(image)
        nearest = ((image[0].permute(1, 2, 0)[..., None, :] - sd.PALETTE) ** 2).sum(-1).argmin(-1)
        share = (nearest == scenes.colour[i]).float().mean().item()
        assert scores["colour_share"] == pytest.approx(share)
        assert scores["background_ok"] == 1.0 and scores["clean"] > 0.9
        assert scores["judge_sim"] is None and scores["judge_rprec"] is None
        verdict = judge_scene(image, s.shape, s.colour, s.background, world_judges.shape_judge)
        assert verdict["shape_prob"] == pytest.approx(scores["shape_prob"])
        right += verdict["shape_ok"]
    assert right >= 6  # the judge's accuracy on clean renders is above 90 % (test_judge.py)


def test_grey_noise_scores_low_on_every_world_judge(world_judges):
    g = torch.Generator().manual_seed(0)
    noise = (0.5 + 0.25 * torch.randn(1, 3, 64, 64, generator=g)).clamp(0, 1)
    scores = world_judges.for_prompt("a red circle on a blue background")(noise)
    assert scores["background_ok"] == 0.0 and scores["clean"] < 0.05
    assert scores["colour_share"] < 0.2


def test_prompts_outside_the_world_get_empty_world_scores_and_a_note(world_judges):
    judge = world_judges.for_prompt("a watercolor lighthouse")
    assert judge(torch.rand(1, 3, 32, 32)) == dict.fromkeys(JUDGED)
    assert "not a caption of the world" in judge.notes["world"]
    partial = world_judges.for_prompt("two red circles")(torch.rand(1, 3, 32, 32))
    assert partial["shape_prob"] is not None and partial["colour_share"] is not None
    assert partial["background_ok"] is None and partial["clean"] is None  # no background named


@pytest.fixture(scope="module")
def tiny_clip():
    return load_clip(register_tiny_model(), "", "cpu")


def test_held_out_clip_scores(tiny_clip):
    judges = Judges(load_shape_judge(), tiny_clip, "held-out CLIP: clampgen-tiny")
    judge = judges.for_prompt("a red circle on a blue background")
    image = sd.render(_scenes(1), size=48)
    scores = judge(image)
    texts = judge.captions[0]
    views = eval_views(image, tiny_clip.input_size)
    views = torch.cat([views, views.flip(-1)])  # the fixed views and their mirror images
    sims = (tiny_clip.encode_image(views) @ tiny_clip.encode_text(texts).T).mean(0)
    assert scores["judge_sim"] == pytest.approx(sims[0].item(), abs=1e-5)
    assert scores["judge_rprec"] == float(sims[0] > sims[1:].max())
    assert len(texts) == 25 and scores["shape_prob"] is not None  # world judges too


def test_the_guide_is_refused_as_judge():
    with pytest.raises(ValueError, match="did not guide"):
        check_judge(GenerateConfig(model="shapes", judge_model="shapes"))
    with pytest.raises(ValueError, match="did not guide"):
        check_judge(GenerateConfig(model=f"shapes,{TINY_MODEL}", judge_model=TINY_MODEL))
    check_judge(GenerateConfig(model="shapes", judge_model=TINY_MODEL))  # another model: fine
    with pytest.raises(ValueError, match="unknown model"):
        check_judge(GenerateConfig(model="shapes", judge_model="no-such-model"))


def test_auto_judge_is_another_cached_model_or_none(tiny_clip, tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    shapes = load_clip("shapes", "", "cpu")
    model, _, note = resolve_judge(GenerateConfig(), [shapes])
    assert model is None and "bundled shapes model" in note and "\n" not in note
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    model, _, note = resolve_judge(GenerateConfig(), [tiny_clip])
    assert model is None and "no cached open_clip weights" in note
    weights = tmp_path / "tiny.pt"
    torch.save(tiny_clip.model.state_dict(), weights)
    tags = {"judgetag": {"file": str(weights)}}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY_MODEL, tags)  # no public API
    model, tag, note = resolve_judge(GenerateConfig(), [tiny_clip])
    assert (model, tag) == (TINY_MODEL, "judgetag") and "cached" in note
    judges = load_judges(GenerateConfig(), [tiny_clip])
    assert judges.clip is not None and judges.clip.pretrained == "judgetag"
    assert resolve_judge(GenerateConfig(judge_model="none"), [tiny_clip])[0] is None


def test_a_run_records_judged_scores_at_every_eval_step(tmp_path):
    from clampgen.cli import main

    out = tmp_path / "run"
    argv = ["a yellow star on a black background", "--model", "shapes", "--size", "32"]
    argv += ["--steps", "4", "--eval-every", "2", "--cutn", "2", "--seed", "0", "--no-progress"]
    assert main([*argv, "--judge-model", TINY_MODEL, "--out", str(out)]) == 0
    judged = read_csv_columns(out / "judged.csv")
    assert judged["step"] == [0.0, 2.0, 4.0] and set(judged) == {"step", *JUDGED}
    run = json.loads((out / "run.json").read_text())
    assert run["judged"]["step"] == 4
    for name in JUDGED:
        assert run["judged"][name] == pytest.approx(judged[name][-1], rel=1e-5)
    assert "judges 'a yellow star on a black background'" in run["judges"]["world"]
    assert TINY_MODEL in run["judges"]["clip"]
