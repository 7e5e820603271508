"""`clampgen ui` started for a test: the real server in its own process, on a free port.

with serving(tmp_path / "results") as url:
    Client(url, ...)      # or a browser on url
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"  # Debian's package (playwright's own download cannot work here)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(results, *options, timeout=180):
    """Starts `python -m clampgen.ui` on a free port with one torch thread; yields its URL and
    the lines it printed so far (a list that grows); stops it with SIGINT at the end."""
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "GRADIO_TEMP_DIR": str(results.parent / "gradio-cache"),
    }
    port = free_port()
    argv = ["--port", str(port), "--results", str(results), "--threads", "1", *options]
    proc = subprocess.Popen(
        [sys.executable, "-m", "clampgen.ui", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=results.parent,
        env=env,
    )
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        start = time.monotonic()
        while not any(ln.startswith("clampgen ui: http") for ln in lines):
            if proc.poll() is not None or time.monotonic() - start > timeout:
                raise RuntimeError("clampgen ui did not start:\n" + "".join(lines))
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/", lines
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)
