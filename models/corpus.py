"""Build the training corpus from Debian and PyPI packages and seeded generators: deterministic
train/valid/test splits of messages.

Sources (DESIGN.md §5, listed with sizes and licenses in models/DATA.md), in build order:

- the first six: fortunes, KJV bible verses, Python 3.11 reStructuredText docs, man pages (rendered to
  text), GCIDE and WordNet dictionary entries;
- from packages (models/corpus_sources.py): the Linux kernel's documentation, Go source, Node.js docs
  (Markdown and JSON), Perl's pod manuals, Git's manuals, Django's docs, chatterbot-corpus dialog;
- generated from fixed seeds (models/corpus_synthetic.py): logs, JSON records, chat.

Every message is one JSON line ``{"text": str, "source": str}`` of MIN_BYTES..MAX_BYTES UTF-8 bytes,
kept once (the first source to yield a text keeps it); the split is a function of the message's SHA-256
alone. The sources added after the first six stop at TRAIN_CAP bytes of train text each. The held-out
kinds of text (models/corpus_exclude.py) are never read, and a message of a source added after the first
six that quotes a license grant is dropped.

Run: ``python -m models.corpus --out data`` builds every source; ``--sources kernel,gosrc`` a subset
(installs the packages with apt-get and pip when they are missing and it runs as root). Writes
train/valid/test.jsonl, stats.json (messages and bytes per split and source) and sources.json (package
versions, files skipped by the exclusion rules, seconds per source).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from models import corpus_sources, corpus_synthetic
from models.corpus_exclude import license_boilerplate
from models.corpus_text import MAX_BYTES, MIN_BYTES, pack, paragraphs, rng_for

DEBIAN_PACKAGES = [
    "fortunes", "fortunes-min", "python3.11-doc", "bible-kjv",
    "manpages", "manpages-dev", "dict-gcide", "dict-wn", "man-db", "bsdextrautils",
]
FORTUNE_DIR = Path("/usr/share/games/fortunes")
PYDOC_DIR = Path("/usr/share/doc/python3.11-doc/html/_sources")
MAN_PACKAGES = ("manpages", "manpages-dev")
DICT_DIR = Path("/usr/share/dictd")

SPLIT_PERCENT = {"valid": 2, "test": 2}  # the rest is train


def ensure_packages(names: Iterable[str] = ()) -> None:
    """Install the Debian and PyPI packages of the sources ``names`` if any of their files are missing."""
    names = list(names) or list(SOURCES)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    first_six = any(n in FIRST_SOURCES for n in names) and not (
        FORTUNE_DIR.exists() and PYDOC_DIR.exists() and shutil.which("bible")
        and (DICT_DIR / "wn.index").exists())
    apt_sources = corpus_sources.APT_PACKAGES
    apt = [pkg for n in names if n in apt_sources and not apt_sources[n][1].exists()
           for pkg in apt_sources[n][0]]
    if first_six or apt:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    if first_six:
        subprocess.run(["apt-get", "install", "-y", "-qq", *DEBIAN_PACKAGES], check=True, env=env)
    if apt:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *apt],
                       check=True, env=env)
    for n in names:
        for req, dist, exact in corpus_sources.PIP_PACKAGES.get(n, ()):
            try:
                have = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                have = None
            if have is None or (exact and have != req.split("==")[1]):
                subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", req], check=True)
                importlib.invalidate_caches()


def fortunes() -> list[str]:
    out = []
    for f in sorted(FORTUNE_DIR.iterdir()):
        if f.is_dir() or f.suffix in (".dat", ".u8") or f.is_symlink():
            continue
        text = f.read_bytes().decode("utf-8", errors="replace")
        out += [m.strip("\n") for m in re.split(r"\n%\n", text) if m.strip()]
    return out


def kjv() -> list[str]:
    raw = subprocess.run(["bible", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    verses, cur = [], None
    for line in raw.splitlines():
        m = re.match(r"^\s+(\d+) (.*)$", line)
        if m:
            if cur:
                verses.append(cur)
            cur = m.group(2)
        elif line.strip() and cur is not None and not re.match(r"^[1-3]?\s?[A-Z][A-Za-z ]+ \d+$", line.strip()):
            cur += " " + line.strip()
        elif not line.strip() and cur:
            verses.append(cur)
            cur = None
    if cur:
        verses.append(cur)
    rng = rng_for("kjv")
    out, i = [], 0
    while i < len(verses):
        n = rng.choice((1, 1, 2, 3, 4))
        out.append(" ".join(verses[i:i + n]))
        i += n
    return out


def pydoc() -> list[str]:
    out = []
    for f in sorted(PYDOC_DIR.rglob("*.txt")):
        paras = paragraphs(f.read_text(errors="replace"))
        out += pack(paras, rng_for(str(f)).randint(150, 500), "\n\n")
    return out


def _render_man(path: Path) -> str:
    r = subprocess.run(f"man -l {path} 2>/dev/null | col -bx", shell=True, capture_output=True, check=False,
                       env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0"))
    return r.stdout.decode("utf-8", errors="replace")


def manpages() -> list[str]:
    listing = subprocess.run(["dpkg", "-L", *MAN_PACKAGES], capture_output=True, text=True, check=True).stdout
    files = sorted(Path(p) for p in listing.splitlines()
                   if re.match(r"^/usr/share/man/man\d/.*\.gz$", p) and Path(p).is_file())
    with ThreadPoolExecutor(max_workers=4) as ex:
        pages = list(ex.map(_render_man, files))
    out = []
    for f, page in zip(files, pages):
        paras = [p for p in paragraphs(page) if not re.match(r"^\S+\(\d\w*\)\s", p)]
        out += pack(paras, rng_for(str(f)).randint(150, 500), "\n\n")
    return out


def _b64(s: str) -> int:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    n = 0
    for ch in s:
        n = n * 64 + alphabet.index(ch)
    return n


def dictionary(name: str) -> list[str]:
    with gzip.open(DICT_DIR / f"{name}.dict.dz") as f:
        data = f.read()
    out, seen = [], set()
    for line in (DICT_DIR / f"{name}.index").read_text(errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database"):
            continue
        off, ln = _b64(parts[1]), _b64(parts[2])
        if (off, ln) in seen:
            continue
        seen.add((off, ln))
        entry = data[off:off + ln].decode("utf-8", errors="replace").strip("\n")
        out.append(textwrap.dedent(entry))
    return out


FIRST_SOURCES = ("fortunes", "kjv", "pydoc", "man", "gcide", "wordnet")
SOURCES: dict[str, Callable[[], Iterable[str]]] = {
    "fortunes": fortunes, "kjv": kjv, "pydoc": pydoc, "man": manpages,
    "gcide": lambda: dictionary("gcide"), "wordnet": lambda: dictionary("wn"),
    # added later: after the first six, so that those keep exactly their messages and splits
    "kernel": corpus_sources.kernel, "gosrc": corpus_sources.gosrc, "nodedoc": corpus_sources.nodedoc,
    "perldoc": corpus_sources.perldoc, "gitdoc": corpus_sources.gitdoc, "djangodoc": corpus_sources.djangodoc,
    "dialog": corpus_sources.dialog,
    "logs": corpus_synthetic.logs, "records": corpus_synthetic.records, "chat": corpus_synthetic.chat,
}
TRAIN_CAP = 6_000_000   # train bytes at which each source added after the first six stops
CAPS = {name: TRAIN_CAP for name in SOURCES if name not in FIRST_SOURCES}


def split_of(text: str) -> str:
    h = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") % 100
    if h < SPLIT_PERCENT["valid"]:
        return "valid"
    if h < SPLIT_PERCENT["valid"] + SPLIT_PERCENT["test"]:
        return "test"
    return "train"


def _debian_versions(packages: Iterable[str]) -> dict[str, str]:
    out = {}
    for pkg in packages:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True,
                           check=False)
        out[pkg] = r.stdout.strip() or "not installed"
    return out


def _provenance(name: str) -> dict:
    """The packages a source was read from, with the versions installed now."""
    if name in FIRST_SOURCES:
        pkgs = {"fortunes": ["fortunes", "fortunes-min"], "kjv": ["bible-kjv"], "pydoc": ["python3.11-doc"],
                "man": list(MAN_PACKAGES), "gcide": ["dict-gcide"], "wordnet": ["dict-wn"]}[name]
        return {"debian": _debian_versions(pkgs)}
    if name in corpus_sources.APT_PACKAGES:
        return {"debian": _debian_versions(corpus_sources.APT_PACKAGES[name][0])}
    if name in corpus_sources.PIP_PACKAGES:
        return {"pypi": {dist: importlib.metadata.version(dist)
                         for _, dist, _ in corpus_sources.PIP_PACKAGES[name]}}
    return {"generated": f"models/corpus_synthetic.py, seed {corpus_synthetic.SEED}"}


def build(out_dir: Path, names: Iterable[str] | None = None) -> dict:
    """Write train/valid/test JSONL files under ``out_dir`` from the sources ``names`` (default: all, in
    SOURCES order whatever the order given); return per-split, per-source stats."""
    wanted = set(SOURCES if names is None else names)
    names = [n for n in SOURCES if n in wanted]
    ensure_packages(names)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {s: open(out_dir / f"{s}.jsonl", "w") for s in ("train", "valid", "test")}  # noqa: SIM115 - closed below
    stats: dict = {}
    info: dict = {}
    seen: set[bytes] = set()
    for source in names:
        t0, cap, train_bytes, dropped = time.time(), CAPS.get(source), 0, 0
        for text in SOURCES[source]():
            n = len(text.encode())
            key = hashlib.sha256(text.encode()).digest()
            if not (MIN_BYTES <= n <= MAX_BYTES) or key in seen:
                continue
            if source not in FIRST_SOURCES and license_boilerplate(text):   # held out: license texts
                dropped += 1
                continue
            seen.add(key)
            split = split_of(text)
            files[split].write(json.dumps({"text": text, "source": source}, ensure_ascii=False) + "\n")
            st = stats.setdefault(split, {}).setdefault(source, {"messages": 0, "bytes": 0})
            st["messages"] += 1
            st["bytes"] += n
            if split == "train":
                train_bytes += n
                if cap is not None and train_bytes >= cap:
                    break
        info[source] = {**_provenance(source), "capped": cap is not None and train_bytes >= cap,
                        "skipped_files": dict(sorted(corpus_sources.SKIPPED.get(source, {}).items())),
                        "dropped_license_messages": dropped,
                        "seconds": round(time.time() - t0, 1)}
        print(f"{source}: {train_bytes} train bytes, {info[source]['seconds']} s", file=sys.stderr,
              flush=True)
    for f in files.values():
        f.close()
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=1, sort_keys=True))
    (out_dir / "sources.json").write_text(json.dumps(info, indent=1))
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data"))
    ap.add_argument("--sources", default=None,
                    help=f"comma-separated subset of: {','.join(SOURCES)} (default: all of them)")
    args = ap.parse_args()
    names = None
    if args.sources:
        names = [n.strip() for n in args.sources.split(",") if n.strip()]
        unknown = [n for n in names if n not in SOURCES]
        if unknown:
            ap.error(f"unknown source(s) {','.join(unknown)}; known: {','.join(SOURCES)}")
    print(json.dumps(build(args.out, names), indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
