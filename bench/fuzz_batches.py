"""The frame-batch targets of the parser fuzzer (bench/fuzz.py): ``codec.decoder(tier).push`` over a
valid sequence of frame batches with one batch mutated (and sometimes a batch dropped, repeated or
swapped), ``batch/<kind>``, each decoded by the codec whose encoder wrote it: exact-tier model
frames (``exact``) and fallback frames only (``exact-fallback``) from the integer model (the
default bundle, no RVQ stages); exact-tier frames with RVQ stages (``exact-rvq``) from the float
model (``bundle.SEMANTIC_DIR``); the retired semantic tier (``semantic``), which the float model
reads and no encoder writes: the streams its encoder wrote, committed in tests/data/semantic_v3.json
(bench/legacy_semantic.py); and ``batch/random``: random bytes as the first batch, to either
model's decoder of a tier it reads. Also the sequences they start from, the contract that no batch
decodes after an earlier batch of its message failed, and the wrong-result rows of the mutants, per
kind and batch end (each check evaluation counted against the message's CRC).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fuzz_inputs import MODEL_PAYLOAD_BYTES, PROGRAM, mutate, splices
from fuzz_tally import Target
from fuzz_wrong_results import CheckProbe, WrongRow, wrong_row
from hypothesis import strategies as st
from legacy_semantic import streams

from rvqstream.models import Codec, CodecError
from rvqstream.models import batch as batch_format
from rvqstream.models.frames import Tier

# (pieces pushed, and what follows each: a flush or the message end) of the batch sequences
STREAMS = [
    [("The quick brown fox ", "flush"), ("jumps over the lazy dog.", "end")],
    [("hello", "end"), ("world, again", "end")],
    [("Streams carry frames", "flush"), (" of up to sixteen tokens", "flush"), (" each.", "end")],
    [("Naïve café ", "flush"), ("日本語 🎉", "end")],
    [("a message that ends with nothing pending", "flush"), ("", "end")],
]


@dataclass(frozen=True)
class Sequence:
    """Frame batches of one stream, as an encoder wrote them, and what each decodes to."""

    tier: str
    codec: str                               # "exact" (the integer default) or "rvq" (the float model)
    batches: tuple[bytes, ...]
    decoded: tuple[tuple[str, bool], ...]    # (text, message end) per batch
    crcs: tuple[int | None, ...]             # the message's running CRC after each batch (None: no checks)


def _sequence(role: str, codec: Codec, pieces: list[tuple[str, str]], stages: int | None = None,
              fallback_only: bool = False, resume: bool = False) -> Sequence:
    """The exact-tier batches of ``pieces`` pushed to one encoder (``resume``: a new encoder
    continues the message after each flush, as a producer that reconnects does: its batch starts
    with RESET)."""
    def encoder():
        enc = codec.encoder("exact", stages)
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
    dec = codec.decoder("exact")
    decoded = [dec.push(b.data) for b in batches]
    return Sequence("exact", role, tuple(b.data for b in batches), tuple((d.text, d.message_end) for d in decoded),
                    tuple(b.crc for b in batches))


def _semantic(codec: Codec, batches: list[bytes]) -> Sequence:
    """A semantic-tier stream the retired encoder wrote, as ``codec`` (the model that wrote it)
    decodes it; the tier has no checks."""
    dec = codec.decoder("semantic")
    decoded = [dec.push(b) for b in batches]
    return Sequence("semantic", "rvq", tuple(batches), tuple((d.text, d.message_end) for d in decoded),
                    (None,) * len(batches))


# kind -> (the codec that writes and decodes it, its share of a timed run)
KINDS = {"exact": ("exact", 0.12), "exact-fallback": ("exact", 0.07), "exact-rvq": ("rvq", 0.05),
         "semantic": ("rvq", 0.04)}


def batch_sequences(codecs: dict[str, Codec]) -> dict[str, list[Sequence]]:
    """Valid batch sequences of every kind: the integer model's exact tier (model frames, also
    resumed after each flush; fallback frames only), the float model's exact tier with 2 stages
    per frame, and the semantic-tier streams its retired encoder wrote (the committed ones)."""
    exact, rvq = codecs["exact"], codecs["rvq"]
    return {
        "exact": [_sequence("exact", exact, p) for p in STREAMS]
        + [_sequence("exact", exact, p, resume=True) for p in STREAMS[2:4]],
        "exact-fallback": [_sequence("exact", exact, p, fallback_only=True) for p in STREAMS]
        + [_sequence("exact", exact, STREAMS[2], fallback_only=True, resume=True)],
        "exact-rvq": [_sequence("rvq", rvq, p, stages=2) for p in STREAMS[:3]]
        + [_sequence("rvq", rvq, STREAMS[2], stages=2, resume=True)],
        "semantic": [_semantic(rvq, batches) for batches in streams(rvq)],
    }


class BatchTargets:
    """The frame-batch targets over the two codecs (``codecs``: "exact", the integer default, and
    "rvq", the float model): ``targets`` for the parser fuzzer, the sequences they start from
    (``sequences``, per kind; ``donors``, all their batches), and the rows they add to ``rows``."""

    def __init__(self, codecs: dict[str, Codec], probe: CheckProbe, rows: dict[str, WrongRow]):
        self.codecs, self.probe, self.rows = codecs, probe, rows
        self.sequences = batch_sequences(codecs)
        self.donors = [b for seqs in self.sequences.values() for s in seqs for b in s.batches]
        self.targets = [
            *(Target(f"batch/{kind}", weight, True,
                     st.tuples(st.integers(0, len(self.sequences[kind]) - 1), st.integers(0, 7), PROGRAM,
                               st.integers(0, 15)),
                     lambda x, kind=kind: self._mutant(kind, x))
              for kind, (_, weight) in KINDS.items()),
            Target("batch/random", 0.03, True,
                   st.tuples(st.sampled_from([(role, tier) for role, codec in codecs.items()
                                              for tier in ("exact", "semantic")
                                              if Tier.parse(tier) in codec.read_tiers]),
                             st.binary(max_size=MODEL_PAYLOAD_BYTES)),
                   self._random),
        ]
        self._tallies = {t.name: t.tally for t in self.targets}

    def _session(self, role: str, tier: str, batches: list[bytes]) -> tuple[list, Callable[[], None]]:
        """Pushes ``batches`` to one decoder: -> (per push: its Decoded or CodecError and the checks
        it evaluated), and the call that does it (raising the first CodecError after all pushes)."""
        results: list = []

        def run() -> None:
            dec = self.codecs[role].decoder(tier)
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

    def _batches(self, name: str, role: str, tier: str, batches: list[bytes]) -> list | None:
        """Runs a new batch sequence (None for a repeat) on the ``role`` codec's decoder of ``tier``
        -> its per-push results."""
        tally = self._tallies[name]
        key = f"{role}/{tier}".encode() + b"".join(len(b).to_bytes(4, "big") + b for b in batches)
        if not tally.fresh(key):
            return None
        results, run = self._session(role, tier, batches)

        def describe() -> dict:
            return {"model": self.codecs[role].model_id[:12], "tier": tier, "batches": [b.hex() for b in batches]}

        tally.run(run, describe)
        failed = next((i for i, (out, _) in enumerate(results) if isinstance(out, CodecError)), None)
        if failed is not None and any(not isinstance(out, CodecError) for out, _ in results[failed + 1:]):
            tally.note(tally.violations, "a batch decoded after an earlier batch of its message failed",
                       describe)
        return results

    def _mutant(self, kind: str, x) -> None:
        si, bi, program, reorder = x
        seq = self.sequences[kind][si]
        batches = list(seq.batches)
        j = bi % len(batches)
        batches[j] = mutate(batches[j], program, self.donors)
        if reorder == 12:
            del batches[j]
        elif reorder == 13:
            batches.insert(j, batches[j])
        elif reorder == 14 and j + 1 < len(batches):
            batches[j], batches[j + 1] = batches[j + 1], batches[j]
        elif reorder == 15:
            batches.append(self.donors[(si + bi) % len(self.donors)])
        results = self._batches(f"batch/{kind}", seq.codec, seq.tier, batches)
        if results is None or reorder >= 12 or splices(program):
            return      # wrong results: one batch mutated in its place, not replaced by another valid one
        for k in range(j, len(results)):
            out, checks = results[k]
            want_text, want_end = seq.decoded[k]
            for crc, end, passed in checks:
                row = self._row(kind, end)
                row.mutants += 1
                if crc != seq.crcs[k] or end != want_end:
                    row.checked_differing += 1
                    row.check_passed_differing += passed
            if isinstance(out, CodecError):
                continue
            row = self._row(kind, out.message_end)
            if seq.tier != "exact":
                row.mutants += 1
            row.decoded += 1
            if (out.text, out.message_end) != (want_text, want_end):
                row.add_wrong({"kind": kind, "tier": seq.tier, "batches": [b.hex() for b in batches], "push": k,
                               "original": [want_text[:200], want_end],
                               "decoded": [out.text[:200], out.message_end]})

    def _row(self, kind: str, message_end: bool) -> WrongRow:
        if kind == "semantic":
            return wrong_row(self.rows, "batch/semantic", None)
        bits = batch_format.MESSAGE_CHECK_BITS if message_end else batch_format.BATCH_CHECK_BITS
        return wrong_row(self.rows, f"batch/{kind}, {'END_MESSAGE' if message_end else 'END_BATCH'}", bits,
                         passes=True)

    def _random(self, x) -> None:
        (role, tier), data = x
        self._batches("batch/random", role, tier, [data])
