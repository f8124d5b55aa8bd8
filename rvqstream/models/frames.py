"""Names shared by blobs and streams: frame kinds and tiers.

A frame holds up to F tokens of one message. ``MODEL`` frames are coded by the model (exact tier:
tokens under the decoder's distribution; the retired semantic tier, read only: RVQ codes only);
``ZSTD`` and ``RAW`` frames carry the frame's UTF-8 bytes (compressed with the bundle's dictionary, or as they are).
A fallback frame ends the context: the next frame of the message starts a fresh one, as at a
keyframe. Frames travel in batches (batch.py).
"""

from __future__ import annotations

import enum


class FrameKind(enum.IntEnum):
    MODEL = 0
    ZSTD = 1
    RAW = 2


class Tier(enum.IntEnum):
    EXACT = 0
    SEMANTIC = 1

    @classmethod
    def parse(cls, tier: str | Tier) -> Tier:
        if isinstance(tier, Tier):
            return tier
        try:
            return cls[str(tier).upper()]
        except KeyError:
            raise ValueError(f"unknown tier {tier!r}: expected 'exact' or 'semantic'") from None
