"""``AsyncClient``: the asyncio edge SDK.

    async with AsyncClient("127.0.0.1:50051") as client:
        offsets = await client.publish("news", ["hello", "world"])
        async for msg in client.subscribe("news", from_offset=0):
            print(msg.offset, msg.text)

Channel messages are decoded here with ONNX Runtime, with the model the stream names (fetched
once by GetModel, verified, cached on disk). Subscriptions and publications reconnect on their
own and resume: a subscriber from the offset after the last message it yielded, a publisher by
resending unacknowledged messages under the same producer id and sequence numbers (the server
deduplicates them), so every message arrives exactly once, in order.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import time
import uuid
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import Self

import grpc

from rvqstream._proto import channel_pb2, channel_pb2_grpc, codec_pb2, codec_pb2_grpc
from rvqstream.client.cache import ModelCache
from rvqstream.client.errors import RvqstreamError
from rvqstream.client.types import END_MESSAGE, FLUSH, EncodedFrame, Message, ModelInfo
from rvqstream.models import Codec, StreamDecoder, Tier
from rvqstream.wire import CHANNEL_NAME, CHANNEL_NAME_RULE, frame_from_pb, tier_from_pb, tier_to_pb

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED}
_SOURCE_END = object()
# grpc.aio clients report a connection lost while they write as INTERNAL with this message
# (grpc/grpc#36066); it is an outage like UNAVAILABLE, not a server error
CORE_WRITE_FAILURE = "Internal error from Core"


def _retryable(error: grpc.RpcError) -> bool:
    return error.code() in RETRYABLE or (
        error.code() == grpc.StatusCode.INTERNAL and (error.details() or "") == CORE_WRITE_FAILURE)
CHUNK_BYTES = 32 << 10        # longer text chunks are sent in pieces of this size
PUBLISH_WINDOW = 256          # messages in flight without an ack
GRPC_PREFIX_BYTES = 5         # gRPC length-prefixed message framing
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", 8 << 20),
    ("grpc.max_send_message_length", 8 << 20),
]


class _Backoff:
    """Exponential backoff (0.05 s doubling to 2 s) that gives up ``timeout_s`` after a failure
    with no progress in between."""

    def __init__(self, timeout_s: float):
        self.timeout_s, self.since, self.delay = timeout_s, None, 0.05

    def progress(self) -> None:
        self.since, self.delay = None, 0.05

    async def retry(self, error: grpc.RpcError | None) -> None:
        """Sleeps before the next try, or raises RvqstreamError when ``error`` is final (None: the
        stream ended early, which is retried like UNAVAILABLE)."""
        now = time.monotonic()
        self.since = self.since or now
        if error is not None and not _retryable(error):
            raise RvqstreamError.from_rpc(error) from None
        if now - self.since > self.timeout_s:
            if error is None:
                raise RvqstreamError("UNAVAILABLE", f"stream kept ending for {self.timeout_s:.0f} s")
            raise RvqstreamError.from_rpc(error) from None
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, 2.0)


async def _aiter(items: Iterable | AsyncIterable) -> AsyncIterator:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


class AsyncClient:
    """Async client of an rvqstream server; ``reconnect_timeout_s`` bounds each outage it rides out."""

    def __init__(self, target: str = "127.0.0.1:50051", *, cache_dir: Path | str | None = None,
                 reconnect_timeout_s: float = 30.0):
        self.target = target
        self.reconnect_timeout_s = reconnect_timeout_s
        self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._codec_stub = codec_pb2_grpc.CodecServiceStub(self._channel)
        self._channel_stub = channel_pb2_grpc.ChannelServiceStub(self._channel)
        self._cache = ModelCache(cache_dir)
        self._codecs: dict[str, Codec] = {}
        self._model_locks: dict[str, asyncio.Lock] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _unary(self, method, request):
        backoff = _Backoff(self.reconnect_timeout_s)
        while True:
            try:
                return await method(request)
            except grpc.RpcError as e:
                await backoff.retry(e)

    # -- models ---------------------------------------------------------------------------------

    async def models(self) -> list[ModelInfo]:
        """The models the server holds."""
        resp = await self._unary(self._codec_stub.ListModels, codec_pb2.ListModelsRequest())
        return [ModelInfo(m.model_id, m.size_bytes, m.is_default) for m in resp.models]

    async def model(self, model_id: str = "") -> Codec:
        """The codec of ``model_id`` ("" for the server's default): from memory, the disk cache
        (verified), or fetched with GetModel, verified file by file and as a whole, then cached."""
        if model_id in self._codecs:
            return self._codecs[model_id]
        if not model_id:
            default = next(m.model_id for m in await self.models() if m.is_default)
            self._codecs[""] = await self.model(default)
            return self._codecs[""]
        lock = self._model_locks.setdefault(model_id, asyncio.Lock())
        async with lock:
            if model_id not in self._codecs:
                codec = await asyncio.to_thread(self._cache.load, model_id)
                self._codecs[model_id] = codec or await self._download(model_id)
        return self._codecs[model_id]

    async def _download(self, model_id: str) -> Codec:
        backoff = _Backoff(self.reconnect_timeout_s)
        while True:
            try:
                manifest, files = None, {}
                async for resp in self._codec_stub.GetModel(codec_pb2.GetModelRequest(model_id=model_id)):
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
            return await asyncio.to_thread(self._cache.store, manifest.model_id,
                                           {n: bytes(b) for n, b in files.items()})
        except ValueError as e:
            raise RvqstreamError("DATA_LOSS", f"model {manifest.model_id} failed verification: {e}") from None

    async def decoder(self, model_id: str, tier: Tier | str = "exact") -> StreamDecoder:
        """A local stream decoder for frames of ``model_id`` (as ``encode_stream`` yields them)."""
        return (await self.model(model_id)).decoder(tier)

    # -- codec ----------------------------------------------------------------------------------

    async def compress(self, text: str, tier: Tier | str = "exact", stage_count: int = 0) -> bytes:
        """A standalone blob of ``text``, made by the server."""
        resp = await self._unary(self._codec_stub.Compress, codec_pb2.CompressRequest(
            text_utf8=text.encode("utf-8"), tier=_tier(tier), stage_count=stage_count))
        return resp.blob

    async def decompress(self, blob: bytes) -> str:
        """The text of a blob, decoded here with the model it names (the server's default model
        unless the blob is for another one the server holds)."""
        codec = await self.model("")
        try:
            return await asyncio.to_thread(codec.decompress, blob)
        except (ValueError, EOFError):
            resp = await self._unary(self._codec_stub.Decompress, codec_pb2.DecompressRequest(blob=blob))
            return resp.text

    async def encode_stream(self, chunks: Iterable | AsyncIterable, *, tier: Tier | str = "exact",
                            stage_count: int = 0, max_delay_ms: int = 0, model_id: str = "",
                            end_message: bool = True) -> AsyncIterator[EncodedFrame]:
        """Streams ``chunks`` (str, bytes of UTF-8, or the FLUSH / END_MESSAGE markers) to the
        server and yields frames as they come; ends the message at the end when ``end_message``.

        Text goes out only after the server accepted the config (its header came back), and bytes
        are checked for UTF-8 here: a grpc.aio client that is still writing when the server ends
        the call can lose the server's status (grpc/grpc#36066), so errors are caught early."""
        config = codec_pb2.EncodeConfig(tier=_tier(tier), stage_count=stage_count,
                                        max_delay_ms=max_delay_ms, model_id=model_id)
        accepted = asyncio.Event()

        async def requests():
            yield codec_pb2.EncodeStreamRequest(config=config)
            await accepted.wait()
            utf8 = codecs.getincrementaldecoder("utf-8")()
            async for chunk in _aiter(chunks):
                if chunk is FLUSH:
                    yield codec_pb2.EncodeStreamRequest(chunk=codec_pb2.TextChunk(flush=True))
                    continue
                if chunk is END_MESSAGE:
                    _check_utf8(utf8, b"", final=True)
                    yield codec_pb2.EncodeStreamRequest(chunk=codec_pb2.TextChunk(end_message=True))
                    continue
                data = chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)
                _check_utf8(utf8, data, final=False)
                for i in range(0, len(data), CHUNK_BYTES):
                    yield codec_pb2.EncodeStreamRequest(
                        chunk=codec_pb2.TextChunk(text_utf8=data[i:i + CHUNK_BYTES]))
            _check_utf8(utf8, b"", final=True)
            if end_message:
                yield codec_pb2.EncodeStreamRequest(chunk=codec_pb2.TextChunk(end_message=True))

        source = requests()
        failure: list[RvqstreamError] = []

        async def checked_requests():
            try:
                async for req in source:
                    yield req
            except RvqstreamError as e:   # stop here; the error is raised to the caller below
                failure.append(e)
                call.cancel()

        call = self._codec_stub.EncodeStream(checked_requests())
        try:
            header = None
            async for resp in call:
                if resp.WhichOneof("kind") == "header":
                    header = resp.header
                    accepted.set()
                    continue
                if header is None:
                    raise RvqstreamError("INTERNAL", "EncodeStream sent a frame before its header")
                yield EncodedFrame(frame_from_pb(resp.frame), header.model_id, tier_from_pb(header.tier),
                                   resp.frame.degraded, resp.ByteSize() + GRPC_PREFIX_BYTES)
        except (grpc.RpcError, asyncio.CancelledError) as e:
            if failure:
                raise failure[0] from None
            if isinstance(e, asyncio.CancelledError):
                raise
            raise RvqstreamError.from_rpc(e) from None
        finally:
            call.cancel()

    # -- channels -------------------------------------------------------------------------------

    async def publish(self, channel: str, messages: Iterable[str] | AsyncIterable[str], *,
                      tier: Tier | str = "exact") -> list[int]:
        """Publishes ``messages`` in order; returns their offsets once each is durable."""
        if not CHANNEL_NAME.fullmatch(channel):
            raise RvqstreamError("INVALID_ARGUMENT", f"channel name {channel!r} is invalid: {CHANNEL_NAME_RULE}")
        producer = uuid.uuid4().hex
        # one task reads the caller's messages for the whole publish: a call that fails and is
        # retried never cancels a read from the source (that would lose the message being read)
        inbox: asyncio.Queue = asyncio.Queue(maxsize=1)

        async def pump():
            try:
                async for text in _aiter(messages):
                    await inbox.put(text)
                await inbox.put(_SOURCE_END)
            except Exception as e:  # noqa: BLE001 - a failing source ends publish with its error
                await inbox.put(e)

        pump_task = asyncio.create_task(pump())
        pending: deque[tuple[int, str]] = deque()   # sent (or to resend), not acknowledged
        offsets: list[int] = []
        state = {"next_seq": 0, "exhausted": False, "error": None}
        room = asyncio.Event()
        backoff = _Backoff(self.reconnect_timeout_s)
        config = channel_pb2.PublishConfig(channel=channel, tier=_tier(tier), producer_id=producer)

        async def write(call):
            try:
                await send(call)
            except (grpc.RpcError, asyncio.InvalidStateError):
                pass   # the call failed: the read side sees why
            except Exception as e:  # noqa: BLE001 - a bad message or a failing source ends publish
                state["error"] = e
                call.cancel()

        async def send(call):
            await call.write(channel_pb2.PublishRequest(config=config))
            for seq, text in list(pending):
                await call.write(_publish_message(seq, text))
            while not state["exhausted"]:
                while len(pending) >= PUBLISH_WINDOW:
                    room.clear()
                    await room.wait()
                text = await inbox.get()
                if text is _SOURCE_END:
                    state["exhausted"] = True
                    break
                if isinstance(text, Exception):
                    raise text
                if not isinstance(text, str):
                    raise RvqstreamError("INVALID_ARGUMENT", f"messages must be str, got {type(text).__name__}")
                seq = state["next_seq"]
                state["next_seq"] += 1
                pending.append((seq, text))
                await call.write(_publish_message(seq, text))
            await call.done_writing()

        try:
            while True:
                call = self._channel_stub.Publish()
                writer = asyncio.create_task(write(call))
                try:
                    async for ack in call:
                        seq, _ = pending.popleft()
                        if ack.sequence != seq:
                            raise RvqstreamError("DATA_LOSS", f"ack for message {ack.sequence}, expected {seq}")
                        offsets.append(ack.offset)
                        room.set()
                        backoff.progress()
                    await writer
                    if state["exhausted"] and not pending:
                        return offsets
                    raise RvqstreamError("DATA_LOSS", f"Publish ended with {len(pending)} messages unacknowledged")
                except (grpc.RpcError, asyncio.CancelledError) as e:
                    writer.cancel()
                    await asyncio.gather(writer, return_exceptions=True)
                    if state["error"] is not None:
                        raise state["error"]
                    if isinstance(e, asyncio.CancelledError):
                        raise
                    await backoff.retry(e)
                finally:
                    writer.cancel()
                    call.cancel()
        finally:
            pump_task.cancel()

    async def subscribe(self, channel: str, from_offset: int = 0) -> AsyncIterator[Message]:
        """Yields ``channel``'s messages from ``from_offset`` on, replayed then live, each exactly
        once and in order across reconnects; ends only when the caller stops or an error is final."""
        next_offset, model_id = from_offset, ""
        backoff = _Backoff(self.reconnect_timeout_s)
        while True:
            call = self._channel_stub.Subscribe(
                channel_pb2.SubscribeRequest(channel=channel, from_offset=next_offset))
            try:
                async for resp in call:
                    m = resp.message
                    model_id = m.model_id or model_id
                    if m.offset != next_offset:
                        raise RvqstreamError("DATA_LOSS", f"channel {channel!r}: offset {m.offset} arrived "
                                             f"where {next_offset} was due")
                    msg = await self._decode(channel, m.offset, model_id, m.blob,
                                             resp.ByteSize() + GRPC_PREFIX_BYTES)
                    backoff.progress()
                    next_offset = m.offset + 1
                    yield msg
                await backoff.retry(None)   # the server ends a subscription only when it shuts down
            except grpc.RpcError as e:
                await backoff.retry(e)
            finally:
                call.cancel()

    async def fetch(self, channel: str, offset: int) -> Message:
        """One message, fetched in fallback form (decodes without the model's probability step)."""
        resp = await self._unary(self._channel_stub.FetchMessage,
                                 channel_pb2.FetchMessageRequest(channel=channel, offset=offset))
        codec = await self.model(resp.model_id)
        text = await asyncio.to_thread(codec.decompress, resp.fallback_blob)
        return Message(resp.offset, text, resp.model_id, len(resp.fallback_blob), True,
                       resp.ByteSize() + GRPC_PREFIX_BYTES)

    async def _decode(self, channel: str, offset: int, model_id: str, blob: bytes,
                      wire_bytes: int = 0) -> Message:
        """Decodes a channel blob here; a blob that fails its check is refetched in fallback form."""
        codec = await self.model(model_id)
        try:
            text = await asyncio.to_thread(codec.decompress, blob)
        except (ValueError, EOFError):
            fallback = await self.fetch(channel, offset)
            return Message(offset, fallback.text, model_id, len(blob), True, wire_bytes + fallback.wire_bytes)
        return Message(offset, text, model_id, len(blob), False, wire_bytes)


def _check_utf8(decoder, data: bytes, final: bool) -> None:
    try:
        decoder.decode(data, final=final)
    except UnicodeDecodeError as e:
        raise RvqstreamError("INVALID_ARGUMENT", f"text chunk is not valid UTF-8: {e.reason}") from None


def _tier(tier: Tier | str) -> int:
    try:
        return tier_to_pb(tier)
    except ValueError as e:
        raise RvqstreamError("INVALID_ARGUMENT", str(e)) from None


def _publish_message(seq: int, text: str) -> channel_pb2.PublishRequest:
    return channel_pb2.PublishRequest(message=channel_pb2.PublishMessage(text_utf8=text.encode("utf-8"),
                                                                          sequence=seq))
