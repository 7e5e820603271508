"""Does a long run grow? Peak memory (RSS) of one generate.py run, sampled as it goes.

    OMP_NUM_THREADS=1 python scripts/rss_long_run.py --steps 2000 -- "a red circle on a blue bg"

Runs generate.py's main(ARGS --steps N --out <tmp>) in this process (exactly what
`python generate.py` runs) while a thread reads VmRSS and VmHWM (the peak RSS so far) from
/proc/self/status each time metrics.csv passes another `--every` steps, and once more after
main() returned (final.png, progress.gif, loss.png and run.json written). Prints one line per
sample and the growth of the peak from the first sample to the end. The peak is read before the
interpreter exits: tearing torch down adds a constant ~100 MiB at exit that getrusage would
count (even for `python -c "import torch"`), whatever the run did. Linux only (/proc).
"""

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from clampgen.cli import main as generate


def status() -> dict:
    """VmRSS and VmHWM of this process in MiB."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=200, help="sample every N steps")
    parser.add_argument("args", nargs="*", help="generate.py's arguments (after --)")
    opts = parser.parse_args(argv)
    samples, done = [], threading.Event()

    def show(label, s):
        samples.append((label, s))
        print(f"{label:>10}  rss {s['VmRSS']:7.1f} MiB  peak {s['VmHWM']:7.1f} MiB", flush=True)

    def sample(metrics):
        next_step = opts.every
        while not done.wait(0.05):
            if metrics.exists() and metrics.read_bytes().count(b"\n") - 2 >= next_step:
                show(f"step {next_step}", status())
                next_step += opts.every

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        argv = [*opts.args, "--steps", str(opts.steps), "--out", str(out)]
        print("generate.py " + " ".join(argv))
        sampler = threading.Thread(target=sample, args=(out / "metrics.csv",), daemon=True)
        start = time.time()
        sampler.start()
        code = generate(argv)
        done.set()
        sampler.join()
        show("end", status())
    first, last = samples[0][1]["VmHWM"], samples[-1][1]["VmHWM"]
    print(
        f"exit {code}, {time.time() - start:.0f} s; peak at {samples[0][0]}: {first:.1f} MiB, "
        f"at the end: {last:.1f} MiB ({(last / first - 1) * 100:+.2f} %)"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
