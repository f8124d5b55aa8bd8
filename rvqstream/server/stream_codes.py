"""Codes of streamed messages made from their stored text: the head of a message a reconnecting
producer continues, and the code of a message closed as aborted (its producer went away).

A streamed message's code is normally made from the text its producer sends (publish_stream.py);
when that text is not all at hand, the message's stored parts are decoded, as far as the first
CODE_TEXT characters and no further.
"""

from __future__ import annotations

import logging

import numpy as np

from rvqstream.models import Codec, CodecError, Tier
from rvqstream.models.errors import Cancel
from rvqstream.server.channel_codes import CODE_TEXT, ChannelCodes, make_codes
from rvqstream.server.errors import ServiceError
from rvqstream.server.logstore import Code, LogStore
from rvqstream.server.registry import ModelRegistry
from rvqstream.server.work_pool import WorkPool
from rvqstream.wire import tier_from_pb

log = logging.getLogger(__name__)


async def stored_head(store: LogStore, pool: WorkPool, codec: Codec, tier: Tier, channel: str,
                      offset: int, parts: int) -> str:
    """The first CODE_TEXT characters of the text of a streamed message's first ``parts`` parts."""
    batches: list[bytes] = []
    while len(batches) < parts:
        more, _ = await store.read_parts(channel, offset, len(batches), 1 << 20)
        if not more:
            break
        batches += more
    return await pool.run(_decode_head, codec, tier, batches[:parts], wait=True)


def _decode_head(codec: Codec, tier: Tier, batches: list[bytes], cancel: Cancel) -> str:
    decoder = codec.decoder(tier)
    text: list[str] = []
    chars = 0
    for batch in batches:
        piece = decoder.push(batch, cancel=cancel).text
        text.append(piece)
        chars += len(piece)
        if chars >= CODE_TEXT:
            break
    return "".join(text)[:CODE_TEXT]


class AbortCoder:
    """Makes the code of a streamed message about to be closed as aborted, from its stored text,
    and adds it to the channel's index and recent window once the abort is durable."""

    def __init__(self, store: LogStore, registry: ModelRegistry, codes: ChannelCodes, pool: WorkPool):
        self.store, self.registry, self.codes, self.pool = store, registry, codes, pool

    async def code(self, channel: str, offset: int) -> tuple[Code, str, np.ndarray] | None:
        """(code, the text it was made from, its embedding), or None when the text does not decode."""
        try:
            (entry,) = await self.store.read(channel, offset, 1, 1)
            _, parts = await self.store.stream_state(channel, offset)
            text = await stored_head(self.store, self.pool, self.registry.get(entry.model_id),
                                     tier_from_pb(entry.tier), channel, offset, parts)
            emb, codes = await self.pool.run(make_codes, self.codes, [text], wait=True)
        except (CodecError, ServiceError, ValueError) as e:
            log.warning("aborted message %d of %r gets no code: %s", offset, channel, e)
            return None
        (near,) = self.codes.near(channel, [text], emb, drop=False)
        return self.codes.code(codes[0], near), text, emb

    def aborted(self, channel: str, offset: int, coded: tuple[Code, str, np.ndarray]) -> None:
        code, text, emb = coded
        self.codes.stored(channel, [offset], [code], [text], emb)
