"""Every relative link and image in README.md and docs/*.md points to a file that exists.

Links to web pages (http, https, mailto) and to anchors of the same page (#...) are left alone;
of a link into a file only the path is checked, not the #fragment after it.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_SRC = re.compile(r"<(?:img|a)\s[^>]*?(?:src|href)=[\"']([^\"']+)[\"']", re.IGNORECASE)


def link_targets(text):
    """The targets of markdown links and images (and HTML img/a) outside code, in order."""
    text = CODE_SPAN.sub("", FENCE.sub("", text))
    return [m.group(1) for m in LINK.finditer(text)] + [m.group(1) for m in HTML_SRC.finditer(text)]


def local_path(target):
    """The file part of a link target, or None for web links and same-page anchors."""
    if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
        return None
    return target.split("#", 1)[0].split("?", 1)[0]


def test_link_targets():
    text = (
        "See [a](docs/a.md#part), ![img](b.png) and [web](https://x.org/c.md).\n"
        "[anchor](#top) `[not](code.md)` <img src='d.png' width=3>\n"
        "```python\nx = y[0](z.md)\n```\n"
    )
    targets = link_targets(text)
    assert targets == ["docs/a.md#part", "b.png", "https://x.org/c.md", "#top", "d.png"]
    assert [local_path(t) for t in targets] == ["docs/a.md", "b.png", None, None, "d.png"]


def test_pages_found():
    assert (ROOT / "README.md") in PAGES
    assert len(PAGES) > 1  # docs/*.md


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_exist(page):
    missing = []
    for target in link_targets(page.read_text(encoding="utf-8")):
        path = local_path(target)
        if path is not None and not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"
