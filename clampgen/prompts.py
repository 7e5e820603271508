"""Prompt parsing, VQGAN+CLIP notebook syntax: `text[:weight[:stop]] | text[:weight[:stop]] ...`.

    parse_prompts("a red circle:1 | blurry:-0.5")
    # [Prompt(text='a red circle', weight=1.0, stop=-inf),
    #  Prompt(text='blurry', weight=-0.5, stop=-inf)]

Weight defaults to 1 (negative steers away), stop to -inf (a floor on that prompt's loss).
Unlike the notebooks' plain `rsplit(':', 2)`, a colon followed by a space and words stays part
of the text ("note: a lighthouse"), while a trailing `:word` that is not a number is an error.
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


def _number(s: str, what: str, prompt: str) -> float:
    try:
        value = float(s)
    except ValueError:
        raise ValueError(f"prompt '{prompt}': {what} '{s}' is not a number") from None
    if math.isnan(value):
        raise ValueError(f"prompt '{prompt}': {what} is NaN")
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


def parse_prompt(spec: str) -> Prompt:
    """'text[:weight[:stop]]' -> Prompt; raises ValueError on empty text or a non-numeric field."""
    spec = spec.strip()
    parts = spec.rsplit(":", 2)
    fields = []  # trailing numeric fields, rightmost first
    while len(parts) > 1 and _is_field(parts[-1]):
        fields.insert(0, parts.pop())
    text = ":".join(parts).strip()
    if not text:
        raise ValueError(f"prompt '{spec}': empty text")
    weight = _number(fields[0], "weight", spec) if fields else 1.0
    stop = _number(fields[1], "stop", spec) if len(fields) > 1 else -math.inf
    if math.isinf(weight):
        raise ValueError(f"prompt '{spec}': weight must be finite")
    return Prompt(text, weight, stop)


def parse_prompts(spec: str) -> list[Prompt]:
    """'a | b:2 | c:-1:0.5' -> [Prompt, ...]; empty entries are errors, an empty spec gives []."""
    if not spec.strip():
        return []
    return [parse_prompt(p) for p in spec.split("|")]


def parse_image_prompt(spec: str) -> Prompt:
    """'FILE[:weight]' -> Prompt(FILE, weight); a Windows drive letter stays part of the path."""
    path, sep, weight = spec.rpartition(":")
    if not sep or not _is_field(weight) or ("/" in weight or "\\" in weight):
        path, weight = spec, "1"
    if not path.strip():
        raise ValueError(f"image prompt '{spec}': empty file name")
    w = _number(weight, "weight", spec)
    if math.isinf(w):
        raise ValueError(f"image prompt '{spec}': weight must be finite")
    return Prompt(path.strip(), w)


def slug(text: str, max_len: int = 40, empty: str = "run") -> str:
    """'A red circle: on blue!' -> 'a-red-circle-on-blue' (file-system-safe; `empty` if none)."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:max_len].rstrip("-") or empty


def _schedule_entry(entry: str, phase: int) -> Prompt:
    """One entry of a phase: `[FILE]` or `[FILE]:weight` is an image prompt, anything else
    `text[:weight[:stop]]`."""
    entry = entry.strip()
    if entry.startswith("["):
        path, bracket, rest = entry[1:].partition("]")
        if not bracket or not path.strip():
            raise ValueError(
                f"phase {phase}: image prompt '{entry}' needs the form [FILE][:weight]"
            )
        if rest and not rest.startswith(":"):
            raise ValueError(f"phase {phase}: unexpected '{rest}' after ']' in '{entry}'")
        weight = _number(rest[1:], "weight", entry) if rest else 1.0
        if math.isinf(weight):
            raise ValueError(f"image prompt '{entry}': weight must be finite")
        return Prompt(path.strip(), weight, image=True)
    return parse_prompt(entry)


def parse_schedule(spec: str) -> list[list[Prompt]]:
    """A story of prompt phases, VQGAN-CLIP's (nerdyrodent) syntax: `^` separates phases, `|`
    the prompts of a phase, `text[:weight[:stop]]` as in parse_prompts, `[FILE][:weight]` an
    image prompt joining that phase. 'a red circle ^ a star | [ref.png]:0.5' -> two phases.
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
