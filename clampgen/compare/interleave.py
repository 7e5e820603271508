"""Runs that take turns: the variants of a comparison advance a reported step at a time, one
after the other, so that a live view shows every variant at the same step.

    failures = run_in_turns(jobs, run)   # run(job, callback) in a thread per job

Each job runs in its own thread, but only one run steps at a time: a run keeps its turn for a
time slice (SLICE seconds, ended at a reported step, its loop callback), hands over to the next
one and waits for its turn to come round again; after its last step it leaves the rotation, and
writes its final files (final.png, progress.gif, the video, loss.png) while the others go on.
No two loops step at once, and each run owns its random streams (clampgen.run), so a run's
pixels and numbers are those it has when the runs go one after the other, whatever the slice.
torch's thread count must be set before (clampgen.run.torch_threads), since a run that ends
first would otherwise restore another count under the runs still going.

Why a slice and not a step: on a CPU, runs that alternate at every step each start their step
with the other's data in the caches; a 128x128 race of two clamps then took 40-75 % longer than
the same runs one after the other, and about the same time with turns of 10 steps
(docs/performance.md).
"""

import threading
import time

SLICE = 0.5  # seconds a run keeps its turn (0: a reported step each, in strict rotation)


class Turns:
    """A baton passed round the runs still going, in a fixed order."""

    def __init__(self, n: int):
        self.going = list(range(n))
        self.current = 0
        self.cond = threading.Condition()

    def wait(self, i: int) -> None:
        """Blocks until it is run i's turn."""
        with self.cond:
            self.cond.wait_for(lambda: self.current == i)

    def hand_over(self, i: int) -> None:
        """Run i gives the turn to the next run still going, and waits for it to come back."""
        with self.cond:
            k = self.going.index(i)
            self.current = self.going[(k + 1) % len(self.going)]
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.current == i)

    def leave(self, i: int) -> None:
        """Run i has ended (its stepping): the turn goes to the next run still going."""
        with self.cond:
            if i not in self.going:
                return
            k = self.going.index(i)
            self.going.remove(i)
            if self.going and self.current == i:
                self.current = self.going[k % len(self.going)]
            self.cond.notify_all()


class Interrupted(KeyboardInterrupt):
    """Raised in a run's callback when another run ended the whole job (Ctrl-C, a stop, a full
    disk): the run stops as it would on Ctrl-C, its work kept and resumable."""


def run_in_turns(jobs: list, run, stop_all=(KeyboardInterrupt,), slice: float = SLICE) -> list:
    """Calls run(job, callback) for every job, each in its own thread, taking turns of `slice`
    seconds, handed over in callback(info) (the loop callback the run must call at every
    reported step; info['last'] true at its last step, after which it steps no more).

    Returns [(job, exception)] of the runs that raised an Exception. An exception of a type in
    `stop_all` (a BaseException) ends every run at its next step (Interrupted) and is raised
    here once all the threads have ended; so is a KeyboardInterrupt of the calling thread."""
    turns, ended, abort = Turns(len(jobs)), [None] * len(jobs), threading.Event()
    since = [0.0] * len(jobs)  # when each run's turn began

    def body(i, job):
        def callback(info):
            if info.get("last"):  # its final files are written while the others step
                turns.leave(i)
                return
            if time.monotonic() - since[i] >= slice or abort.is_set():
                turns.hand_over(i)
                since[i] = time.monotonic()
            if abort.is_set():
                raise Interrupted("another run of the job stopped")

        turns.wait(i)
        since[i] = time.monotonic()
        try:
            if not abort.is_set():
                run(job, callback)
        except BaseException as e:  # noqa: BLE001 -- handed to the calling thread below
            ended[i] = e
            if isinstance(e, stop_all):
                abort.set()
        finally:
            turns.leave(i)

    threads = [
        threading.Thread(target=body, args=(i, job), name=f"run-{i}", daemon=True)
        for i, job in enumerate(jobs)
    ]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:  # Ctrl-C while the runs go: each stops at its next step
        abort.set()
        for t in threads:
            t.join()
        raise
    stops = [e for e in ended if e is not None and isinstance(e, stop_all)]
    if stops:
        first = next((e for e in stops if not isinstance(e, Interrupted)), stops[0])
        raise first
    return [(job, e) for job, e in zip(jobs, ended) if isinstance(e, Exception)]
