"""Prompt parsing, VQGAN+CLIP notebook syntax: `text[:weight[:stop]] | text[:weight[:stop]] ...`.

    parse_prompts("a red circle:1 | blurry:-0.5")
    # [Prompt(text='a red circle', weight=1.0, stop=-inf),
    #  Prompt(text='blurry', weight=-0.5, stop=-inf)]

Weight defaults to 1 (negative steers away), stop to -inf (a floor on that prompt's loss).
Unlike the notebooks' plain `rsplit(':', 2)`, a colon followed by a space and words stays part
of the text ("note: a lighthouse"), while a trailing `:word` that is not a number is an error,
and so is a trailing ':' with nothing after it ("a red circle:").

Image prompts take the same fields, `FILE[:weight[:stop]]` (`--image-prompt`) and
`[FILE][:weight[:stop]]` inside a schedule's phase, as nerdyrodent/VQGAN-CLIP and pixray read
them; a Windows drive letter or a URL's scheme and port stay part of FILE.
"""

import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    text: str  # the text, or an image path for image prompts
    weight: float = 1.0  # scales the loss; negative steers away from the prompt
    stop: float = -math.inf  # that prompt's loss is floored at stop (no push below it)
    image: bool = False  # text is an image file (a `[FILE]` entry of a schedule phase)


def _number(s: str, what: str, prompt: str, kind: str = "prompt") -> float:
    try:
        value = float(s)
    except ValueError:
        raise ValueError(f"{kind} '{prompt}': {what} '{s.strip()}' is not a number") from None
    if math.isnan(value):
        raise ValueError(f"{kind} '{prompt}': {what} is NaN")
    return value


def _is_field(s: str) -> bool:
    """A trailing `:field` is meant as a number when it is one word, directly after the colon
    ('x:abc' is then an error) or, after spaces, when it parses as one ('x: 2'); 'note: a cat'
    and 'note: cat' stay text."""
    word = s.strip()
    if not word or any(c.isspace() for c in word):
        return False
    if s[0].isspace():
        try:
            float(word)
        except ValueError:
            return False
    return True


def _split_fields(spec: str, what: str, path: bool = False) -> tuple:
    """spec -> (head, weight, stop) from `head[:weight[:stop]]`: up to two trailing `:field`s
    (_is_field) are peeled off the right. A spec that ends in ':' is an error naming it, as is
    an empty weight before a stop ('a::0.5'). path: a field never holds '/' or '\\', so a
    Windows drive letter ('C:\\x.png') and a URL's scheme or port stay part of the path."""
    if spec.endswith(":"):
        raise ValueError(
            f"{what} '{spec}': nothing after the last ':' (give a weight, or leave out the ':')"
        )
    parts = spec.rsplit(":", 2)
    fields = []  # trailing numeric fields, rightmost first
    while len(parts) > 1 and _is_field(parts[-1]) and not (path and _has_slash(parts[-1])):
        fields.insert(0, parts.pop())
    head = ":".join(parts).strip()
    if fields and head.endswith(":"):
        raise ValueError(f"{what} '{spec}': empty weight before the stop")
    weight = _number(fields[0], "weight", spec, what) if fields else 1.0
    stop = _number(fields[1], "stop", spec, what) if len(fields) > 1 else -math.inf
    if math.isinf(weight):
        raise ValueError(f"{what} '{spec}': weight must be finite")
    return head, weight, stop


def _has_slash(s: str) -> bool:
    return "/" in s or "\\" in s


def parse_prompt(spec: str) -> Prompt:
    """'text[:weight[:stop]]' -> Prompt; raises ValueError on empty text, a non-numeric field
    or a trailing ':' with nothing after it."""
    spec = spec.strip()
    text, weight, stop = _split_fields(spec, "prompt")
    if not text:
        raise ValueError(f"prompt '{spec}': empty text")
    return Prompt(text, weight, stop)


def parse_prompts(spec: str) -> list[Prompt]:
    """'a | b:2 | c:-1:0.5' -> [Prompt, ...]; empty entries are errors, an empty spec gives []."""
    if not spec.strip():
        return []
    return [parse_prompt(p) for p in spec.split("|")]


