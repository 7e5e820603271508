import dataclasses

import pytest

from clampgen.cli import build_parser, main, parse_config
from clampgen.config import GenerateConfig, load_toml, merge_config
from clampgen.options import fields_of


def write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_field_has_help_and_a_flag():
    parser_help = build_parser().format_help()
    for f in fields_of(GenerateConfig).values():
        assert f.metadata["help"]
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        assert (f.name.upper() if f.metadata.get("positional") else flag) in parser_help


def test_defaults_round_trip_through_dict():
    cfg = GenerateConfig()
    assert merge_config(cfg) == cfg
    assert cfg.to_dict()["size"] == [cfg.width, cfg.height]


@pytest.mark.parametrize("size, expected", [(64, (64, 64)), ([64], (64, 64)), ([64, 32], (64, 32))])
def test_size_forms(size, expected):
    cfg = merge_config(GenerateConfig(), {"size": size})
    assert cfg.size == expected and (cfg.width, cfg.height) == expected


def test_toml_then_cli_precedence(tmp_path):
    path = write(
        tmp_path,
        'prompt = "a red circle"\nsteps = 7\nlr = 1\nsize = [48, 32]\n'
        'image_prompts = ["a.png:0.5"]\naug_flip = false\n',
    )
    cfg, _ = parse_config(["--config", str(path), "--steps", "9", "--seed", "3"])
    assert cfg.prompt == "a red circle"  # from TOML
    assert cfg.steps == 9 and cfg.seed == 3  # CLI wins / adds
    assert cfg.lr == 1.0 and cfg.size == (48, 32) and cfg.aug_flip is False
    assert cfg.image_prompts == ["a.png:0.5"]
    assert cfg.cutn == GenerateConfig().cutn  # untouched default


def test_cli_positional_prompt_overrides_toml(tmp_path):
    path = write(tmp_path, 'prompt = "from toml"\n')
    cfg, _ = parse_config(["from cli", "--config", str(path)])
    assert cfg.prompt == "from cli"


def test_cli_flags():
    cfg, _ = parse_config(
        [
            "p",
            "--size",
            "40",
            "30",
            "--no-aug-flip",
            "--image-prompt",
            "a.png",
            "--image-prompt",
            "b.png:2",
            "--no-progress",
            "--init",
            "gray",
        ]
    )
    assert cfg.size == (40, 30) and not cfg.aug_flip and not cfg.progress
    assert cfg.image_prompts == ["a.png", "b.png:2"] and cfg.init == "gray"


def test_every_prompts_file_loads():
    from pathlib import Path

    files = sorted((Path(__file__).parent.parent / "prompts").glob("*.toml"))
    assert files
    for path in files:
        merge_config(GenerateConfig(), load_toml(path))


@pytest.mark.parametrize(
    "text, message",
    [
        ('steps = "many"\n', "'steps': expected int"),
        ("lr = true\n", "'lr': expected float"),
        ('colour = "red"\n', "unknown key 'colour'"),
        ("steps = \n", "TOML syntax error"),
        ("size = [1, 2, 3]\n", "'size'"),
        ('image_prompts = "a.png"\n', "'image_prompts'"),
    ],
)
def test_toml_errors(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_toml(write(tmp_path, text))


def test_missing_toml_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_toml(tmp_path / "nope.toml")


def test_int_accepted_for_float_and_seed_none():
    cfg = merge_config(GenerateConfig(), {"lr": 1, "seed": None})
    assert cfg.lr == 1 and cfg.seed is None
    assert dataclasses.replace(cfg, seed=5).seed == 5


def test_help_names_every_optimizer():
    from clampgen.loop import OPTIMIZERS

    text = fields_of(GenerateConfig)["optimizer"].metadata["help"]
    assert all(name in text for name in OPTIMIZERS)


def test_threads_flag():
    cfg, _ = parse_config(["p", "--threads", "1"])
    assert cfg.threads == 1 and GenerateConfig().threads == 0


@pytest.mark.parametrize(
    "text, message",
    [
        ("threads = -3\n", "threads must be >= 0 (0: torch's default), got -3"),
        ("fps = 0\n", "fps must be > 0, got 0"),
        ("cut_pow = -1.0\n", "cut_pow must be >= 0 (0: every cutout the image's short side)"),
        ("size = [100000, 100000]\n", "--size 100000 100000 needs about 2 TB of memory"),
    ],
)
def test_bad_values_from_a_toml_file_are_one_line(tmp_path, capsys, text, message):
    """A TOML file reaches the same checks as the flags (the run's, before anything is made)."""
    path = write(tmp_path, 'prompt = "a red circle"\nmodel = "clampgen-tiny"\n' + text)
    out = tmp_path / "run"
    assert main(["--config", str(path), "--steps", "2", "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()
