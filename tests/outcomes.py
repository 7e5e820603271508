"""What two runs that should be the same are compared on: final.png's pixels and metrics.csv
(without its seconds), exactly. Used by the tests of interleaved races and of the web app."""

import numpy as np
from PIL import Image

from clampgen import rundir


def outcome(run_dir):
    """(final.png's pixels (H, W, 3), metrics.csv's columns but seconds) of a run directory."""
    pixels = np.asarray(Image.open(run_dir / rundir.FINAL_PNG).convert("RGB"))
    metrics = rundir.read_metrics(run_dir)
    metrics.pop("seconds")
    return pixels, metrics


def assert_same(a, b):
    """Two outcomes are bit for bit the same."""
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1].keys() == b[1].keys()
    for key in a[1]:
        np.testing.assert_array_equal(a[1][key], b[1][key], err_msg=key)