def parse_image_prompt(spec: str) -> Prompt:
    """'FILE[:weight[:stop]]' -> Prompt(FILE, weight, stop, image=True), as text prompts (and
    as nerdyrodent/VQGAN-CLIP and pixray read them); FILE may be a Windows path ('C:\\x.png')
    or an http(s):// URL ('http://host:8080/x.png:0.5')."""
    spec = spec.strip()
    path, weight, stop = _split_fields(spec, "image prompt", path=True)
    if not path:
        raise ValueError(f"image prompt '{spec}': empty file name")
    return Prompt(path, weight, stop, image=True)


def slug(text: str, max_len: int = 40, empty: str = "run") -> str:
    """'A red circle: on blue!' -> 'a-red-circle-on-blue' (file-system-safe; `empty` if none)."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:max_len].rstrip("-") or empty


def _schedule_entry(entry: str, phase: int) -> Prompt:
    """One entry of a phase: `[FILE][:weight[:stop]]` is an image prompt, anything else
    `text[:weight[:stop]]`."""
    entry = entry.strip()
    if not entry.startswith("["):
        return parse_prompt(entry)
    path, bracket, rest = entry[1:].partition("]")
    if not bracket or not path.strip():
        raise ValueError(
            f"phase {phase}: image prompt '{entry}' needs the form [FILE][:weight[:stop]]"
        )
    if rest and not rest.startswith(":"):
        raise ValueError(f"phase {phase}: unexpected '{rest}' after ']' in '{entry}'")
    fields = rest[1:].split(":") if rest else []  # [weight[, stop]]
    if len(fields) > 2:
        raise ValueError(f"image prompt '{entry}': only a weight and a stop may follow ']'")
    if fields and not fields[-1].strip():
        raise ValueError(f"image prompt '{entry}': nothing after the last ':'")
    weight = _number(fields[0], "weight", entry, "image prompt") if fields else 1.0
    stop = _number(fields[1], "stop", entry, "image prompt") if len(fields) > 1 else -math.inf
    if math.isinf(weight):
        raise ValueError(f"image prompt '{entry}': weight must be finite")
    return Prompt(path.strip(), weight, stop, image=True)


def parse_schedule(spec: str) -> list[list[Prompt]]:
    """A story of prompt phases, VQGAN-CLIP's (nerdyrodent) syntax: `^` separates phases, `|`
    the prompts of a phase, `text[:weight[:stop]]` as in parse_prompts, `[FILE][:weight[:stop]]`
    an image prompt joining that phase. 'a red circle ^ a star | [ref.png]:0.5' -> two phases.
    A spec without `^` is one phase; an empty spec gives []; an empty phase is a ValueError."""
    if not spec.strip():
        return []
    phases = spec.split("^")
    out = []
    for k, phase in enumerate(phases, start=1):
        if not phase.strip():
            where = "before the first '^'" if k == 1 else f"{k} (after '^')"
            raise ValueError(f"prompt schedule '{spec.strip()}': phase {where} is empty")
        out.append([_schedule_entry(entry, k) for entry in phase.split("|")])
    return out


def phase_starts(n_phases: int, steps: int, change_every: int = 0) -> list[int]:
    """The first step of each phase: every change_every steps, or (0) the run split evenly.
    ValueError when a phase would start after the last step."""
    if change_every < 0:
        raise ValueError(f"--change-every must be >= 0, got {change_every}")
    every = change_every or max(1, math.ceil(steps / max(n_phases, 1)))
    starts = [k * every for k in range(n_phases)]
    if starts and starts[-1] > steps:
        raise ValueError(
            f"phase {n_phases} would start at step {starts[-1]}, after the run's "
            f"{steps} steps (lower --change-every or give fewer phases)"
        )
    return starts


def phase_at(step: int, starts: list) -> int:
    """Index of the phase that step falls in (starts: phase_starts)."""
    return max(k for k, start in enumerate(starts) if start <= step)
