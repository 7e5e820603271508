"""clampgen.ui without a server: the path guard, the history's pages, the form (the CLI's words
for bad input), and the job queue running the library as generate.py does (same pixels), one
job at a time, stopped and resumed."""

import dataclasses
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from outcomes import assert_same, outcome
from PIL import Image

from clampgen import rundir
from clampgen.cli import console
from clampgen.cli import main as generate
from clampgen.ui import gallery
from clampgen.ui.form import Form, check_request, error_line, form_of, parse_form
from clampgen.ui.jobs import ENDED, Job, JobQueue
from clampgen.ui.paths import PathRefused, inside

SMALL = dict(generator="pixel", steps=6, width=32, height=32, seed=4)
CLI_SMALL = ["--generator", "pixel", "--steps", "6", "--size", "32", "32", "--seed", "4"]
CLI_SMALL += ["--threads", "1", "--no-progress"]


def test_inside_accepts_the_results_folder_and_refuses_the_rest(tmp_path):
    root = tmp_path / "results"
    (root / "run" / "frames").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("no")
    os.symlink(tmp_path, root / "escape")
    assert inside(root, root / "run" / "frames") == (root / "run" / "frames").resolve()
    assert inside(root, str(root / "run" / ".." / "run")) == (root / "run").resolve()
    for crafted in (
        root / ".." / "secret.txt",
        "/etc/passwd",
        root / "escape" / "secret.txt",  # a symlink out of the folder
        str(root) + "-other",
        "",
        "run\0.png",
        None,
    ):
        with pytest.raises(PathRefused):
            inside(root, crafted)


def small_run(run_dir, prompt, interrupted=False):
    """A run directory as the history reads it: run.json only."""
    run_dir.mkdir(parents=True)
    config = {"prompt": prompt, "clamp": "clamp", "seed": 0, "steps": 10}
    record = {"config": config, "interrupted": interrupted, "steps_done": 10}
    (run_dir / rundir.RUN_JSON).write_text(json.dumps(record))


def test_history_pages_a_thousand_runs_reading_only_the_page(tmp_path, monkeypatch):
    root = tmp_path / "results"
    for i in range(1000):
        stamp = f"2026{1 + i // 500:02d}{1 + i % 28:02d}-{i // 28:02d}{i % 60:02d}00"
        small_run(root / f"{stamp}-run-{i:04d}", f"prompt {i}")
    (root / gallery.UPLOADS).mkdir()
    (root / "notes.txt").write_text("not a run")
    names = gallery.entry_names(root)
    assert len(names) == 1000 and names == sorted(names, reverse=True)
    read = []
    real = gallery.read_entry
    monkeypatch.setattr(gallery, "read_entry", lambda path: read.append(path) or real(path))
    entries, pages = gallery.page(root, 0, per_page=24)
    assert pages == 42 and len(entries) == 24 and len(read) == 24  # only the page's files read
    assert [e.path.name for e in entries] == names[:24]
    assert entries[0].status == "finished" and entries[0].prompt.startswith("prompt ")
    last, _ = gallery.page(root, 99, per_page=24)  # past the end: the last page
    assert [e.path.name for e in last] == names[41 * 24 :]


def test_history_entry_of_a_comparison_and_a_stopped_run(tmp_path):
    from fake_runs import make_run

    root = tmp_path / "results"
    cmp_dir = root / "20261205-100000-a-red-circle"
    for clamp in ("clamp", "clamp_with_grad"):
        make_run(cmp_dir / clamp, clamp, interrupted=clamp == "clamp")
    (cmp_dir / "clamp" / rundir.CHECKPOINT).write_bytes(b"")
    plan = {"prompts": ["a red circle"], "seeds": [0], "clamps": ["clamp", "clamp_with_grad"]}
    (cmp_dir / rundir.PLAN_JSON).write_text(json.dumps({**plan, "config": {"steps": 20}}))
    entry = gallery.read_entry(cmp_dir)
    assert (entry.kind, entry.status, entry.resumable) == ("comparison", "stopped", True)
    assert list(entry.runs) == ["clamp", "clamp_with_grad"]
    shown = gallery.details(entry)
    assert [Path(p).parent.name for p, _ in shown["images"]] == ["clamp", "clamp_with_grad"]
    (cmp_dir / "summary.md").write_text("# Clamp comparison\n\n| variant | judged |\n")
    (cmp_dir / "clamp" / rundir.CHECKPOINT).unlink()
    record = json.loads((cmp_dir / "clamp" / "run.json").read_text())
    (cmp_dir / "clamp" / "run.json").write_text(json.dumps({**record, "interrupted": False}))
    entry = gallery.read_entry(cmp_dir)
    assert (entry.status, entry.resumable) == ("finished", False)
    assert "| variant | judged |" in gallery.details(entry)["text"]  # new columns show as is


