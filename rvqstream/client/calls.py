"""What the SDK's calls share: retry with backoff, the channel options, small conversions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable

import grpc

from rvqstream.client.errors import RvqstreamError
from rvqstream.models import Codec, Tier
from rvqstream.models.errors import (
    CodecError,
    IntegrityError,
    MalformedError,
    TruncatedError,
    UnknownModelError,
)
from rvqstream.wire import tier_to_pb

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED}
# grpc.aio clients report a connection lost while they write as INTERNAL with this message
# (grpc/grpc#36066); it is an outage like UNAVAILABLE, not a server error
CORE_WRITE_FAILURE = "Internal error from Core"


RETRY_AFTER_KEY = "rvqstream-retry-after-ms"   # a passing condition: the server says when to retry


def retry_after(error: grpc.RpcError) -> float | None:
    """Seconds the server asked the client to wait before it tries again (a full disk, a busy
    server), or None."""
    try:
        trailers = error.trailing_metadata() or ()
    except AttributeError:
        return None
    for key, value in trailers:
        if key == RETRY_AFTER_KEY:
            try:
                return max(0.0, int(value) / 1000)
            except ValueError:
                return None
    return None


def retryable(error: grpc.RpcError) -> bool:
    return error.code() in RETRYABLE or retry_after(error) is not None or (
        error.code() == grpc.StatusCode.INTERNAL and (error.details() or "") == CORE_WRITE_FAILURE)


CHUNK_BYTES = 32 << 10        # longer text chunks are sent in pieces of this size
GRPC_PREFIX_BYTES = 5         # gRPC length-prefixed message framing
CHANNEL_OPTIONS = [
    # no bandwidth-delay probing: on a stream of small frame batches every probe costs a 17-byte
    # PING each way, more than a batch; HTTP/2's default 64 KiB window suits thin links
    ("grpc.http2.bdp_probe", 0),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", 8 << 20),
    ("grpc.max_send_message_length", 8 << 20),
]


class Backoff:
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
        if error is not None and not retryable(error):
            raise RvqstreamError.from_rpc(error) from None
        if now - self.since > self.timeout_s:
            if error is None:
                raise RvqstreamError("UNAVAILABLE", f"stream kept ending for {self.timeout_s:.0f} s")
            raise RvqstreamError.from_rpc(error) from None
        wait = retry_after(error) if error is not None else None
        await asyncio.sleep(max(self.delay, wait or 0.0))
        self.delay = min(self.delay * 2, 2.0)


async def aiter_any(items: Iterable | AsyncIterable) -> AsyncIterator:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def check_utf8(decoder, data: bytes, final: bool) -> None:
    try:
        decoder.decode(data, final=final)
    except UnicodeDecodeError as e:
        raise RvqstreamError("INVALID_ARGUMENT", f"text chunk is not valid UTF-8: {e.reason}") from None


def tier_pb(tier: Tier | str) -> int:
    try:
        return tier_to_pb(tier)
    except ValueError as e:
        raise RvqstreamError("INVALID_ARGUMENT", str(e)) from None


# model-coded data that does not decode here (another model, or corrupt): its fallback form fixes
# that; a limit (too large) or a cancellation does not
REFETCH_ERRORS = (IntegrityError, UnknownModelError, MalformedError, TruncatedError)


async def decode_fallback(codec: Codec, blob: bytes, what: str) -> str:
    """The text of a fallback-form blob; DATA_LOSS when it does not decode."""
    try:
        return await asyncio.to_thread(codec.decompress, blob)
    except CodecError as e:
        raise RvqstreamError("DATA_LOSS", f"{what} does not decode in fallback form: {e}") from None
