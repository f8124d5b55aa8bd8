"""Corpus sources read from installed Debian and PyPI packages (DESIGN.md §5), added after the first six.

Each source is a generator of messages. Files are visited in a fixed order (SHA-256 of the path), so
that a source stopped by its size cap samples its whole tree. Every file passes through
:func:`models.corpus_exclude.excluded` first; what it names a reason for is never read.

- ``kernel``: the Linux kernel's documentation (linux-doc-6.1): rst, txt and ABI files, paragraphs
  packed to 150-500 bytes like the Python docs.
- ``gosrc``: the Go 1.19 standard library and toolchain source (golang-1.19-src): .go files cut into
  chunks of whole lines, without testdata and generated files.
- ``nodedoc``: the Node.js 18 API docs (nodejs-doc): Markdown paragraphs, and the api/*.json files cut
  into chunks of whole lines.
- ``perldoc``: Perl's pod manuals (perl-doc) rendered to text by pod2text.
- ``gitdoc``: Git's AsciiDoc manuals, guides and technical notes (git-doc).
- ``djangodoc``: Django 3.2's documentation (python-django-doc), HTML rendered to paragraphs.
- ``dialog``: the chatterbot-corpus conversations (PyPI), one conversation per message.
"""

from __future__ import annotations

import importlib.resources
import re
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from models.corpus_exclude import excluded
from models.corpus_text import (
    hash_order,
    html_paragraphs,
    line_chunks,
    markdown_blocks,
    pack,
    paragraphs,
    read_text,
    rng_for,
    split_lines,
)

KERNEL_DOC = Path("/usr/share/doc/linux-doc-6.1/Documentation")
GO_SRC = Path("/usr/share/go-1.19/src")
NODE_API = Path("/usr/share/doc/nodejs/api")
PERL_POD = Path("/usr/share/perl/5.36.0/pod")
GIT_DOC = Path("/usr/share/doc/git-doc")
DJANGO_HTML = Path("/usr/share/doc/python-django-doc/html")

# source -> (Debian packages, a path that exists once they are installed)
APT_PACKAGES: dict[str, tuple[tuple[str, ...], Path]] = {
    "kernel": (("linux-doc-6.1",), KERNEL_DOC),
    "gosrc": (("golang-1.19-src",), GO_SRC),
    "nodedoc": (("nodejs-doc",), NODE_API),
    "perldoc": (("perl-doc",), PERL_POD / "perlfunc.pod"),
    "gitdoc": (("git-doc",), GIT_DOC / "user-manual.txt"),
    "djangodoc": (("python-django-doc",), DJANGO_HTML),
}
# source -> PyPI packages: (requirement, distribution, exact). An exact one is (re)installed unless that
# very version is there; the others only when missing (PyYAML, to read the corpus: whatever 6.x is there).
PIP_PACKAGES: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "dialog": (("pyyaml==6.0.3", "PyYAML", False), ("chatterbot-corpus==1.3.3", "chatterbot-corpus", True)),
}

SKIPPED: dict[str, Counter] = defaultdict(Counter)   # source -> reason -> files not read


def readable(source: str, files: Iterable[Path], root: Path) -> list[Path]:
    """``files`` less the excluded ones (counted in SKIPPED), in hash order."""
    keep = []
    for f in files:
        why = excluded(f)
        if why:
            SKIPPED[source][why] += 1
        else:
            keep.append(f)
    return hash_order(keep, root)


def _doc_paragraphs(text: str, name: str) -> list[str]:
    """Paragraphs packed to a per-file target of 150-500 bytes, the way the Python docs source does."""
    return pack(paragraphs(text), rng_for(name).randint(150, 500), "\n\n")


SPDX = re.compile(r"^\.\. SPDX-License-Identifier:.*\n|^SPDX-License-Identifier:.*\n", re.MULTILINE)


def _kernel_file(f: Path, root: Path) -> bool:
    name = f.name.removesuffix(".gz")
    if name.endswith((".rst", ".txt")):
        return True
    return f.relative_to(root).parts[0] == "ABI" and "." not in name     # ABI/testing/sysfs-... entries


