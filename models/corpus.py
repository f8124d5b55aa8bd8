"""Build the training corpus from Debian packages: deterministic train/valid/test splits of messages.

Sources (DESIGN.md §5): fortunes, KJV bible verses, Python 3.11 reStructuredText docs, man pages
(rendered to text), GCIDE and WordNet dictionary entries. Every message is one JSON line
``{"text": str, "source": str}``; the split is a function of the message's SHA-256 alone.

Run: ``python -m models.corpus --out data`` (installs the packages with apt-get
when they are missing and it runs as root).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEBIAN_PACKAGES = [
    "fortunes", "fortunes-min", "python3.11-doc", "bible-kjv",
    "manpages", "manpages-dev", "dict-gcide", "dict-wn", "man-db", "bsdextrautils",
]
FORTUNE_DIR = Path("/usr/share/games/fortunes")
PYDOC_DIR = Path("/usr/share/doc/python3.11-doc/html/_sources")
MAN_PACKAGES = ("manpages", "manpages-dev")
DICT_DIR = Path("/usr/share/dictd")

MIN_BYTES, MAX_BYTES = 24, 1200          # message length window, UTF-8 bytes
SPLIT_PERCENT = {"valid": 2, "test": 2}  # the rest is train


def ensure_packages() -> None:
    """Install the Debian source packages if any of their files are missing."""
    if FORTUNE_DIR.exists() and PYDOC_DIR.exists() and shutil.which("bible") and (DICT_DIR / "wn.index").exists():
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *DEBIAN_PACKAGES], check=True, env=env)


def _pack(pieces: list[str], target: int, sep: str = "\n") -> list[str]:
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


def _rng_for(name: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big"))


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
    rng = _rng_for("kjv")
    out, i = [], 0
    while i < len(verses):
        n = rng.choice((1, 1, 2, 3, 4))
        out.append(" ".join(verses[i:i + n]))
        i += n
    return out


def _paragraphs(text: str) -> list[str]:
    return [textwrap.dedent(p).strip("\n") for p in re.split(r"\n\s*\n", text) if p.strip()]


def pydoc() -> list[str]:
    out = []
    for f in sorted(PYDOC_DIR.rglob("*.txt")):
        paras = _paragraphs(f.read_text(errors="replace"))
        out += _pack(paras, _rng_for(str(f)).randint(150, 500), "\n\n")
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
        paras = [p for p in _paragraphs(page) if not re.match(r"^\S+\(\d\w*\)\s", p)]
        out += _pack(paras, _rng_for(str(f)).randint(150, 500), "\n\n")
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


SOURCES = {
    "fortunes": fortunes, "kjv": kjv, "pydoc": pydoc, "man": manpages,
    "gcide": lambda: dictionary("gcide"), "wordnet": lambda: dictionary("wn"),
}


def split_of(text: str) -> str:
    h = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") % 100
    if h < SPLIT_PERCENT["valid"]:
        return "valid"
    if h < SPLIT_PERCENT["valid"] + SPLIT_PERCENT["test"]:
        return "test"
    return "train"


def build(out_dir: Path) -> dict:
    """Write train/valid/test JSONL files under ``out_dir``; return per-split, per-source stats."""
    ensure_packages()
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {s: open(out_dir / f"{s}.jsonl", "w") for s in ("train", "valid", "test")}  # noqa: SIM115 - closed below
    stats: dict = {}
    seen: set[bytes] = set()
    for source, fn in SOURCES.items():
        for text in fn():
            n = len(text.encode())
            key = hashlib.sha256(text.encode()).digest()
            if not (MIN_BYTES <= n <= MAX_BYTES) or key in seen:
                continue
            seen.add(key)
            split = split_of(text)
            files[split].write(json.dumps({"text": text, "source": source}, ensure_ascii=False) + "\n")
            st = stats.setdefault(split, {}).setdefault(source, {"messages": 0, "bytes": 0})
            st["messages"] += 1
            st["bytes"] += n
    for f in files.values():
        f.close()
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=1, sort_keys=True))
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data"))
    print(json.dumps(build(ap.parse_args().out), indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
