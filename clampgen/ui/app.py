"""What the page of `clampgen ui` does: its handlers (clampgen.ui.layout lays the page out).

    page = Page(JobQueue("results"), "results")
    demo = build(page)           # clampgen.ui.layout; clampgen.ui.server launches it

Its API (gradio_client) is the page's: /run and /resume stream the job's view, /stop, /history,
/show_run, /load_settings. A path sent to /show_run, /load_settings or /resume must lie inside
the results folder (clampgen.ui.paths).
"""

import hashlib
import re
import shutil
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from clampgen.checkpoint import load_checkpoint
from clampgen.ui import gallery
from clampgen.ui.form import Form, check_request, error_line, form_of, parse_form
from clampgen.ui.jobs import ENDED, Job
from clampgen.ui.paths import PathRefused, file_url, inside

REFRESH = 1.0  # seconds between two views of a running job sent to its page
POINTS = 200  # at most this many points per curve are sent
RELATIVE_LINK = re.compile(r"\]\((?![a-z]+:|/|#)([^)\s]+)\)")  # ](grid.png), not ](http..)
THUMB = 128  # the height of a comparison's thumbnail in the history
OUTPUTS = 8  # status, frames, numbers, loss curves, out-of-range curves, text, images, video


def _tile(frame: np.ndarray) -> Image.Image:
    """A live frame as sent: its own pixels (the page scales them up, pixelated: CSS)."""
    return Image.fromarray(frame)


def _caption(v, steps) -> str:
    if v.step is None:
        return f"{v.label} · waiting"
    oor = "" if v.out_of_range is None else f" · {100 * v.out_of_range:.1f}% out of range"
    return f"{v.label} · step {v.step}/{steps} · loss {v.loss:.4f}{oor}"


def _cell(x) -> str:
    return "–" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)


def table(job) -> str:
    """Every variant's numbers now, as a markdown table."""
    rows = ["| variant | step | loss | eval loss | out of range |", "|---|---|---|---|---|"]
    for v in job.variants.values():
        cells = [v.step, v.loss, v.eval_loss]
        step, loss, ev = (
            "–" if x is None else f"{x:.4f}" if isinstance(x, float) else x for x in cells
        )
        oor = "–" if v.out_of_range is None else f"{100 * v.out_of_range:.1f} %"
        rows.append(f"| {v.label} | {step} | {loss} | {ev} | {oor} |")
    return "\n".join(rows)


# typed even when empty: the plot takes the kind of each axis from the first data it gets
CURVE_COLUMNS = {"step": "int64", "loss": "float64", "out of range %": "float64", "variant": str}


