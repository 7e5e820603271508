"""A short seeded run pinned to its exact pixels and metrics: a refactor must not change them.

The hashes were taken on a 2-core x86 CPU with one torch thread (conftest.py). A change
that alters them on purpose (new random draws, a different step) updates them here, bumps the
version (DEVELOPERS.md) and reruns the study.
"""

import csv
import hashlib

import numpy as np
import pytest
from PIL import Image

from clampgen.cli import main

# name: (generator options, sha256 of final.png's RGB pixels, sha256 of metrics.csv without
# seconds); "fft-0.2" is fft with the settings of 0.2.0, whose hashes it kept
PINNED = {
    "pixel": (
        ["--generator", "pixel"],
        "2f4e25ffd44b2846b57a3fce47df571793295050253d6406c324ab5c21c1446c",
        "b0ea3bdfa5b253646fdc366cae0f8afe2919922bc8d377ac19006838f4967455",
    ),
    "fft-0.2": (
        ["--generator", "fft", "--cut-overhang", "0.25", "--tv-weight", "0"],
        "de0c23576faac4bd555c97f798a8c7d6deca0f8627c9618f61c7f168e4bf2634",
        "35aab7399db5e0cadeae1c3be093029088fc44970bd956c33102c8d13a17c23f",
    ),
    "fft": (
        ["--generator", "fft"],
        "42657be898afcb82914a9a2576a102ace4680fe7b27b2c5c127f847a7b409e83",
        "443ca39dbcda11684416540afa1cc3b754b3c6925c1a190010b0f56aa2bedcf7",
    ),
}


@pytest.mark.parametrize("name", list(PINNED))
def test_seeded_run_is_pinned(tmp_path, name):
    options, *pinned = PINNED[name]
    out = tmp_path / "run"
    argv = [
        "a red circle on a blue background",
        "--model",
        "shapes",
        *options,
        "--size",
        "48",
        "32",
        "--cutn",
        "4",
        "--steps",
        "5",
        "--seed",
        "11",
        "--init-scale",
        "3",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    pixels = np.asarray(Image.open(out / "final.png").convert("RGB"))
    assert pixels.shape == (32, 48, 3)  # --size is W H
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    metrics = "\n".join(",".join(r[k] for k in r if k != "seconds") for r in rows)
    got = (
        hashlib.sha256(pixels.tobytes()).hexdigest(),
        hashlib.sha256(metrics.encode()).hexdigest(),
    )
    assert got == tuple(pinned), metrics
