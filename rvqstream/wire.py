"""Conversions between the codec's types and the rvqstream.v1 wire messages (client and server)."""

from __future__ import annotations

import re

from rvqstream._proto import frame_pb2
from rvqstream.models import Tier

# 1-128 characters of [A-Za-z0-9._/-], starting with a letter or digit: names an access rule can match
CHANNEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")
CHANNEL_NAME_RULE = "1-128 characters of [A-Za-z0-9._/-], starting with a letter or digit"
PRODUCER_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
PRODUCER_ID_RULE = "1-64 characters of [A-Za-z0-9._-]"
MAX_SEQUENCE = (1 << 63) - 1      # producer sequence numbers are signed 64-bit in the log

_TIER_TO_PB = {Tier.EXACT: frame_pb2.TIER_EXACT, Tier.SEMANTIC: frame_pb2.TIER_SEMANTIC}
_TIER_FROM_PB = {v: k for k, v in _TIER_TO_PB.items()}


def tier_to_pb(tier: str | Tier) -> int:
    return _TIER_TO_PB[Tier.parse(tier)]


def tier_from_pb(value: int) -> Tier:
    """TIER_UNSPECIFIED is the exact tier; ``ValueError`` for a value this build does not know."""
    if value == frame_pb2.TIER_UNSPECIFIED:
        return Tier.EXACT
    try:
        return _TIER_FROM_PB[value]
    except KeyError:
        raise ValueError(f"unknown tier {value}") from None
