"""ChannelService: Publish (durable acks with offsets), PublishStream (messages coded and stored
as they are written), Subscribe (replay, then live), FetchMessage.

Published text is compressed by the default model on a worker thread and stored as a blob;
streamed text is stored as the frame batches its stream's flushes made (publish_stream.py): the
log never holds text. Channel names are 1-128 characters of [A-Za-z0-9._/-] starting with a letter
or digit, so that access rules can match them by prefix or pattern.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from rvqstream._proto import channel_pb2, channel_pb2_grpc
from rvqstream.models.errors import Cancel, CodecError
from rvqstream.server.channel_codes import ChannelCodes, make_codes
from rvqstream.server.code_queries import CodeQueries
from rvqstream.server.codec_service import compress_in_time, first_config
from rvqstream.server.disk import FreeSpace, full_error
from rvqstream.server.encode import StreamLimits, written_tier
from rvqstream.server.errors import ServiceError, codec_error, decode_utf8, invalid, quoted, rpc_errors
from rvqstream.server.logstore import LogFull, LogStore, MessageState, Record
from rvqstream.server.publish_stream import OpenStreams, ProducerStream, check_producer, check_sequence
from rvqstream.server.registry import ModelRegistry
from rvqstream.server.scheduler import Scheduler
from rvqstream.server.subscription import Subscription
from rvqstream.server.telemetry import Metrics
from rvqstream.server.work_pool import WorkPool
from rvqstream.wire import CHANNEL_NAME, CHANNEL_NAME_RULE, tier_from_pb

PUBLISH_BATCH = 64       # messages compressed and committed together at most
CODES_OFF = "this server makes no message codes (it runs with --no-message-codes)"
_DONE = object()


@dataclass(frozen=True)
class ChannelLimits:
    """``max_message_bytes``: largest published message; ``subscribe_page``: entries a subscriber
    reads at once; ``subscribe_page_bytes``: frame batches it reads at once; ``stream``: limits of
    PublishStream calls."""

    max_message_bytes: int
    subscribe_page: int
    subscribe_page_bytes: int
    stream: StreamLimits


def check_channel(name: str, field: str = "channel") -> str:
    if not CHANNEL_NAME.fullmatch(name):
        raise invalid(f"channel name {quoted(name)} is invalid: {CHANNEL_NAME_RULE}", field)
    return name


class ChannelService(channel_pb2_grpc.ChannelServiceServicer):
    def __init__(self, store: LogStore, registry: ModelRegistry, scheduler: Scheduler, pool: WorkPool,
                 metrics: Metrics, limits: ChannelLimits, streams: OpenStreams, space: FreeSpace,
                 codes: ChannelCodes | None):
        self.store, self.registry, self.scheduler, self.pool, self.metrics, self.limits = (
            store, registry, scheduler, pool, metrics, limits)
        self.streams, self.space, self.codes = streams, space, codes
        self.queries = CodeQueries(store, codes, pool, metrics, limits.max_message_bytes) if codes else None

    async def _end(self, channel: str) -> int:
        end = await self.store.settled_end_offset(channel)
        if end is None:
            raise ServiceError(grpc.StatusCode.NOT_FOUND,
                               f"channel {channel!r} does not exist (publishing to it creates it)", "channel")
        return end

    @rpc_errors
    async def Publish(self, requests: AsyncIterator[channel_pb2.PublishRequest],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[channel_pb2.PublishResponse]:
        config = await first_config(requests, "Publish")
        if config is None:
            return
        channel = check_channel(config.channel, "config.channel")
        check_producer(config.producer_id, allow_empty=True)
        if config.drop_near_duplicates and self.codes is None:
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION, CODES_OFF, "config.drop_near_duplicates")
        tier = written_tier(config.tier, "config.tier")
        codec = self.registry.for_tier(tier)
        inbox: asyncio.Queue = asyncio.Queue(maxsize=2 * PUBLISH_BATCH)
        reader = asyncio.create_task(self._read_messages(requests, inbox))
        try:
            while True:
                batch = [await inbox.get()]
                while len(batch) < PUBLISH_BATCH and not inbox.empty() and batch[-1] is not _DONE \
                        and not isinstance(batch[-1], Exception):
                    batch.append(inbox.get_nowait())
                tail = batch[-1]
                messages = [m for m in batch if isinstance(m, tuple)]
                if messages:
                    async for response in self._publish_batch(channel, config, codec, tier, messages, context):
                        yield response
                if tail is _DONE:
                    return
                if isinstance(tail, Exception):
                    raise tail
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _publish_batch(self, channel: str, config: channel_pb2.PublishConfig, codec, tier,
                             messages: list[tuple[str, int, int]],
                             context) -> AsyncIterator[channel_pb2.PublishResponse]:
        """Codes a batch of (text, sequence, size) messages, stores them with their codes (less
        the near-duplicates the config drops) in one append, and acknowledges each in order."""
        texts = [m[0] for m in messages]
        blobs = await self.pool.run(_compress_all, codec, tier, texts, self.pool.max_call_s, context=context,
                                    wait=True, budget_s=self.pool.max_call_s * len(messages))
        if self.codes is None:
            emb, codes, near = None, None, [None] * len(messages)
        else:
            emb, codes = await self.pool.run(make_codes, self.codes, texts, context=context, wait=True,
                                             budget_s=self.pool.max_call_s * len(messages))
            near = self.codes.near(channel, texts, emb, config.drop_near_duplicates)
        records: list[Record] = []
        slot: list[int | None] = []       # each message's record, None for one dropped
        for i, (blob, (_, seq, _)) in enumerate(zip(blobs, messages)):
            n = near[i]
            if n is not None and n.record is not None:      # an earlier message of this batch
                n = near[i] = dataclasses.replace(n, record=slot[n.record])
            if config.drop_near_duplicates and n is not None:
                slot.append(None)
                continue
            slot.append(len(records))
            code = None if self.codes is None else self.codes.code(codes[i], n)
            records.append(Record(blob, codec.model_id, config.producer_id, seq, code))
        self.space.check()
        try:
            appended = await self.store.append(channel, records)
        except LogFull as e:
            raise full_error(str(e)) from None
        if self.codes is not None:
            fresh = [k for k, a in enumerate(appended) if not a.duplicate]
            index = [slot.index(k) for k in fresh]          # the message of each fresh record
            self.codes.stored(channel, [appended[k].offset for k in fresh], [records[k].code for k in fresh],
                              [texts[i] for i in index], emb[index] if index else emb[:0])
        for i, (blob, (_, seq, size)) in enumerate(zip(blobs, messages)):
            n = near[i]
            near_of = None if n is None else n.offset if n.record is None else appended[n.record].offset
            if slot[i] is None:
                self.metrics.near_duplicates_dropped.add(1)
                yield channel_pb2.PublishResponse(offset=near_of, sequence=seq, near_duplicate=True,
                                                  near_duplicate_of=near_of, dropped=True)
                continue
            ack = appended[slot[i]]
            self.metrics.bytes_in.add(size)
            self.metrics.bytes_out.add(len(blob))
            if size:
                self.metrics.compression_ratio.record(len(blob) / size)
            flagged = near_of is not None and not ack.duplicate
            if flagged:
                self.metrics.near_duplicates.add(1)
            yield channel_pb2.PublishResponse(offset=ack.offset, sequence=seq, stored_bytes=len(blob),
                                              duplicate=ack.duplicate, near_duplicate=flagged,
                                              near_duplicate_of=near_of if flagged else 0)

    async def _read_messages(self, requests, inbox: asyncio.Queue) -> None:
        """Puts (text, sequence, size) per message, then _DONE, or the error that ends the stream."""
        try:
            async for req in requests:
                if req.WhichOneof("kind") != "message":
                    raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                                       "config may be sent only once, as the first request", "config")
                data = req.message.text_utf8
                check_sequence(req.message.sequence, "message.sequence")
                if len(data) > self.limits.max_message_bytes:
                    raise invalid(f"message.text_utf8 is {len(data)} bytes; at most "
                                  f"{self.limits.max_message_bytes}", "message.text_utf8")
                await inbox.put((decode_utf8(data, "message.text_utf8"), req.message.sequence, len(data)))
            await inbox.put(_DONE)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - acked what came before, then fail the stream
            await inbox.put(e)

    @rpc_errors
    async def PublishStream(self, requests: AsyncIterator[channel_pb2.PublishStreamRequest],
                            context: grpc.aio.ServicerContext) -> AsyncIterator[channel_pb2.PublishStreamResponse]:
        config = await first_config(requests, "PublishStream")
        if config is None:
            return
        channel = check_channel(config.channel, "config.channel")
        stream = ProducerStream(self.store, self.streams, channel, config,
                                self.registry.get("", "config.tier", config.tier),
                                self.scheduler, self.metrics, self.limits.stream, self.space,
                                self.codes, self.pool)
        async for response in stream.responses(requests):
            yield response

    @rpc_errors
    async def Subscribe(self, request: channel_pb2.SubscribeRequest,
                        context: grpc.aio.ServicerContext) -> AsyncIterator[channel_pb2.SubscribeResponse]:
        channel = check_channel(request.channel)
        end = await self._end(channel)
        if request.from_offset > end:
            raise ServiceError(grpc.StatusCode.OUT_OF_RANGE,
                               f"from_offset {request.from_offset} is past the end of channel {channel!r} "
                               f"(its next offset is {end})", "from_offset")
        if request.from_part and request.from_offset == end:
            raise invalid(f"from_part {request.from_part} names no message: channel {channel!r} has no "
                          f"offset {request.from_offset} yet", "from_part")
        # below the first offset retention kept, it starts there: its messages say where
        sub = Subscription(self.store, channel, request.from_offset, request.from_part,
                           self.limits.subscribe_page, self.limits.subscribe_page_bytes)
        async for response in sub.responses():
            yield response

    @rpc_errors
    async def FetchMessage(self, request: channel_pb2.FetchMessageRequest,
                           context: grpc.aio.ServicerContext) -> channel_pb2.FetchMessageResponse:
        channel = check_channel(request.channel)
        end = await self._end(channel)
        if request.offset >= end:
            held = f"offsets 0..{end - 1}" if end else "no messages yet"
            raise ServiceError(grpc.StatusCode.OUT_OF_RANGE,
                               f"offset {request.offset} is past the end of channel {channel!r} "
                               f"(it holds {held})", "offset")
        first = await self.store.first_offset(channel)
        if request.offset < first:
            raise ServiceError(grpc.StatusCode.OUT_OF_RANGE,
                               f"offset {request.offset} of channel {channel!r} was removed by retention "
                               f"(the first it holds is {first})", "offset")
        (entry,) = await self.store.read(channel, request.offset, 1, self.limits.max_message_bytes)
        codec = self.registry.get(entry.model_id)
        try:
            if entry.streamed:
                batches, state = await self.store.all_parts(channel, entry.offset)
                text = await self.pool.run(_decode_batches, codec, entry.tier, batches, context=context, wait=True)
            else:
                state = MessageState.COMPLETE
                text = await self.pool.run(codec.decompress, entry.blob, context=context, wait=True,
                                           legacy=True)   # its own log: older blobs are read
        except CodecError as e:
            raise codec_error(e, f"stored message {request.offset}") from None
        blob = await self.pool.run(_fallback, codec, text, context=context, wait=True)
        return channel_pb2.FetchMessageResponse(offset=entry.offset, model_id=codec.model_id,
                                                fallback_blob=blob, state=int(state))

    def _queries(self) -> CodeQueries:
        if self.queries is None:
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION, CODES_OFF)
        return self.queries

    @rpc_errors
    async def Search(self, request: channel_pb2.SearchRequest,
                     context: grpc.aio.ServicerContext) -> channel_pb2.SearchResponse:
        channel = check_channel(request.channel)
        queries = self._queries()
        await self._end(channel)
        return await queries.search(channel, request, context)

    @rpc_errors
    async def SyncCodes(self, request: channel_pb2.SyncCodesRequest,
                        context: grpc.aio.ServicerContext) -> AsyncIterator[channel_pb2.SyncCodesResponse]:
        channel = check_channel(request.channel)
        queries = self._queries()
        end = await self._end(channel)
        if request.from_offset > end:
            raise ServiceError(grpc.StatusCode.OUT_OF_RANGE,
                               f"from_offset {request.from_offset} is past the end of channel {channel!r} "
                               f"(its next offset is {end})", "from_offset")
        async for response in queries.sync(channel, request.from_offset, request.stages):
            yield response


def _decode_batches(codec, tier_pb: int, batches: list[bytes], cancel: Cancel) -> str:
    decoder = codec.decoder(tier_from_pb(tier_pb))
    return "".join(decoder.push(b, cancel=cancel).text for b in batches)


def _compress_all(codec, tier, texts: list[str], message_s: float, cancel: Cancel) -> list[bytes]:
    """Each text's blob, each with ``message_s`` of model time at most (then in fallback form)."""
    return [compress_in_time(codec, text, tier, None, cancel.within(message_s)) for text in texts]


def _fallback(codec, text: str, cancel: Cancel) -> bytes:
    return codec.fallback(text)
