"""The models a server holds: the shipped default bundle plus any extra bundle directories."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc

from rvqstream.models import Codec
from rvqstream.models.blob import parse_header
from rvqstream.models.bundle import SEMANTIC_DIR
from rvqstream.models.code_model import CodeModel, shipped_code_model
from rvqstream.models.errors import CodecError
from rvqstream.models.frames import Tier
from rvqstream.server.errors import ServiceError, codec_error, quoted
from rvqstream.wire import tier_from_pb


class ModelRegistry:
    """Codecs by model id (the first one is the default) and the code model of message codes
    (default: the shipped one)."""

    def __init__(self, codecs: list[Codec], codes: CodeModel | None = None):
        if not codecs:
            raise ValueError("a registry needs at least one model")
        self._codes = codes
        self.default = codecs[0]
        self._by_id = {c.model_id: c for c in codecs}
        self._by_tag: dict[int, list[Codec]] = {}
        for c in codecs:
            self._by_tag.setdefault(c.tag, []).append(c)
        self._files: dict[str, dict[str, bytes]] = {}
        self._manifests: dict[str, list[tuple[str, int, str]]] = {}

    @classmethod
    def load(cls, extra_dirs: list[Path] = (), device: str = "cpu") -> ModelRegistry:
        """The shipped integer model (the default, on ``device``), the shipped float model (which
        reads the retired semantic tier's data), and the bundles in ``extra_dirs``."""
        return cls([Codec.load(device=device), Codec.load(SEMANTIC_DIR),
                    *(Codec.load(d, device=device) for d in extra_dirs)])

    @property
    def codes(self) -> CodeModel:
        """The code model (loaded when first asked for)."""
        if self._codes is None:
            self._codes = shipped_code_model()
        return self._codes

    def ids(self) -> list[str]:
        return list(self._by_id)

    def for_tier(self, tier: Tier, stages: int = 0) -> Codec:
        """The first codec (the default first) that reads ``tier``, preferring one with at least
        ``stages`` RVQ stages (an exact-tier stream that asks for a searchable layer needs a model
        with codes; when none has that many, the caller's check of the stage count reports it).
        Writers check the tier themselves (``encode.written_tier``): the semantic tier is read only."""
        coding = [c for c in self._by_id.values() if tier in c.read_tiers]
        if not coding:
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"no model on this server reads the {tier.name.lower()} tier", "tier")
        return next((c for c in coding if c.parts.stages >= stages), coding[0])

    def get(self, model_id: str, field: str = "model_id", tier_pb: int = 0, stages: int = 0) -> Codec:
        """The codec of ``model_id`` ("": the first that codes the tier ``tier_pb`` names, exact if
        it names none, with ``stages`` RVQ stages); NOT_FOUND for a model not held here."""
        if not model_id:
            try:
                return self.for_tier(tier_from_pb(tier_pb), stages)
            except ValueError:
                return self.default       # the caller reports the bad tier
        codec = self._by_id.get(model_id)
        if codec is None:
            raise ServiceError(grpc.StatusCode.NOT_FOUND,
                               f"unknown model id {quoted(model_id)}: this server holds {', '.join(self._by_id)}",
                               field)
        return codec

    def for_blob(self, blob: bytes, field: str = "blob") -> list[Codec]:
        """The codecs whose tag ``blob``'s header names (models may share a tag: the blob's own
        check tells which one made it); INVALID_ARGUMENT / NOT_FOUND otherwise."""
        try:
            _, tag = parse_header(blob)
        except CodecError as e:
            raise codec_error(e, field, field) from None
        codecs = self._by_tag.get(tag)
        if not codecs:
            raise ServiceError(grpc.StatusCode.NOT_FOUND,
                               f"{field} names model tag {tag:#04x}, which no model on this server has",
                               field)
        return codecs

    def bundle(self, model_id: str) -> Codec | CodeModel:
        """The model GetModel serves for ``model_id``: a codec ("": the default) or the code model
        (when it is loaded); NOT_FOUND otherwise."""
        if self._codes is not None and model_id == self._codes.model_id:
            return self._codes
        return self.get(model_id)

    def files(self, model_id: str) -> dict[str, bytes]:
        """The bundle files of ``model_id`` (a codec's or the code model's) by name (cached)."""
        model = self.bundle(model_id)
        if model.model_id not in self._files:
            self._files[model.model_id] = model.bundle_files()
        return self._files[model.model_id]

    def manifest(self, model_id: str) -> list[tuple[str, int, str]]:
        """(name, size in bytes, hex sha256) of each bundle file, in name order (cached)."""
        if model_id not in self._manifests:
            self._manifests[model_id] = [(name, len(data), hashlib.sha256(data).hexdigest())
                                         for name, data in sorted(self.files(model_id).items())]
        return self._manifests[model_id]
