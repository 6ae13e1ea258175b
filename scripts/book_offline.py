"""Check that the built HTML opens offline: no remote scripts, styles, fonts or images.

Links (``<a href>``) may point anywhere: they are fetched only when clicked. What
a page loads by itself must be local and must exist: ``<script src>``,
``<link href>`` (stylesheets, fonts, icons, preloads), ``<img src>``,
``<iframe src>``, ``<source src>``, ``<embed src>``, ``<object data>``, and
``url(...)`` / ``@import`` in CSS.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: Attributes through which a page loads a resource by itself.
LOADING_ATTRIBUTES = {
    "script": "src",
    "link": "href",
    "img": "src",
    "iframe": "src",
    "source": "src",
    "embed": "src",
    "object": "data",
    "audio": "src",
    "video": "src",
}
#: ``<link rel=...>`` values that only describe the page (nothing is fetched).
NON_LOADING_RELS = {"canonical", "alternate", "author", "license", "search", "help", "next",
                    "prev", "index", "top", "up", "first", "last", "bookmark", "me"}
CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])([^'")\s]+)""")


def _is_remote(url: str) -> bool:
    return url.startswith("//") or urlsplit(url).scheme in ("http", "https", "ftp")


class _ResourceParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "link":
            rels = set((attributes.get("rel") or "").lower().split())
            if rels and rels <= NON_LOADING_RELS:
                return
        name = LOADING_ATTRIBUTES.get(tag)
        if name and attributes.get(name):
            self.urls.append(attributes[name])
        style = attributes.get("style")
        if style:
            self.urls.extend(CSS_URL.findall(style))

    def handle_data(self, data: str) -> None:
        if self.lasttag == "style":
            self.urls.extend(CSS_URL.findall(data))


def _is_template(relative: Path) -> bool:
    """Theme template fragments shipped in ``_static/`` (not pages a reader opens)."""
    return relative.parts[0] in ("_static", "_sources")


def reader_pages(html_dir: Path) -> list[Path]:
    """The HTML pages of a built book that a reader opens (theme templates left out), sorted."""
    html_dir = Path(html_dir)
    return sorted(p for p in html_dir.rglob("*.html") if not _is_template(p.relative_to(html_dir)))


def page_resources(html: str) -> list[str]:
    """URLs that an HTML page loads by itself when opened."""
    parser = _ResourceParser()
    parser.feed(html)
    return parser.urls


def offline_problems(html_dir: Path) -> list[str]:
    """Remote or missing resources of every page and stylesheet under ``html_dir``.

    Returns
    -------
    list of str
        ``"<file>: remote <url>"`` or ``"<file>: missing <url>"``; empty when the
        book opens offline.
    """
    html_dir = Path(html_dir)
    problems: list[str] = []
    files = reader_pages(html_dir) + sorted(html_dir.rglob("*.css"))
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        urls = page_resources(text) if path.suffix == ".html" else CSS_URL.findall(text)
        for url in urls:
            if url.startswith(("data:", "#", "about:", "javascript:")):
                continue
            name = path.relative_to(html_dir)
            if _is_remote(url):
                problems.append(f"{name}: remote {url}")
                continue
            target = unquote(urlsplit(url).path)
            if target and not (path.parent / target).exists():
                problems.append(f"{name}: missing {url}")
    return problems
