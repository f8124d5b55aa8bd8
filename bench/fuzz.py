"""Fuzzing rvqstream: its parsers in process (hypothesis generating mutations of valid inputs,
and random ones; not coverage-guided), then its gRPC surface on a real server (bench/fuzz_grpc.py).

Parser targets (docs/formats.md), each run as hypothesis runs with fixed seeds (generation only,
an input generated again is not run again):

- ``blob/<mode>-v<version>``: ``Codec.decompress`` on valid blobs of every mode (exact,
  semantic, zstd, raw) and format version (2, 3), mutated (bit flips, byte sets, inserts,
  deletes, cuts, splices); ``blob/random``: random bytes; ``blob/random-payload``: a valid
  header of any mode and version before random bytes;
- ``batch/<kind>``: ``codec.decoder(tier).push`` over a valid sequence of frame batches with
  one batch mutated (and sometimes a batch dropped, repeated or swapped): exact-tier model
  frames, fallback frames only, semantic tier; ``batch/random``: random bytes as the first batch;
- ``store``: the channel log API (``SQLiteLogStore``: append, append_part, abort, retain and
  every read) on a real SQLite file with adversarial values, against a reference model of the
  log: every result and every read-back must match it;
- ``tokenizer``: the byte-exact round trip of arbitrary Unicode (no ``<eos>`` id, ``split_final``
  pieces that reassemble and tokenize the same whatever text follows).

The outcome of each input: ok, an expected error (a ``CodecError`` subclass; for the store,
``PartConflict`` where the reference predicts one, or a value SQLite cannot hold), an untyped
error (a bare ``ValueError``/``EOFError``: counted apart and listed by message), or a crash
(anything else: input and traceback recorded). A hang is an input that takes more than
``HANG_S`` seconds. Model-heavy inputs are kept small (exact payloads of at most a few dozen
bytes) so that the fast paths (headers, fallback forms, batch structure) get millions of inputs.

Wrong results: mutants that decode without error to a text other than the original's, per form,
against what the form's check predicts (2^-bits of the mutants whose check was evaluated on a
differing text; ``CheckProbe`` sees the checks as the codec evaluates them). Forms without a
check (semantic, format-2 fallback blobs) and header mutations are reported apart.

Run: ``python bench/fuzz.py [--minutes 45] [--grpc-minutes 30] [--out bench/results/fuzz.json]``
(``make bench-fuzz``); ``--minutes 1.5 --grpc-minutes 0.5`` for a short run.
"""

from __future__ import annotations

import _thread
import argparse
import asyncio
import datetime
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import hypothesis
from fuzz_grpc import HANG_GRACE_S, Material, Server, grpc_fuzz
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st

from rvqstream.models import Codec, CodecError
from rvqstream.models import batch as batch_format
from rvqstream.models import blob as blob_format
from rvqstream.models import stream as stream_format
from rvqstream.models.blob import MAGIC, Mode
from rvqstream.models.tokenizer import EOS_ID
from rvqstream.server.logstore import MessageState, Part, PartConflict, Record, Retention, StreamKey
from rvqstream.server.sqlite_store import SQLiteLogStore

ROOT = Path(__file__).resolve().parents[1]
HANG_S = 2.0             # an input that takes longer is a hang
WATCHDOG_S = 60.0        # an input still running after this is interrupted (and counted as a hang)
SLICE_S = 4.0            # a timed run gives each target turns of about this long
EXAMPLES_PER_ROUND = 20_000
MODEL_PAYLOAD_BYTES = 24  # random payloads of the model-coded modes are cut to this
RANDOM_BYTES = 64
KEEP = 3                 # examples kept per crash, untyped message or wrong-result row

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "hello world",
    "Streams carry frames of up to sixteen tokens each.",
    "def f(x):\n    return x + 1\n",
    "Naïve café, résumé: 日本語のテキスト 🎉",
    "a<eos>b",
    "x" * 40,
    "   leading and trailing spaces   ",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10",
    "",
    "\x00\t\n",
    "word " * 12,
    "The channel keeps every message in order, and subscribers replay it from any offset they saw.",
]
# (pieces pushed, and what follows each: a flush or the message end) of the batch sequences
STREAMS = [
    [("The quick brown fox ", "flush"), ("jumps over the lazy dog.", "end")],
    [("hello", "end"), ("world, again", "end")],
    [("Streams carry frames", "flush"), (" of up to sixteen tokens", "flush"), (" each.", "end")],
    [("Naïve café ", "flush"), ("日本語 🎉", "end")],
    [("a message that ends with nothing pending", "flush"), ("", "end")],
]
MAX_MODEL_PAYLOAD = 48   # exact seeds with larger payloads are left out (a mutant's cost grows with it)


def normalized(message: str) -> str:
    """An error message with its numbers blanked, so messages group by kind."""
    return re.sub(r"0x[0-9a-fA-F]+|\d+", "#", message)[:200]


def storable(*values) -> bool:
    """Whether SQLite can bind every value: ints in 64 bits, strings without lone surrogates."""
    for v in values:
        if isinstance(v, int) and not -(1 << 63) <= v < (1 << 63):
            return False
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return False
    return True


# -- mutation ---------------------------------------------------------------------------------


def _flip(out: bytearray, a: int, b: int, donors) -> None:
    if out:
        out[a % len(out)] ^= 1 << (b & 7)


def _set(out: bytearray, a: int, b: int, donors) -> None:
    if out:
        out[a % len(out)] = b


def _add(out: bytearray, a: int, b: int, donors) -> None:
    if out:
        i = a % len(out)
        out[i] = (out[i] + (b % 33) - 16) & 0xFF


def _insert(out: bytearray, a: int, b: int, donors) -> None:
    out.insert(a % (len(out) + 1), b)


def _delete(out: bytearray, a: int, b: int, donors) -> None:
    if out:
        del out[a % len(out):a % len(out) + 1 + (b & 3)]


def _cut(out: bytearray, a: int, b: int, donors) -> None:
    del out[a % (len(out) + 1):]


def _repeat(out: bytearray, a: int, b: int, donors) -> None:
    if out:
        i = a % len(out)
        out[i:i] = out[i:i + 1 + (b & 7)]


def _zeros(out: bytearray, a: int, b: int, donors) -> None:
    if out:
        i = a % len(out)
        out[i:i + 1 + (b & 7)] = bytes(len(out[i:i + 1 + (b & 7)]))


def _splice(out: bytearray, a: int, b: int, donors) -> None:
    donor = donors[b % len(donors)]
    i = a % (len(out) + 1)
    out[i:] = donor[i % (len(donor) + 1):]


_OPS = (_flip, _set, _add, _insert, _delete, _cut, _repeat, _zeros, _splice)


def splices(program: bytes) -> bool:
    """Whether ``program`` splices in another input (its mutants can be other valid inputs)."""
    return any(program[i] % len(_OPS) == _OPS.index(_splice) for i in range(0, len(program) - 2, 3))


def mutate(data: bytes, program: bytes, donors: list[bytes]) -> bytes:
    """``data`` changed by ``program``: each 3 bytes are an operation, a position and a value."""
    out = bytearray(data)
    for i in range(0, len(program) - 2, 3):
        _OPS[program[i] % len(_OPS)](out, program[i + 1], program[i + 2], donors)
    return bytes(out)


PROGRAM = st.binary(min_size=3, max_size=12)


