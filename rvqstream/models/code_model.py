"""The message-code model: message encoder + residual quantizer, one bundle (kind ``codes``).

``CodeModel.load()`` reads the shipped bundle (``artifacts/codes``: encoder.onnx,
encoder_tokenizer.json, rvq.npz, manifest.json). A message's code is ``stages`` bytes (one per RVQ
stage, 8 bits each); the manifest's ``config.near_duplicate_score`` is the cosine of two messages'
embeddings from which they count as near-duplicates when their numbers agree (``numbers_agree``);
calibrated by ``models/export_codes.py``, measured by ``bench/semantic_codes.py``.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np

from rvqstream.models.bundle import CODES_DIR, MANIFEST, bundle_kind, model_id_of, read_bundle
from rvqstream.models.message_encoder import MessageEncoder
from rvqstream.models.rvq_codes import ResidualQuantizer, SemanticIndex

_NUMBER = re.compile(r"\d+(?:[.,:/-]\d+)*")


def numbers(text: str) -> frozenset[str]:
    """The numbers a text states (runs of digits, with their inner separators): two messages that
    state different numbers (ids, amounts, times) tell different facts, however alike they read."""
    return frozenset(_NUMBER.findall(text))


def numbers_agree(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether two texts' numbers are mostly the same (Jaccard >= 0.5; no numbers in either: yes)."""
    if not a and not b:
        return True
    return len(a & b) >= 0.5 * len(a | b)


class CodeModel:
    """Texts -> embeddings (float32 [N, D]) -> codes (uint8 [N, stages]), and indexes to search."""

    def __init__(self, files: dict[str, bytes], manifest: dict, threads: int = 1, where: Path | None = None):
        self.model_id = model_id_of(files)
        if manifest.get("model_id") not in (None, self.model_id):
            raise ValueError(f"bundle files hash to {self.model_id}, manifest says {manifest['model_id']}")
        if bundle_kind(manifest) != "codes":
            raise ValueError(f"a code model needs a bundle of kind 'codes', not {bundle_kind(manifest)!r}")
        self.manifest = manifest
        self._files = files
        self.manifest_dir = where        # the bundle's folder, when it was loaded from one
        self.encoder = MessageEncoder(files["encoder.onnx"], files["encoder_tokenizer.json"], threads)
        self.quantizer = ResidualQuantizer.from_bytes(files["rvq.npz"])
        self.stages = self.quantizer.stages
        self.near_duplicate_score = float(manifest["config"]["near_duplicate_score"])

    @classmethod
    def load(cls, path: Path | str | None = None, threads: int = 1) -> CodeModel:
        """The bundle at ``path`` (default: the shipped one)."""
        path = Path(path) if path is not None else CODES_DIR
        manifest = json.loads((path / MANIFEST).read_text())
        return cls(read_bundle(path, bundle_kind(manifest)), manifest, threads, path)

    def bundle_files(self) -> dict[str, bytes]:
        """Every file of the bundle by name, the manifest included."""
        return {**self._files, MANIFEST: json.dumps(self.manifest, indent=1).encode() + b"\n"}

    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 [len(texts), D], unit length."""
        return self.encoder.embed(texts)

    def query(self, text: str) -> np.ndarray:
        """float32 [D]: a search query's embedding (``SemanticIndex.search`` takes it)."""
        return self.encoder.embed([text])[0]

    def codes(self, texts: list[str]) -> np.ndarray:
        """uint8 [len(texts), stages]: each text's code at every stage."""
        return self.quantizer.encode(self.embed(texts))

    def code_vector(self, code: bytes) -> np.ndarray:
        """float32 [D]: the vector a code stands for (a query given as a code)."""
        codes = np.frombuffer(code, np.uint8)[None, :]
        return self.quantizer.decode(codes)[0]

    def index(self, stages: int | None = None) -> SemanticIndex:
        """An empty index of codes of ``stages`` stages (default: all), of this model."""
        return SemanticIndex(self.quantizer, stages, self.model_id)


@functools.cache
def shipped_code_model() -> CodeModel:
    """The shipped code model, loaded once a process (its encoder runs on one thread a call)."""
    return CodeModel.load()
