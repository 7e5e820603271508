"""`clampgen ui` served for real (tests/ui_server.py) and driven two ways: through its API with
gradio_client, and as a page in Debian's Chromium with playwright (skipped, with the reason,
where either is missing). A race runs live to its end, Stop keeps the work and History resumes
it, bad input is the CLI's line on the page, two sessions queue, crafted paths are refused."""

import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ui_server import CHROMIUM, CHROMIUM_ARGS, serving

from clampgen import rundir
from clampgen.ui import gallery
from clampgen.ui.form import Form, check_request, error_line, parse_form

pytest.importorskip("gradio", reason="clampgen ui needs gradio (requirements.txt)")
gradio_client = pytest.importorskip("gradio_client", reason="the API tests need gradio_client")

PAIR = ["clamp", "clamp_with_grad"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    with serving(root / "results") as (url, lines):
        yield url, (root / "results").resolve(), lines


def client(url, tmp_path):
    return gradio_client.Client(
        url, verbose=False, download_files=str(tmp_path), analytics_enabled=False
    )


def form(prompt, clamps=PAIR, steps="8", seed="5", more=""):
    """/run's arguments: a tiny pixel run on the bundled model."""
    return (prompt, list(clamps), "pixel", steps, 32, 32, seed, 1, "auto", "", "noise", "", more)


def value(update):
    """A component's value in an output (gradio_client gives visibility updates as dicts)."""
    return update["value"] if isinstance(update, dict) and "__type__" in update else update


def run_dir_of(status: str) -> Path:
    return Path(re.search(r"`([^`]+)`", status).group(1))


def wait_until(check, timeout=120.0, every=0.2):
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(every)


def test_client_race_runs_live_to_the_end(server, tmp_path):
    url, results, _ = server
    job = client(url, tmp_path).submit(*form("a red circle"), api_name="/run")
    views = list(job)
    statuses = [v[0] for v in views]
    assert any(s.startswith("**running** · step") for s in statuses)
    assert statuses[-1].startswith("**finished**")
    status, frames, numbers, _, _, text, finals, video = views[-1]
    assert [f["caption"].split(" · ")[0] for f in frames] == PAIR  # the live frames
    assert "| clamp | 8 |" in numbers and "| clamp_with_grad | 8 |" in numbers
    assert [f["caption"].split(" · ")[0] for f in value(finals)] == PAIR
    assert "| clamp_with_grad |" in text and "index.html" in text  # the table, the report
    out = run_dir_of(status)
    assert out.parent == results and rundir.run_finished(out / "clamp")
    if (out / "comparison.mp4").exists():  # (PyAV writes it)
        assert Path(value(video)).name == "comparison.mp4"


def test_client_bad_input_is_the_cli_line_and_the_server_stays_up(server, tmp_path):
    url, results, _ = server
    c = client(url, tmp_path)
    before = sorted(results.iterdir())
    for prompt, more in (("", ""), ("a red circle ^ ", ""), ("a red circle", "model = 1")):
        with pytest.raises(Exception) as e:
            check_request(parse_form(Form(*form(prompt, more=more))))
        status = c.predict(*form(prompt, more=more), api_name="/run")[0]
        assert status == error_line(e.value)
    unknown = c.predict(*form("a red circle")[:8], "nope", *form("")[9:], api_name="/run")[0]
    assert unknown.startswith("error: unknown model 'nope'")
    assert sorted(results.iterdir()) == before  # nothing written
    assert c.predict(0, api_name="/history")[1].startswith("page 1 of")  # still serving


def test_client_refuses_crafted_paths(server, tmp_path):
    url, results, _ = server
    c = client(url, tmp_path)
    (results.parent / "secret.txt").write_text("not served")
    for crafted in ("/etc/passwd", str(results / ".." / "secret.txt"), "../secret.txt"):
        assert "not inside the results folder" in c.predict(crafted, api_name="/show_run")[0]
        assert "not inside the results folder" in c.predict(crafted, api_name="/resume")[0]
        with pytest.raises(Exception, match="not inside the results folder"):
            c.predict(crafted, api_name="/load_settings")
    inside = results / "served.txt"
    inside.write_text("served")
    assert urllib.request.urlopen(f"{url}gradio_api/file={inside}").read() == b"served"
    for crafted in ("/etc/passwd", f"{results}/../secret.txt", f"{results}/%2e%2e/secret.txt"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{url}gradio_api/file={crafted}")
        assert e.value.code in (403, 404)
    inside.unlink()


def test_client_stop_then_resume_from_the_history(server, tmp_path):
    url, results, _ = server
    c = client(url, tmp_path)
    job = c.submit(*form("a stopped race", steps="400"), api_name="/run")
    wait_until(lambda: any(re.search(r"step [1-9]", v[0]) for v in job.outputs()))
    assert c.predict(api_name="/stop").startswith("**stopping**")
    wait_until(job.done)
    status = job.outputs()[-1][0]
    assert status.startswith("**stopped**")
    out = run_dir_of(status)
    _, _, _, paths = c.predict(0, api_name="/history")
    assert str(out) in paths
    text = c.predict(str(out), api_name="/show_run")[0]
    assert "· stopped" in text
    settings = c.predict(str(out), api_name="/load_settings")
    assert settings[:3] == ("a stopped race", PAIR, "pixel") and settings[3] == "400"
    views = list(c.submit(str(out), api_name="/resume"))
    assert views[-1][0].startswith("**finished**")
    assert gallery.read_entry(out).status == "finished"
    for clamp in PAIR:
        assert rundir.read_run_json(out / clamp)["steps_done"] == 400


def test_client_two_sessions_queue_and_a_closed_one_runs_on(server, tmp_path):
    url, results, _ = server
    first = client(url, tmp_path / "a").submit(*form("the first", steps="150"), api_name="/run")
    wait_until(lambda: any("**running**" in v[0] for v in first.outputs()))
    second = client(url, tmp_path / "b").submit(*form("the second"), api_name="/run")
    wait_until(lambda: bool(second.outputs()))
    assert second.outputs()[0][0].startswith("**queued**: 1 ahead")  # its own place in line
    first.cancel()  # as closing its tab: its run goes on, the other one's too
    views = list(second)
    assert views[-1][0].startswith("**finished**")
    out = run_dir_of(views[-1][0])
    firsts = [results / n for n in gallery.entry_names(results) if n.endswith("the-first")]
    assert len(firsts) == 1 and gallery.read_entry(firsts[0]).status == "finished"
    assert firsts[0].name < out.name  # the first ran (and ended) before the second


# the page in a browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no {CHROMIUM}: `apt-get install -y chromium` (Debian) for the browser tests")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    url = server[0]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    outside = []  # every request the page makes must go to the app (offline)
    page.on("request", lambda r: r.url.startswith((url, "data:", "blob:")) or outside.append(r.url))
    page.goto(url)
    yield page
    page.close()
    assert outside == []


def fill(page, prompt, steps="8"):
    """The form: a tiny pixel race of clamp and clamp_with_grad (ticked by default)."""
    page.get_by_label("Prompt").fill(prompt)
    page.get_by_label("clamp", exact=True).check()
    page.get_by_role("combobox", name="Generator").click()
    page.get_by_role("option", name="pixel").click()
    page.get_by_label("Steps (empty: the generator's)").fill(steps)
    page.get_by_label("Width").fill("32")
    page.get_by_label("Height").fill("32")
    page.get_by_label("Seed (empty: random)").fill("7")


def shot(page, name):
    """A screenshot, kept under CLAMPGEN_UI_SHOTS when set (docs/webapp.md's come from here)."""
    folder = os.environ.get("CLAMPGEN_UI_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_browser_race_runs_live_to_the_end(page):
    fill(page, "a red circle", steps="120")
    page.get_by_role("button", name="Run").click()
    status = page.locator("#status")
    status.get_by_text(re.compile(r"step [1-9]")).wait_for(timeout=120_000)
    shot(page, "during")
    status.get_by_text("finished").wait_for(timeout=300_000)
    finals = page.locator(".finals").first
    for clamp in PAIR:  # both variants' final images, and the comparison's table
        finals.get_by_alt_text(re.compile(f"^{clamp} · step 120")).wait_for()
        page.locator("#results").get_by_role("cell", name=clamp, exact=True).first.wait_for()
    assert page.locator("#numbers").get_by_role("cell", name="120").count() == 2
    shot(page, "after")


def test_browser_stop_then_resume_from_the_history(page, server):
    fill(page, "a blue square", steps="400")
    page.get_by_role("button", name="Run").click()
    status = page.locator("#status")
    status.get_by_text(re.compile(r"step [1-9]")).wait_for(timeout=120_000)
    page.get_by_role("button", name="Stop").click()
    status.get_by_text("stopped").wait_for(timeout=120_000)
    out = Path(re.search(r"→ (\S+?):? resumable", status.inner_text()).group(1))
    page.get_by_role("tab", name="History").click()
    page.get_by_role("button", name="refresh").click()
    history = page.locator("#history")
    history.get_by_alt_text(re.compile(f"^{out.name}")).click()
    page.locator("#entry").get_by_text("· stopped").wait_for()
    page.get_by_role("button", name="Resume it").click()
    status.get_by_text("finished").wait_for(timeout=300_000)
    assert gallery.read_entry(server[1] / out.name).status == "finished"


def test_browser_bad_input_shows_the_cli_line(page):
    fill(page, "")
    page.get_by_role("button", name="Run").click()
    page.locator("#status").get_by_text(
        "error: no prompt: give a text PROMPT and/or --image-prompt FILE"
    ).wait_for(timeout=60_000)
    fill(page, "a red circle ^ ")
    page.get_by_role("button", name="Run").click()
    page.locator("#status").get_by_text("error: prompt schedule").wait_for(timeout=60_000)
