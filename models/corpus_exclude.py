"""Kinds of text that no corpus source may read (DESIGN.md §5).

These are held out: the project is judged on them as text the model has never seen, so they stay out
of train, valid and test alike. Every file a package-based source reads goes through :func:`excluded`
first; a path it names a reason for is skipped.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

# Paths inside an installed Python package that a source may read all the same: the chatterbot-corpus
# YAML conversations ARE the dialog corpus (shipped as a Python package on PyPI), not a package's own
# metadata, JSON or docs. This is the one exception to the site-packages rule below.
ALLOWED_IN_SITE_PACKAGES = re.compile(r"/(site|dist)-packages/chatterbot_corpus/data/[^/]+/[^/]+\.ya?ml$")

# Files that hold license texts under names the LICENSE*/COPYING* rule does not catch.
LICENSE_FILES = {
    "copyright",                 # Debian's /usr/share/doc/<pkg>/copyright: license texts and grants
    "perlartistic.pod",          # perl-doc: the Artistic License
    "perlgpl.pod",               # perl-doc: the GNU GPL
}


def excluded(path: str | PurePosixPath) -> str | None:
    """Why ``path`` must not be read into the corpus, or None when it may be."""
    p = str(path)
    name = PurePosixPath(p).name
    low = name.lower()
    parts = [s.lower() for s in PurePosixPath(p).parts]
    # Held out: Debian changelogs, changelog* files anywhere (changelog.Debian.gz, ChangeLog, ...).
    if low.startswith("changelog"):
        return "changelog"
    # Held out: README files, under /usr/share/doc or inside packages (README, README.Debian, README.md...).
    if low.startswith("readme"):
        return "readme"
    # Held out: license texts: /usr/share/common-licenses, LICENSE*/LICENCE*/COPYING* anywhere, and the
    # known license files under other names.
    if p.startswith("/usr/share/common-licenses") or low.startswith(("license", "licence", "copying")) \
            or low in LICENSE_FILES:
        return "license text"
    # Held out: the Jargon File, the Devil's Dictionary, FOLDOC (dict-jargon, dict-devil, dict-foldoc, ...).
    if any(k in s for s in parts for k in ("jargon", "devil", "foldoc")):
        return "jargon file / devil's dictionary / foldoc"
    # Held out: this machine's system logs.
    if p.startswith("/var/log"):
        return "system log"
    # Held out: anything inside installed Python packages (metadata, JSON, docs), except the dialog corpus.
    if ALLOWED_IN_SITE_PACKAGES.search(p):
        return None
    if "site-packages" in parts or "dist-packages" in parts:
        return "installed python package"
    # Held out: the Python standard library's own source files (/usr/lib/python3.11, a venv's or pyenv's
    # lib/python3.x).
    if re.search(r"/lib/python\d(\.\d+)?/", p):
        return "python standard library"
    return None


# The words of license texts wherever they turn up inside a file that may be read: a license header
# opening a source file, a vendored notice, a quoted grant. The build drops a message of the sources
# added after the first six that contains one, so that no license text comes in by the side door.
LICENSE_PHRASES = re.compile(
    r"permission is hereby granted|without any warranty|redistribution and use in source and binary forms"
    r"|licensed under the apache license|general public license as published by|provided \W?as is\W?"
    r"|permission to use, copy, modify", re.IGNORECASE)


def license_boilerplate(text: str) -> bool:
    """Whether ``text`` quotes a license grant or warranty disclaimer."""
    return LICENSE_PHRASES.search(text) is not None
