"""Options declared once, as dataclass fields with their help: every command line is built
from them.

    @dataclass
    class ToyOptions:
        out: str = option("results", "folder for toy.png and toy.csv")
        steps: int = option(200, "gradient-descent steps per start")

    opts = parse_options(ToyOptions, argv, prog="python -m clampgen.toy", description=__doc__)

A flag is `--` + the field name with `-` for `_`. The help and any argparse extras (`flag`,
`metavar`, `choices`, `type`, `positional`) live in the field's metadata. GenerateConfig
(clampgen.config) is declared the same way, and its TOML keys are its field names.
"""

import argparse
import dataclasses
import types
import typing


def option(default, help: str, **extras) -> dataclasses.Field:
    """A dataclass field with its command-line help (and optional argparse extras)."""
    metadata = {"help": help, **extras}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def fields_of(cls) -> dict:
    """{name: dataclasses.Field} of a dataclass, in declaration order."""
    return {f.name: f for f in dataclasses.fields(cls)}


def default_of(f: dataclasses.Field):
    """The default value of a field (calling its default_factory)."""
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, (tuple, list)) else repr(value)


def _argument(parser, f: dataclasses.Field, kind, default, suppress: bool) -> None:
    """One argparse argument for field f of type kind. With suppress, an option not given is
    absent from the parsed namespace (so that only given flags override a TOML file)."""
    meta = dict(f.metadata)
    kw = dict(
        help=f"{meta.pop('help')} (default: {_shown(default)})",
        default=argparse.SUPPRESS if suppress else default,
    )
    if meta.pop("positional", False):
        parser.add_argument(f.name, nargs="?", metavar=f.name.upper(), **kw)
        return
    flag = meta.pop("flag", "--" + f.name.replace("_", "-"))
    origin = typing.get_origin(kind)
    if kind is bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif "type" in meta:
        pass  # the field says how to parse its value
    elif origin is list:
        kw.update(action="append", dest=f.name)
    elif origin is tuple:
        kw.update(nargs="+", type=int)
    elif origin in (typing.Union, types.UnionType):  # Optional[int]
        kw["type"] = next(a for a in typing.get_args(kind) if a is not type(None))
    else:
        kw["type"] = kind
    kw.update(meta)
    parser.add_argument(flag, **kw)


def add_options(parser, cls, *, defaults: dict = None, exclude=(), suppress: bool = False) -> list:
    """One argument per field of dataclass cls (but those in exclude); defaults overrides the
    dataclass's defaults in the help and, without suppress, in the result. Returns the names."""
    defaults, kinds = defaults or {}, typing.get_type_hints(cls)  # kinds: also string annotations
    names = [n for n in fields_of(cls) if n not in exclude]
    for name in names:
        f = fields_of(cls)[name]
        _argument(parser, f, kinds[name], defaults.get(name, default_of(f)), suppress)
    return names


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser showing the description as written (usage examples keep their lines)."""
    return argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def parse_options(cls, argv=None, *, prog: str, description: str):
    """argv -> an instance of dataclass cls, every field an option."""
    parser = new_parser(prog, description)
    names = add_options(parser, cls)
    args = parser.parse_args(argv)
    return cls(**{n: getattr(args, n) for n in names})


def int_list(text: str) -> list:
    """'128,256' -> [128, 256] (argparse `type` of comma lists of positive integers)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("values must be positive")
    return values


_CHECKS = {
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
}


def check_value(name: str, value, annotation) -> None:
    """Raises ValueError unless value fits the field's annotation (ints pass for floats; a tuple
    field takes an int or a list of 1-2 ints, as `size` does)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):  # Optional[int]
        if value is None:
            return
        annotation = next(a for a in args if a is not type(None))
        origin = None
    if origin is list:
        good = isinstance(value, list) and all(isinstance(v, str) for v in value)
        expected = "a list of strings"
    elif origin is tuple:
        items = [value] if isinstance(value, int) else value
        good = (
            isinstance(items, (list, tuple))
            and 1 <= len(items) <= 2
            and all(_CHECKS[int](v) for v in items)
        )
        expected = "W or [W, H] (ints)"
    else:
        good, expected = _CHECKS[annotation](value), annotation.__name__
    if not good:
        raise ValueError(f"config key '{name}': expected {expected}, got {value!r}")
