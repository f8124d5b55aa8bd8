"""``Codec``: the public face of the codec — load a bundle, compress/decompress blobs, and make
streaming encoders and decoders.

    codec = Codec.load()                       # the shipped default bundle
    blob = codec.compress("hello", tier="exact")
    assert codec.decompress(blob) == "hello"
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from rvqstream.models.blob import BlobCoder, Mode, model_tag, parse_header
from rvqstream.models.bundle import DEFAULT_DIR, MANIFEST, bundle_kind, model_id_of, read_bundle
from rvqstream.models.coding import Parts
from rvqstream.models.errors import Cancel, CodecError
from rvqstream.models.fallback import Fallback
from rvqstream.models.frames import Tier
from rvqstream.models.int_runtime import IntStepModel
from rvqstream.models.intlm import lm_info
from rvqstream.models.many import decompress_many
from rvqstream.models.runtime import FrameEncoder, SessionSettings, StepModel
from rvqstream.models.selfcheck import check
from rvqstream.models.stream import StreamDecoder, StreamEncoder, written
from rvqstream.models.tokenizer import Tokenizer

DEFAULT_SETTINGS = SessionSettings()


class Codec:
    """One model bundle's codec. ``device`` ("cpu" or "cuda") runs an integer bundle's step graph
    on that execution provider (same tables either way); float bundles run on the CPU."""

    def __init__(self, files: dict[str, bytes], manifest: dict, settings: SessionSettings = DEFAULT_SETTINGS,
                 device: str = "cpu"):
        self._files = files
        self.model_id = model_id_of(files)
        if manifest.get("model_id") not in (None, self.model_id):
            raise ValueError(f"bundle files hash to {self.model_id}, manifest says {manifest['model_id']}")
        self.manifest = manifest
        cfg = manifest["config"]
        self.kind = bundle_kind(manifest)
        tokenizer = Tokenizer.from_json(files["tokenizer.json"].decode())
        if self.kind == "intlm":
            graph = files["step_cuda.onnx" if device == "cuda" else "step.onnx"]
            self.parts = Parts(tokenizer=tokenizer,
                               step=IntStepModel(graph, lm_info(files["lm.npz"]), settings, device),
                               frame_encoder=None, codebooks=None, frame=cfg["frame"], stages=0, codes=1,
                               zdict=files["fallback.zdict"])
        else:
            codebooks = np.load(io.BytesIO(files["codebooks.npy"]))
            self.parts = Parts(
                tokenizer=tokenizer,
                step=StepModel(files["step.onnx"], settings, cfg["n_layers"], cfg["n_heads"],
                               cfg["d_model"] // cfg["n_heads"], cfg["latent_dim"]),
                frame_encoder=FrameEncoder(files["encoder.onnx"], codebooks, cfg["frame"], settings),
                codebooks=codebooks, frame=cfg["frame"], stages=cfg["stages"], codes=cfg["codes"],
                zdict=files["fallback.zdict"])
        self._fallback = Fallback(self.parts.zdict)
        self._blobs = BlobCoder(self.parts, self.model_id)

    @classmethod
    def load(cls, path: Path | str | None = None, settings: SessionSettings = DEFAULT_SETTINGS,
             device: str = "cpu") -> Codec:
        """Load the bundle in directory ``path`` (default: the shipped integer model; the float
        model, which reads the retired semantic tier, is in ``bundle.SEMANTIC_DIR``)."""
        path = Path(path) if path is not None else DEFAULT_DIR
        manifest = json.loads((path / MANIFEST).read_text())
        return cls(read_bundle(path, bundle_kind(manifest)), manifest, settings, device)

    @property
    def tiers(self) -> tuple[Tier, ...]:
        """The tiers this model writes: the exact tier (the semantic text tier is retired)."""
        return (Tier.EXACT,)

    @property
    def read_tiers(self) -> tuple[Tier, ...]:
        """The tiers this model reads: exact, and the retired semantic tier when it has RVQ
        codebooks (blobs of format version 2 or 3, streams written before the retirement)."""
        return (Tier.EXACT,) if self.parts.stages == 0 else (Tier.EXACT, Tier.SEMANTIC)

    def selfcheck(self) -> dict[str, bool]:
        """Whether this machine's tables for fixed inputs match the bundle's golden hash, run frame
        by frame, step by step and as batch rows (``selfcheck.py``); integer bundles only."""
        if self.kind != "intlm":
            raise ValueError("only integer-model bundles carry a golden hash")
        return check(self.parts.step, self.parts.tokenizer, self.manifest["golden_tables_sha256"])

    def bundle_files(self) -> dict[str, bytes]:
        """Every file of the bundle by name, the manifest included."""
        return {**self._files, MANIFEST: json.dumps(self.manifest, indent=1).encode() + b"\n"}

    @property
    def tag(self) -> int:
        """The 8-bit model tag that blobs carry."""
        return model_tag(self.model_id)

    def compress(self, text: str, tier: str | Tier = "exact", stages: int | None = None, *,
                 cancel: Cancel | None = None) -> bytes:
        """A standalone blob of ``text`` (format version 4), a byte-identical round trip; ``stages``
        asks for at least that many RVQ stages per frame (a searchable layer). ``tier`` is the
        exact tier: the semantic text tier is retired (``ValueError``). ``cancel`` is checked at
        least once per frame (``CancelledError``). ``TypeError``/``ValueError`` on bad arguments."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        written(Tier.parse(tier))
        if stages is not None and not 0 <= stages <= self.parts.stages:
            raise ValueError(f"stages must be in 0..{self.parts.stages} for this model, got {stages}")
        return self._blobs.compress(text, stages, cancel or Cancel())

    def decompress(self, data: bytes, *, max_bytes: int | None = None, cancel: Cancel | None = None,
                   legacy: bool = False) -> str:
        """The text of a blob. Raises a ``CodecError``: ``TruncatedError`` when the blob is cut,
        ``MalformedError`` on a bad magic or version or data that breaks the format,
        ``UnknownModelError`` when it names another model's tag, ``IntegrityError`` when the text
        fails its check (corrupt, or made by another model with the same tag), ``TooLargeError``
        when the text would pass ``max_bytes`` UTF-8 bytes (decoding stops within a frame of the
        limit; zstd data never decodes past ``fallback.MAX_FALLBACK_BYTES``), ``CancelledError``
        when ``cancel`` is set (checked at least once per frame). Format-2 fallback blobs carry no
        check, so a corrupt one (or another blob whose header a bit flip turned into one) would
        decode to wrong text: they are ``MalformedError`` unless ``legacy`` (a caller reading its
        own stored blobs)."""
        return self._blobs.decompress(bytes(data), max_bytes, cancel or Cancel(), legacy)

    def decompress_many(self, blobs: Iterable[bytes], *, max_bytes: int | None = None,
                        cancel: Cancel | None = None) -> list[str | CodecError]:
        """The text of each blob, or the ``CodecError`` it raised (one bad blob spoils no other;
        ``max_bytes`` applies to each): the integer model's exact-tier blobs decode together, one
        batched model step for all of them at a time (``many.py``), the rest one by one."""
        return decompress_many(self._blobs, blobs, max_bytes, cancel or Cancel())

    def fallback(self, text: str) -> bytes:
        """The blob of ``text`` in fallback form (zstd with the dictionary, or raw)."""
        return self._blobs.fallback(text)

    @staticmethod
    def blob_mode(data: bytes) -> Mode:
        return parse_header(data)[0]

    def encoder(self, tier: str | Tier = "exact", stages: int | None = None, *,
                cancel: Cancel | None = None) -> StreamEncoder:
        """An exact-tier stream encoder (the semantic text tier is retired: ``ValueError``);
        ``cancel`` (also settable later as its ``cancel`` attribute) is checked once per frame of
        model work."""
        return StreamEncoder(self.parts, self._fallback, Tier.parse(tier), stages, cancel)

    def decoder(self, tier: str | Tier = "exact") -> StreamDecoder:
        """A stream decoder of ``tier`` (one of ``read_tiers``; ``ValueError`` otherwise)."""
        return StreamDecoder(self.parts, self._fallback, Tier.parse(tier))
