"""What the web app (clampgen ui) costs: a run from the page against the same run from
generate.py, and a History page with 10 against 1000 runs. Numbers for docs/performance.md,
never a timed test.

    OMP_NUM_THREADS=1 python scripts/bench_ui.py overhead --repeats 5
    OMP_NUM_THREADS=1 python scripts/bench_ui.py engine --repeats 5
    OMP_NUM_THREADS=1 python scripts/bench_ui.py gallery --repeats 20

overhead: starts `clampgen ui` (one torch thread), then alternates the same options through
generate.py (a process of its own) and through the page's API (gradio_client, every live view
streamed to this process as a browser would get it). Two measures, the same for both ways:
the runs' own clocks (run.json's wall_seconds: the loop and its writers; for a race the CLI's
variants one after the other, their sum, against the page's side by side, the longest, each
spanning most of the race), and the job as its files tell it (from the first step-0 frame to
the last file: run.json, or a race's index.html after its report). The time of each call is
printed too (generate.py's includes starting Python and loading torch, the page's does not).

engine: the same in one warm process, so that neither side pays a cold start: generate.py's
main() against the page's job queue with a follower building every view (see engine()).

gallery: writes 10 and 1000 small entries (run.json, final.png; every fourth a race of two) and
times the History's first and last page: clampgen.ui.gallery.page, and the page's /history
through a server (gradio_client; the thumbnails made and linked), median of 20.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

OPTIONS = ["--size", "128", "--steps", "60", "--seed", "3", "--threads", "1"]


def cli_run(out: Path, prompt: str, clamps: str) -> dict:
    start = time.perf_counter()
    argv = [sys.executable, str(ROOT / "generate.py"), prompt, "--clamp", clamps, *OPTIONS]
    subprocess.run([*argv, "--out", str(out), "--no-progress"], check=True, capture_output=True)
    return {"call": time.perf_counter() - start, "dir": out}


def page_run(client, prompt: str, clamps: str) -> dict:
    start = time.perf_counter()
    job = client.submit(
        prompt, clamps.split(","), "fft", "60", 128, 128, "3", 1, "auto", "", "noise", "", "",
        api_name="/run",
    )  # fmt: skip
    views = list(job)  # every live view, as the page gets them
    status = views[-1][0]
    assert status.startswith("**finished**"), status
    return {
        "call": time.perf_counter() - start,
        "dir": Path(status.split("`")[1]),
        "views": len(views),
    }


def loop_seconds(run_dir: Path, clamps: str, side_by_side: bool) -> float:
    """The run's clock: one run's wall_seconds; a race's sum (one after the other) or longest
    (side by side)."""
    names = clamps.split(",")
    dirs = [run_dir] if len(names) == 1 else [run_dir / c for c in names]
    seconds = [json.loads((d / "run.json").read_text())["wall_seconds"] for d in dirs]
    return max(seconds) if side_by_side else sum(seconds)


def span_seconds(run_dir: Path, clamps: str) -> float:
    """The whole job as its files tell it, the same for both ways: from the first step-0 frame
    to the last file written (a run's run.json, a race's index.html)."""
    names = clamps.split(",")
    dirs = [run_dir] if len(names) == 1 else [run_dir / c for c in names]
    start = min((d / "frames" / "step_00000.png").stat().st_mtime for d in dirs)
    end = (run_dir / ("run.json" if len(names) == 1 else "index.html")).stat().st_mtime
    return end - start


def overhead(repeats: int, refresh: float = 1.0):
    from gradio_client import Client
    from ui_server import serving

    work = Path(tempfile.mkdtemp(prefix="bench_ui_"))
    with serving(work / "results", "--refresh", str(refresh)) as (url, _):
        client = Client(url, verbose=False, analytics_enabled=False, download_files=str(work))
        for clamps in ("clamp_with_grad", "clamp,clamp_with_grad"):
            page_run(client, "a red circle", clamps)  # warm: the model loaded once
            rows = {"cli": [], "page": []}
            for i in range(repeats):
                for way in ("cli", "page") if i % 2 == 0 else ("page", "cli"):
                    if way == "cli":
                        got = cli_run(work / f"cli-{clamps}-{i}", "a red circle", clamps)
                    else:
                        got = page_run(client, "a red circle", clamps)
                    got["loop"] = loop_seconds(got["dir"], clamps, way == "page")
                    got["span"] = span_seconds(got["dir"], clamps)
                    rows[way].append(got)
            report(clamps, rows, repeats)


def engine(repeats: int):
    """In one warm process: generate.py's main() against the page's engine (its queue and job,
    the loop callback, live frames) with its follower building every view and encoding each
    frame as PNG, as the server does for the browser, in a thread of its own."""
    import io
    import threading

    from clampgen.cli import main as generate
    from clampgen.ui.app import Page
    from clampgen.ui.form import Form, parse_form
    from clampgen.ui.jobs import Job, JobQueue

    work = Path(tempfile.mkdtemp(prefix="bench_engine_"))
    queue = JobQueue(work / "results", threads=1)
    page = Page(queue, work / "results", threads=1)

    def follow(job, views):
        for view in page.follow(job):
            for image, _ in view[1] if isinstance(view[1], list) else []:  # (else: gr.skip)
                image.save(io.BytesIO(), format="PNG")
            views.append(view)

    def page_run(clamps):
        form = Form("a red circle", clamps.split(","), "fft", "60", 128, 128, "3")
        job, views = Job.new(parse_form(form, threads=1), "bench"), []
        follower = threading.Thread(target=follow, args=(job, views))
        start = time.perf_counter()
        queue.submit(job)
        follower.start()
        follower.join()
        return {"call": time.perf_counter() - start, "dir": job.out, "views": len(views)}

    def cli_run(clamps, i):
        out = work / f"cli-{clamps}-{i}"
        argv = ["a red circle", "--clamp", clamps, *OPTIONS, "--out", str(out), "--no-progress"]
        start = time.perf_counter()
        assert generate(argv) == 0
        return {"call": time.perf_counter() - start, "dir": out}

    for clamps in ("clamp_with_grad", "clamp,clamp_with_grad"):
        page_run(clamps), cli_run(clamps, "warm")  # both warm: kernels, allocator, model files
        rows = {"cli": [], "page": []}
        for i in range(repeats):
            for way in ("cli", "page") if i % 2 == 0 else ("page", "cli"):
                got = cli_run(clamps, i) if way == "cli" else page_run(clamps)
                got["loop"] = loop_seconds(got["dir"], clamps, way == "page")
                got["span"] = span_seconds(got["dir"], clamps)
                rows[way].append(got)
        report(clamps, rows, repeats)
    queue.close()


def report(clamps, rows, repeats):
    print(f"{clamps}: {repeats} alternations, {' '.join(OPTIONS)}")
    ratios = {}
    for key, what in (("loop", "run's clock"), ("span", "first frame to last file")):
        med = {w: statistics.median(r[key] for r in rows[w]) for w in rows}
        for w in rows:
            times = " ".join(f"{r[key]:.2f}" for r in rows[w])
            print(f"  {w:4s} {what}: median {med[w]:.2f} s ({times})")
        ratios[what] = med["page"] / med["cli"]
    call = {w: statistics.median(r["call"] for r in rows[w]) for w in rows}
    views = statistics.median(r["views"] for r in rows["page"])
    print("  page/cli: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    print(f"  calls: cli {call['cli']:.1f} s, page {call['page']:.1f} s; {views:.0f} views per run")


def gallery(repeats: int):
    import numpy as np
    from gradio_client import Client
    from PIL import Image
    from ui_server import serving

    from clampgen.ui import gallery

    for count in (10, 1000):
        root = Path(tempfile.mkdtemp(prefix="bench_gallery_")) / "results"
        image = Image.fromarray(np.zeros((64, 64, 3), np.uint8))
        for i in range(count):  # every fourth a race of two clamps
            entry = root / f"20261205-{i // 60:04d}{i % 60:02d}-run-{i}"
            clamps = ["clamp", "clamp_with_grad"] if i % 4 == 0 else ["clamp"]
            dirs = [entry / c for c in clamps] if len(clamps) > 1 else [entry]
            for clamp, run_dir in zip(clamps, dirs):
                run_dir.mkdir(parents=True)
                config = {"prompt": f"prompt {i}", "clamp": clamp, "seed": i, "steps": 50}
                record = {"config": config, "interrupted": False, "steps_done": 50}
                (run_dir / "run.json").write_text(json.dumps(record))
                image.save(run_dir / "final.png")
            if len(clamps) > 1:
                plan = {"prompts": [f"prompt {i}"], "seeds": [i], "clamps": clamps, "config": {}}
                (entry / "plan.json").write_text(json.dumps(plan))
        for number, what in ((0, "first"), (10**6, "last")):
            ms = median_ms(lambda: gallery.page(root, number), repeats)
            print(f"{count:5d} runs, {what} page: gallery.page {ms:.1f} ms", end="")
            with serving(root) as (url, _):  # the page's API, thumbnails and all
                client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
                ms = median_ms(lambda: client.predict(number, api_name="/history"), repeats)
            print(f", /history through the server {ms:.0f} ms")


def median_ms(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


KINDS = {"overhead": overhead, "engine": engine, "gallery": gallery}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=list(KINDS), help="what to measure")
    parser.add_argument(
        "--repeats", type=int, default=5, help="alternations (overhead, engine), timings (gallery)"
    )
    parser.add_argument("--refresh", type=float, default=1.0, help="the server's --refresh")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.what == "overhead":
        overhead(args.repeats, args.refresh)
    else:
        KINDS[args.what](args.repeats)


if __name__ == "__main__":
    main()