def kernel() -> Iterator[str]:
    files = (f for f in KERNEL_DOC.rglob("*") if f.is_file() and _kernel_file(f, KERNEL_DOC))
    for f in readable("kernel", files, KERNEL_DOC):
        yield from _doc_paragraphs(SPDX.sub("", read_text(f)), str(f))


GO_LICENSE_HEADER = re.compile(r"\A// Copyright[^\n]*\n(//[^\n]*\n)*\n*")


def gosrc() -> Iterator[str]:
    files = (f for f in GO_SRC.rglob("*.go") if "testdata" not in f.relative_to(GO_SRC).parts)
    for f in readable("gosrc", files, GO_SRC):
        text = read_text(f)
        if "DO NOT EDIT" in text[:4096]:     # generated: "// Code generated ... DO NOT EDIT." and older forms
            SKIPPED["gosrc"]["generated"] += 1
            continue
        # the three-line BSD notice that opens every file (it points at LICENSE, it is not one)
        yield from line_chunks(GO_LICENSE_HEADER.sub("", text), rng_for(str(f)), 200, 1000)


NODE_FILE = re.compile(r"^(?!all\.)[\w.-]+\.(md|json)(\.gz)?$")     # all.* repeats every other file


def nodedoc() -> Iterator[str]:
    files = (f for f in NODE_API.iterdir() if f.is_file() and NODE_FILE.match(f.name))
    for f in readable("nodedoc", files, NODE_API):
        text, rng = read_text(f), rng_for(str(f))
        if ".md" in f.name:
            blocks = [q for b in markdown_blocks(text) for q in split_lines(b, 1000)]
            yield from pack(blocks, rng.randint(150, 500), "\n\n")
        else:
            yield from line_chunks(text, rng, 200, 1000)


# Release notes are changelogs in all but name: perl5*delta, perldelta and perlhist (the release
# history) stay out with the changelogs.
PERL_CHANGES = re.compile(r"^perl(\d*delta|hist)\.pod$")


def _pod2text(f: Path) -> str:
    r = subprocess.run(["pod2text", "-w", "80", str(f)], capture_output=True, check=False)
    return r.stdout.decode("utf-8", errors="replace")


def perldoc() -> Iterator[str]:
    files = (f for f in PERL_POD.glob("*.pod") if not PERL_CHANGES.match(f.name))
    for f in readable("perldoc", files, PERL_POD):
        yield from _doc_paragraphs(_pod2text(f), str(f))


def gitdoc() -> Iterator[str]:
    files = (f for f in GIT_DOC.rglob("*.txt") if f.is_file())
    for f in readable("gitdoc", files, GIT_DOC):
        yield from _doc_paragraphs(read_text(f), str(f))


# _modules: Django's own Python source as HTML; releases/: release notes (changelogs in all but name);
# the index pages are lists of links.
DJANGO_SKIP_DIRS = {"_modules", "_static", "_images", "_sources", "releases"}
DJANGO_SKIP_FILES = {"genindex.html", "search.html", "py-modindex.html", "contents.html"}


def djangodoc() -> Iterator[str]:
    files = (f for f in DJANGO_HTML.rglob("*.html")
             if not DJANGO_SKIP_DIRS & set(f.relative_to(DJANGO_HTML).parts)
             and f.name not in DJANGO_SKIP_FILES)
    for f in readable("djangodoc", files, DJANGO_HTML):
        paras = [q for p in html_paragraphs(read_text(f), "yui-g") for q in split_lines(p, 1000)]
        yield from pack(paras, rng_for(str(f)).randint(150, 500), "\n\n")


def dialog() -> Iterator[str]:
    """One message per conversation of chatterbot-corpus (every language), its lines joined by newlines.

    The YAML files are read from the installed chatterbot_corpus package: the one place inside
    site-packages a source may read (see corpus_exclude.ALLOWED_IN_SITE_PACKAGES), because that package
    IS the dialog corpus, not the metadata or docs of a library."""
    import yaml

    root = Path(str(importlib.resources.files("chatterbot_corpus"))) / "data"
    for f in readable("dialog", root.rglob("*.yml"), root):
        doc = yaml.safe_load(read_text(f)) or {}
        for conv in doc.get("conversations") or []:
            if isinstance(conv, list):
                yield "\n".join(str(line).strip() for line in conv if line is not None)
