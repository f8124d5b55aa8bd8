"""Text helpers shared by the corpus sources: seeded RNGs, paragraph splitting, packing pieces into
messages, cutting code or JSON into chunks of whole lines, Markdown blocks and HTML to text."""

from __future__ import annotations

import gzip
import hashlib
import random
import re
import textwrap
from html.parser import HTMLParser
from pathlib import Path

MIN_BYTES, MAX_BYTES = 24, 1200          # message length window, UTF-8 bytes


def nbytes(s: str) -> int:
    return len(s.encode())


def rng_for(name: str) -> random.Random:
    """A random generator seeded by ``name`` alone: the same name, the same draws, on any machine."""
    return random.Random(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big"))


def hash_order(paths, root: Path) -> list[Path]:
    """``paths`` in the order of the SHA-256 of their path under ``root``: a fixed, well-mixed order, so
    that a source cut short by its size cap samples its whole tree rather than the first folders."""
    return sorted(paths, key=lambda p: hashlib.sha256(str(p.relative_to(root)).encode()).digest())


def read_text(path: Path) -> str:
    """A file's text, gunzipped when its name ends in .gz; undecodable bytes replaced."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def paragraphs(text: str) -> list[str]:
    return [textwrap.dedent(p).strip("\n") for p in re.split(r"\n\s*\n", text) if p.strip()]


def pack(pieces: list[str], target: int, sep: str = "\n") -> list[str]:
    """Greedily join consecutive pieces into messages of about ``target`` bytes."""
    out, cur = [], ""
    for p in pieces:
        if cur and len((cur + sep + p).encode()) > target:
            out.append(cur)
            cur = p
        else:
            cur = cur + sep + p if cur else p
    if cur:
        out.append(cur)
    return out


def pack_varied(pieces: list[str], rng: random.Random, lo: int, hi: int, sep: str = "\n") -> list[str]:
    """Like :func:`pack`, but each message draws its own target size from ``[lo, hi]``."""
    out, cur, target = [], "", rng.randint(lo, hi)
    for p in pieces:
        if cur and nbytes(cur + sep + p) > target:
            out.append(cur)
            cur, target = p, rng.randint(lo, hi)
        else:
            cur = cur + sep + p if cur else p
    if cur:
        out.append(cur)
    return out


def split_lines(block: str, limit: int) -> list[str]:
    """Cut ``block`` into runs of whole lines of at most ``limit`` bytes each (a longer line stands alone)."""
    if nbytes(block) <= limit:
        return [block]
    out, cur = [], []
    size = 0
    for line in block.split("\n"):
        n = nbytes(line) + 1
        if cur and size + n > limit:
            out.append("\n".join(cur))
            cur, size = [], 0
        cur.append(line)
        size += n
    if cur:
        out.append("\n".join(cur))
    return out


def line_chunks(text: str, rng: random.Random, lo: int = 200, hi: int = 1000) -> list[str]:
    """Source code or JSON cut into chunks of whole lines, preferring cuts at blank lines: blank-line
    separated blocks (longer ones cut at line ends) packed to a size drawn per chunk from ``[lo, hi]``."""
    blocks = [b.strip("\n") for b in re.split(r"\n[ \t]*\n", text) if b.strip()]
    if len(blocks) == 1:     # no blank lines at all (JSON): cut the lines into chunks of drawn sizes
        lines, out, i = blocks[0].split("\n"), [], 0
        while i < len(lines):
            target, j, size = rng.randint(lo, hi), i, 0
            while j < len(lines) and (j == i or size + nbytes(lines[j]) + 1 <= target):
                size += nbytes(lines[j]) + 1
                j += 1
            out.append("\n".join(lines[i:j]))
            i = j
        return out
    pieces = [p for b in blocks for p in split_lines(b, hi)]
    return pack_varied(pieces, rng, lo, hi, "\n\n")


def markdown_blocks(text: str) -> list[str]:
    """Markdown split into paragraphs at blank lines, a fenced code block (```) kept whole."""
    out, cur, fence = [], [], False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fence = not fence
        if not fence and not line.strip():
            if cur:
                out.append("\n".join(cur).strip("\n"))
                cur = []
            continue
        cur.append(line)
    if cur:
        out.append("\n".join(cur).strip("\n"))
    return [b for b in out if b.strip()]


_BLOCK_TAGS = {"p", "pre", "li", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "tr", "div",
               "table", "ul", "ol", "dl", "section", "caption", "figcaption", "br", "hr", "td", "th"}


class _HtmlText(HTMLParser):
    """Text of the element whose ``class`` contains ``content_class`` (the page body of a Sphinx theme),
    one paragraph per block element; <pre> keeps its lines; list items get a "- " bullet."""

    def __init__(self, content_class: str):
        super().__init__(convert_charrefs=True)
        self.content_class = content_class
        self.depth = 0            # open <div>s inside the content element, 0 when outside
        self.skip = 0             # inside <script>, <style> or a header link
        self.pre = 0
        self.buf: list[str] = []
        self.paras: list[str] = []

    def _flush(self) -> None:
        text = "".join(self.buf)
        self.buf = []
        if not self.pre:
            text = re.sub(r"\s+", " ", text).strip()
        else:
            text = text.strip("\n")
        if text.strip():
            self.paras.append(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self.depth == 0:
            if tag == "div" and self.content_class in (a.get("class") or "").split():
                self.depth = 1
            return
        if tag == "div":
            self.depth += 1
        if tag in ("script", "style") or (tag == "a" and "headerlink" in (a.get("class") or "")):
            self.skip += 1
            return
        if tag in _BLOCK_TAGS and not self.pre:
            self._flush()
        if tag == "pre":
            self.pre += 1
        if tag == "li":
            self.buf.append("- ")

    def handle_endtag(self, tag):
        if self.depth == 0:
            return
        if tag in ("script", "style") or (tag == "a" and self.skip):
            self.skip = max(0, self.skip - 1)
            return
        if tag == "pre":
            self._flush()
            self.pre = max(0, self.pre - 1)
        elif tag in _BLOCK_TAGS and not self.pre:
            self._flush()
        if tag == "div":
            self.depth -= 1
            if self.depth == 0:
                self._flush()

    def handle_data(self, data):
        if self.depth and not self.skip:
            self.buf.append(data)


def html_paragraphs(html: str, content_class: str) -> list[str]:
    """The paragraphs of text inside the first ``<div class="... content_class ...">`` of ``html``."""
    p = _HtmlText(content_class)
    p.feed(html)
    p.close()
    p._flush()
    return [t.replace("\u00b6", "").strip() for t in p.paras if t.replace("\u00b6", "").strip()]
