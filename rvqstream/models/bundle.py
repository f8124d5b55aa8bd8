"""The model bundle: the files a codec needs, their manifest, and the model id.

Three kinds of bundle: ``intlm`` (the integer language model of the exact tier, ``INT_FILES``: the
default), ``float`` (frame encoder, RVQ codebooks and the code-conditioned float decoder,
``FLOAT_FILES``: exact-tier data with RVQ stages, and data made before the integer model, the
retired semantic tier's included) and
``codes`` (message encoder and residual quantizer of the message codes, ``CODE_FILES``). A
manifest's ``config.kind`` names the kind (no kind: ``float``).

The model id is the sha256 (hex) of the bundle's files, taken in name order as
``name NUL sha256(content) NL`` lines; the manifest itself is not part of it. A model id from
elsewhere (a request, a server's reply) is checked to be one (``check_model_id``) before it names
anything, a directory included.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from rvqstream.models.errors import UnknownModelError

FLOAT_FILES = ("tokenizer.json", "encoder.onnx", "step.onnx", "codebooks.npy", "fallback.zdict")
INT_FILES = ("tokenizer.json", "lm.npz", "step.onnx", "step_cuda.onnx", "fallback.zdict")
CODE_FILES = ("encoder.onnx", "encoder_tokenizer.json", "rvq.npz")
MANIFEST = "manifest.json"
DEFAULT_DIR = Path(__file__).parent / "artifacts"
SEMANTIC_DIR = DEFAULT_DIR / "semantic"
CODES_DIR = DEFAULT_DIR / "codes"
_MODEL_ID = re.compile(r"[0-9a-f]{64}")


def valid_model_id(s: str) -> bool:
    """Whether ``s`` is a model id: 64 lowercase hex digits."""
    return _MODEL_ID.fullmatch(s) is not None


def check_model_id(s: str) -> str:
    """``s`` itself when it is a model id; ``UnknownModelError`` otherwise."""
    if not valid_model_id(s):
        raise UnknownModelError(f"{s[:80]!r} is not a model id (64 lowercase hex digits)")
    return s


def model_id_of(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).hexdigest().encode() + b"\n")
    return h.hexdigest()


def bundle_kind(manifest: dict) -> str:
    """"intlm", "float" or "codes": the kind of bundle a manifest describes."""
    kind = manifest.get("config", {}).get("kind", "float")
    if kind not in _FILES:
        raise ValueError(f"unknown bundle kind {kind!r}")
    return kind


_FILES = {"intlm": INT_FILES, "float": FLOAT_FILES, "codes": CODE_FILES}


def bundle_files(kind: str) -> tuple[str, ...]:
    return _FILES[kind]


def read_bundle(path: Path, kind: str = "float") -> dict[str, bytes]:
    """Every file of a bundle of ``kind`` under ``path`` by name; ``FileNotFoundError`` names a
    missing one."""
    return {name: (path / name).read_bytes() for name in bundle_files(kind)}


def write_manifest(path: Path, info: dict) -> str:
    """Write ``manifest.json`` (model id, file sizes and hashes, ``info``, whose ``config.kind``
    names the bundle's kind); return the model id."""
    files = read_bundle(path, bundle_kind(info))
    mid = model_id_of(files)
    manifest = {
        "model_id": mid,
        "files": {n: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in sorted(files.items())},
        **info,
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return mid
