import math
import re

import pytest

from clampgen.prompts import (
    Prompt,
    parse_image_prompt,
    parse_prompt,
    parse_prompts,
    parse_schedule,
    phase_at,
    phase_starts,
)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("a red circle", Prompt("a red circle", 1.0, -math.inf)),
        ("a red circle:2", Prompt("a red circle", 2.0, -math.inf)),
        ("blurry:-0.5", Prompt("blurry", -0.5, -math.inf)),
        ("a cat:1:0.8", Prompt("a cat", 1.0, 0.8)),
        ("  spaced out : 3 ", Prompt("spaced out", 3.0, -math.inf)),
        ("note: a lighthouse", Prompt("note: a lighthouse", 1.0, -math.inf)),
        ("note: a lighthouse:0.5", Prompt("note: a lighthouse", 0.5, -math.inf)),
        ("x:1e-1", Prompt("x", 0.1, -math.inf)),
        ("style: anime", Prompt("style: anime", 1.0, -math.inf)),
        ("a: 2 : 0.5", Prompt("a", 2.0, 0.5)),
    ],
)
def test_parse_prompt(spec, expected):
    assert parse_prompt(spec) == expected


def test_parse_prompts_splits_on_bar():
    got = parse_prompts("a watercolor lighthouse:1 | blurry:-0.5")
    assert got == [Prompt("a watercolor lighthouse", 1.0), Prompt("blurry", -0.5)]


def test_parse_prompts_empty_spec_is_empty_list():
    assert parse_prompts("") == [] and parse_prompts("   ") == []


@pytest.mark.parametrize(
    "spec, message",
    [
        ("a cat:abc", "weight 'abc' is not a number"),
        ("a cat:1:xyz", "stop 'xyz' is not a number"),
        (":2", "empty text"),
        ("a | | b", "empty text"),
        ("a:nan", "NaN"),
        ("a:inf", "finite"),
    ],
)
def test_parse_prompt_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_prompts(spec)


def image(path, weight=1.0, stop=-math.inf):
    return Prompt(path, weight, stop, image=True)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("img.png", image("img.png")),
        ("img.png:0.5", image("img.png", 0.5)),
        ("dir/img.png:-2", image("dir/img.png", -2.0)),
        ("img.png:1:-0.2", image("img.png", 1.0, -0.2)),  # nerdyrodent's and pixray's FILE:w:stop
        (r"C:\images\x.png", image(r"C:\images\x.png")),
        (r"C:\images\x.png:0.5:-0.2", image(r"C:\images\x.png", 0.5, -0.2)),
        ("http://example.com/x.png", image("http://example.com/x.png")),
        ("https://example.com:8443/x.png:2:0.1", image("https://example.com:8443/x.png", 2, 0.1)),
    ],
)
def test_parse_image_prompt(spec, expected):
    assert parse_image_prompt(spec) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("img.png:heavy", "weight 'heavy' is not a number"),
        ("img.png:1:low", "stop 'low' is not a number"),
        ("img.png:", "image prompt 'img.png:': nothing after the last ':'"),
        ("img.png:1:", "image prompt 'img.png:1:': nothing after the last ':'"),
        ("img.png::-0.2", "empty weight before the stop"),
        (":2", "empty file name"),
    ],
)
def test_parse_image_prompt_errors(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_image_prompt(spec)


@pytest.mark.parametrize("spec", ["a red circle:", "a red circle:2:", " note: a cat : ", "a::0.5"])
def test_a_prompt_ending_in_a_colon_is_an_error_naming_it(spec):
    with pytest.raises(ValueError, match=re.escape(f"prompt '{spec.strip()}'")):
        parse_prompt(spec)


def test_schedule_phases_prompts_and_image_prompts():
    spec = "a red circle on a blue background ^ a yellow star:2 | blurry:-0.5 | [ref.png]:0.5"
    assert parse_schedule(spec) == [
        [Prompt("a red circle on a blue background")],
        [Prompt("a yellow star", 2.0), Prompt("blurry", -0.5), image("ref.png", 0.5)],
    ]
    assert parse_schedule("a ^ [ref.png]:0.5:-0.2 | [C:\\x.png]:2")[1] == [
        image("ref.png", 0.5, -0.2),
        image("C:\\x.png", 2.0),
    ]
    assert parse_schedule("one phase | two prompts") == [parse_prompts("one phase | two prompts")]
    assert parse_schedule("  ") == [] and parse_schedule("[a b.png]")[0][0].text == "a b.png"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("a ^ ^ b", "phase 2 (after '^') is empty"),
        ("a ^", "phase 2 (after '^') is empty"),
        ("^ a", "phase before the first '^' is empty"),
        ("a ^ b | ", "empty text"),
        ("a ^ [ref.png", "needs the form [FILE][:weight[:stop]]"),
        ("a ^ [ref.png]x", "unexpected 'x'"),
        ("a ^ [ref.png]:heavy", "weight 'heavy' is not a number"),
        ("a ^ [ref.png]:1:low", "stop 'low' is not a number"),
        ("a ^ [ref.png]:1:", "image prompt '[ref.png]:1:': nothing after the last ':'"),
        ("a ^ [ref.png]:1:0:2", "only a weight and a stop may follow ']'"),
        ("a ^ a star:", "prompt 'a star:': nothing after the last ':'"),
    ],
)
def test_malformed_schedules(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_schedule(spec)


def test_phase_starts_split_evenly_or_every_n_steps():
    assert phase_starts(1, 150) == [0]
    assert phase_starts(2, 150) == [0, 75] and phase_starts(3, 10) == [0, 4, 8]
    assert phase_starts(3, 100, change_every=20) == [0, 20, 40]
    assert [phase_at(s, [0, 20, 40]) for s in (0, 19, 20, 39, 40, 100)] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="phase 3 would start at step 120"):
        phase_starts(3, 100, change_every=60)
    with pytest.raises(ValueError, match=">= 0"):
        phase_starts(2, 100, change_every=-1)
