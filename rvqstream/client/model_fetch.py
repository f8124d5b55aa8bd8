"""The models a client decodes and searches with: codecs and message-code models, from memory, the
disk cache (verified) or the server's GetModel (verified file by file and as a whole, then cached).
Model ids come from servers: anything but 64 lowercase hex digits is refused before it names a path."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from rvqstream._proto import codec_pb2
from rvqstream.client.cache import ModelCache
from rvqstream.client.calls import Backoff
from rvqstream.client.errors import RvqstreamError
from rvqstream.models import Codec, CodecError
from rvqstream.models.bundle import valid_model_id
from rvqstream.models.code_model import CodeModel, shipped_code_model


class ModelFetcher:
    """Codecs and code models by id, each loaded or fetched once (one fetch at a time an id)."""

    def __init__(self, stub, cache: ModelCache, timeout_s: float):
        self.stub, self.cache, self.timeout_s = stub, cache, timeout_s
        self.codecs: dict[str, Codec] = {}
        self.code_models: dict[str, CodeModel] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def codec(self, model_id: str) -> Codec:
        """The codec ``model_id`` (a known id, or "" once the default has been set)."""
        if model_id in self.codecs:
            return self.codecs[model_id]
        return await self._get(model_id, self.codecs, Codec.load)

    async def code_model(self, model_id: str) -> CodeModel:
        """The code model ``model_id``: the one this package ships, or another fetched once."""
        shipped = shipped_code_model()
        if model_id == shipped.model_id:
            return shipped
        return await self._get(model_id, self.code_models, CodeModel.load)

    async def _get(self, model_id: str, held: dict, loader: Callable[[Path], Any]):
        if not valid_model_id(model_id):     # ids come from the server: never let one name a path
            raise RvqstreamError("DATA_LOSS", f"the server named {model_id[:80]!r}, which is not a model id")
        async with self._locks.setdefault(model_id, asyncio.Lock()):
            if model_id not in held:
                model = await asyncio.to_thread(self.cache.load, model_id, loader)
                held[model_id] = model or await self._download(model_id, loader)
        return held[model_id]

    async def _download(self, model_id: str, loader: Callable[[Path], Any]):
        backoff = Backoff(self.timeout_s)
        while True:
            try:
                manifest, files = None, {}
                async for resp in self.stub.GetModel(codec_pb2.GetModelRequest(model_id=model_id)):
                    if resp.WhichOneof("kind") == "manifest":
                        manifest = resp.manifest
                        files = {f.name: bytearray() for f in manifest.files}
                    else:
                        chunk = resp.chunk
                        buf = files.get(chunk.name)
                        if buf is None or chunk.offset_bytes != len(buf):
                            raise RvqstreamError("DATA_LOSS", f"model {model_id}: chunk of "
                                                 f"{chunk.name!r} at byte {chunk.offset_bytes} out of place")
                        buf += chunk.data
                break
            except grpc.RpcError as e:
                await backoff.retry(e)
        if manifest is None:
            raise RvqstreamError("DATA_LOSS", "GetModel sent no manifest")
        if manifest.model_id != model_id:
            raise RvqstreamError("DATA_LOSS", f"asked for model {model_id}, got {manifest.model_id}")
        for f in manifest.files:
            data = files[f.name]
            if len(data) != f.size_bytes or hashlib.sha256(data).hexdigest() != f.sha256:
                raise RvqstreamError("DATA_LOSS", f"model {manifest.model_id}: file {f.name!r} does "
                                     "not match its size and sha256 in the manifest")
        try:
            return await asyncio.to_thread(self.cache.store, manifest.model_id,
                                           {n: bytes(b) for n, b in files.items()}, loader)
        except (ValueError, CodecError) as e:
            raise RvqstreamError("DATA_LOSS", f"model {manifest.model_id} failed verification: {e}") from None
