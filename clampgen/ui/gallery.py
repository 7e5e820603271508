"""The results folder as the web app's history: its runs, comparisons and suites, newest first,
a page at a time.

    names = entry_names("results")            # one directory listing, no file read
    entries, pages = page("results", 0)       # reads the files of one page's entries only

A page costs the same with ten runs or a thousand: the directories' names start with their
timestamp (clampgen.rundir.timestamped_dir), so sorting the names orders them, and only the
entries of the page asked for are read (run.json or plan.json, a few file checks).
"""

import dataclasses
import json
import math
import os
import re
from pathlib import Path

from clampgen import rundir
from clampgen.compare.runner import comparison_dirs

PER_PAGE = 24
THUMBNAIL_RUNS = 4  # a comparison's thumbnail: its first variants' images side by side
UPLOADS = "uploads"  # the app's copies of images given on the page (init, image prompts)
STAMPED = re.compile(r"\d{8}-\d{6}")  # rundir.timestamped_dir's names


@dataclasses.dataclass
class Entry:
    """One directory of the results folder."""

    path: Path
    kind: str  # run, comparison or suite
    status: str  # finished, stopped, running or empty
    prompt: str = ""
    clamps: list = dataclasses.field(default_factory=list)
    seeds: list = dataclasses.field(default_factory=list)
    steps: int = None  # the run's steps; steps_done: the last reported (a run's)
    steps_done: int = None
    config: dict = dataclasses.field(default_factory=dict)  # the recorded options
    runs: dict = dataclasses.field(default_factory=dict)  # {label: run directory}
    pictures: list = dataclasses.field(default_factory=list)  # its thumbnail: each run's image
    resumable: bool = False  # stopped or killed: resuming it continues where it stopped

    @property
    def caption(self) -> str:
        what = " vs ".join(self.clamps) if self.kind == "comparison" else ", ".join(self.clamps)
        steps = f"step {self.steps_done}/{self.steps}" if self.steps_done is not None else ""
        parts = [self.path.name, self.prompt[:60] and repr(self.prompt[:60]), what]
        return " · ".join(p for p in [*parts, steps, self.status] if p)


def entry_names(root) -> list:
    """The directories of the results folder, newest first (timestamped names, then others by
    name); hidden ones, the app's uploads and moved-aside `*.unfinished*` ones left out."""
    try:
        listing = os.scandir(root)
    except (FileNotFoundError, NotADirectoryError):
        return []
    with listing:
        names = [
            e.name
            for e in listing
            if e.is_dir(follow_symlinks=False)
            and not e.name.startswith(".")
            and e.name != UPLOADS
            and ".unfinished" not in e.name
        ]
    stamped = sorted((n for n in names if STAMPED.match(n)), reverse=True)
    return stamped + sorted(n for n in names if not STAMPED.match(n))


def page(root, number: int = 0, per_page: int = PER_PAGE) -> tuple:
    """(the entries of page `number` (from 0, clipped to the pages there are), page count)."""
    names = entry_names(root)
    pages = max(1, math.ceil(len(names) / per_page))
    number = min(max(0, int(number)), pages - 1)
    chosen = names[number * per_page : (number + 1) * per_page]
    return [read_entry(Path(root) / name) for name in chosen], pages


