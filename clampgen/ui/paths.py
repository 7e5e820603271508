"""What the web app may read and serve: paths inside the results folder, nothing else.

    inside("results", "results/20261205-101010-a-red-circle")   # -> the resolved path
    inside("results", "results/../../etc/passwd")                # PathRefused

A path from the page (a run to show or resume) is resolved first (`..` and symlinks followed),
then must lie inside the resolved results folder.
"""

import os
from pathlib import Path


class PathRefused(ValueError):
    """A path outside the results folder (or not a path at all)."""


def inside(root, path) -> Path:
    """path (absolute, or relative to the working directory) resolved, when it lies inside
    root; PathRefused otherwise."""
    root = Path(root).resolve()
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not text or "\0" in text:
        raise PathRefused(f"not a path: {path!r}")
    candidate = Path(text)
    if not candidate.is_absolute():
        candidate = Path.cwd() / candidate
    resolved = candidate.resolve()
    if resolved != root and root not in resolved.parents:
        raise PathRefused(f"{text}: not inside the results folder {root}")
    return resolved


def file_url(root, path) -> str:
    """The app's URL of a file inside root (Gradio serves the results folder, nothing else)."""
    return "/gradio_api/file=" + inside(root, path).as_posix()
