"""The page's form as a run's options, and a recorded run's options as the form.

    request = parse_form(Form(prompt="a red circle", clamps=["clamp", "clamp_with_grad"]))
    check_request(request)       # ValueError / OSError with the CLI's one line, nothing written
    form = form_of(run_json["config"], clamps=[...])   # "load its settings"

The form holds the options people change most (prompt, clamps, generator, steps, size, seed,
model, images); every other GenerateConfig option goes in its "more options" box as TOML, the
keys of `generate.py --config FILE.toml`. Checking a request runs the checks generate.py runs
before it writes anything (clampgen.run.check_config for every clamp, the models' names), so
the page answers with the same words.
"""

import dataclasses
import secrets
import tomllib

from clampgen.clip_loader import resolve_model
from clampgen.compare.runner import RunsFailed
from clampgen.config import GenerateConfig, check_keys, merge_config
from clampgen.generators import GENERATOR_DEFAULTS, get_generator
from clampgen.guides import model_specs
from clampgen.hub import WeightsUnavailable
from clampgen.keepers import list_variants, parse_keepers
from clampgen.run import check_config
from clampgen.rundir import OutputError

# GenerateConfig fields the form shows; the app sets out and progress itself
FORM_FIELDS = ("prompt", "generator", "steps", "size", "seed", "model", "pretrained", "init")
FORM_FIELDS += ("image_prompts", "clamp")
NOT_IN_MORE = FORM_FIELDS + ("out", "progress")


@dataclasses.dataclass
class Form:
    """The page's fields, as the page (or gradio_client) sends them."""

    prompt: str = ""
    clamps: list = dataclasses.field(default_factory=lambda: ["clamp_with_grad"])
    generator: str = "fft"
    steps: float = None  # empty: the generator's default
    width: float = 128
    height: float = 128
    seed: float = None  # empty: a random one, shown once the run starts
    seeds: float = 1
    model: str = "auto"
    pretrained: str = ""
    init: str = "noise"
    image_prompts: str = ""  # FILE[:weight], one per line
    more: str = ""  # TOML: any other GenerateConfig option


@dataclasses.dataclass
class Request:
    """A run the page asks for: one clamp and one seed is a single run, else a comparison."""

    cfg: GenerateConfig
    clamps: list
    seeds: int

    @property
    def comparison(self) -> bool:
        return len(self.clamps) > 1 or self.seeds > 1


def error_line(e: BaseException) -> str:
    """The one line generate.py prints on stderr for e (its exit statuses 1, 2 and 4)."""
    if isinstance(e, (ValueError, OSError, WeightsUnavailable, OutputError, RunsFailed)):
        return f"error: {e}"
    return f"error: {type(e).__name__}: {e}"


def _whole(name: str, value, empty=None):
    """A number field as an int (gradio sends floats); None when left empty."""
    if value is None or value == "":
        return empty
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{name}: expected a whole number, got {value!r}") from None
    if isinstance(value, bool) or float(value) != int(value):
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    return int(value)


def parse_more(text: str) -> dict:
    """The "more options" box: TOML with GenerateConfig keys other than the form's."""
    try:
        more = tomllib.loads(text or "")
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"more options: TOML syntax error: {e}") from None
    taken = sorted(set(more) & set(NOT_IN_MORE))
    if taken:
        raise ValueError(f"more options: {', '.join(taken)} has its own field on the page")
    return check_keys(more, "more options")


def parse_form(form: Form, threads: int = 0) -> Request:
    """The form as a Request (ValueError for a field of the wrong kind). threads: the server's
    --threads, unless the more-options box sets it. A seed left empty is drawn here."""
    picked = [c for c in (form.clamps or []) if c]
    # the registry's order, whatever order they were ticked in (unknown names last: refused)
    clamps = [c for c in list_variants() if c in picked]
    clamps += [c for c in picked if c not in clamps]
    if not clamps:
        raise ValueError("no clamp: pick one clamp or keeper (several race as a comparison)")
    seeds = _whole("seeds", form.seeds, 1)
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    fields = {
        "prompt": form.prompt or "",
        "clamp": clamps[0],
        "generator": form.generator,
        "steps": _whole("steps", form.steps),
        "size": [_whole("width", form.width, 128), _whole("height", form.height, 128)],
        "seed": _whole("seed", form.seed),
        "model": (form.model or "auto").strip(),
        "pretrained": (form.pretrained or "").strip(),
        "init": (form.init or "noise").strip(),
        "image_prompts": [ln.strip() for ln in (form.image_prompts or "").splitlines()],
    }
    fields["image_prompts"] = [p for p in fields["image_prompts"] if p]
    base = GenerateConfig(threads=threads, progress=False)
    cfg = merge_config(base, parse_more(form.more), fields)
    if cfg.seed is None:  # drawn now, so every variant and the live view know it
        cfg = dataclasses.replace(cfg, seed=secrets.randbelow(2**31))
    clamps = parse_keepers(",".join(clamps), generator=cfg.generator, optimizer=cfg.optimizer)
    return Request(cfg, clamps, seeds)


def check_request(request: Request) -> None:
    """The checks generate.py makes before it writes anything: each clamp's config
    (clampgen.run.check_config) and the models' names (weights are loaded when the run starts)."""
    for clamp in request.clamps:
        check_config(dataclasses.replace(request.cfg, clamp=clamp))
    for model, pretrained, _ in model_specs(request.cfg):
        if model != "auto":  # auto may ask the Hub (on a GPU): decided when the run starts
            resolve_model(model, pretrained)


def form_of(config: dict, clamps=None, seeds=None, threads: int = 0) -> Form:
    """A recorded config (run.json's, or plan.json's with its clamps and seeds) as the form; the
    options that differ from their defaults, other than the form's, go to the TOML box (threads
    only when it differs from the server's `threads`)."""
    cfg = merge_config(GenerateConfig(), {k: v for k, v in config.items() if k != "out"})
    spec = get_generator(cfg.generator)
    default = GenerateConfig().to_dict()
    more = {}
    for key, value in cfg.to_dict().items():
        if key in NOT_IN_MORE or key == "steps" or value == default[key]:
            continue
        if key in GENERATOR_DEFAULTS and value == getattr(spec, key):
            continue
        if key == "threads" and value == threads:
            continue
        more[key] = value
    seeds = list(seeds or [cfg.seed])
    return Form(
        prompt=cfg.prompt,
        clamps=list(clamps or [cfg.clamp]),
        generator=cfg.generator,
        steps=cfg.steps,
        width=cfg.width,
        height=cfg.height,
        seed=seeds[0],
        seeds=len(seeds),
        model=cfg.model,
        pretrained=cfg.pretrained,
        init=cfg.init,
        image_prompts="\n".join(cfg.image_prompts),
        more="".join(f"{k} = {_toml(v)}\n" for k, v in more.items()),
    )


def _toml(value) -> str:
    """A TOML value (the config's kinds: bool, int, float, str, lists of those)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
