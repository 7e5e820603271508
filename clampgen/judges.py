"""Judges of a run's images that did not guide it.

An image optimised against a CLIP is adversarial to that CLIP (its loss can be gamed: grey noise
that the guide scores well), so comparisons also score the images with models that did not guide
the run (FuseDream's AugCLIP, Otani et al. CVPR 2023 on inflated CLIPScores).

    from clampgen.judges import load_judges
    judges = load_judges(cfg, guide_bundles)   # once per process: a comparison shares it
    judge = judges.for_prompt(cfg.prompt)      # one run's: scene parsed, captions embedded
    scores = judge(image)   # {'shape_prob': 0.93, 'background_ok': 1.0, ..., 'judge_sim': None}

(a) The shapes world's judges (clampgen.models.judge), when the run's prompt is a caption of the
    world (`parse_scene` reads it with the world's own template, shapes_data.describe): the shape
    judge's probability of the named shape, whether the most common palette colour is the named
    background, the share of pixels nearest the named shape colour, and the share of clean pixels
    (within CLEAN_DISTANCE of the background's or the shape's palette colour), as the judged
    steering check (clampgen.steer_check) defines them.
(b) A held-out CLIP (--judge-model, --judge-pretrained; never one of the guides): its cosine
    similarity between the prompt and the image's fixed views (cutouts.eval_views and their
    mirror images), and whether it ranks the prompt above every distractor caption that swaps the
    prompt's attributes (colours, shape, background: ARO/NegCLIP-style hard negatives), the
    R-precision of one relevant caption.
Every score is higher-is-better (rundir.JUDGED names them); a judge that does not apply gives
None, and the judge's `notes` say why, in one line each.
"""

import logging
import re
from dataclasses import dataclass
from functools import cache
from typing import Optional

import torch

from clampgen.clip_loader import cached_weights, load_clip, resolve_model
from clampgen.cutouts import eval_views
from clampgen.guides import model_specs
from clampgen.models import shapes_data
from clampgen.models.judge import colour_shares, judge_shapes, load_shape_judge
from clampgen.prompts import parse_schedule
from clampgen.rundir import JUDGED

log = logging.getLogger(__name__)

CLEAN_DISTANCE = 0.15  # a pixel this close (RGB) to the background or shape colour is clean
# colour words swapped in prompts outside the world (the world's own ten first)
COLOUR_WORDS = shapes_data.COLOURS + ("brown", "cyan", "magenta", "gold", "silver", "violet")


def judge_scene(image, shape, colour, background, shape_judge) -> dict:
    """Judges one image (1, 3, H, W) in [0, 1] against a scene of the world: verdicts and what the
    judges saw.

    background_ok: the most common palette colour is the background; colour_ok: the second most
    common is the shape's colour (strict: noise pixels compete with a small object); colour_top3:
    the shape's colour is among the three most common after the background; shape_ok: the shape
    judge's top class is the prompted shape; shape_prob: its probability of that shape;
    colour_share: the share of pixels nearest the shape's colour; clean: the share within
    CLEAN_DISTANCE of the background's or the shape's palette colour.
    """
    image = image.detach().float().cpu()
    shares = colour_shares(image)[0]
    top = shares.topk(4).indices.tolist()
    probs = judge_shapes(shape_judge, image)[0]
    c = shapes_data.COLOURS.index(colour)
    return {
        "background_ok": shapes_data.COLOURS[top[0]] == background,
        "colour_ok": top[1] == c,
        "colour_top3": c in top[1:] and top[0] != c,
        "shape_ok": shapes_data.SHAPES[probs.argmax()] == shape,
        "judged_shape": shapes_data.SHAPES[probs.argmax()],
        "shape_prob": probs[shapes_data.SHAPES.index(shape)].item(),
        "colour_share": shares[c].item(),
        "clean": clean_share(image, colour, background),
        "colours_seen": ", ".join(f"{shapes_data.COLOURS[i]} {shares[i]:.2f}" for i in top[:3]),
    }


