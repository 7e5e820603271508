"""The package's structure, read from its source with `ast`: imports run one way, bottom to top;
no module reaches into another's private names; only entry points print; every command line is
built from dataclass fields (and answers --help)."""

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "clampgen"

# bottom to top; a module may import modules of its own layer (the graph stays acyclic) and of
# the layers below, never above. A new module must be placed here.
LAYERS = [
    # foundations: torch-level pieces with no knowledge of runs
    ["clamps", "keepers", "prompts", "options", "devices", "logs", "malloc", "fold"],
    # options of a run, and the models (runtime: world, networks, judges, weights)
    [
        "config",
        "models",
        "models.shapes_data",
        "models.shapes_cnn",
        "models.shapes_clip",
        "models.judge",
        "models.shapes_vqgan",
        "vqgan_model",
    ],
    # what a step is made of: image parametrisations, cutouts, CLIP
    ["cutouts", "vqgan", "generators", "hub", "clip_loader"],
    # the loop: knows nothing about files; and the guides it takes, built from a config
    ["loop", "guides", "starts"],
    # the run directory format, shared by the run that writes it and the comparisons that read it
    ["rundir"],
    # one run
    ["video", "writers", "judges", "checkpoint", "run", "resume"],
    # the comparison side
    [
        "compare",
        "compare.stats",
        "compare.summary",
        "compare.judged",
        "compare.tables",
        "compare.plots",
        "compare.html",
        "compare.report",
        "compare.dist",
        "compare.interleave",
        "compare.runner",
    ],
    # applications: command lines and tools
    [
        "__init__",
        "cli",
        "study",
        "steer_check",
        "bench",
        "toy",
        "training",
        "training.train_shapes",
        "training.train_judge",
        "training.eval_shapes",
        "training.train_vqgan",
        "training.eval_vqgan",
        "ui",
        "ui.__main__",
        "ui.paths",
        "ui.gallery",
        "ui.form",
        "ui.jobs",
        "ui.app",
        "ui.layout",
        "ui.server",
    ],
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text()) for name, path in MODULES.items()}


def imported(tree) -> list:
    """(module, names) of every `import clampgen...` / `from clampgen... import` in tree, at any
    depth (imports inside functions count too); names are those taken by `from` imports."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("clampgen"):
            target = node.module[len("clampgen.") :] if node.module != "clampgen" else ""
            for alias in node.names:
                sub = f"{target}.{alias.name}".strip(".")
                if sub in MODULES:  # `from clampgen.compare import dist`: a module
                    found.append((sub, []))
                else:
                    found.append((target or "__init__", [alias.name]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("clampgen."):
                    found.append((alias.name[len("clampgen.") :], []))
    return found


def test_every_module_has_a_layer():
    assert sorted(set(MODULES) - set(LAYER)) == [], "place new modules in LAYERS"
    assert sorted(set(LAYER) - set(MODULES)) == [], "LAYERS names modules that do not exist"


def test_imports_point_down():
    upward = [
        f"{name} (layer {LAYER[name]}) imports {target} (layer {LAYER[target]})"
        for name, tree in TREES.items()
        for target, _ in imported(tree)
        if LAYER[target] > LAYER[name]
    ]
    assert upward == []


def test_import_graph_is_acyclic():
    graph = {name: {t for t, _ in imported(tree) if t != name} for name, tree in TREES.items()}
    graph = {k: v - {"__init__"} for k, v in graph.items()}  # `clampgen` itself: the lazy facade
    done, path = set(), []

    def visit(node):
        if node in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(node) :] + [node]))
        if node in done:
            return
        path.append(node)
        for nxt in graph[node]:
            visit(nxt)
        path.pop()
        done.add(node)

    for node in graph:
        visit(node)


def test_no_private_names_across_modules():
    """`from clampgen.x import _y` and `x._y` on an imported clampgen module are both refused."""
    offences = []
    for name, tree in TREES.items():
        modules = {}  # local name -> clampgen module it is bound to
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("clampgen")
            ):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full[len("clampgen.") :] in MODULES:
                        modules[alias.asname or alias.name] = full
                    elif alias.name.startswith("_") and not alias.name.startswith("__"):
                        offences.append(f"{name}: from {node.module} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("clampgen.") and alias.asname:
                        modules[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                offences.append(f"{name}: {node.value.id}.{node.attr}")
    assert offences == []


def test_only_entry_points_print():
    """Library code returns, logs or calls a callback; print() is called only inside main()."""
    offences = []
    for name, tree in TREES.items():
        for func in [
            n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name != "main"
        ]:
            inner = {
                id(n)
                for f in ast.walk(func)
                if isinstance(f, ast.FunctionDef) and f is not func and f.name == "main"
                for n in ast.walk(f)
            }
            for node in ast.walk(func):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "print"
                    and id(node) not in inner
                ):
                    offences.append(f"{name}.{func.name}")
    assert sorted(set(offences)) == []


ENTRY_POINTS = [
    "clampgen.training.train_vqgan",
    "clampgen.training.eval_vqgan",
    "clampgen.cli",
    "clampgen.study",
    "clampgen.steer_check",
    "clampgen.bench",
    "clampgen.toy",
    "clampgen.compare.report",
    "clampgen.ui.server",
    "clampgen.training.train_shapes",
    "clampgen.training.train_judge",
    "clampgen.training.eval_shapes",
]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_every_command_answers_help_with_help_on_every_option(module, capsys):
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "usage:" in text and "(default:" in text
