"""The model bundle: the files a codec needs, their manifest, and the model id.

The model id is the sha256 (hex) of the bundle's files, taken in name order as
``name NUL sha256(content) NL`` lines; the manifest itself is not part of it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

BUNDLE_FILES = ("tokenizer.json", "encoder.onnx", "step.onnx", "codebooks.npy", "fallback.zdict")
MANIFEST = "manifest.json"
DEFAULT_DIR = Path(__file__).parent / "artifacts"


def model_id_of(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).hexdigest().encode() + b"\n")
    return h.hexdigest()


def read_bundle(path: Path) -> dict[str, bytes]:
    """Every bundle file under ``path`` by name; ``FileNotFoundError`` names a missing one."""
    return {name: (path / name).read_bytes() for name in BUNDLE_FILES}


def write_manifest(path: Path, info: dict) -> str:
    """Write ``manifest.json`` (model id, file sizes and hashes, ``info``); return the model id."""
    files = read_bundle(path)
    mid = model_id_of(files)
    manifest = {
        "model_id": mid,
        "files": {n: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in sorted(files.items())},
        **info,
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return mid