def clean_share(image, colour, background) -> float:
    """The share of pixels of image (1, 3, H, W) within CLEAN_DISTANCE (RGB) of the palette
    colour of the background or of the shape: speckle and halos lower it."""
    palette = shapes_data.PALETTE[
        [shapes_data.COLOURS.index(background), shapes_data.COLOURS.index(colour)]
    ]  # (2, 3)
    pixels = image.detach().float().cpu()[0].permute(1, 2, 0)[..., None, :]  # (H, W, 1, 3)
    distance = (pixels - palette).norm(dim=-1).amin(-1)  # (H, W)
    return (distance <= CLEAN_DISTANCE).float().mean().item()


@dataclass(frozen=True)
class Scene:
    """The attributes a caption of the world names (names, None where it names none)."""

    shape: Optional[str] = None
    count: int = 1
    colour: Optional[str] = None
    background: Optional[str] = None
    size: Optional[str] = None
    position: Optional[str] = None

    def caption(self, **changes) -> str:
        """shapes_data.describe of this scene, with `changes` applied."""
        return shapes_data.describe(**{**self.__dict__, **changes})


@cache
def _noun_phrases() -> dict:
    """{noun phrase: (shape, count, colour, size)} of every noun phrase the template writes."""
    found = {}
    for shape in (*shapes_data.SHAPES, None):
        for count in (1, 2, 3):
            for colour in (*shapes_data.COLOURS, None):
                for size in (*shapes_data.SIZES, None):
                    text = shapes_data.noun_phrase(shape, count, colour, size)
                    found.setdefault(text, (shape, count, colour, size))
    return found


def _lower(text: str) -> str:
    """Lower case, single spaces, no trailing full stop."""
    return " ".join(text.lower().split()).rstrip(".").strip()


def parse_scene(text: str) -> Optional[Scene]:
    """The Scene a prompt describes when it is a caption of the world, read with the world's own
    template (shapes_data.describe, which must give the prompt back; 'an' reads as its 'a'),
    else None."""
    full = text = re.sub(r"\ban\b", "a", _lower(text))
    background = re.search(r" on a (\w+) background$", text)
    if background:
        text, background = text[: background.start()], background.group(1)
    position = None
    for name in shapes_data.POSITIONS:
        phrase = " " + shapes_data.POSITION_PHRASES.get(name, f"in the {name}")
        if text.endswith(phrase):
            text, position = text[: -len(phrase)], name
            break
    noun = _noun_phrases().get(text)
    if noun is None or (background is not None and background not in shapes_data.COLOURS):
        return None
    shape, count, colour, size = noun
    scene = Scene(shape, count, colour, background, size, position)
    clash = colour is not None and colour == background  # the world never draws it
    return scene if scene.caption() == full and not clash else None


def scene_distractors(scene: Scene) -> list:
    """Captions of the world that differ from the scene's in one named attribute (shape, shape
    colour, background) or that swap its two colours; in the template's words."""
    out = []
    if scene.shape is not None:
        out += [scene.caption(shape=s) for s in shapes_data.SHAPES if s != scene.shape]
    used = {scene.colour, scene.background}
    if scene.colour is not None:
        out += [scene.caption(colour=c) for c in shapes_data.COLOURS if c not in used]
    if scene.background is not None:
        out += [scene.caption(background=c) for c in shapes_data.COLOURS if c not in used]
    if scene.colour is not None and scene.background is not None:
        out.append(scene.caption(colour=scene.background, background=scene.colour))
    return list(dict.fromkeys(out))


