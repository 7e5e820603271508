"""Videos (clampgen.video), decoded again: frame counts, sizes, H.264/yuv420p, and a comparison
video whose tiles differ where the variants differ."""

import math

import numpy as np
import pytest

from clampgen.cli import main
from clampgen.rundir import frame_paths
from clampgen.video import (
    HOLD_LAST_SECONDS,
    LABEL_HEIGHT,
    available,
    comparison_frames,
    encode,
    read_video,
)

pytestmark = pytest.mark.skipif(not available(), reason="PyAV (the video extra) not installed")
TINY = ["--model", "clampgen-tiny", "--size", "32", "--cutn", "2", "--no-progress", "--seed", "2"]


def test_encode_pads_odd_sides_and_decodes_as_h264_yuv420p(tmp_path):
    import av

    frames = [np.full((15, 21, 3), 20 * i, np.uint8) for i in range(6)]
    path = encode(frames, tmp_path / "v.mp4", fps=4)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.format.name) == ("h264", "yuv420p")
        assert (stream.height, stream.width) == (16, 22) and stream.average_rate == 4
    decoded = read_video(path)
    assert len(decoded) == 6 and decoded[0].shape == (16, 22, 3)
    # grey levels survive the lossy codec within a few units
    assert all(abs(int(f[8, 10, 0]) - 20 * i) <= 3 for i, f in enumerate(decoded))


def test_encode_needs_frames(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        encode([], tmp_path / "v.mp4")


def test_comparison_video_tiles_are_synchronised_and_differ_where_the_variants_do(tmp_path):
    out = tmp_path / "cmp"
    argv = [
        "a red circle",
        *TINY,
        "--generator",
        "pixel",
        "--init-scale",
        "4",
        "--steps",
        "8",
        "--save-every",
        "2",
        "--clamp",
        "clamp,clamp_with_grad_proposed",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    runs = {"clamp": out / "clamp", "clamp_with_grad_proposed": out / "clamp_with_grad_proposed"}
    steps = sorted(frame_paths(runs["clamp"]))
    assert steps == [0, 2, 4, 6, 8]
    video = read_video(out / "comparison.mp4")
    assert len(video) == len(steps) - 1 + math.ceil(HOLD_LAST_SECONDS * 5)  # fps 5, last held
    tiles = comparison_frames(runs)  # the frames before encoding: 2 tiles of 64 px, 4 px apart
    assert video[0].shape == tiles[0].shape == (LABEL_HEIGHT + 64, 64 + 4 + 64, 3)
    first, last = video[0].astype(int), video[len(steps) - 1].astype(int)
    a, b = slice(0, 64), slice(68, 132)
    image = slice(LABEL_HEIGHT + 2, None)  # below the labels
    start_gap = np.abs(first[image, a] - first[image, b]).mean()
    end_gap = np.abs(last[image, a] - last[image, b]).mean()
    assert start_gap < 3 < end_gap, (start_gap, end_gap)  # same start, different end
    assert (out / "index.html").read_text().count("comparison.mp4") == 1
