"""The gRPC fuzzer's requests (bench/fuzz_grpc.py): ``Requests`` plans each call from a seeded random
source, for every RPC of the two services (``METHODS``), starting from ``Material``, valid inputs of
the parser fuzzer.

Every request is sent as raw bytes through generic multi-callables, so a request may be a valid
message with adversarial fields (random bytes in bytes fields, invalid UTF-8, huge and negative
numbers, unknown enum values, unknown or malformed model ids, random channel and producer names,
truncated and mutated blobs and frame batches, oversized fields), the wrong first message of a
stream, a valid message with its serialized bytes mutated, or plain garbage. Calls carry the
access file's admin token, a token that may only subscribe, a garbage token or none; streams may
be held open until their deadline, and server streams are cancelled after a few responses.

Tier fields take every value, the retired semantic tier's among them: a call that asks to write in
it (Compress, or the first message of EncodeStream, Publish or PublishStream, sent unmutated) is
marked ``Plan.retired``, and must not end OK (the server refuses it, INVALID_ARGUMENT when nothing
else is wrong first); DecodeStream still decodes the semantic streams of the material.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from fuzz_grpc_server import MAX_FIELD

from rvqstream._proto import channel_pb2, codec_pb2, frame_pb2

DEADLINES_S = (0.5, 1.0, 2.0, 5.0)
VALID_CHANNELS = ("fuzz/a", "fuzz/b", "c0", "fuzz/deep/er.name-1_x")
BAD_CHANNELS = ("", "/x", "a b", "ü", "a" * 129, "\x00", ".x", "x*", "fuzz/a\n", "-a")
ENUMS = (0, 1, 2, 3, -1, 7, 2**31 - 1, -(2**31))
U32 = (0, 1, 2, 8, 9, 17, 1000, 60_000, 60_001, 2**31, 2**32 - 1)
U64 = (0, 1, 2, 3, 5, 100, 2**31, 2**63 - 1, 2**63, 2**64 - 1)
KB = 1 << 10


def _methods() -> dict[str, tuple[str, bool, bool]]:
    """Every RPC of the two services: short name -> (path, client streaming, server streaming)."""
    out = {}
    for module, service in ((codec_pb2, "CodecService"), (channel_pb2, "ChannelService")):
        desc = module.DESCRIPTOR.services_by_name[service]
        for m in desc.methods:
            out[m.name] = (f"/{desc.full_name}/{m.name}", m.client_streaming, m.server_streaming)
    return out


METHODS = _methods()


@dataclass(frozen=True)
class Material:
    """Valid inputs to start from: blobs, batch sequences (tier name, batches), texts, and the
    mutation ``mutate(data, program, donors)``."""

    blobs: list[bytes]
    sequences: list[tuple[str, list[bytes]]]
    texts: list[str]
    mutate: Callable[[bytes, bytes, list[bytes]], bytes]


@dataclass
class Plan:
    """One call: its method, the serialized requests, deadline, whether the client holds its side
    open until the deadline, how many responses it reads before cancelling, its token, and whether
    it asks to write in the retired semantic tier (``writes_retired_tier``)."""

    method: str
    requests: list[bytes]
    deadline: float
    hold_open: bool = False
    read_limit: int = 1 << 30
    token: str | None = None
    retired: bool = False


# the methods that write text in a tier: their request, and the field of the first one with the tier
WRITERS = {"Compress": (codec_pb2.CompressRequest, None), "EncodeStream": (codec_pb2.EncodeStreamRequest, "config"),
           "Publish": (channel_pb2.PublishRequest, "config"),
           "PublishStream": (channel_pb2.PublishStreamRequest, "config")}


def writes_retired_tier(method: str, first: bytes) -> bool:
    """Whether a call of ``method`` whose first serialized request is ``first`` asks to write in the
    semantic tier (retired: the server must refuse it)."""
    if method not in WRITERS:
        return False
    message_type, config = WRITERS[method]
    msg = message_type.FromString(first)
    if config is not None:
        if not msg.HasField(config):
            return False
        msg = getattr(msg, config)
    return msg.tier == frame_pb2.TIER_SEMANTIC


class Requests:
    """Adversarial requests for every method, from a seeded random source."""

    def __init__(self, rng: random.Random, material: Material, model_id: str, tokens: dict[str, str],
                 malformed: float):
        self.rng, self.m, self.model_id, self.tokens = rng, material, model_id, tokens
        self.malformed = malformed      # share of calls whose serialized requests are mutated or garbage
        self.donors = material.blobs + [b for _, seq in material.sequences for b in seq]

    # -- field values -------------------------------------------------------------------------

    def pick(self, values):
        return values[self.rng.randrange(len(values))]

    def raw(self, most: int = 64) -> bytes:
        r = self.rng.random()
        size = MAX_FIELD + self.rng.randrange(1, 4 * KB) if r < 0.002 else self.rng.randrange(most + 1)
        return self.rng.randbytes(size)

    def mutated(self, data: bytes) -> bytes:
        return self.m.mutate(data, self.rng.randbytes(3 * self.rng.randrange(1, 5)), self.donors)

    def text(self) -> bytes:
        """Short UTF-8 text, or bytes that are not UTF-8 (cut inside a character, or random)."""
        r = self.rng.random()
        t = self.pick(self.m.texts).encode("utf-8")[:self.rng.randrange(1, 48)]
        if r < 0.6:
            return t
        if r < 0.75:
            return "日本語🎉".encode()[:self.rng.randrange(1, 10)]
        if r < 0.995:
            return self.raw(24)
        return self.rng.randbytes(MAX_FIELD + 1)

    def model(self) -> str:
        r = self.rng.random()
        if r < 0.5:
            return ""
        if r < 0.7:
            return self.model_id
        return self.pick([self.model_id[:12], self.model_id + "x", self.model_id.upper(), "0" * 64, "ü" * 8,
                          self.rng.randbytes(32).hex(), "x" * 5000, "../../etc/passwd", "\x00"])

    def channel(self) -> str:
        r = self.rng.random()
        if r < 0.7:
            return self.pick(VALID_CHANNELS)
        if r < 0.9:
            return self.pick(BAD_CHANNELS)
        return self.rng.randbytes(self.rng.randrange(1, 12)).decode("latin-1")

    def producer(self) -> str:
        return self.pick(["", "p1", "p2", "fuzz-producer", "p 1", "x" * 65, "ü", "\x00", "p1/../p2"])

    def batch(self) -> tuple[int, list[bytes]]:
        """(tier number, batches): a valid sequence, one of its batches mutated, or random bytes."""
        tier_name, seq = self.pick(self.m.sequences)
        tier = {"exact": self.pick((0, frame_pb2.TIER_EXACT)), "semantic": frame_pb2.TIER_SEMANTIC}[tier_name]
        seq = list(seq)
        r = self.rng.random()
        if r < 0.5:
            i = self.rng.randrange(len(seq))
            seq[i] = self.mutated(seq[i])
        elif r < 0.6:
            seq = [self.raw(24) for _ in range(self.rng.randrange(1, 3))]
        elif r < 0.65:
            seq = [b""]
        elif r < 0.7:
            tier = self.pick(ENUMS)
        return tier, seq

    # -- requests -----------------------------------------------------------------------------

    def plan(self) -> Plan:
        method = self.pick(WEIGHTED)
        requests, hold, limit = getattr(self, f"_{method}")()
        retired = writes_retired_tier(method, requests[0])
        r = self.rng.random()
        if r < self.malformed / 2:      # a valid message's bytes mutated
            requests, retired = [self.mutated(q) for q in requests] or [self.raw()], False
        elif r < self.malformed:        # garbage for the serialized request
            requests, retired = [self.raw(self.pick((8, 64, 512))) for _ in range(max(1, len(requests)))], False
        t = self.rng.random()
        bad = ["garbage", "", "Bearer", self.tokens["admin"][:-1] + "x"]
        token = (self.tokens["admin"] if t < 0.85 else self.tokens["reader"] if t < 0.93
                 else None if t < 0.97 else self.pick(bad))
        return Plan(method, requests, self.pick(DEADLINES_S), hold, limit, token, retired)

    def _Compress(self):
        req = codec_pb2.CompressRequest(text_utf8=self.text(), tier=self.pick(ENUMS),
                                        stage_count=self.pick(U32), model_id=self.model())
        return [req.SerializeToString()], False, 1

    def _Decompress(self):
        r = self.rng.random()
        blob = self.pick(self.m.blobs)
        blob = (blob if r < 0.2 else self.mutated(blob) if r < 0.8 else blob[:self.rng.randrange(len(blob))]
                if r < 0.9 else self.raw())
        return [codec_pb2.DecompressRequest(blob=blob).SerializeToString()], False, 1

    def _stream_first(self, config: bytes, other: bytes) -> list[bytes]:
        """The first request of a client stream: its config, mostly; else the wrong kind or empty."""
        r = self.rng.random()
        return [config] if r < 0.85 else [other] if r < 0.95 else [b""]

    def _chunk(self) -> frame_pb2.TextChunk:
        r = self.rng.random()
        return frame_pb2.TextChunk(text_utf8=self.text(), flush=r < 0.3, end_message=0.3 <= r < 0.6)

    def _EncodeStream(self):
        config = codec_pb2.EncodeStreamRequest(config=codec_pb2.EncodeConfig(
            tier=self.pick(ENUMS), stage_count=self.pick(U32), max_delay_ms=self.pick(U32),
            model_id=self.model()))
        out = self._stream_first(config.SerializeToString(),
                                 codec_pb2.EncodeStreamRequest(chunk=self._chunk()).SerializeToString())
        for _ in range(self.rng.randrange(5)):
            r = self.rng.random()
            req = (codec_pb2.EncodeStreamRequest(chunk=self._chunk()) if r < 0.85 else config if r < 0.92
                   else codec_pb2.EncodeStreamRequest())
            out.append(req.SerializeToString())
        return out, self.rng.random() < 0.1, 1 << 30

    def _DecodeStream(self):
        tier, batches = self.batch()
        config = codec_pb2.DecodeStreamRequest(config=codec_pb2.DecodeConfig(model_id=self.model(),
                                                                             tier=tier))
        out = self._stream_first(config.SerializeToString(),
                                 codec_pb2.DecodeStreamRequest(frames=batches[0]).SerializeToString())
        out += [codec_pb2.DecodeStreamRequest(frames=b).SerializeToString() for b in batches]
        if self.rng.random() < 0.1:
            out.insert(self.rng.randrange(1, len(out) + 1), config.SerializeToString())
        return out, self.rng.random() < 0.1, 1 << 30

    def _GetModel(self):
        req = codec_pb2.GetModelRequest(model_id=self.model())
        return [req.SerializeToString()], False, self.rng.randrange(1, 3)

    def _ListModels(self):
        return [codec_pb2.ListModelsRequest().SerializeToString()], False, 1

    def _Publish(self):
        config = channel_pb2.PublishRequest(config=channel_pb2.PublishConfig(
            channel=self.channel(), tier=self.pick(ENUMS), producer_id=self.producer()))
        message = channel_pb2.PublishRequest(message=channel_pb2.PublishMessage(
            text_utf8=self.text(), sequence=self.pick(U64)))
        out = self._stream_first(config.SerializeToString(), message.SerializeToString())
        for _ in range(self.rng.randrange(4)):
            r = self.rng.random()
            req = (channel_pb2.PublishRequest(message=channel_pb2.PublishMessage(
                text_utf8=self.text(), sequence=self.pick(U64))) if r < 0.9 else config)
            out.append(req.SerializeToString())
        return out, self.rng.random() < 0.1, 1 << 30

    def _PublishStream(self):
        config = channel_pb2.PublishStreamRequest(config=channel_pb2.PublishStreamConfig(
            channel=self.channel(), tier=self.pick(ENUMS), max_delay_ms=self.pick(U32),
            producer_id=self.producer(), sequence=self.pick(U64)))
        out = self._stream_first(config.SerializeToString(),
                                 channel_pb2.PublishStreamRequest(chunk=self._chunk()).SerializeToString())
        for _ in range(self.rng.randrange(5)):
            r = self.rng.random()
            req = (channel_pb2.PublishStreamRequest(chunk=self._chunk()) if r < 0.9 else config if r < 0.95
                   else channel_pb2.PublishStreamRequest())
            out.append(req.SerializeToString())
        return out, self.rng.random() < 0.15, 1 << 30

    def _Subscribe(self):
        req = channel_pb2.SubscribeRequest(channel=self.channel(), from_offset=self.pick(U64),
                                           from_part=self.pick(U32))
        return [req.SerializeToString()], False, self.rng.randrange(1, 4)

    def _FetchMessage(self):
        req = channel_pb2.FetchMessageRequest(channel=self.channel(), offset=self.pick(U64))
        return [req.SerializeToString()], False, 1


# how often each method is called: cheap refusals are most of the load
WEIGHTED = (["Compress"] * 3 + ["Decompress"] * 4 + ["EncodeStream"] * 2 + ["DecodeStream"] * 3
            + ["GetModel"] + ["ListModels"] + ["Publish"] * 2 + ["PublishStream"] * 2 + ["Subscribe"] * 3
            + ["FetchMessage"] * 3)