def _swap_words(text: str, words: tuple, pool: tuple) -> list:
    """text with each of its `words` (whole words) replaced by every other entry of pool, and
    each two different ones exchanged."""
    found = list(re.finditer(r"\b(" + "|".join(words) + r")\b", text))
    out = []
    for m in found:
        out += [text[: m.start()] + w + text[m.end() :] for w in pool if w != m.group(1)]
    for i, a in enumerate(found):
        for b in found[i + 1 :]:
            if a.group(1) != b.group(1):
                swapped = text[: a.start()] + b.group(1) + text[a.end() : b.start()]
                out.append(swapped + a.group(1) + text[b.end() :])
    return out


def candidates(text: str) -> list:
    """The captions a held-out CLIP ranks for a prompt: the prompt first (for a caption of the
    world in the template's words, else lower-cased), then its hard negatives (distractors)."""
    scene = parse_scene(text)
    if scene is not None:
        return [scene.caption(), *scene_distractors(scene)]
    base = _lower(text)
    out = _swap_words(base, COLOUR_WORDS, shapes_data.COLOURS)
    out += _swap_words(base, shapes_data.SHAPES, shapes_data.SHAPES)
    return [base, *(t for t in dict.fromkeys(out) if t != base)]


def distractors(text: str) -> list:
    """Hard negative captions of a prompt: for a caption of the world, scene_distractors; for
    any other prompt, its colour words and shape words swapped for others and its colour words
    exchanged with each other. Empty when the prompt names no colour or shape."""
    return candidates(text)[1:]


def judged_prompts(prompt: str) -> list:
    """The text prompts the final image should show: the last phase's positive-weight texts."""
    phases = parse_schedule(prompt)
    last = phases[-1] if phases else []
    return [p.text for p in last if not p.image and p.weight > 0]


def _same_model(judge: tuple, guide: tuple) -> bool:
    """Whether (model, pretrained) of the judge is that of a guide (the bundled weights by path)."""
    return resolve_model(*judge)[:2] == resolve_model(*guide)[:2]


def check_judge(cfg) -> None:
    """ValueError when --judge-model names an unknown model or one of the run's guides."""
    if cfg.judge_model in ("auto", "none"):
        return
    judge = (cfg.judge_model, cfg.judge_pretrained)
    resolve_model(*judge)  # an unknown name is a ValueError here
    for model, pretrained, _ in model_specs(cfg):
        if model != "auto" and _same_model(judge, (model, pretrained)):
            raise ValueError(
                f"--judge-model {'/'.join(filter(None, judge))} is a model that guides the run: "
                "a judge must be a model that did not guide it"
            )


def resolve_judge(cfg, guides: list) -> tuple:
    """(model, pretrained, note) of the held-out CLIP for a run guided by `guides` (loaded
    bundles), or (None, '', note): --judge-model none; auto with the bundled guide (the world's
    judges score its prompts); auto with a real guide, the first open_clip model with cached
    weights that is not a guide, else none. note: one line that says which and why."""
    taken = [(b.name, b.pretrained) for b in guides]
    if cfg.judge_model == "none":
        return None, "", "held-out CLIP: none (--judge-model none)"
    if cfg.judge_model != "auto":
        judge = (cfg.judge_model, cfg.judge_pretrained)
        if any(_same_model(judge, g) for g in taken):
            raise ValueError(f"--judge-model {cfg.judge_model}: it guides the run")
        return (*judge, f"held-out CLIP: {'/'.join(filter(None, judge))} (--judge-model)")
    if all(name == "shapes" for name, _ in taken):
        return (
            None,
            "",
            "held-out CLIP: none (auto: the guide is the bundled shapes model, judged by the "
            "shapes world's judges; --judge-model NAME --judge-pretrained TAG adds one)",
        )
    import open_clip

    for model, tag in open_clip.list_pretrained():
        if (model, tag) not in taken and cached_weights(model, tag):
            return model, tag, f"held-out CLIP: {model}/{tag} (auto: cached, did not guide)"
    return (
        None,
        "",
        "held-out CLIP: none (auto: no cached open_clip weights besides the guide's; "
        "--judge-model NAME --judge-pretrained TAG names one)",
    )


