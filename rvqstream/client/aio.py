"""``AsyncClient``: the asyncio edge SDK.

    async with AsyncClient("127.0.0.1:50051") as client:
        offsets = await client.publish("news", ["hello", "world"])
        async with client.open_stream("news") as w:          # a message streamed as it is written
            await w.write("hello, ")
            await w.write("world")
            await w.end_message()
        async for d in client.follow("news", from_offset=0):  # text as it arrives
            print(d.offset, d.text, d.done)

Channel messages are decoded here with ONNX Runtime, with the model the stream names (fetched
once by GetModel, verified, cached on disk). Subscriptions, follows and publications reconnect on
their own and resume: a follower from the message and frame batch where it stopped (follow.py), a
publisher by resending unacknowledged messages under the same producer id and sequence numbers
(the server deduplicates them), a stream writer from the last durable byte of its message
(streams.py), so every message arrives exactly once, in order.
"""

from __future__ import annotations

import asyncio
import codecs
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import Self

import grpc

from rvqstream._proto import channel_pb2, channel_pb2_grpc, codec_pb2, codec_pb2_grpc, frame_pb2
from rvqstream.client.cache import ModelCache
from rvqstream.client.calls import (
    CHANNEL_OPTIONS,
    CHUNK_BYTES,
    GRPC_PREFIX_BYTES,
    REFETCH_ERRORS,
    Backoff,
    aiter_any,
    check_utf8,
    decode_fallback,
    tier_pb,
)
from rvqstream.client.codes import search, sync_codes
from rvqstream.client.credentials import TLSConfig, open_channel
from rvqstream.client.errors import RvqstreamError
from rvqstream.client.follow import Follower
from rvqstream.client.model_fetch import ModelFetcher
from rvqstream.client.streams import AsyncStreamWriter
from rvqstream.client.types import END_MESSAGE, FLUSH, Delta, EncodedBatch, Message, ModelInfo
from rvqstream.models import Codec, StreamDecoder, Tier
from rvqstream.models.code_model import CodeModel
from rvqstream.models.errors import CodecError
from rvqstream.models.rvq_codes import Hit, SemanticIndex
from rvqstream.wire import CHANNEL_NAME, CHANNEL_NAME_RULE, tier_from_pb

_SOURCE_END = object()
PUBLISH_WINDOW = 256          # messages in flight without an ack


