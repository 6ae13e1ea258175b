"""Check that Markdown a chapter displays was rendered, not printed as text.

A cell that displays ``Markdown(table)`` yields a pipe table; if the output parser lacks
tables (myst-nb's default output format, commonmark), the page shows the raw pipes in a
paragraph, with the delimiter row ``|---|`` turned into dashes or em dashes by smart
quotes. That builds without a warning, so it is checked here.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from book_offline import reader_pages

#: A table delimiter row as it survives in paragraph text: |---| or |—|, with optional colons.
DELIMITER_ROW = re.compile(r"\|\s*:?(?:-{3,}|—+|–+):?\s*\|")


class _ParagraphText(HTMLParser):
    """Collects the text of every <p> element."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.current: list[str] = []
        self.paragraphs: list[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "p":
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "p" and self.depth:
            self.depth -= 1
            if not self.depth:
                self.paragraphs.append("".join(self.current))
                self.current = []

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.current.append(data)


def unrendered_tables(html_dir: Path) -> list[str]:
    """``"<page>: raw Markdown table: <start of the text>"`` for each paragraph that holds one."""
    html_dir = Path(html_dir)
    problems = []
    for path in reader_pages(html_dir):
        parser = _ParagraphText()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        for text in parser.paragraphs:
            if DELIMITER_ROW.search(text):
                problems.append(f"{path.relative_to(html_dir)}: raw Markdown table: {text[:60]!r}")
    return problems