BAD = [  # (form changes, generate.py arguments): the same input both ways
    (dict(prompt=""), [""]),
    (dict(model="no-such-model"), ["a red circle", "--model", "no-such-model"]),
    (dict(prompt="a red circle ^ "), ["a red circle ^ "]),
    (dict(prompt="a:heavy"), ["a:heavy"]),
    (dict(init="missing.png"), ["a red circle", "--init", "missing.png"]),
    (dict(more="cutn = 0"), ["a red circle", "--cutn", "0"]),
    # docs/bad-inputs: refused before anything is allocated, the server stays up
    (dict(width=100000, height=100000), ["a red circle", "--size", "100000", "100000"]),
    (dict(more="threads = -3"), ["a red circle", "--threads", "-3"]),
    (dict(more="fps = 0"), ["a red circle", "--fps", "0"]),
]


@pytest.mark.parametrize("changes, argv", BAD)
def test_bad_input_is_the_cli_line_and_writes_nothing(tmp_path, monkeypatch, capsys, changes, argv):
    monkeypatch.chdir(tmp_path)
    form = Form(**{"prompt": "a red circle", **SMALL, **changes})
    with pytest.raises(Exception) as e:
        check_request(parse_form(form))
    assert generate([*CLI_SMALL, *argv, "--out", "cli"]) == 2  # (the later flag wins)
    free = re.compile(r"[\d.]+ GB available")  # free memory may change between the two calls
    cli = free.sub("N GB available", capsys.readouterr().err.strip())
    assert free.sub("N GB available", error_line(e.value)) == cli
    assert list(tmp_path.iterdir()) == []


def test_form_refuses_what_has_its_own_field():
    with pytest.raises(ValueError, match="prompt has its own field"):
        parse_form(Form(prompt="a", more='prompt = "b"'))
    with pytest.raises(ValueError, match="no clamp"):
        parse_form(Form(prompt="a", clamps=[]))
    with pytest.raises(ValueError, match="unknown clamp"):
        parse_form(Form(prompt="a", clamps=["clamp", "nope"]))
    with pytest.raises(ValueError, match="steps: expected a whole number"):
        parse_form(Form(prompt="a", steps="ten"))


def test_recorded_settings_come_back_as_the_same_request():
    asked = parse_form(
        Form(
            prompt="a red circle:1 | blurry:-0.5 ^ a star",
            clamps=["clamp_with_grad", "clamp"],
            more='lr = 0.02\noptimizer = "adamw"\ncutn = 8',
            **SMALL,
        ),
        threads=1,
    )
    assert asked.clamps == ["clamp", "clamp_with_grad"]  # the registry's order
    recorded = {**asked.cfg.to_dict(), "out": "results/x", "device": "cpu"}
    form = form_of(recorded, clamps=asked.clamps, seeds=[4], threads=1)
    assert "lr = 0.02" in form.more and "threads" not in form.more
    again = parse_form(form, threads=1)
    assert again.clamps == asked.clamps
    assert again.cfg == dataclasses.replace(asked.cfg, device="cpu")


def finish(job, timeout=300):
    """Waits until the job has ended; returns its state."""
    version = -1
    while job.state not in ENDED:
        version = job.wait(version, timeout)
    return job.state


