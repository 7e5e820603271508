"""The web app's runs: a queue, one worker running one job at a time on the device, and what
each job's page shows while it runs.

    queue = JobQueue("results", threads=1)
    job = queue.submit(Job.new(request, session="tab-1"))   # or Job.resume(path, session=...)
    queue.position(job)     # 0: running, k: k-1 jobs ahead of it
    queue.stop("tab-1")     # that session's job ends within a step, its work kept (resumable)

A job calls the library functions generate.py calls (clampgen.run.run_one,
clampgen.compare.runner.run_comparison, clampgen.resume.resume_run) with a loop callback, so a
run from the page writes the same run directory, with the same pixels, as the same options given
to generate.py. A comparison's variants run side by side (run_comparison's interleave), so the
page shows them all at the same step. The callback keeps each variant's step, loss and
out-of-range share, and a frame every `frame_every` steps; the page reads them.
"""

import dataclasses
import itertools
import json
import logging
import threading
from collections import deque
from pathlib import Path

import numpy as np

from clampgen import rundir
from clampgen.compare.runner import comparison_dirs, run_comparison
from clampgen.config import GenerateConfig, merge_config
from clampgen.devices import resolve_device
from clampgen.generators import with_defaults
from clampgen.guides import load_bundles
from clampgen.resume import resume_run
from clampgen.run import default_run_dir, run_one, torch_threads
from clampgen.ui.form import error_line
from clampgen.writers import to_pil

log = logging.getLogger(__name__)

ENDED = ("finished", "stopped", "failed", "cancelled")


class StopRequested(KeyboardInterrupt):
    """The page's Stop: the run ends as on Ctrl-C, its work kept and resumable."""


@dataclasses.dataclass
class Variant:
    """One run of a job, as the page shows it."""

    label: str
    run_dir: Path
    step: int = None
    loss: float = None
    eval_loss: float = None
    out_of_range: float = None
    curve: list = dataclasses.field(default_factory=list)  # (step, loss, out_of_range)
    frame: np.ndarray = None  # (H, W, 3) uint8


@dataclasses.dataclass
class Job:
    """A run, comparison or resume asked for by one page (its session)."""

    session: str
    request: object = None  # clampgen.ui.form.Request; None when resuming
    resume_dir: Path = None
    id: int = dataclasses.field(default_factory=itertools.count(1).__next__)
    state: str = "queued"  # queued, running, then one of ENDED
    message: str = ""  # the error line of a failed job
    out: Path = None
    variants: dict = dataclasses.field(default_factory=dict)  # {run_dir: Variant}
    steps: int = None
    version: int = 0  # bumped at every change the page may show
    frames: int = 0  # bumped at every new live frame
    frame_every: int = 5
    stop_event: threading.Event = dataclasses.field(default_factory=threading.Event)
    changed: threading.Condition = dataclasses.field(default_factory=threading.Condition)

    @classmethod
    def new(cls, request, session: str) -> "Job":
        return cls(session, request=request, steps=with_defaults(request.cfg).steps)

    @classmethod
    def resume(cls, run_dir, session: str) -> "Job":
        return cls(session, resume_dir=Path(run_dir))

    def touch(self, **changes) -> None:
        """Applies changes and wakes whoever waits for the next one."""
        with self.changed:
            for key, value in changes.items():
                setattr(self, key, value)
            self.version += 1
            self.changed.notify_all()

    def wait(self, version: int, timeout: float) -> int:
        """Blocks until the job changes past `version` (or timeout); returns the version now."""
        with self.changed:
            self.changed.wait_for(lambda: self.version != version, timeout)
            return self.version

    def follow(self, run_dirs: dict) -> None:
        """The runs the page shows: {run_dir: label}, each with what it already wrote."""
        for run_dir, label in run_dirs.items():
            variant = Variant(label, Path(run_dir))
            metrics = Path(run_dir) / rundir.METRICS_CSV
            if metrics.is_file():  # a resumed run: its curve so far
                m = rundir.read_metrics(run_dir)
                variant.curve = list(zip(map(int, m["step"]), m["loss"], m["out_of_range"]))
            self.variants[str(Path(run_dir))] = variant
        self.touch()

    def callback(self, info) -> None:
        """The loop callback of every run of the job (clampgen.run.run_one)."""
        with self.changed:
            variant = self.variants.get(str(info["run_dir"]))
            if variant is None:
                variant = self.variants[str(info["run_dir"])] = Variant(
                    Path(info["run_dir"]).name, Path(info["run_dir"])
                )
            step = info["step"]
            variant.step, variant.loss = step, info["loss"]
            variant.out_of_range = info["out_of_range"]
            if info["eval_loss"] is not None:
                variant.eval_loss = info["eval_loss"]
            if variant.curve and variant.curve[-1][0] >= step:  # a resumed run's repeated step
                variant.curve = [c for c in variant.curve if c[0] < step]
            variant.curve.append((step, info["loss"], info["out_of_range"]))
            if variant.frame is None or info.get("last") or step % self.frame_every == 0:
                variant.frame = np.asarray(to_pil(info["image"]))
                self.frames += 1
            self.version += 1
            self.changed.notify_all()
        if self.stop_event.is_set():
            raise StopRequested(str(self.out))


