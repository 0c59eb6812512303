"""Plain-text alternative derived from an email's HTML part."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Final

_BLOCKS: Final = frozenset(
    {"p", "div", "section", "article", "header", "footer", "table", "tr", "ul", "ol",
     "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr", "li", "dl", "dt", "dd"}
)
_SKIPPED: Final = frozenset({"head", "style", "script", "title", "template", "noscript"})
_SPACES: Final = re.compile(r"[ \t\r\f\v\u00a0]+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skip += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCKS:
            self.parts.append("\n\n" if tag != "li" else "\n- ")
        elif tag == "td" or tag == "th":
            self.parts.append(" ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(alt)
        if tag == "a":
            # A link inside a link ends the first, as browsers parse it (and each
            # closing tag then reads only its own label, not all the nested ones).
            while self._links:
                self.handle_endtag("a")
            self._links.append((dict(attrs).get("href"), len(self.parts)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "a":
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n\n" if tag != "li" else "")
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            label = " ".join("".join(self.parts[start:]).split())
            if href and not href.startswith(("#", "mailto:", "tel:")) and href != label:
                self.parts.append(f" ({href})" if label else href)

    def parse_marked_section(self, i: int, report: bool = True) -> int:
        # `<![foo[`, `<![ x`: HTMLParser raises AssertionError on a marked section
        # it does not know; a browser ignores it up to the next `>`, so do we.
        try:
            return int(super().parse_marked_section(i, report))
        except AssertionError:
            end = self.rawdata.find(">", i)
            return -1 if end < 0 else end + 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(_SPACES.sub(" ", data.replace("\n", " ")))


def html_to_text(html: str) -> str:
    """Turn an HTML email body into readable plain text.

    Block elements become paragraphs, ``<br>`` a line break, list items
    ``- `` lines, links ``label (url)``, images their ``alt`` text;
    ``<head>``, ``<style>`` and ``<script>`` are dropped and entities decoded.
    """
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [_SPACES.sub(" ", line).strip() for line in "".join(parser.parts).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