@pytest.fixture
def queue(tmp_path):
    queue = JobQueue(tmp_path / "results", threads=1, frame_every=2)
    yield queue
    queue.close()


@pytest.mark.parametrize("clamps", [["clamp_with_grad"], ["clamp", "clamp_with_grad"]])
def test_a_job_is_generate_py_bit_for_bit(tmp_path, monkeypatch, queue, clamps):
    monkeypatch.chdir(tmp_path)
    job = queue.submit(Job.new(parse_form(Form("a red circle", clamps, **SMALL), 1), "tab"))
    assert finish(job) == "finished", job.message
    assert generate(["a red circle", "--clamp", ",".join(clamps), *CLI_SMALL, "--out", "cli"]) == 0
    single = len(clamps) == 1
    for clamp in clamps:
        page_dir = job.out if single else job.out / clamp
        cli_dir = tmp_path / "cli" if single else tmp_path / "cli" / clamp
        assert_same(outcome(page_dir), outcome(cli_dir))
        png = rundir.FINAL_PNG  # its text chunks too: prompt, seed, clamp, version ...
        assert (page_dir / png).read_bytes() == (cli_dir / png).read_bytes()
    # the live view saw every variant to its last step, with its frame
    assert [(v.label, v.step) for v in job.variants.values()] == [(c, 6) for c in clamps]
    assert all(v.frame.shape == (32, 32, 3) for v in job.variants.values())


def test_stop_keeps_the_work_and_resume_finishes_it(tmp_path, monkeypatch, queue):
    monkeypatch.chdir(tmp_path)
    form = Form("a red circle", ["clamp", "clamp_with_grad"], **{**SMALL, "steps": 60})
    job = queue.submit(Job.new(parse_form(form, 1), "tab"))
    version = -1
    while not any((v.step or 0) >= 2 for v in job.variants.values()):
        version = job.wait(version, 60)
    other = queue.submit(Job.new(parse_form(Form("a blue square", **SMALL), 1), "other tab"))
    assert [j.session for j in queue.stop("tab")] == ["tab"]
    assert finish(job) == "stopped"
    stopped = [v for v in job.variants.values() if v.step is not None]
    assert stopped  # (a variant whose first turn had not come has not started)
    for variant in stopped:
        record = rundir.read_run_json(variant.run_dir)
        assert record["interrupted"] is True and record["steps_done"] < 60
        assert (variant.run_dir / rundir.CHECKPOINT).is_file()
    assert finish(other) == "finished"  # another session's job went on
    entry = gallery.read_entry(job.out)
    assert (entry.status, entry.resumable) == ("stopped", True)
    again = queue.submit(Job.resume(job.out, "tab"))
    assert finish(again) == "finished", again.message
    assert gallery.read_entry(job.out).status == "finished"
    argv = ["a red circle", "--clamp", "clamp,clamp_with_grad", *CLI_SMALL, "--steps", "60"]
    assert generate([*argv, "--out", "cli"]) == 0
    for clamp in ("clamp", "clamp_with_grad"):
        assert_same(outcome(job.out / clamp), outcome(tmp_path / "cli" / clamp))


def test_jobs_queue_one_at_a_time(tmp_path, monkeypatch, queue):
    monkeypatch.chdir(tmp_path)
    asked = parse_form(Form("a red circle", **{**SMALL, "steps": 40}), 1)
    first, second, third = (queue.submit(Job.new(asked, s)) for s in ("a", "b", "c"))
    version = -1
    while first.state != "running":
        version = first.wait(version, 60)
    assert queue.position(first) == 0
    assert (queue.position(second), queue.position(third)) == (2, 3)
    queue.stop("c")  # a waiting job leaves the queue; the others are untouched
    assert third.state == "cancelled" and queue.position(second) == 2
    version = -1
    while second.state == "queued":
        version = second.wait(version, 60)
    assert first.state == "finished"  # the second started only once the first had ended
    assert finish(second) == "finished"
    assert third.out is None