@dataclass
class Judges:
    """What a process loads once: the shape judge and the held-out CLIP (or None)."""

    shape_judge: torch.nn.Module
    clip: object = None  # a clip_loader.ClipBundle
    clip_note: str = ""

    def for_prompt(self, prompt: str) -> "RunJudge":
        """The judge of one run whose prompt (the --prompt text, schedule and weights
        included) is `prompt`."""
        return RunJudge(self, prompt)


def load_judges(cfg, guides: list) -> Judges:
    """The judges of runs of cfg guided by `guides` (loaded bundles), on the guides' device;
    the held-out CLIP as resolve_judge chooses it (its note is logged)."""
    device = guides[0].device
    model, pretrained, note = resolve_judge(cfg, guides)
    log.info(note)
    clip = load_clip(model, pretrained, device) if model else None
    return Judges(load_shape_judge(device="cpu"), clip, note)


class RunJudge:
    """Scores a run's images: a callable image (1, 3, H, W) in [0, 1] -> {JUDGED name: value or
    None}. `notes`: one line per judge on what it judges, or why it judges nothing."""

    def __init__(self, judges: Judges, prompt: str):
        self.judges, texts = judges, judged_prompts(prompt)
        self.scene = parse_scene(texts[0]) if len(texts) == 1 else None
        if self.scene is not None:
            world = f"shapes world: judges {texts[0]!r} (shape judge, palette colours)"
        elif len(texts) == 1:
            world = f"shapes world: none ({texts[0]!r} is not a caption of the world)"
        elif not texts:
            world = "shapes world: none (no text prompt to show at the end)"
        else:
            world = f"shapes world: none ({len(texts)} prompts to show; it judges one scene)"
        self.notes = {"world": world, "clip": judges.clip_note}
        self.texts, self.embeds = texts, None
        if judges.clip is not None and texts:
            self.captions = [candidates(t) for t in texts]  # the prompt first
            flat = [c for group in self.captions for c in group]
            self.embeds = judges.clip.encode_text(flat)  # (sum of captions, D)

    @torch.no_grad()
    def __call__(self, image) -> dict:
        scores = dict.fromkeys(JUDGED)
        if self.scene is not None:
            scores.update(self._world(image))
        if self.embeds is not None:
            scores.update(self._clip(image))
        return scores

    def _world(self, image) -> dict:
        scene, image = self.scene, image.detach().float().cpu().clamp(0, 1)
        shares, out = colour_shares(image)[0], {}
        if scene.shape is not None:
            probs = judge_shapes(self.judges.shape_judge, image)[0]
            out["shape_prob"] = probs[shapes_data.SHAPES.index(scene.shape)].item()
        if scene.background is not None:
            top = shapes_data.COLOURS[int(shares.argmax())]
            out["background_ok"] = float(top == scene.background)
        if scene.colour is not None:
            out["colour_share"] = shares[shapes_data.COLOURS.index(scene.colour)].item()
        if scene.colour is not None and scene.background is not None:
            out["clean"] = clean_share(image, scene.colour, scene.background)
        return out

    def _clip(self, image) -> dict:
        bundle = self.judges.clip
        views = eval_views(image.detach().float().to(bundle.device), bundle.input_size)
        views = torch.cat([views, views.flip(-1)])  # (12, 3, h, w): fixed views and mirrors
        sims = (bundle.encode_image(views) @ self.embeds.T).mean(0)  # (captions,)
        own, ranked, first = [], [], 0
        for group in self.captions:
            scores = sims[first : first + len(group)]
            first += len(group)
            own.append(scores[0].item())
            if len(group) > 1:
                ranked.append(float(scores[0] > scores[1:].max()))
        return {
            "judge_sim": sum(own) / len(own),
            "judge_rprec": sum(ranked) / len(ranked) if ranked else None,
        }