class AsyncClient:
    """Async client of an rvqstream server: ``target`` one ``HOST:PORT``, or several replicas
    sharing one channel log (a list or comma-separated ``HOST:PORT``s, or ``dns:///NAME:PORT`` with
    an address per replica), balanced round-robin so that calls and reconnections go to the
    replicas that are up; ``tls`` True (system roots) or a ``TLSConfig`` (own roots, client
    certificate), ``token`` a bearer token sent with every call (never in plaintext off loopback);
    ``reconnect_timeout_s`` bounds each outage it rides out."""

    def __init__(self, target: str | list[str] = "127.0.0.1:50051", *, tls: bool | TLSConfig = False,
                 token: str | None = None, cache_dir: Path | str | None = None,
                 reconnect_timeout_s: float = 30.0):
        self.target = target
        self.reconnect_timeout_s = reconnect_timeout_s
        self._channel = open_channel(target, tls, token, CHANNEL_OPTIONS)
        self._codec_stub = codec_pb2_grpc.CodecServiceStub(self._channel)
        self._channel_stub = channel_pb2_grpc.ChannelServiceStub(self._channel)
        self._models = ModelFetcher(self._codec_stub, ModelCache(cache_dir), reconnect_timeout_s)
        self._writers: weakref.WeakSet[AsyncStreamWriter] = weakref.WeakSet()

    @property
    def cache_dir(self) -> Path:
        """The disk cache of model bundles this client reads and fills."""
        return self._models.cache.root

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the connection; stream writers stop where they are (an open message is left to
        the server's stream timeout)."""
        for writer in list(self._writers):
            await writer.stop()
        await self._channel.close()

    async def _unary(self, method, request):
        backoff = Backoff(self.reconnect_timeout_s)
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
        if not model_id and "" not in self._models.codecs:
            default = next(m.model_id for m in await self.models() if m.is_default)
            self._models.codecs[""] = await self._models.codec(default)
        return await self._models.codec(model_id)

    async def code_model(self, model_id: str) -> CodeModel:
        """The message-code model ``model_id`` (as SyncCodes and Search name it): the one shipped in
        this package, else from the disk cache (verified) or fetched with GetModel and cached."""
        return await self._models.code_model(model_id)

    async def decoder(self, model_id: str, tier: Tier | str = "exact") -> StreamDecoder:
        """A local stream decoder for frames of ``model_id`` (as ``encode_stream`` yields them)."""
        return (await self.model(model_id)).decoder(tier)

    # -- codec ----------------------------------------------------------------------------------

    async def compress(self, text: str, tier: Tier | str = "exact", stage_count: int = 0) -> bytes:
        """A standalone blob of ``text``, made by the server."""
        resp = await self._unary(self._codec_stub.Compress, codec_pb2.CompressRequest(
            text_utf8=text.encode("utf-8"), tier=tier_pb(tier), stage_count=stage_count))
        return resp.blob

    async def decompress(self, blob: bytes) -> str:
        """The text of a blob, decoded here with the model it names (the server's default model
        unless the blob is for another one the server holds)."""
        codec = await self.model("")
        try:
            return await asyncio.to_thread(codec.decompress, blob)
        except CodecError:   # another model's blob, or a bad one: the server says which
            resp = await self._unary(self._codec_stub.Decompress, codec_pb2.DecompressRequest(blob=blob))
            return resp.text

    async def encode_stream(self, chunks: Iterable | AsyncIterable, *, tier: Tier | str = "exact",
                            stage_count: int = 0, max_delay_ms: int = 0, model_id: str = "",
                            end_message: bool = True) -> AsyncIterator[EncodedBatch]:
        """Streams ``chunks`` (str, bytes of UTF-8, or the FLUSH / END_MESSAGE markers) to the
        server and yields frame batches as they come (decode them with ``decoder``); ends the
        message at the end when ``end_message``.

        Text goes out only after the server accepted the config (its header came back), and bytes
        are checked for UTF-8 here: a grpc.aio client that is still writing when the server ends
        the call can lose the server's status (grpc/grpc#36066), so errors are caught early."""
        config = codec_pb2.EncodeConfig(tier=tier_pb(tier), stage_count=stage_count,
                                        max_delay_ms=max_delay_ms, model_id=model_id)
        accepted = asyncio.Event()

        async def requests():
            yield codec_pb2.EncodeStreamRequest(config=config)
            await accepted.wait()
            utf8 = codecs.getincrementaldecoder("utf-8")()
            async for chunk in aiter_any(chunks):
                if chunk is FLUSH:
                    yield codec_pb2.EncodeStreamRequest(chunk=frame_pb2.TextChunk(flush=True))
                    continue
                if chunk is END_MESSAGE:
                    check_utf8(utf8, b"", final=True)
                    yield codec_pb2.EncodeStreamRequest(chunk=frame_pb2.TextChunk(end_message=True))
                    continue
                data = chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)
                check_utf8(utf8, data, final=False)
                for i in range(0, len(data), CHUNK_BYTES):
                    yield codec_pb2.EncodeStreamRequest(
                        chunk=frame_pb2.TextChunk(text_utf8=data[i:i + CHUNK_BYTES]))
            check_utf8(utf8, b"", final=True)
            if end_message:
                yield codec_pb2.EncodeStreamRequest(chunk=frame_pb2.TextChunk(end_message=True))

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
                    raise RvqstreamError("INTERNAL", "EncodeStream sent a frame batch before its header")
                yield EncodedBatch(resp.frames, header.model_id, tier_from_pb(header.tier),
                                   resp.ByteSize() + GRPC_PREFIX_BYTES)
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
                      tier: Tier | str = "exact", drop_near_duplicates: bool = False) -> list[int]:
        """Publishes ``messages`` in order; returns their offsets once each is durable. With
        ``drop_near_duplicates``, a message whose meaning repeats a recent message of the channel
        is not stored, and its offset is that message's."""
        if not CHANNEL_NAME.fullmatch(channel):
            raise RvqstreamError("INVALID_ARGUMENT", f"channel name {channel!r} is invalid: {CHANNEL_NAME_RULE}")
        producer = uuid.uuid4().hex
        # one task reads the caller's messages for the whole publish: a call that fails and is
        # retried never cancels a read from the source (that would lose the message being read)
        inbox: asyncio.Queue = asyncio.Queue(maxsize=1)

        async def pump():
            try:
                async for text in aiter_any(messages):
                    await inbox.put(text)
                await inbox.put(_SOURCE_END)
            except Exception as e:  # noqa: BLE001 - a failing source ends publish with its error
                await inbox.put(e)

        pump_task = asyncio.create_task(pump())
        pending: deque[tuple[int, str]] = deque()   # sent (or to resend), not acknowledged
        offsets: list[int] = []
        state = {"next_seq": 0, "exhausted": False, "error": None}
        room = asyncio.Event()
        backoff = Backoff(self.reconnect_timeout_s)
        config = channel_pb2.PublishConfig(channel=channel, tier=tier_pb(tier), producer_id=producer,
                                           drop_near_duplicates=drop_near_duplicates)

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

    def open_stream(self, channel: str, *, tier: Tier | str = "exact", max_delay_ms: int = 200,
                    buffer_bytes: int = 1 << 20) -> AsyncStreamWriter:
        """A writer of messages streamed into ``channel`` as they are written (``write``,
        ``end_message`` -> offset, ``close``; use ``async with``). Subscribers see the text within
        ``max_delay_ms`` (the server's latency budget) of its write. See streams.py."""
        writer = AsyncStreamWriter(self, channel, tier, max_delay_ms, buffer_bytes)
        self._writers.add(writer)
        return writer

    async def follow(self, channel: str, from_offset: int = 0) -> AsyncIterator[Delta]:
        """Yields ``Delta(offset, text, done, aborted)`` for ``channel`` from ``from_offset`` on:
        ``text`` is the new text of message ``offset`` since its last delta (a published message
        comes whole, a streamed one as it is written), ``done`` marks its end. Replays, then
        follows live; resumes on its own after a disconnect, mid-message too."""
        _check_channel(channel)
        async for e in Follower(self, channel, from_offset).events():
            yield Delta(e.offset, e.text, e.done, e.aborted)

    async def subscribe(self, channel: str, from_offset: int = 0) -> AsyncIterator[Message]:
        """Yields ``channel``'s messages from ``from_offset`` on, whole (a streamed one once it is
        complete or aborted), replayed then live, each exactly once and in offset order across
        reconnects; ends only when the caller stops or an error is final."""
        _check_channel(channel)
        follower = Follower(self, channel, from_offset)
        parts: dict[int, list] = {}
        ready: dict[int, Message] = {}
        next_offset = from_offset
        async for e in follower.events():
            next_offset = max(next_offset, follower.removed_below)
            acc = parts.setdefault(e.offset, [[], 0, 0, False])
            acc[0].append(e.text)
            acc[1] += e.compressed_bytes
            acc[2] += e.wire_bytes
            acc[3] = acc[3] or e.fallback
            if not e.done:
                continue
            texts, compressed, wire, fallback = parts.pop(e.offset)
            ready[e.offset] = Message(e.offset, "".join(texts), e.model_id, compressed, fallback, wire,
                                      e.aborted)
            while next_offset in ready:
                yield ready.pop(next_offset)
                next_offset += 1

    async def fetch(self, channel: str, offset: int) -> Message:
        """One message, fetched in fallback form (decodes without the model's probability step)."""
        resp = await self._unary(self._channel_stub.FetchMessage,
                                 channel_pb2.FetchMessageRequest(channel=channel, offset=offset))
        codec = await self.model(resp.model_id)
        text = await decode_fallback(codec, resp.fallback_blob, f"message {offset} of {channel!r}")
        return Message(resp.offset, text, resp.model_id, len(resp.fallback_blob), True,
                       resp.ByteSize() + GRPC_PREFIX_BYTES)

    async def codes(self, channel: str, from_offset: int = 0, *, index: SemanticIndex | None = None) -> SemanticIndex:
        """Syncs ``channel``'s message codes (a few bytes a message, no text) from ``from_offset``
        on into ``index`` (default: a new index of the code model the server names) and returns
        it; search it here with ``index.search((await client.code_model(index.model_id)).query(text))``,
        and sync it again later from ``index.next_offset``."""
        _check_channel(channel)
        return await sync_codes(self._channel_stub, channel, from_offset, index, self.code_model,
                                self.reconnect_timeout_s)

    async def search(self, channel: str, query: str | bytes, k: int = 10, stages: int = 0) -> list[Hit]:
        """The server's ``k`` best messages of ``channel`` for ``query`` (a text, or a code as
        ``codes`` syncs them), best first: ``Hit(offset, score)``, score the estimated cosine."""
        _check_channel(channel)
        return await search(self._channel_stub, channel, query, k, stages, self.reconnect_timeout_s)

    async def _decode(self, channel: str, offset: int, model_id: str, blob: bytes,
                      wire_bytes: int = 0) -> Message:
        """Decodes a channel blob here; a blob that fails its check is refetched in fallback form."""
        codec = await self.model(model_id)
        try:
            text = await asyncio.to_thread(codec.decompress, blob)
        except REFETCH_ERRORS:
            fallback = await self.fetch(channel, offset)
            return Message(offset, fallback.text, model_id, len(blob), True, wire_bytes + fallback.wire_bytes)
        return Message(offset, text, model_id, len(blob), False, wire_bytes)


def _publish_message(seq: int, text: str) -> channel_pb2.PublishRequest:
    return channel_pb2.PublishRequest(message=channel_pb2.PublishMessage(text_utf8=text.encode("utf-8"),
                                                                          sequence=seq))


def _check_channel(channel: str) -> None:
    if not CHANNEL_NAME.fullmatch(channel):
        raise RvqstreamError("INVALID_ARGUMENT", f"channel name {channel!r} is invalid: {CHANNEL_NAME_RULE}")