def curves(job) -> pd.DataFrame:
    """Every variant's loss and out-of-range share so far, thinned to POINTS steps each; empty
    until every variant has a point (or the job has ended): the plot fixes its colours and legend
    from the variants in the first data it gets, so a race whose first variant reported alone
    would draw that one only."""
    rows = []
    waiting = any(not v.curve for v in job.variants.values())
    if waiting and job.state not in ENDED:
        return pd.DataFrame(rows, columns=list(CURVE_COLUMNS)).astype(CURVE_COLUMNS)
    for v in job.variants.values():
        points = list(v.curve)
        thinned = points[:: max(1, -(-len(points) // POINTS))]
        points = thinned + points[-1:] if points and thinned[-1] != points[-1] else thinned
        rows += [(s, loss, 100 * oor, v.label) for s, loss, oor in points]
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS)).astype(CURVE_COLUMNS)


class Page:
    """The page's handlers, over one queue and one results folder."""

    def __init__(
        self, queue, results, threads=0, per_page=gallery.PER_PAGE, refresh: float = REFRESH
    ):
        self.queue, self.results = queue, Path(results).resolve()
        self.threads, self.per_page, self.refresh = threads, per_page, refresh

    # the running job -------------------------------------------------------------------------
    def status(self, job) -> str:
        if job.state == "queued":
            place = self.queue.position(job)
            ahead = "next" if not place or place == 1 else f"{place - 1} ahead of it"
            return f"**queued**: {ahead} (one job at a time on the device)"
        if job.state == "running":
            seed = f" · seed {job.request.cfg.seed}" if job.request else ""
            steps = [v.step for v in job.variants.values() if v.step is not None]
            at = f" · step {min(steps)}/{job.steps}" if steps else " · starting"
            return f"**running**{at}{seed} → `{job.out or '…'}`"
        if job.state == "finished":
            return f"**finished** → `{job.out}`"
        if job.state == "stopped":
            return f"**stopped** → `{job.out}`: resumable from the History tab"
        if job.state == "cancelled":
            return "**cancelled** before it started"
        return job.message or "error"

    def live(self, job, frames_sent: int = -1) -> tuple:
        """(status, live frames, their numbers, curves twice) of the job now; the frames left
        as they are (gr.skip) when none is newer than the view `frames_sent`."""
        with job.changed:
            frames = gr.skip()
            if job.frames != frames_sent:
                frames = [
                    (_tile(v.frame), _caption(v, job.steps))
                    for v in job.variants.values()
                    if v.frame is not None
                ]
            numbers, data = table(job), curves(job)
        data = data if len(data) else None  # (a plot first given no rows draws no lines after)
        return self.status(job), frames, numbers, data, data

    def results_of(self, job) -> tuple:
        """(text, final images, video) of an ended job."""
        if job.out is None or not Path(job.out).is_dir():
            return "", _shown([]), _shown(None)
        text, images, video = self.described(gallery.read_entry(job.out))
        return text, _shown(images), _shown(video)

    def described(self, entry) -> tuple:
        """(markdown, images, video) of a history entry, with its report's link."""
        shown = gallery.details(entry)
        text = self.linked(shown["text"], entry.path)
        if shown["report"] is not None:
            text = f"[report: index.html]({file_url(self.results, shown['report'])})\n\n" + text
        return text, shown["images"], shown["video"]

    def linked(self, markdown: str, folder: Path) -> str:
        """The report's relative links (`[frames](grid.png)`) made the app's file URLs."""

        def url(match):
            try:
                return f"]({file_url(self.results, folder / match.group(1))})"
            except PathRefused:
                return match.group(0)

        return RELATIVE_LINK.sub(url, markdown)

    def follow(self, job):
        """The job's views as it goes, one every `refresh` seconds at most, the last when it
        has ended."""
        seen, last, sent = -1, 0.0, job.frames
        yield (*self.live(job), "", _shown([]), _shown(None))
        while True:
            time.sleep(max(0.0, last + self.refresh - time.monotonic()))
            version = job.version
            if job.state in ENDED:
                yield (*self.live(job), *self.results_of(job))
                return
            if version != seen:
                seen, last, frames = version, time.monotonic(), job.frames
                yield (*self.live(job, sent), gr.skip(), gr.skip(), gr.skip())
                sent = frames  # (a frame newer than this read goes with the next view)
            job.wait(version, timeout=5.0)

    def refused(self, message: str) -> tuple:
        return (message, *[gr.skip()] * (OUTPUTS - 1))

    def run(
        self,
        prompt,
        clamps,
        generator,
        steps,
        width,
        height,
        seed,
        seeds,
        model,
        pretrained,
        init,
        image_prompts,
        more,
        request: gr.Request = None,
    ):
        """Run: the form checked as generate.py checks its options, then queued and followed."""
        fields = (prompt, clamps, generator, steps, width, height, seed, seeds, model)
        fields += (pretrained, init, image_prompts, more)
        try:
            asked = parse_form(Form(*fields), self.threads)
            check_request(asked)
        except Exception as e:  # noqa: BLE001 -- any bad input is a line on the page
            yield self.refused(error_line(e))
            return
        job = self.queue.submit(Job.new(asked, session=_session(request)))
        yield from self.follow(job)

    def stop(self, request: gr.Request = None) -> str:
        stopped = self.queue.stop(_session(request))
        return "**stopping** (within a step; the work is kept)" if stopped else "nothing to stop"

    def resume(self, path, request: gr.Request = None):
        try:
            entry = gallery.read_entry(inside(self.results, path))
            if not entry.resumable:
                raise ValueError(f"{entry.path} is {entry.status}: nothing to resume")
        except Exception as e:  # noqa: BLE001 -- a crafted or stale path is a line on the page
            yield self.refused(error_line(e))
            return
        job = self.queue.submit(Job.resume(entry.path, session=_session(request)))
        yield from self.follow(job)

    # the history ----------------------------------------------------------------------------
    def history(self, number) -> tuple:
        """(gallery items, page line, page number, the page's paths) of history page `number`."""
        entries, pages = gallery.page(self.results, int(number or 0), self.per_page)
        number = min(max(0, int(number or 0)), pages - 1)
        items = [(thumbnail(e.pictures), e.caption) for e in entries]
        line = f"page {number + 1} of {pages} · `{self.results}`"
        return items, line, number, [str(e.path) for e in entries]

    def show_run(self, path) -> tuple:
        """(text, images, video, the path, Resume, Load settings) of one entry, the buttons
        usable where they apply."""
        try:
            entry = gallery.read_entry(inside(self.results, path))
        except PathRefused as e:
            off = gr.update(interactive=False)
            return error_line(e), _shown([]), _shown(None), "", off, off
        text, images, video = self.described(entry)
        resumable = gr.update(interactive=entry.resumable)
        loadable = gr.update(interactive=bool(entry.config) or entry.resumable)
        return text, _shown(images), _shown(video), str(entry.path), resumable, loadable

    def load_settings(self, path) -> tuple:
        """The form's fields from a recorded run or comparison (then the Run tab); a message
        (gr.Error) when the path is refused or holds no settings."""
        try:
            entry = gallery.read_entry(inside(self.results, path))
            config = entry.config
            if not config and entry.kind == "run":  # killed before its run.json: its checkpoint
                config = load_checkpoint(entry.path)["config"]
            clamps = entry.clamps if entry.kind != "run" else None
            form = form_of(config, clamps=clamps, seeds=entry.seeds or None, threads=self.threads)
        except Exception as e:  # noqa: BLE001 -- a crafted path or a damaged record: a message
            raise gr.Error(error_line(e)) from None
        return (*[getattr(form, f) for f in Form.__dataclass_fields__], gr.Tabs(selected="run"))

    def selected(self, paths, evt: gr.SelectData) -> str:
        return paths[evt.index] if paths and evt.index < len(paths) else ""

    def upload(self, files) -> list:
        """Copies of uploaded images in <results>/uploads/, named by their content (a run
        records their paths, so they must outlive Gradio's cache)."""
        copies = []
        for name in [files] if isinstance(files, str) else files or []:
            digest = hashlib.sha256(Path(name).read_bytes()).hexdigest()[:16]
            target = self.results / gallery.UPLOADS / (digest + Path(name).suffix.lower())
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                shutil.copyfile(name, target)
            copies.append(str(target))
        return copies


def _shown(value):
    """A results component's value, the component hidden while it has none."""
    return gr.update(value=value, visible=bool(value))


def _session(request) -> str:
    return getattr(request, "session_hash", None) or "local"


def thumbnail(pictures: list):
    """A history entry's picture: a run's image (its path), a comparison's side by side (an
    image made here, each scaled to the same height), grey without any."""
    if len(pictures) <= 1:
        return str(pictures[0]) if pictures else np.full((64, 64, 3), 230, np.uint8)
    tiles = []
    for path in pictures:
        with Image.open(path) as image:
            scale = THUMB / image.height
            size = (max(1, round(image.width * scale)), THUMB)
            tiles.append(image.convert("RGB").resize(size, Image.NEAREST))
    gap = 4
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), THUMB), "white")
    x = 0
    for tile in tiles:
        sheet.paste(tile, (x, 0))
        x += tile.width + gap
    return sheet