# -- outcomes ---------------------------------------------------------------------------------


class Watchdog:
    """Interrupts the main thread (``KeyboardInterrupt``) when one input runs past ``seconds``:
    a hang is recorded instead of the run stalling."""

    def __init__(self, seconds: float = WATCHDOG_S):
        self.seconds, self.started, self.fired = seconds, None, False
        threading.Thread(target=self._watch, name="fuzz-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(0.5)
            started = self.started
            if started is not None and not self.fired and time.monotonic() - started > self.seconds:
                self.fired = True
                _thread.interrupt_main()


_WATCHDOG: Watchdog | None = None


def watchdog() -> Watchdog:
    global _WATCHDOG
    if _WATCHDOG is None:
        _WATCHDOG = Watchdog()
    return _WATCHDOG


def codec_outcome(error: BaseException) -> str:
    """``expected`` for the codec's own errors, ``untyped`` for bare ValueError/EOFError, else ``crash``."""
    if isinstance(error, CodecError):
        return "expected"
    if isinstance(error, (ValueError, EOFError)):
        return "untyped"
    return "crash"


@dataclass
class Tally:
    """Everything one target saw."""

    inputs: int = 0
    seconds: float = 0.0          # in the inputs themselves
    wall_seconds: float = 0.0     # with input generation
    ok: int = 0
    expected: Counter = field(default_factory=Counter)
    untyped: dict = field(default_factory=dict)     # normalized "Type: message" -> count, examples
    crashes: dict = field(default_factory=dict)     # signature -> count, examples, traceback
    violations: dict = field(default_factory=dict)  # contract broken -> count, examples
    hangs: list = field(default_factory=list)
    slowest_s: float = 0.0
    duplicates: int = 0           # inputs generated again, not run again
    seen: set = field(default_factory=set)

    def fresh(self, key: bytes) -> bool:
        """Whether an input (its bytes) is new; a repeat is counted and should not run."""
        digest = hashlib.blake2b(key, digest_size=8).digest()
        if digest in self.seen:
            self.duplicates += 1
            return False
        self.seen.add(digest)
        return True

    def run(self, fn: Callable[[], object], describe: Callable[[], object]) -> tuple[str, object]:
        """Runs ``fn()`` as one codec input -> (outcome, its value or error)."""
        dog = watchdog()
        t0 = time.perf_counter()
        dog.started, dog.fired = time.monotonic(), False
        try:
            value, outcome = fn(), "ok"
        except KeyboardInterrupt:
            if not dog.fired:
                raise
            value, outcome = None, "hang"
        except Exception as e:  # noqa: BLE001 - every error is classified, none stops the run
            value, outcome = e, codec_outcome(e)
        finally:
            dog.started = None
        self.count(outcome, value, time.perf_counter() - t0, describe)
        return outcome, value

    def count(self, outcome: str, value, seconds: float, describe: Callable[[], object]) -> None:
        self.inputs += 1
        self.seconds += seconds
        self.slowest_s = max(self.slowest_s, seconds)
        if outcome == "hang" or seconds > HANG_S:
            self.hangs.append({"input": describe(), "seconds": round(seconds, 3), "outcome": outcome})
        if outcome == "ok":
            self.ok += 1
        elif outcome == "expected":
            self.expected[type(value).__name__] += 1
        elif outcome == "untyped":
            self.note(self.untyped, f"{type(value).__name__}: {normalized(str(value))}", describe)
        elif outcome == "crash":
            self.crash(value, describe)

    def crash(self, error: BaseException, describe: Callable[[], object]) -> None:
        frames = traceback.extract_tb(error.__traceback__)
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
        entry = self.note(self.crashes, f"{type(error).__name__} at {where}", describe)
        entry.setdefault("error", f"{type(error).__name__}: {error}"[:500])
        entry.setdefault("traceback", "".join(traceback.format_exception(error))[-4000:])

    @staticmethod
    def note(table: dict, key: str, describe: Callable[[], object]) -> dict:
        entry = table.setdefault(key, {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < KEEP:
            entry["examples"].append(describe())
        return entry

    def summary(self) -> dict:
        return {"inputs": self.inputs, "duplicates_skipped": self.duplicates,
                "inputs_per_s": round(self.inputs / self.wall_seconds, 1) if self.wall_seconds else None,
                "parser_inputs_per_s": round(self.inputs / self.seconds, 1) if self.seconds else None,
                "seconds": round(self.wall_seconds, 1), "slowest_input_s": round(self.slowest_s, 3),
                "ok": self.ok, "expected": dict(self.expected.most_common()),
                "untyped": sum(e["count"] for e in self.untyped.values()),
                "crashes": sum(e["count"] for e in self.crashes.values()), "hangs": len(self.hangs),
                "contract_violations": sum(e["count"] for e in self.violations.values()),
                "untyped_by_message": self.untyped, "crash_list": self.crashes, "hang_list": self.hangs[:20],
                "violation_list": self.violations}


def wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """95% Wilson score interval of the rate k/n."""
    if n == 0:
        return None
    p, d = k / n, 1 + z * z / n
    centre, half = (p + z * z / (2 * n)) / d, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [max(0.0, centre - half), min(1.0, centre + half)]


@dataclass
class WrongRow:
    """Mutants of one form and what their decoding made of them. With a check: ``checked_differing``
    counts the check's evaluations on a text (or message end) other than the original's, and the
    rate of wrong results among them is what the check's size predicts (2^-bits; invalid UTF-8,
    rejected after the check, can only lower it). Without one, the rate is over what decoded."""

    check_bits: int | None
    check_passed_differing: int | None = None   # batches: passes among ``checked_differing``
    mutants: int = 0          # blobs: mutants read as this form; batches: checks evaluated (or pushes)
    decoded: int = 0
    wrong: int = 0
    checked_differing: int = 0
    examples: list = field(default_factory=list)

    def add_wrong(self, example: dict) -> None:
        self.wrong += 1
        if len(self.examples) < KEEP:
            self.examples.append(example)

    def summary(self) -> dict:
        n = self.checked_differing if self.check_bits else self.decoded
        ci = wilson(self.wrong, n)
        predicted = 2.0 ** -self.check_bits if self.check_bits else None
        return {"check_bits": self.check_bits, "mutants": self.mutants, "decoded": self.decoded,
                "checked_differing": self.checked_differing if self.check_bits else None,
                "check_passed_differing": self.check_passed_differing,
                "wrong": self.wrong, "rate": self.wrong / n if n else None, "ci95": ci,
                "predicted": predicted,
                "prediction_in_ci": ci[0] <= predicted <= ci[1] if ci and predicted else None,
                "examples": self.examples}


class CheckProbe:
    """Sees the integrity checks as the codec evaluates them, for the wrong-result rates: the data a
    blob's check covers (``blob.text_check``) and a batch's check against the message's running CRC
    (``stream.check_matches``). A context manager around a run; ``clear()`` before each input."""

    def __init__(self):
        self.blob_data: list[bytes] = []
        self.batch: list[tuple[int, bool, bool]] = []    # (running CRC, message end, passed)

    def __enter__(self) -> Self:
        self._saved = blob_format.text_check, stream_format.check_matches
        text_check, check_matches = self._saved

        def probe_text_check(data: bytes, bits: int) -> int:
            self.blob_data.append(bytes(data))
            return text_check(data, bits)

        def probe_check_matches(value: int, crc: int, message_end: bool) -> bool:
            passed = check_matches(value, crc, message_end)
            self.batch.append((crc, message_end, passed))
            return passed

        blob_format.text_check, stream_format.check_matches = probe_text_check, probe_check_matches
        return self

    def __exit__(self, *exc) -> None:
        blob_format.text_check, stream_format.check_matches = self._saved

    def clear(self) -> None:
        self.blob_data.clear()
        self.batch.clear()


# -- seeds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobSeed:
    blob: bytes
    text: str          # what it decodes to


@dataclass(frozen=True)
class Sequence:
    """Frame batches of one stream, as an encoder wrote them, and what each decodes to."""

    tier: str
    batches: tuple[bytes, ...]
    decoded: tuple[tuple[str, bool], ...]    # (text, message end) per batch
    crcs: tuple[int, ...]                    # the message's running CRC after each batch


BLOB_FORMS = tuple(f"{mode}-v{version}" for mode in ("exact", "semantic", "zstd", "raw")
                   for version in (3, 2))
CHECK_BITS = {"exact-v3": blob_format.CHECK_BITS, "exact-v2": blob_format.CHECK_BITS,
              "zstd-v3": blob_format.FALLBACK_CHECK_BITS, "raw-v3": blob_format.FALLBACK_CHECK_BITS}


def blob_seeds(codec: Codec) -> dict[str, list[BlobSeed]]:
    """Valid blobs of every form: each text compressed (exact, exact with stages, semantic with 1
    and 8 stages) and in fallback form; version 2 by rewriting the header (and dropping the
    fallback check, which version 2 did not have; such blobs decode only as legacy data, so the
    fuzzer's calls, which do not ask for that, must refuse them)."""
    forms: dict[str, dict[bytes, BlobSeed]] = {f: {} for f in BLOB_FORMS}

    def add(blob: bytes) -> None:
        mode = Mode(blob[0] & 0x03)
        if mode in (Mode.EXACT, Mode.SEMANTIC) and len(blob) - 2 > MAX_MODEL_PAYLOAD:
            return
        text = codec.decompress(blob)
        v2 = bytes([(blob[0] & ~0x1C) | (2 << 2)]) + blob[1:]
        if mode in (Mode.ZSTD, Mode.RAW):
            v2 = v2[:-2]
        if codec.decompress(v2, legacy=True) != text:
            raise AssertionError(f"a version-2 {mode.name} blob does not decode as its version-3 one")
        forms[f"{mode.name.lower()}-v3"][blob] = BlobSeed(blob, text)
        forms[f"{mode.name.lower()}-v2"][v2] = BlobSeed(v2, text)

    for text in TEXTS:
        for blob in (codec.compress(text), codec.compress(text, stages=2), codec.fallback(text),
                     codec.compress(text, "semantic", stages=1), codec.compress(text, "semantic", stages=8)):
            add(blob)
    return {f: list(seeds.values()) for f, seeds in forms.items()}


def _sequence(codec: Codec, tier: str, pieces: list[tuple[str, str]], stages: int | None = None,
              fallback_only: bool = False, resume: bool = False) -> Sequence:
    """The batches of ``pieces`` pushed to one encoder (``resume``: a new encoder continues the
    message after each flush, as a producer that reconnects does: its batch starts with RESET)."""
    def encoder():
        enc = codec.encoder(tier, stages)
        enc.fallback_only = fallback_only
        return enc

    enc, batches = encoder(), []
    for text, then in pieces:
        enc.push(text)
        batch = enc.end_message() if then == "end" else enc.flush()
        if batch is None:
            continue
        batches.append(batch)
        if resume and then == "flush":
            enc = encoder()
            enc.resume_message(batch.crc)
    dec = codec.decoder(tier)
    decoded = [dec.push(b.data) for b in batches]
    return Sequence(tier, tuple(b.data for b in batches), tuple((d.text, d.message_end) for d in decoded),
                    tuple(b.crc for b in batches))


def batch_sequences(codec: Codec) -> dict[str, list[Sequence]]:
    return {
        "exact": [_sequence(codec, "exact", p) for p in STREAMS]
        + [_sequence(codec, "exact", p, stages=2) for p in STREAMS[:2]]
        + [_sequence(codec, "exact", p, resume=True) for p in STREAMS[2:4]],
        "exact-fallback": [_sequence(codec, "exact", p, fallback_only=True) for p in STREAMS]
        + [_sequence(codec, "exact", STREAMS[2], fallback_only=True, resume=True)],
        "semantic": [_sequence(codec, "semantic", p, stages=s) for p in STREAMS[:3] for s in (1, 8)],
    }


# -- the channel log --------------------------------------------------------------------------


@dataclass
class RefEntry:
    model_id: str
    blob: bytes = b""
    producer: str | None = None
    sequence: int | None = None
    streamed: bool = False
    state: MessageState = MessageState.COMPLETE
    tier: int = 0
    parts: list = field(default_factory=list)
    text_bytes: int = 0
    crc: int = 0

    @property
    def stored(self) -> int:
        return sum(map(len, self.parts)) if self.streamed else len(self.blob)


@dataclass
class RefChannel:
    next: int = 0
    first: int = 0
    entries: dict = field(default_factory=dict)      # offset -> RefEntry, retained ones only

    def by_key(self, producer: str, sequence: int) -> tuple[int, RefEntry] | None:
        return next(((o, e) for o, e in self.entries.items()
                     if e.producer == producer and e.sequence == sequence), None)


class RefLog:
    """What the channel log must answer after the writes it acknowledged: logstore.py's contract
    with sqlite_store.py's choices (which values reach SQLite and in what order, so which writes
    fail on a value it cannot hold; published records without a producer are never duplicates).
    Each write -> ("ok", result), ("conflict", None) or ("unstorable", None); applied only if ok."""

    def __init__(self):
        self.channels: dict[str, RefChannel] = {}

    def append(self, channel: str, records: list[Record]):
        if not storable(channel):
            return "unstorable", None
        ch = self.channels.get(channel, RefChannel())
        new: dict[int, RefEntry] = {}
        out = []
        for rec in records:
            if rec.producer_id:
                if not storable(rec.producer_id, rec.sequence):
                    return "unstorable", None
                hit = next(((o, e) for o, e in [*ch.entries.items(), *new.items()]
                            if e.producer == rec.producer_id and e.sequence == rec.sequence), None)
                if hit is not None:
                    out.append((hit[0], True))
                    continue
            if not storable(rec.model_id):
                return "unstorable", None
            offset = ch.next + len(new)
            new[offset] = RefEntry(rec.model_id, rec.blob, rec.producer_id or None,
                                   rec.sequence if rec.producer_id else None)
            out.append((offset, False))
        self.channels[channel] = ch
        ch.entries.update(new)
        ch.next += len(new)
        return "ok", out

    def append_part(self, channel: str, key: StreamKey, part: Part):
        if not storable(channel, key.producer_id, key.sequence):
            return "unstorable", None
        ch = self.channels.get(channel, RefChannel())
        hit = ch.by_key(key.producer_id, key.sequence)
        if hit is None:
            if not storable(key.model_id, key.tier):
                return "unstorable", None
            offset, entry = ch.next, RefEntry(key.model_id, producer=key.producer_id, sequence=key.sequence,
                                              streamed=True, state=MessageState.STREAMING, tier=key.tier)
        else:
            offset, entry = hit
        if entry.state != MessageState.STREAMING or part.index != len(entry.parts):
            return "conflict", None
        if not storable(part.text_bytes, part.crc):
            return "unstorable", None
        if hit is None:
            self.channels[channel] = ch
            ch.entries[offset] = entry
            ch.next += 1
        entry.parts.append(part.batch)
        entry.text_bytes += part.text_bytes
        entry.crc = part.crc
        if part.end:
            entry.state = MessageState.COMPLETE
        return "ok", self.info(offset, entry)

    @staticmethod
    def info(offset: int, e: RefEntry) -> tuple:
        return (offset, e.state, len(e.parts), e.text_bytes, e.crc, e.model_id, e.tier, e.stored)

    def abort(self, channel: str, offset: int):
        if not storable(channel, offset):
            return "unstorable", None
        e = self.channels.get(channel, RefChannel()).entries.get(offset)
        if e is None or e.state != MessageState.STREAMING:
            return "ok", False
        e.state = MessageState.ABORTED
        return "ok", True

    def retain(self, max_bytes: int):
        """sqlite_retention.py's byte rule: keep the newest messages that fit in ``max_bytes``
        (none when the newest alone does not), never a streaming one or anything after it."""
        removed = 0
        for ch in self.channels.values():
            keep, newer = ch.next, 0
            for offset in sorted(ch.entries, reverse=True):
                newer += ch.entries[offset].stored
                if newer > max_bytes:
                    break
                keep = offset
            streaming = [o for o, e in ch.entries.items() if e.state == MessageState.STREAMING]
            keep = min([keep, *streaming])
            if keep > ch.first:
                gone = [o for o in ch.entries if o < keep]
                removed += len(gone)
                for o in gone:
                    del ch.entries[o]
                ch.first = keep
        return "ok", removed


INT_EDGES = [2**31 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), -(2**63) - 1]
ANY_INT = st.one_of(st.integers(-2, 8), st.sampled_from(INT_EDGES), st.integers())
SMALL_INT = st.one_of(st.integers(-1, 6), st.sampled_from(INT_EDGES))
SIZE = st.one_of(st.integers(0, 1 << 32), st.sampled_from([2**63, 2**64, -(2**63) - 1]))
NAMES = st.sampled_from(["a", "fuzz/ch", "b.c-d_e", "\x00", "ünï", "", "A" * 300])
# mostly names the log can hold, one in eight with a lone surrogate (which SQLite cannot bind)
NAME = st.one_of(*[NAMES] * 6, st.text(max_size=4),
                 st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2))
PRODUCER = st.one_of(st.sampled_from(["", "p", "q"]), NAME)
MODEL = st.one_of(st.sampled_from(["49ca0b58", "m"]), NAME)
BLOB = st.binary(max_size=48)
STORE_WRITE = st.one_of(
    st.tuples(st.just("append"), NAME,
              st.lists(st.tuples(BLOB, MODEL, PRODUCER, SMALL_INT), min_size=1, max_size=3)),
    st.tuples(st.just("part"), NAME, PRODUCER, SMALL_INT, MODEL, ANY_INT, SMALL_INT, BLOB, SIZE, SIZE,
              st.booleans()),
    st.tuples(st.just("abort"), NAME, SMALL_INT),
    st.tuples(st.just("retain"), st.integers(1, 200)),
)
STORE_READ = st.one_of(
    st.tuples(st.just("read"), NAME, SMALL_INT, ANY_INT, ANY_INT),
    st.tuples(st.just("read_parts"), NAME, SMALL_INT, SMALL_INT, ANY_INT),
    st.tuples(st.just("find"), NAME, PRODUCER, SMALL_INT),
    st.tuples(st.just("state"), NAME, SMALL_INT),
    st.tuples(st.just("end"), NAME),
    st.tuples(st.just("first"), NAME),
    st.tuples(st.just("open"),),
)
STORE_EXAMPLE = st.tuples(st.lists(STORE_WRITE, min_size=1, max_size=6), st.lists(STORE_READ, max_size=4))
UNSTORABLE = (OverflowError, UnicodeEncodeError)
STORE_ROTATE = 200      # examples per log file


class StoreFuzz:
    """The channel log API on a real SQLite file (a new one every ``STORE_ROTATE`` examples, or
    after a mismatch), against ``RefLog``: every write's result, every read, and after each example
    a full read-back of the channels it touched must match. An error is expected where the
    reference predicts it (``PartConflict``; ``OverflowError``/``UnicodeEncodeError`` for a value
    SQLite cannot hold; ``KeyError`` for state or parts of a message that does not exist)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.loop = asyncio.new_event_loop()
        self.store: SQLiteLogStore | None = None
        self.files = 0

    def _fresh(self) -> None:
        if self.store is not None:
            self.loop.run_until_complete(self.store.close())
            for f in self.directory.glob(f"log-{self.files}.sqlite3*"):
                f.unlink()
        self.files += 1
        self.store = SQLiteLogStore(self.directory / f"log-{self.files}.sqlite3")
        self.ref, self.examples = RefLog(), 0

    def close(self) -> None:
        if self.store is not None:
            self.loop.run_until_complete(self.store.close())
        self.loop.close()

    def run(self, tally: Tally, example) -> None:
        if self.store is None or self.examples >= STORE_ROTATE:
            self._fresh()
        self.examples += 1
        writes, reads = example
        t0 = time.perf_counter()
        try:
            mismatches = self.loop.run_until_complete(
                asyncio.wait_for(self._example(tally, writes, reads), WATCHDOG_S))
        except TimeoutError:
            mismatches = [f"no answer in {WATCHDOG_S:g} s"]
        except Exception as e:  # noqa: BLE001 - a failure of the harness's own reads is a finding too
            mismatches = [f"{type(e).__name__}: {e}"]
            tally.crash(e, lambda: repr(example)[:2000])
        seconds = (time.perf_counter() - t0) / (len(writes) + len(reads))
        for _ in range(len(writes) + len(reads)):
            tally.inputs += 1
            tally.seconds += seconds
        if seconds * (len(writes) + len(reads)) > HANG_S:
            tally.hangs.append({"input": repr(example)[:2000], "seconds": round(seconds, 3),
                                "outcome": "slow"})
        for m in mismatches:
            tally.note(tally.violations, normalized(m),
                       lambda m=m: {"example": repr(example)[:2000], "mismatch": m[:500]})
        if mismatches:
            self.examples = STORE_ROTATE    # start over on a new file: the reference lost track

    async def _example(self, tally: Tally, writes, reads) -> list[str]:
        store, ref = self.store, self.ref
        calls = [self._write_call(store, w) for w in writes]
        results = await asyncio.gather(*calls, return_exceptions=True)
        mismatches, touched = [], set()
        for w, got in zip(writes, results):
            if w[0] != "retain":
                touched.add(w[1])
            want, value = self._predict(ref, w)
            mismatches += self._judge(tally, w, want, value, got)
        for r in reads:
            mismatches += await self._read(tally, r)
        for channel in sorted(touched):
            if storable(channel):
                mismatches += await self._read_back(channel)
        return mismatches

    @staticmethod
    def _write_call(store: SQLiteLogStore, w):
        if w[0] == "append":
            return store.append(w[1], [Record(b, m, p, s) for b, m, p, s in w[2]])
        if w[0] == "part":
            _, channel, producer, seq, model, tier, index, batch, text_bytes, crc, end = w
            return store.append_part(channel, StreamKey(producer, seq, model, tier),
                                     Part(index, batch, text_bytes, crc, end))
        if w[0] == "abort":
            return store.abort(w[1], w[2])
        return store.retain(Retention(max_bytes=w[1]))

    @staticmethod
    def _predict(ref: RefLog, w):
        if w[0] == "append":
            return ref.append(w[1], [Record(b, m, p, s) for b, m, p, s in w[2]])
        if w[0] == "part":
            _, channel, producer, seq, model, tier, index, batch, text_bytes, crc, end = w
            return ref.append_part(channel, StreamKey(producer, seq, model, tier),
                                   Part(index, batch, text_bytes, crc, end))
        if w[0] == "abort":
            return ref.abort(w[1], w[2])
        return ref.retain(w[1])

    @staticmethod
    def _judge(tally: Tally, w, want: str, value, got) -> list[str]:
        """Counts one write against the reference -> mismatches."""
        if isinstance(got, BaseException):
            kind = {"conflict": PartConflict, "unstorable": UNSTORABLE}.get(want)
            if kind is not None and isinstance(got, kind):
                tally.expected[type(got).__name__] += 1
                return []
            tally.crash(got, lambda: repr(w)[:2000])
            return [f"{w[0]}: the reference expected {want}, the log raised {type(got).__name__}: {got}"]
        if want != "ok":
            return [f"{w[0]}: the reference expected {want}, the log acknowledged it"]
        if w[0] == "append":
            got = [(a.offset, a.duplicate) for a in got]
        elif w[0] == "part":
            got = (got.offset, got.state, got.parts, got.text_bytes, got.crc, got.model_id, got.tier,
                   got.stored_bytes)
        if got != value:
            return [f"{w[0]}: the log answered {got!r}, the reference {value!r}"]
        tally.ok += 1
        return []

    async def _read(self, tally: Tally, r) -> list[str]:
        """One read with adversarial arguments, judged against the reference."""
        if r[0] == "read_parts":
            return await self._read_parts(tally, r)
        store, ref = self.store, self.ref
        ch = ref.channels.get(r[1], RefChannel()) if len(r) > 1 else None
        if r[0] == "read":
            bound, call = r[1:4], lambda: store.read(*r[1:])
            want = self._entries(ch, r[2], r[3], r[4])
        elif r[0] == "find":
            bound, call = r[1:4], lambda: store.find_stream(*r[1:])
            hit = ch.by_key(r[2], r[3])
            want = RefLog.info(*hit) if hit and hit[1].streamed else None
        elif r[0] == "state":
            bound, call = r[1:3], lambda: store.stream_state(*r[1:])
            e = ch.entries.get(r[2])
            want = KeyError if e is None else (e.state, len(e.parts))
        elif r[0] == "end":
            bound, call = r[1:2], lambda: store.end_offset(r[1])
            want = ch.next if r[1] in ref.channels else None
        elif r[0] == "first":
            bound, call = r[1:2], lambda: store.first_offset(r[1])
            want = ch.first
        else:
            bound, call = (), store.open_streams
            want = sorted((name, o) for name, c in ref.channels.items() for o, e in c.entries.items()
                          if e.state == MessageState.STREAMING)
        try:
            got = await call()
        except Exception as e:  # noqa: BLE001 - judged here
            if isinstance(e, UNSTORABLE) and not storable(*bound):
                tally.expected[type(e).__name__] += 1
                return []
            if isinstance(e, KeyError) and want is KeyError:
                tally.expected["KeyError"] += 1
                return []
            tally.crash(e, lambda: repr(r)[:2000])
            return [f"{r[0]}{r[1:]!r}: raised {type(e).__name__}: {e}"]
        if r[0] == "read":
            got = [(e.offset, e.model_id, e.blob, e.state, e.streamed, e.tier, e.parts) for e in got]
            if got == [] and not storable(*bound):
                want = []        # the log's own end offset answered before SQLite saw the value
        elif r[0] == "find" and got is not None:
            got = (got.offset, got.state, got.parts, got.text_bytes, got.crc, got.model_id, got.tier,
                   got.stored_bytes)
        elif r[0] == "open":
            got = sorted(got)
        if got != want:
            return [f"{r[0]}{r[1:]!r}: the log answered {got!r}, the reference {want!r}"]
        tally.ok += 1
        return []

    @staticmethod
    def _entries(ch: RefChannel, from_offset: int, limit: int, limit_bytes: int) -> list:
        rows = [(o, e) for o, e in sorted(ch.entries.items()) if o >= from_offset]
        if limit >= 0:
            rows = rows[:limit]
        out, size = [], 0
        for o, e in rows:
            if out and size + len(e.blob) > limit_bytes:
                break
            out.append((o, e.model_id, e.blob, e.state, e.streamed, e.tier, len(e.parts)))
            size += len(e.blob)
        return out

    async def _read_parts(self, tally: Tally, r) -> list[str]:
        _, channel, offset, from_part, limit_bytes = r
        ch = self.ref.channels.get(channel, RefChannel())
        e = ch.entries.get(offset)
        removed = 0 <= offset < ch.first
        try:
            parts, state = await self.store.read_parts(channel, offset, from_part, limit_bytes)
        except Exception as err:  # noqa: BLE001 - judged here
            if isinstance(err, UNSTORABLE) and not storable(channel, offset, from_part):
                tally.expected[type(err).__name__] += 1
                return []
            if isinstance(err, KeyError) and e is None:
                tally.expected["KeyError"] += 1
                return []
            tally.crash(err, lambda: repr(r)[:2000])
            return [f"read_parts{r[1:]!r}: raised {type(err).__name__}: {err}"]
        if e is None:
            if removed:     # the engine's cache of recent parts may still answer for it
                tally.ok += 1
                return []
            return [f"read_parts{r[1:]!r}: answered for a message the reference does not hold"]
        want, size = [], 0
        for batch in e.parts[max(from_part, 0):]:
            if want and size + len(batch) > limit_bytes:
                break
            want.append(batch)
            size += len(batch)
        more = len(want) < len(e.parts[max(from_part, 0):])
        states = {MessageState.STREAMING} if more else {e.state}
        if e.state == MessageState.ABORTED:
            states.add(MessageState.STREAMING)   # the cache of recent parts shows an abort on the next read
        if parts != want or state not in states:
            return [(f"read_parts{r[1:]!r}: the log answered {len(parts)} parts, {state.name}; the reference "
                     f"{len(want)}, {'/'.join(s.name for s in states)}")]
        tally.ok += 1
        return []

    async def _read_back(self, channel: str) -> list[str]:
        """The whole channel, read back, against the reference."""
        store, ch = self.store, self.ref.channels.get(channel)
        out = []
        end = await store.end_offset(channel)
        if end != (None if ch is None else ch.next):
            out.append(f"end offset {end}, the reference {None if ch is None else ch.next}")
        if ch is None:
            return out
        if (first := await store.first_offset(channel)) != ch.first:
            out.append(f"first offset {first}, the reference {ch.first}")
        got = [(e.offset, e.model_id, e.blob, e.state, e.streamed, e.tier, e.parts)
               for e in await store.read(channel, 0, -1, 1 << 62)]
        if got != self._entries(ch, 0, -1, 1 << 62):
            out.append(f"read-back of the channel: {len(got)} entries differ from the reference's "
                       f"{len(ch.entries)}")
        for offset, e in ch.entries.items():
            if e.streamed:
                parts, _ = await store.read_parts(channel, offset, 0, 1 << 62)
                state = await store.stream_state(channel, offset)
                if parts != e.parts or state != (e.state, len(e.parts)):
                    out.append(f"streamed message {offset}: {len(parts)} parts, {state}; the reference "
                               f"{len(e.parts)} parts, {e.state.name}")
        return out


# -- the parser targets -------------------------------------------------------------------------

TRICKY = ["<eos>", "<", "eos>", " ", "  ", "\n", "\r\n", "\t", "\x00", "\u200d", "e\u0301", "🎉",
          "👩‍👩‍👧", "\ufeff",
          "\U0010ffff", "\ud7ff", "日本", "'s", "'ll", "123", "...", "ÿ", "\x7f", "\u2028"]
TEXT = st.one_of(st.text(max_size=48),
                 st.lists(st.one_of(st.sampled_from(TRICKY), st.text(max_size=3)), max_size=10).map("".join))


@dataclass
class Target:
    """One parser target: a hypothesis strategy of inputs and the body that runs and tallies one."""

    name: str
    weight: float          # share of a timed run
    model: bool            # model-heavy: a counted run gives it fewer inputs
    strategy: st.SearchStrategy
    body: Callable[[object], None]
    tally: Tally = field(default_factory=Tally)
    examples: int = 0      # hypothesis examples run (a store example is several inputs)


class ParserFuzz:
    """The parser targets over one codec, their tallies and the wrong-result rows."""

    def __init__(self, codec: Codec, store_dir: Path):
        self.codec, self.tokenizer = codec, codec.parts.tokenizer
        self.probe = CheckProbe()
        self.rows: dict[str, WrongRow] = {}
        self.blobs = blob_seeds(codec)
        self.sequences = batch_sequences(codec)
        self.donors = [s.blob for seeds in self.blobs.values() for s in seeds]
        self.batch_donors = [b for seqs in self.sequences.values() for s in seqs for b in s.batches]
        self.store = StoreFuzz(store_dir)
        headers = [bytes([MAGIC | (v << 2) | m, codec.tag]) for v in (2, 3) for m in Mode]
        weights = {"exact-v3": 0.10, "exact-v2": 0.03, "semantic-v3": 0.04, "semantic-v2": 0.02,
                   "zstd-v3": 0.08, "zstd-v2": 0.03, "raw-v3": 0.08, "raw-v2": 0.03}
        self.targets = [
            *(Target(f"blob/{form}", weights[form], form.startswith(("exact", "semantic")),
                     st.tuples(st.integers(0, len(self.blobs[form]) - 1), PROGRAM),
                     lambda x, form=form: self._blob_mutant(form, x)) for form in BLOB_FORMS),
            Target("blob/random", 0.03, False, st.binary(max_size=RANDOM_BYTES), self._blob_random),
            Target("blob/random-payload", 0.05, True,
                   st.tuples(st.sampled_from(headers), st.binary(max_size=RANDOM_BYTES)),
                   self._blob_random_payload),
            *(Target(f"batch/{kind}", weight, True,
                     st.tuples(st.integers(0, len(self.sequences[kind]) - 1), st.integers(0, 7), PROGRAM,
                               st.integers(0, 15)),
                     lambda x, kind=kind: self._batch_mutant(kind, x))
              for kind, weight in (("exact", 0.12), ("exact-fallback", 0.07), ("semantic", 0.04))),
            Target("batch/random", 0.03, True, st.tuples(st.sampled_from(["exact", "semantic"]),
                                                         st.binary(max_size=MODEL_PAYLOAD_BYTES)),
                   self._batch_random),
            Target("store", 0.13, False, STORE_EXAMPLE, lambda x: self.store.run(self._tally("store"), x)),
            Target("tokenizer", 0.07, False, st.tuples(TEXT, TEXT), self._tokenizer),
        ]
        self._by_name = {t.name: t for t in self.targets}

    def _tally(self, name: str) -> Tally:
        return self._by_name[name].tally

    def row(self, name: str, bits: int | None, passes: bool = False) -> WrongRow:
        return self.rows.setdefault(name, WrongRow(bits, 0 if passes else None))

    # -- blobs ------------------------------------------------------------------------------

    def _decompress(self, name: str, data: bytes) -> tuple[str, object] | None:
        """-> (outcome, text or error) of a new input, None for a repeat."""
        tally = self._tally(name)
        if not tally.fresh(data):
            return None
        self.probe.clear()
        return tally.run(lambda: self.codec.decompress(data), lambda: {"blob": data.hex()})

    def _form(self, data: bytes) -> str | None:
        """The form a blob's header names ("raw-v3"), None when it names none of this codec's."""
        version = (data[0] >> 2) & 0x07 if data else 0
        if len(data) < 2 or data[0] & 0xE0 != MAGIC or version not in (2, 3) or data[1] != self.codec.tag:
            return None
        return f"{Mode(data[0] & 0x03).name.lower()}-v{version}"

    def _blob_mutant(self, form: str, x) -> None:
        i, program = x
        seed = self.blobs[form][i]
        data = mutate(seed.blob, program, self.donors)
        done = self._decompress(f"blob/{form}", data)
        read_as = self._form(data)
        if done is None or read_as is None or splices(program):
            return      # rejected at the header, or maybe another valid blob
        row = self.row(f"blob/{form}" if read_as == form else f"blob/{form} read as {read_as}",
                       CHECK_BITS.get(read_as))
        outcome, value = done
        row.mutants += 1
        if row.check_bits and self.probe.blob_data and self.probe.blob_data[-1] != seed.text.encode("utf-8"):
            row.checked_differing += 1
        if outcome == "ok":
            row.decoded += 1
            if value != seed.text:
                row.add_wrong({"blob": data.hex(), "seed": seed.blob.hex(), "original": seed.text[:200],
                               "decoded": value[:200]})

    def _blob_random(self, data: bytes) -> None:
        self._decompress("blob/random", data)

    def _blob_random_payload(self, x) -> None:
        head, payload = x
        if Mode(head[0] & 0x03) in (Mode.EXACT, Mode.SEMANTIC):
            payload = payload[:MODEL_PAYLOAD_BYTES]
        self._decompress("blob/random-payload", head + payload)

    # -- batches ----------------------------------------------------------------------------

    def _session(self, tier: str, batches: list[bytes]) -> tuple[list, Callable[[], None]]:
        """Pushes ``batches`` to one decoder: -> (per push: its Decoded or CodecError and the checks
        it evaluated), and the call that does it (raising the first CodecError after all pushes)."""
        results: list = []

        def run() -> None:
            dec = self.codec.decoder(tier)
            for b in batches:
                self.probe.clear()
                try:
                    out = dec.push(b)
                except CodecError as e:
                    out = e
                results.append((out, list(self.probe.batch)))
            first = next((out for out, _ in results if isinstance(out, CodecError)), None)
            if first is not None:
                raise first
        return results, run

    def _batches(self, name: str, tier: str, batches: list[bytes]) -> list | None:
        """Runs a new batch sequence (None for a repeat) -> its per-push results."""
        tally = self._tally(name)
        if not tally.fresh(tier.encode() + b"".join(len(b).to_bytes(4, "big") + b for b in batches)):
            return None
        results, run = self._session(tier, batches)

        def describe() -> dict:
            return {"tier": tier, "batches": [b.hex() for b in batches]}

        tally.run(run, describe)
        failed = next((i for i, (out, _) in enumerate(results) if isinstance(out, CodecError)), None)
        if failed is not None and any(not isinstance(out, CodecError) for out, _ in results[failed + 1:]):
            tally.note(tally.violations, "a batch decoded after an earlier batch of its message failed",
                       describe)
        return results

    def _batch_mutant(self, kind: str, x) -> None:
        si, bi, program, reorder = x
        seq = self.sequences[kind][si]
        batches = list(seq.batches)
        j = bi % len(batches)
        batches[j] = mutate(batches[j], program, self.batch_donors)
        if reorder == 12:
            del batches[j]
        elif reorder == 13:
            batches.insert(j, batches[j])
        elif reorder == 14 and j + 1 < len(batches):
            batches[j], batches[j + 1] = batches[j + 1], batches[j]
        elif reorder == 15:
            batches.append(self.batch_donors[(si + bi) % len(self.batch_donors)])
        results = self._batches(f"batch/{kind}", seq.tier, batches)
        if results is None or reorder >= 12 or splices(program):
            return      # wrong results: one batch mutated in its place, not replaced by another valid one
        for k in range(j, len(results)):
            out, checks = results[k]
            want_text, want_end = seq.decoded[k]
            for crc, end, passed in checks:
                row = self._batch_row(kind, end)
                row.mutants += 1
                if crc != seq.crcs[k] or end != want_end:
                    row.checked_differing += 1
                    row.check_passed_differing += passed
            if isinstance(out, CodecError):
                continue
            row = self._batch_row(kind, out.message_end)
            if seq.tier != "exact":
                row.mutants += 1
            row.decoded += 1
            if (out.text, out.message_end) != (want_text, want_end):
                row.add_wrong({"tier": seq.tier, "batches": [b.hex() for b in batches], "push": k,
                               "original": [want_text[:200], want_end],
                               "decoded": [out.text[:200], out.message_end]})

    def _batch_row(self, kind: str, message_end: bool) -> WrongRow:
        if kind == "semantic":
            return self.row("batch/semantic", None)
        bits = batch_format.MESSAGE_CHECK_BITS if message_end else batch_format.BATCH_CHECK_BITS
        return self.row(f"batch/{kind}, {'END_MESSAGE' if message_end else 'END_BATCH'}", bits, passes=True)

    def _batch_random(self, x) -> None:
        tier, data = x
        self._batches("batch/random", tier, [data])

    # -- tokenizer --------------------------------------------------------------------------

    def _tokenizer(self, x) -> None:
        text, more = x
        tok, tally = self.tokenizer, self._tally("tokenizer")
        if not tally.fresh(f"{len(text)}:{text}{more}".encode()):
            return

        def check() -> list[str]:
            ids = tok.encode(text)
            problems = []
            if EOS_ID in ids:
                problems.append("the tokens of a text hold the <eos> id")
            if tok.token_bytes(ids) != text.encode("utf-8"):
                problems.append("the round trip changes the text")
            final, tail = tok.split_final(text)
            if final + tail != text:
                problems.append("split_final's pieces do not reassemble the text")
            else:
                head = tok.encode(final)
                if tok.encode(text + more)[:len(head)] != head:
                    problems.append("split_final's final part tokenizes otherwise once more text follows")
            return problems

        def describe() -> dict:
            return {"text": text, "more": more}

        outcome, problems = tally.run(check, describe)
        if outcome == "ok":
            for p in problems:
                tally.note(tally.violations, p, describe)

    # -- running ----------------------------------------------------------------------------

    def run_target(self, t: Target, examples: int, seed: int) -> None:
        """One hypothesis run of ``examples`` inputs of ``t``: generation only (its targeting phase
        can spin for minutes without running an input when a strategy has unbounded integers)."""

        @settings(max_examples=examples, database=None, deadline=None, phases=(Phase.generate,),
                  derandomize=False, suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
        @given(t.strategy)
        def fuzz(x) -> None:
            t.examples += 1
            t.body(x)

        t0 = time.perf_counter()
        hypothesis.seed(seed)(fuzz)()
        t.tally.wall_seconds += time.perf_counter() - t0

    def run(self, seconds: float | None = None, examples: int | None = None, seed: int = 0) -> None:
        """Either ``examples`` inputs per fast target (a 25th of that per model-heavy one, at least
        10), or ``seconds`` shared by the targets' weights in turns of about ``SLICE_S``."""
        with self.probe:
            if examples is not None:
                for t in self.targets:
                    self.run_target(t, examples if not t.model else max(10, examples // 25),
                                    zlib.crc32(f"{seed}/{t.name}".encode()))
                return
            start, turns, shown = time.monotonic(), Counter(), 0.0
            end = start + seconds
            while (left := end - time.monotonic()) > 0:
                if time.monotonic() - shown >= 60:
                    shown = time.monotonic()
                    s = self.summary()
                    print(f"  {(shown - start) / 60:5.1f} min: {s['inputs']:,} parser inputs, "
                          f"{s['crashes']} crashes, {s['untyped']} untyped, {s['hangs']} hangs", flush=True)
                t = min(self.targets, key=lambda t: t.tally.wall_seconds / t.weight)
                rate = t.examples / t.tally.wall_seconds if t.tally.wall_seconds else 20.0
                n = max(3, min(EXAMPLES_PER_ROUND, int(rate * min(SLICE_S, left))))
                self.run_target(t, n, zlib.crc32(f"{seed}/{t.name}/{turns[t.name]}".encode()))
                turns[t.name] += 1

    def summary(self) -> dict:
        targets = {t.name: t.tally.summary() for t in self.targets}
        wall = sum(t.tally.wall_seconds for t in self.targets)
        inputs = sum(t.tally.inputs for t in self.targets)
        return {"inputs": inputs, "seconds": round(wall, 1),
                "inputs_per_s": round(inputs / wall, 1) if wall else None,
                **{k: sum(v[k] for v in targets.values())
                   for k in ("duplicates_skipped", "crashes", "untyped", "hangs", "contract_violations")},
                "store_files": self.store.files, "targets": targets,
                "wrong_results": {name: row.summary() for name, row in sorted(self.rows.items())}}


# -- the run ------------------------------------------------------------------------------------

SPLIT_CLAIM = "split_final's final part tokenizes otherwise once more text follows"


def material(fuzz: ParserFuzz) -> Material:
    """What the gRPC fuzzer starts from: the parser fuzzer's seeds."""
    return Material([s.blob for seeds in fuzz.blobs.values() for s in seeds],
                    [(s.tier, list(s.batches)) for seqs in fuzz.sequences.values() for s in seqs],
                    TEXTS, mutate)


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=False)
    return out.stdout.strip()


def run(minutes: float, grpc_minutes: float, seed: int, concurrency: int) -> dict:
    """Parser fuzzing for ``minutes`` (this process, one core), then gRPC fuzzing of a real server
    for ``grpc_minutes`` -> results."""
    codec = Codec.load()
    with tempfile.TemporaryDirectory(prefix="rvqstream-fuzz-") as tmp:
        print(f"parser fuzzing, {minutes:g} min:", flush=True)
        pf = ParserFuzz(codec, Path(tmp))
        try:
            pf.run(seconds=minutes * 60, seed=seed)
        finally:
            pf.store.close()
        parser = pf.summary()
        print(f"gRPC fuzzing, {grpc_minutes:g} min, {concurrency} calls at once:", flush=True)
        (Path(tmp) / "server").mkdir()
        server = Server(Path(tmp) / "server")
        try:
            asyncio.run(server.wait_ready())
            grpc_results = asyncio.run(grpc_fuzz(server.target, server.proc.pid, server.log, server.tokens,
                                                 material(pf), codec.model_id, seconds=grpc_minutes * 60,
                                                 seed=seed, concurrency=concurrency))
        finally:
            server.close()
    return {"model_id": codec.model_id, "parser": parser, "grpc": grpc_results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=45.0, help="parser fuzzing time (one core)")
    ap.add_argument("--grpc-minutes", type=float, default=30.0, help="gRPC fuzzing time")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=32, help="gRPC calls at once")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fuzz.json")
    args = ap.parse_args()
    started = datetime.datetime.now(datetime.UTC)
    results = {"command": " ".join(["python", "bench/fuzz.py", *sys.argv[1:]]),
               "started_utc": started.isoformat(timespec="seconds"),
               "machine": f"{platform.processor() or platform.machine()}, "
                          f"{len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}",
               "commit": {"sha": _git("rev-parse", "HEAD"),
                          "tracked_files_modified": bool(_git("status", "--porcelain", "-uno"))},
               "settings": {"minutes": args.minutes, "grpc_minutes": args.grpc_minutes, "seed": args.seed,
                            "hang_s": HANG_S, "model_payload_bytes": MODEL_PAYLOAD_BYTES,
                            "max_model_seed_payload": MAX_MODEL_PAYLOAD},
               **run(args.minutes, args.grpc_minutes, args.seed, args.concurrency)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(report_section(results))
    print(f"wrote {args.out}")


# -- the report -------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]) + "\n"


def _rate(row: dict) -> list:
    if row["rate"] is None:
        return ["-", "-"]
    lo, hi = row["ci95"]
    return [f"{row['rate']:.2e}", f"[{lo:.1e}, {hi:.1e}]"]


def report_section(r: dict) -> str:
    """The fuzzing section of bench/results/REPORT.md, from one run's results (``fuzz.json``)."""
    p, g = r["parser"], r["grpc"]
    modified = ", tracked files modified" if r["commit"]["tracked_files_modified"] else ""
    s = (f"## Fuzzing\n\nRun `{r['command']}` of {r['started_utc']} (commit `{r['commit']['sha'][:12]}`"
         f"{modified}; {r['machine']}). Parsers: {p['inputs']:,} inputs in {p['seconds'] / 60:.1f} min "
         f"({p['inputs_per_s']:,.0f}/s), hypothesis runs over inputs mutated from valid ones (repeats "
         "skipped); an input is ok, an expected error (a `CodecError`; for the log, what its reference "
         "model predicts), an untyped error (a bare `ValueError`/`EOFError`), or a crash (anything "
         f"else); a hang takes over {r['settings']['hang_s']:g} s.\n\n")
    s += _table(["target", "inputs", "inputs/s", "ok", "expected errors", "untyped", "crashes", "hangs",
                 "slowest (s)", "contract violations"],
                [[name, f"{t['inputs']:,}", f"{t['inputs_per_s']:,.0f}", f"{t['ok']:,}",
                  ", ".join(f"{k} {v:,}" for k, v in t["expected"].items()) or "-", t["untyped"],
                  t["crashes"], t["hangs"], f"{t['slowest_input_s']:.3f}", t["contract_violations"]]
                 for name, t in p["targets"].items()])
    for name, t in p["targets"].items():
        listed = [*t["crash_list"].items(), *t["untyped_by_message"].items(), *t["violation_list"].items()]
        for what, entry in listed:
            s += f"\n- `{name}`: {what} ({entry['count']}x), e.g. `{json.dumps(entry['examples'][0])[:300]}`"
    rows = p["wrong_results"]
    s += ("\n\nWrong results: mutants (no splice with another valid input) that decoded without error "
          "to a text other than the original's. With a check, the rate is over the check's evaluations "
          "on a differing text (or message end), and the check's size predicts it (2^-bits; UTF-8 "
          "validation can only lower it); without one, over the mutants that decoded.\n\n")
    s += _table(["form", "check bits", "mutants", "decoded", "checked differing", "check passed", "wrong",
                 "rate", "95% interval", "predicted"],
                [[k, v["check_bits"] or "none", f"{v['mutants']:,}", f"{v['decoded']:,}",
                  "-" if v["checked_differing"] is None else f"{v['checked_differing']:,}",
                  "-" if v["check_passed_differing"] is None else v["check_passed_differing"],
                  v["wrong"], *_rate(v), f"{v['predicted']:.2e}" if v["predicted"] else "-"]
                 for k, v in rows.items() if " read as " not in k])
    read_as = [v for k, v in rows.items() if " read as " in k]
    checked = [v for v in read_as if v["check_bits"]]
    unchecked = [v for v in read_as if not v["check_bits"]]
    s += (f"\nHeader mutations that made a blob read as another valid form: "
          f"{sum(v['mutants'] for v in read_as):,}; as a form with a check, "
          f"{sum(v['wrong'] for v in checked)} wrong of {sum(v['checked_differing'] for v in checked):,} "
          "checked on a differing text; as a form without one (semantic, version-2 fallback), "
          f"{sum(v['wrong'] for v in unchecked)} wrong of {sum(v['decoded'] for v in unchecked):,} "
          "decoded.\n\n")
    rss = g["rss_kib"]
    s += (f"gRPC: {g['requests']:,} calls in {g['seconds'] / 60:.1f} min ({g['requests_per_s']:.0f}/s, "
          f"{g['concurrency']} at once, {100 * g['malformed_share']:.0f}% with mutated or garbage "
          f"serialized requests) to a real `rvqstream serve`; UNKNOWN or INTERNAL: "
          f"{g['unknown_or_internal']:,}; hangs (no status by the deadline + {HANG_GRACE_S:g} s): "
          f"{g['hangs']}; server alive: {g['server_alive']}, health {g.get('health')}, round trip "
          f"after: {g.get('round_trip')}; server RSS {rss['start'] / 1024:.0f} MiB at the start, "
          f"{rss['after_warm_up'] / 1024:.0f} MiB after warm-up, {(rss['end'] or 0) / 1024:.0f} MiB at "
          f"the end (max {rss['max'] / 1024:.0f} MiB). CLIENT_WRITE_FAILURE: a client stream the server "
          "ended while the client still wrote (grpc.aio then loses the server's status).\n\n")
    statuses = sorted({st for m in g["statuses_by_method"].values() for st in m})
    s += _table(["method", *statuses], [[m, *(f"{v.get(st, 0):,}" for st in statuses)]
                                        for m, v in g["statuses_by_method"].items()])
    for what, entry in g["findings"].items():
        server = "; ".join(entry.get("server_errors", [])) or "-"
        s += (f"\n- finding: {what} ({entry['count']:,}x); server: {server}; "
              f"e.g. `{json.dumps(entry['examples'][0])[:300]}`")
    return s + "\n"


if __name__ == "__main__":
    main()