def test_closing_the_queue_stops_the_running_job_resumable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    queue = JobQueue(tmp_path / "results", threads=1)
    job = queue.submit(Job.new(parse_form(Form("a red circle", **{**SMALL, "steps": 300}), 1), "a"))
    waiting = queue.submit(Job.new(parse_form(Form("a blue square", **SMALL), 1), "b"))
    version = -1
    while not any((v.step or 0) >= 1 for v in job.variants.values()):
        version = job.wait(version, 60)
    queue.close()  # as Ctrl-C on `clampgen ui`
    assert (job.state, waiting.state) == ("stopped", "cancelled")
    assert gallery.read_entry(job.out).resumable


def test_an_uploaded_init_image_is_kept_and_used(tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    from clampgen.ui.app import Page

    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(tmp_path / "gradio-cache.png")
    queue = JobQueue(tmp_path / "results", threads=1)
    page = Page(queue, tmp_path / "results", threads=1)
    (copy,) = page.upload([str(tmp_path / "gradio-cache.png")])
    assert Path(copy).parent == (tmp_path / "results" / gallery.UPLOADS).resolve()
    assert page.upload(str(tmp_path / "gradio-cache.png")) == [copy]  # by content: one copy
    job = queue.submit(Job.new(parse_form(Form("a red circle", init=copy, **SMALL), 1), "a"))
    assert finish(job) == "finished", job.message
    queue.close()
    assert rundir.read_run_json(job.out)["config"]["init"] == copy
    assert [e.path.name for e in gallery.page(tmp_path / "results")[0]] == [job.out.name]


def test_clampgen_ui_is_a_subcommand_of_the_console_script(capsys):
    with pytest.raises(SystemExit) as e:
        console(["ui", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: clampgen ui") and "--share" in text and "--results" in text
    with pytest.raises(SystemExit):  # generate.py has no subcommands: "ui" would be a prompt
        generate(["ui", "--help"])
    assert capsys.readouterr().out.startswith("usage: generate.py")


def test_report_links_become_the_apps_file_urls_inside_the_results_only(tmp_path):
    pytest.importorskip("gradio")
    from clampgen.ui.app import Page

    results = tmp_path / "results"
    entry = results / "20261205-100000-a-red-circle"
    entry.mkdir(parents=True)
    page = Page(None, results)
    text = page.linked("[frames](grid.png), [x](../../secret.txt), [web](https://a.b/c)", entry)
    assert text == (
        f"[frames](/gradio_api/file={entry.resolve()}/grid.png), [x](../../secret.txt), "
        "[web](https://a.b/c)"
    )


def test_curves_wait_for_every_variant_of_a_race(tmp_path):
    """The plot fixes its legend from the first data it gets: no curve until each variant of a
    running race has a point, then all of them; an ended job shows what it has."""
    from clampgen.ui.app import curves

    job = Job("s")
    job.follow({tmp_path / "a": "clamp", tmp_path / "b": "clamp_with_grad"})

    def report(name, step):
        image = torch.zeros(1, 3, 4, 4)
        info = dict(run_dir=tmp_path / name, step=step, loss=1.0 / (step + 1), image=image)
        job.callback({**info, "out_of_range": 0.5, "eval_loss": None})

    report("a", 0)
    report("a", 1)
    assert curves(job).empty and list(curves(job).columns)[:2] == ["step", "loss"]
    report("b", 0)
    data = curves(job)
    assert sorted(set(data["variant"])) == ["clamp", "clamp_with_grad"] and len(data) == 3
    assert data["out of range %"].tolist() == [50.0] * 3
    lone = Job("t")
    lone.follow({tmp_path / "a": "clamp", tmp_path / "c": "sigmoid"})
    lone.callback(
        dict(
            run_dir=tmp_path / "a",
            step=0,
            loss=1.0,
            image=torch.zeros(1, 3, 4, 4),
            out_of_range=0.0,
            eval_loss=None,
        )
    )
    lone.state = "failed"
    assert curves(lone)["variant"].tolist() == ["clamp"]
