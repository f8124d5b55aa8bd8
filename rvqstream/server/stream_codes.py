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
                      offset: int) -> str:
    """The first CODE_TEXT characters of the text a streamed message's stored parts hold."""
    batches, _ = await store.all_parts(channel, offset)
    return await pool.run(_decode_head, codec, tier, batches, wait=True)


async def code_text(codes: ChannelCodes, pool: WorkPool, channel: str, text: str) -> tuple[Code, str, np.ndarray]:
    """The code of one streamed message of ``channel`` made from ``text`` (flagged when it
    repeats a recent message), ``text`` itself, and its embedding."""
    emb, made = await pool.run(make_codes, codes, [text], wait=True)
    (near,) = codes.near(channel, [text], emb, drop=False)
    return codes.code(made[0], near), text, emb


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
            text = await stored_head(self.store, self.pool, self.registry.get(entry.model_id),
                                     tier_from_pb(entry.tier), channel, offset)
            return await code_text(self.codes, self.pool, channel, text)
        except (CodecError, ServiceError, ValueError) as e:
            log.warning("aborted message %d of %r gets no code: %s", offset, channel, e)
            return None

    def aborted(self, channel: str, offset: int, coded: tuple[Code, str, np.ndarray]) -> None:
        code, text, emb = coded
        self.codes.stored(channel, [offset], [code], [text], emb)