class Models:
    """The CLIP models of the last job, kept for the next one that uses the same."""

    def __init__(self):
        self.key, self.bundles = None, None

    def get(self, cfg: GenerateConfig) -> list:
        key = (cfg.model, cfg.pretrained, cfg.device)
        if key != self.key:
            self.key, self.bundles = None, None  # the old ones go before the new ones load
            self.bundles = load_bundles(cfg, resolve_device(cfg.device))
            self.key = key
        return self.bundles


def labels(run_dirs: dict) -> dict:
    """{seed: {clamp: run_dir}} as {run_dir: label}: the clamp, with its seed when several."""
    several = len(run_dirs) > 1
    return {
        run_dir: f"{clamp} · seed {seed}" if several else clamp
        for seed, by_clamp in run_dirs.items()
        for clamp, run_dir in by_clamp.items()
    }


def execute(job: Job, results, models: Models, threads: int = 0) -> dict:
    """Runs the job with the library's functions; returns what they return (run.json's summary,
    a comparison's summary). threads: the server's, for the runs of a resumed comparison that
    had not started (the others keep their own)."""
    if job.resume_dir is not None:
        return _resume(job, models, threads)
    request = job.request
    cfg = request.cfg
    bundles = models.get(cfg)  # an unknown model or missing weights: nothing written
    out = default_run_dir(cfg, root=results)
    if not request.comparison:
        job.touch(out=out)
        job.follow({out: request.clamps[0]})
        return run_one(cfg, out, bundle=bundles, progress=False, callback=job.callback)
    seeds = [cfg.seed + i for i in range(request.seeds)]
    job.touch(out=out)
    job.follow(labels(comparison_dirs(out, request.clamps, seeds)))
    return run_comparison(
        cfg,
        out,
        request.clamps,
        seeds=seeds,
        progress=False,
        bundle=bundles,
        callback=job.callback,
        interleave=True,
    )


def _resume(job: Job, models: Models, threads: int) -> dict:
    """A stopped run continues from its checkpoint; a stopped comparison runs again, its
    finished runs kept and the others resumed (as the same generate.py command would)."""
    path = job.resume_dir
    plan = path / rundir.PLAN_JSON
    job.touch(out=path)
    if not plan.is_file():
        record = rundir.read_run_json(path)
        job.steps = record.get("config", {}).get("steps")
        job.follow({path: record.get("config", {}).get("clamp", path.name)})
        return resume_run(path, progress=False, callback=job.callback)
    plan = json.loads(plan.read_text())
    if len(plan["prompts"]) > 1:
        raise ValueError(f"{path} is a suite: run the command that started it again")
    cfg = merge_config(GenerateConfig(progress=False, threads=threads), plan["config"])
    cfg = dataclasses.replace(cfg, prompt=plan["prompts"][0])
    job.steps = cfg.steps
    job.follow(labels(comparison_dirs(path, plan["clamps"], plan["seeds"])))
    return run_comparison(
        cfg,
        path,
        plan["clamps"],
        seeds=plan["seeds"],
        progress=False,
        bundle=models.get(cfg),
        callback=job.callback,
        interleave=True,
    )


