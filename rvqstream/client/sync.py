"""``Client``: the blocking edge SDK, the same calls as ``AsyncClient`` run on a private event loop.

    with Client("127.0.0.1:50051") as client:
        client.publish("news", ["hello"])
        with client.open_stream("news") as w:
            w.write("streamed ")
            w.write("as written")
            w.end_message()
        for msg in client.subscribe("news"):
            print(msg.offset, msg.text)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Self

from rvqstream.client.aio import AsyncClient
from rvqstream.client.credentials import TLSConfig
from rvqstream.client.streams import AsyncStreamWriter
from rvqstream.client.types import Delta, EncodedBatch, Message, ModelInfo
from rvqstream.models import Codec, StreamDecoder, Tier
from rvqstream.models.code_model import CodeModel
from rvqstream.models.rvq_codes import Hit, SemanticIndex

_STOP = object()


async def _from_blocking(items: Iterable):
    """An async iterator over a plain iterable whose ``next`` may block (read from a pipe, say)."""
    it = iter(items)
    while (item := await asyncio.to_thread(next, it, _STOP)) is not _STOP:
        yield item


class Client:
    """Blocking client of an rvqstream server (see ``AsyncClient`` for the arguments)."""

    def __init__(self, target: str | list[str] = "127.0.0.1:50051", *, tls: bool | TLSConfig = False,
                 token: str | None = None, cache_dir: Path | str | None = None,
                 reconnect_timeout_s: float = 30.0):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rvqstream-client",
                                        daemon=True)
        self._thread.start()

        async def make():
            return AsyncClient(target, tls=tls, token=token, cache_dir=cache_dir,
                               reconnect_timeout_s=reconnect_timeout_s)

        self._aio = self._run(make())

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, agen) -> Iterator:
        try:
            while True:
                try:
                    yield self._run(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.is_closed():
                self._run(agen.aclose())

    @property
    def cache_dir(self) -> Path:
        """The disk cache of model bundles this client reads and fills."""
        return self._aio.cache_dir

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._aio.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def models(self) -> list[ModelInfo]:
        return self._run(self._aio.models())

    def model(self, model_id: str = "") -> Codec:
        return self._run(self._aio.model(model_id))

    def decoder(self, model_id: str, tier: Tier | str = "exact") -> StreamDecoder:
        return self._run(self._aio.decoder(model_id, tier))

    def compress(self, text: str, tier: Tier | str = "exact", stage_count: int = 0) -> bytes:
        return self._run(self._aio.compress(text, tier, stage_count))

    def decompress(self, blob: bytes) -> str:
        return self._run(self._aio.decompress(blob))

    def encode_stream(self, chunks: Iterable, *, tier: Tier | str = "exact", stage_count: int = 0,
                      max_delay_ms: int = 0, model_id: str = "", end_message: bool = True
                      ) -> Iterator[EncodedBatch]:
        return self._iterate(self._aio.encode_stream(
            _from_blocking(chunks), tier=tier, stage_count=stage_count, max_delay_ms=max_delay_ms,
            model_id=model_id, end_message=end_message))

    def publish(self, channel: str, messages: Iterable[str], *, tier: Tier | str = "exact",
                drop_near_duplicates: bool = False) -> list[int]:
        return self._run(self._aio.publish(channel, _from_blocking(messages), tier=tier,
                                           drop_near_duplicates=drop_near_duplicates))

    def subscribe(self, channel: str, from_offset: int = 0) -> Iterator[Message]:
        return self._iterate(self._aio.subscribe(channel, from_offset))

    def follow(self, channel: str, from_offset: int = 0) -> Iterator[Delta]:
        """``AsyncClient.follow``: text of each message as it arrives, replayed then live."""
        return self._iterate(self._aio.follow(channel, from_offset))

    def open_stream(self, channel: str, *, tier: Tier | str = "exact", max_delay_ms: int = 200,
                    buffer_bytes: int = 1 << 20) -> StreamWriter:
        """``AsyncClient.open_stream``, blocking: a context-managed writer of streamed messages."""
        async def make():
            return self._aio.open_stream(channel, tier=tier, max_delay_ms=max_delay_ms,
                                         buffer_bytes=buffer_bytes)

        return StreamWriter(self, self._run(make()))

    def fetch(self, channel: str, offset: int) -> Message:
        return self._run(self._aio.fetch(channel, offset))

    def codes(self, channel: str, from_offset: int = 0, *, index: SemanticIndex | None = None) -> SemanticIndex:
        """``AsyncClient.codes``: the channel's message codes, synced into a searchable index."""
        return self._run(self._aio.codes(channel, from_offset, index=index))

    def code_model(self, model_id: str) -> CodeModel:
        """``AsyncClient.code_model``: the code model an index or a search names."""
        return self._run(self._aio.code_model(model_id))

    def search(self, channel: str, query: str | bytes, k: int = 10, stages: int = 0) -> list[Hit]:
        """``AsyncClient.search``: the server searches the channel's codes."""
        return self._run(self._aio.search(channel, query, k, stages))


class StreamWriter:
    """Blocking face of ``AsyncStreamWriter``: ``write``, ``flush``, ``end_message`` -> offset,
    ``close``; a ``with`` block closes it (ending an open message) unless it raised."""

    def __init__(self, client: Client, writer: AsyncStreamWriter):
        self._client, self._writer = client, writer

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._client._run(self._writer.__aexit__(exc_type, exc, tb))

    @property
    def offset(self) -> int | None:
        """``AsyncStreamWriter.offset``: the open message's offset once its first text is durable."""
        return self._writer.offset

    def write(self, text: str) -> None:
        self._client._run(self._writer.write(text))

    def flush(self) -> None:
        self._client._run(self._writer.flush())

    def end_message(self) -> int:
        return self._client._run(self._writer.end_message())

    def close(self) -> None:
        self._client._run(self._writer.close())
