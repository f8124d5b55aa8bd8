"""CodecService: EncodeStream / DecodeStream, unary Compress / Decompress, GetModel, ListModels."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from rvqstream._proto import codec_pb2, codec_pb2_grpc
from rvqstream.models import Codec, Tier
from rvqstream.models.errors import Cancel, CancelledError, CodecError, TooLargeError
from rvqstream.server.encode import EncodeStreamSession, StreamLimits, stream_settings
from rvqstream.server.errors import ServiceError, codec_error, decode_utf8, invalid, rpc_errors
from rvqstream.server.registry import ModelRegistry
from rvqstream.server.scheduler import Scheduler
from rvqstream.server.telemetry import Metrics
from rvqstream.server.work_pool import WorkPool
from rvqstream.wire import tier_from_pb

MODEL_CHUNK_BYTES = 64 << 10


def first_message_error(rpc: str, expected: str, got: str | None) -> ServiceError:
    return ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                        f"the first {rpc}Request must carry {expected}; got {got or 'an empty request'}",
                        expected)


async def first_config(requests, rpc: str):
    """The ``config`` of a client stream's first request; None when the client sent nothing;
    FAILED_PRECONDITION when the first request carries something else."""
    async for req in requests:
        if req.WhichOneof("kind") != "config":
            raise first_message_error(rpc, "config", req.WhichOneof("kind"))
        return req.config
    return None


def compress_in_time(codec: Codec, text: str, tier: Tier, stages: int | None, cancel: Cancel) -> bytes:
    """``codec.compress``, or the text's fallback form when the model runs past ``cancel``'s
    deadline (exact tier: the text is never refused for taking long); ``CancelledError`` when the
    caller went away."""
    try:
        return codec.compress(text, tier, stages, cancel=cancel)
    except CancelledError:
        if cancel.cancelled or tier != Tier.EXACT:
            raise
        return codec.fallback(text)


class CodecService(codec_pb2_grpc.CodecServiceServicer):
    """Encode streams run on the scheduler; whole-message work (Compress, Decompress, the
    batches of a DecodeStream) on the message work pool."""

    def __init__(self, registry: ModelRegistry, scheduler: Scheduler, pool: WorkPool, metrics: Metrics,
                 limits: StreamLimits):
        self.registry, self.scheduler, self.pool = registry, scheduler, pool
        self.metrics, self.limits = metrics, limits

    def _check_size(self, data: bytes, field: str) -> None:
        if len(data) > self.limits.max_chunk_bytes:
            raise invalid(f"{field} is {len(data)} bytes; at most {self.limits.max_chunk_bytes}", field)

    @rpc_errors
    async def EncodeStream(self, requests: AsyncIterator[codec_pb2.EncodeStreamRequest],
                           context: grpc.aio.ServicerContext) -> AsyncIterator[codec_pb2.EncodeStreamResponse]:
        config = await first_config(requests, "EncodeStream")
        if config is None:
            return
        codec = self.registry.get(config.model_id, "config.model_id", config.tier, config.stage_count)
        session = EncodeStreamSession(codec, config, self.scheduler, self.metrics, self.limits)
        async for response in session.responses(requests):
            yield response

    @rpc_errors
    async def DecodeStream(self, requests: AsyncIterator[codec_pb2.DecodeStreamRequest],
                           context: grpc.aio.ServicerContext) -> AsyncIterator[codec_pb2.DecodeStreamResponse]:
        config = await first_config(requests, "DecodeStream")
        if config is None:
            return
        codec = self.registry.get(config.model_id, "config.model_id", config.tier)
        try:
            decoder = codec.decoder(tier_from_pb(config.tier))
        except ValueError as e:
            raise invalid(f"config.tier: {e}", "config.tier") from None
        batch = 0
        async for req in requests:
            if req.WhichOneof("kind") != "frames":
                raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                                   "config may be sent only once, as the first request", "config")
            self._check_size(req.frames, "frames")
            try:
                decoded = await self.pool.run(decoder.push, req.frames, context=context, wait=True,
                                              max_bytes=self.limits.max_chunk_bytes)
            except CodecError as e:
                raise codec_error(e, f"frame batch {batch}", "frames") from None
            batch += 1
            yield codec_pb2.DecodeStreamResponse(text=decoded.text, message_end=decoded.message_end)

    @rpc_errors
    async def Compress(self, request: codec_pb2.CompressRequest,
                       context: grpc.aio.ServicerContext) -> codec_pb2.CompressResponse:
        self._check_size(request.text_utf8, "text_utf8")
        text = decode_utf8(request.text_utf8, "text_utf8")
        codec = self.registry.get(request.model_id, tier_pb=request.tier, stages=request.stage_count)
        tier, stages = stream_settings(codec, request.tier, request.stage_count, "request")
        blob = await self.pool.run(compress_in_time, codec, text, tier, stages, context=context)
        self.metrics.bytes_in.add(len(request.text_utf8))
        self.metrics.bytes_out.add(len(blob))
        if request.text_utf8:
            self.metrics.compression_ratio.record(len(blob) / len(request.text_utf8))
        return codec_pb2.CompressResponse(blob=blob, model_id=codec.model_id)

    @rpc_errors
    async def Decompress(self, request: codec_pb2.DecompressRequest,
                         context: grpc.aio.ServicerContext) -> codec_pb2.DecompressResponse:
        self._check_size(request.blob, "blob")
        error = None
        for codec in self.registry.for_blob(request.blob):
            try:
                text = await self.pool.run(codec.decompress, request.blob, context=context,
                                           max_bytes=self.limits.max_chunk_bytes)
            except TooLargeError as e:
                raise codec_error(e, "blob", "blob") from None
            except CodecError as e:   # models may share a tag: the blob's check tells which made it
                error = error or e
                continue
            return codec_pb2.DecompressResponse(text=text, model_id=codec.model_id)
        raise codec_error(error, "blob", "blob")

    @rpc_errors
    async def GetModel(self, request: codec_pb2.GetModelRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[codec_pb2.GetModelResponse]:
        model_id = self.registry.bundle(request.model_id).model_id
        files = self.registry.files(model_id)
        yield codec_pb2.GetModelResponse(manifest=codec_pb2.ModelManifest(
            model_id=model_id,
            files=[codec_pb2.ModelFile(name=n, size_bytes=s, sha256=h)
                   for n, s, h in self.registry.manifest(model_id)]))
        for name, data in sorted(files.items()):
            for off in range(0, max(len(data), 1), MODEL_CHUNK_BYTES):
                yield codec_pb2.GetModelResponse(chunk=codec_pb2.ModelFileChunk(
                    name=name, offset_bytes=off, data=data[off:off + MODEL_CHUNK_BYTES]))

    @rpc_errors
    async def ListModels(self, request: codec_pb2.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> codec_pb2.ListModelsResponse:
        default = self.registry.default.model_id
        return codec_pb2.ListModelsResponse(models=[
            codec_pb2.ModelInfo(model_id=mid, size_bytes=sum(s for _, s, _ in self.registry.manifest(mid)),
                                is_default=mid == default)
            for mid in self.registry.ids()])