class JobQueue:
    """Jobs in the order they came, run one at a time by one worker thread."""

    def __init__(self, results, threads: int = 0, frame_every: int = 5):
        self.results, self.threads, self.frame_every = Path(results), threads, frame_every
        self.waiting, self.running = deque(), None
        self.models = Models()
        self.cond = threading.Condition()
        self.closed = False
        self.worker = threading.Thread(target=self._work, name="clampgen-ui-worker", daemon=True)
        self.worker.start()

    def submit(self, job: Job) -> Job:
        job.frame_every = self.frame_every
        with self.cond:
            if self.closed:
                raise RuntimeError("the app is shutting down")
            self.waiting.append(job)
            self.cond.notify_all()
        job.touch()
        return job

    def position(self, job: Job) -> int:
        """0 while the job runs, k when k-1 jobs run or wait before it, None once it ended."""
        with self.cond:
            if job is self.running:
                return 0
            if job in self.waiting:
                return list(self.waiting).index(job) + 1 + (self.running is not None)
            return None

    def busy_dirs(self) -> set:
        with self.cond:
            job = self.running
        return {job.out} if job is not None and job.out is not None else set()

    def stop(self, session: str) -> list:
        """Stops the session's jobs: a waiting one leaves the queue, a running one ends within
        a step (its work kept, resumable). Returns the jobs stopped."""
        with self.cond:
            jobs = [self.running, *self.waiting]
            mine = [j for j in jobs if j is not None and j.session == session]
            for job in mine:
                if job in self.waiting:
                    self.waiting.remove(job)
                    job.touch(state="cancelled")
                job.stop_event.set()
            self.cond.notify_all()
        self._moved()
        return mine

    def close(self, timeout: float = 60.0) -> None:
        """No new jobs; the waiting ones are cancelled, the running one stopped (kept, resumable)
        and waited for."""
        with self.cond:
            self.closed = True
            waiting, self.waiting = list(self.waiting), deque()
            running = self.running
            self.cond.notify_all()
        for job in waiting:
            job.touch(state="cancelled")
        if running is not None:
            running.stop_event.set()
        self.worker.join(timeout)

    def _moved(self) -> None:
        """Every waiting job's place changed: wake their pages."""
        with self.cond:
            jobs = list(self.waiting)
        for job in jobs:
            job.touch()

    def _work(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.waiting or self.closed)
                if self.closed:
                    return
                job = self.running = self.waiting.popleft()
            self._moved()
            job.touch(state="running")
            state, message = self._run(job)
            with self.cond:
                self.running = None
            job.touch(state=state, message=message)
            self._moved()

    def _run(self, job: Job) -> tuple:
        """(end state, error line) of running the job; nothing it raises stops the worker."""
        threads = job.request.cfg.threads if job.request else self.threads
        try:
            with torch_threads(threads):
                result = execute(job, self.results, self.models, self.threads)
        except StopRequested:
            return "stopped", ""
        except KeyboardInterrupt:  # a run stopped with the job (run_with_writers re-raises)
            return ("stopped", "") if job.stop_event.is_set() else ("failed", "interrupted")
        except Exception as e:  # noqa: BLE001 -- shown on the page; the server stays up
            log.warning(f"clampgen ui: job {job.id} failed: {error_line(e)}")
            return "failed", error_line(e)
        if isinstance(result, dict) and result.get("stop_reason"):
            reason = result["stop_reason"]
            return "failed", f"error: run stopped: {reason} (try a lower lr)"
        return "finished", ""
