"""clampgen ui: a local web page to start runs and race clamps side by side.

    clampgen ui                              # http://127.0.0.1:7860, results in ./results
    clampgen ui --port 8000 --threads 1      # (also: python -m clampgen.ui ...)
    clampgen ui --host 0.0.0.0               # others on the network can use it too

The page runs the same library functions as generate.py (a run from the page writes the same
run directory, with the same pixels), one job at a time, in the order they were asked for. It
works offline: no analytics, no fonts or scripts from the internet, no public link unless
--share. It serves the app and the files of the results folder, nothing else. Ctrl-C stops the
server; a run still going stops as on Ctrl-C (its work kept, resumable from the page).
"""

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from clampgen.options import option, parse_options


@dataclass
class UiOptions:
    host: str = option("127.0.0.1", "address to listen on (0.0.0.0: every network interface)")
    port: int = option(7860, "port to listen on")
    results: str = option(
        "results", "the results folder: runs go there, History shows it, only it is served"
    )
    threads: int = option(
        0, "CPU threads for torch in each run (0: torch's default), as generate.py --threads"
    )
    frame_every: int = option(5, "a run's live frame is taken every N steps")
    refresh: float = option(
        1.0, "seconds between two live views sent to a page (each costs the run a little)"
    )
    per_page: int = option(24, "runs per History page")
    share: bool = option(False, "also a public gradio.live link (needs the internet)")


def offline() -> None:
    """Gradio's usage statistics and version check off, before gradio is imported."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def start(opts: UiOptions):
    """Launches the app without blocking; returns (demo, queue, its local URL)."""
    offline()
    from clampgen.ui.app import Page
    from clampgen.ui.jobs import JobQueue
    from clampgen.ui.layout import CSS, build, theme

    results = Path(opts.results).resolve()
    results.mkdir(parents=True, exist_ok=True)
    queue = JobQueue(results, threads=opts.threads, frame_every=opts.frame_every)
    page = Page(queue, results, opts.threads, per_page=opts.per_page, refresh=opts.refresh)
    demo = build(page)
    demo.queue(default_concurrency_limit=4)
    demo.launch(
        server_name=opts.host,
        server_port=opts.port,
        share=opts.share,
        prevent_thread_lock=True,
        quiet=True,
        allowed_paths=[str(results)],
        theme=theme(),
        css=CSS,
        footer_links=["api"],
        show_error=False,
    )
    return demo, queue, demo.local_url


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def main(argv=None) -> int:
    """Serves the page until Ctrl-C (or SIGTERM); a run still going is stopped and kept."""
    opts = parse_options(UiOptions, argv, prog="clampgen ui", description=__doc__)
    from clampgen.logs import show_logs
    from clampgen.malloc import keep_freed_memory

    show_logs()
    keep_freed_memory()  # as generate.py: a step's temporaries reuse warm pages (malloc.py)
    try:
        demo, queue, url = start(opts)
    except ImportError as e:
        print(f"error: clampgen ui needs {e.name}: pip install 'clampgen[ui]'", file=sys.stderr)
        return 2
    except OSError as e:  # the port is taken, the results folder cannot be made
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"clampgen ui: {url}  (results: {Path(opts.results).resolve()}; Ctrl-C stops)")
    if demo.share_url:
        print(f"public link: {demo.share_url}")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        while demo.is_running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        queue.close()
        demo.close()
    print("clampgen ui: stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
