"""Screenshots of `clampgen ui` during and after a race, in Debian's Chromium (headless), for
docs/webapp.md and the README.

    OMP_NUM_THREADS=1 python scripts/ui_screenshots.py --out /tmp/shots
    # then look at them, and keep one: docs/webapp.png (a 256-colour PNG under 300 kB)

It starts the server on a free port with a results folder of its own, races clamp against
clamp_with_grad on the pixel generator (where they differ most), and takes `during.png` at
about a third of the run, `after.png` at its end and `history.png` of the History tab.
"""

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def race(page, prompt, steps, size):
    page.get_by_label("Prompt").fill(prompt)
    page.get_by_label("clamp", exact=True).check()
    page.get_by_role("combobox", name="Generator").click()
    page.get_by_role("option", name="pixel").click()
    page.get_by_label("Steps (empty: the generator's)").fill(str(steps))
    page.get_by_label("Width").fill(str(size))
    page.get_by_label("Height").fill(str(size))
    page.get_by_label("Seed (empty: random)").fill("1")
    page.get_by_role("button", name="Run").click()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="ui-shots", help="folder for the screenshots")
    parser.add_argument("--prompt", default="a red circle on a blue background")
    parser.add_argument("--steps", type=int, default=150, help="steps of the race")
    parser.add_argument("--size", type=int, default=96, help="image side, pixels")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright
    from ui_server import CHROMIUM, CHROMIUM_ARGS, serving

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ui_shots_"))
    with serving(work / "results") as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        race(page, args.prompt, args.steps, args.size)
        status = page.locator("#status")
        page.wait_for_function(  # a third of the run or more (the page shows every second)
            """third => {
                const text = (document.querySelector('#status') || {}).innerText || '';
                const m = text.match(/step (\\d+)\\//);
                return m && Number(m[1]) >= third;
            }""",
            arg=args.steps // 3,
            timeout=600_000,
        )
        page.wait_for_timeout(1000)
        page.evaluate("window.scrollTo(0, 0)")  # (clicking Run scrolled it into view)
        page.screenshot(path=str(out / "during.png"))
        status.get_by_text("finished").wait_for(timeout=600_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "after.png"), full_page=True)
        page.get_by_role("tab", name="History").click()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "history.png"))
        browser.close()
    print(f"wrote {out}/during.png, after.png, history.png")


if __name__ == "__main__":
    main()