def _json(path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _picture(run_dir):
    """final.png, else the last frame saved (a run still going or stopped), else None."""
    final = Path(run_dir) / rundir.FINAL_PNG
    if final.is_file():
        return final
    frames = rundir.frame_paths(run_dir) if (Path(run_dir) / rundir.FRAMES).is_dir() else {}
    return list(frames.values())[-1] if frames else None


def read_entry(path) -> Entry:
    """The entry of one directory of the results folder."""
    path = Path(path)
    plan = _json(path / rundir.PLAN_JSON) if (path / rundir.PLAN_JSON).is_file() else None
    if plan is not None:
        return _comparison(path, plan)
    record = _json(path / rundir.RUN_JSON) if (path / rundir.RUN_JSON).is_file() else {}
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    if rundir.in_use(path):
        status = "running"
    elif (path / rundir.CHECKPOINT).is_file():
        status = "stopped"  # Ctrl-C, Stop, or killed before its run.json
    elif record.get("interrupted") is False:
        status = "finished"
    elif record:
        status = "stopped"  # interrupted, its checkpoint gone: shown, not resumable
    else:
        status = "empty"
    return Entry(
        path,
        "run",
        status,
        prompt=config.get("prompt", ""),
        clamps=[config["clamp"]] if "clamp" in config else [],
        seeds=[config["seed"]] if "seed" in config else [],
        steps=config.get("steps"),
        steps_done=record.get("steps_done"),
        config=config,
        runs={config.get("clamp", path.name): path},
        pictures=[p for p in [_picture(path)] if p is not None],
        resumable=status == "stopped" and (path / rundir.CHECKPOINT).is_file(),
    )


def _comparison(path, plan) -> Entry:
    prompts, seeds, clamps = plan.get("prompts") or [""], plan.get("seeds"), plan.get("clamps")
    config = {**plan.get("config", {}), "prompt": prompts[0]}
    if len(prompts) > 1:  # a suite: one comparison per prompt
        done = (path / "summary.json").is_file()
        picture = path / "suite.png"
        return Entry(
            path,
            "suite",
            "finished" if done else "stopped",
            prompt=" / ".join(prompts),
            clamps=clamps or [],
            seeds=seeds or [],
            steps=config.get("steps"),
            config=config,
            pictures=[picture] if picture.is_file() else [],
        )
    dirs = comparison_dirs(path, clamps or [], seeds or [0]) if clamps else {}
    runs = {
        (clamp if len(dirs) == 1 else f"{clamp} · seed {seed}"): run_dir
        for seed, by_clamp in dirs.items()
        for clamp, run_dir in by_clamp.items()
    }
    if any(d.is_dir() and rundir.in_use(d) for d in runs.values()):
        status = "running"
    elif runs and all(rundir.run_finished(d) for d in runs.values()):
        status = "finished"
    else:
        status = "stopped"
    first = list(runs.values())[: len(clamps or [])][:THUMBNAIL_RUNS]  # the first seed's
    pictures = [p for p in map(_picture, first) if p is not None]
    return Entry(
        path,
        "comparison",
        status,
        prompt=prompts[0],
        clamps=clamps or [],
        seeds=seeds or [],
        steps=config.get("steps"),
        config=config,
        runs=runs,
        pictures=pictures,
        resumable=status == "stopped",
    )


def details(entry: Entry) -> dict:
    """What the page shows of an entry: {'text' (markdown), 'images' [(path, caption)],
    'video' (path or None), 'report' (index.html's path or None)}."""
    path = entry.path
    lines = [f"**{entry.kind}** `{path}` · {entry.status}"]
    if entry.prompt:
        lines.append(f"prompt: `{entry.prompt}` · seed(s): {', '.join(map(str, entry.seeds))}")
    summary = path / "summary.md"
    if entry.kind != "run" and summary.is_file():
        # the report's tables, whatever columns they have; its title a small heading here
        lines.append(re.sub(r"(?m)^#+ ", "#### ", summary.read_text()))
    images = []
    for label, run_dir in entry.runs.items():
        record = _json(run_dir / rundir.RUN_JSON)
        loss = record.get("final_loss")
        picture = _picture(run_dir)
        if picture is not None:
            done = record.get("steps_done")
            text = f"{label} · step {done}" if done is not None else label
            images.append((picture, text + (f" · loss {loss:.4f}" if loss is not None else "")))
    if entry.kind == "run" and entry.steps_done is not None:
        lines.append(f"{entry.steps_done} of {entry.steps} steps")
    video = next((v for v in (path / "comparison.mp4", path / "progress.mp4") if v.is_file()), None)
    report = path / "index.html"
    return {
        "text": "\n\n".join(lines),
        "images": images,
        "video": video,
        "report": report if report.is_file() else None,
    }
