"""The blob targets of the parser fuzzer (bench/fuzz.py): ``Codec.decompress`` on valid blobs of
every mode (exact, semantic, zstd, raw) and format version (2, 3), mutated (``blob/<mode>-v<version>``);
on random bytes (``blob/random``); on a valid header of any mode and version before random bytes
(``blob/random-payload``). Also the seeds they start from, and the wrong-result rows of the mutants,
per form their header reads as (header mutations that read as another form are rows of their own).
"""

from __future__ import annotations

from dataclasses import dataclass

from fuzz_inputs import MODEL_PAYLOAD_BYTES, PROGRAM, RANDOM_BYTES, mutate, splices
from fuzz_tally import Target
from fuzz_wrong_results import CheckProbe, WrongRow, wrong_row
from hypothesis import strategies as st

from rvqstream.models import Codec
from rvqstream.models import blob as blob_format
from rvqstream.models.blob import MAGIC, Mode

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
MAX_MODEL_PAYLOAD = 48   # exact seeds with larger payloads are left out (a mutant's cost grows with it)


@dataclass(frozen=True)
class BlobSeed:
    blob: bytes
    text: str          # what it decodes to


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


class BlobTargets:
    """The blob targets over one codec: ``targets`` for the parser fuzzer, the valid blobs they
    start from (``seeds``, per form; ``donors``, all of them), and the rows they add to ``rows``."""

    def __init__(self, codec: Codec, probe: CheckProbe, rows: dict[str, WrongRow]):
        self.codec, self.probe, self.rows = codec, probe, rows
        self.seeds = blob_seeds(codec)
        self.donors = [s.blob for seeds in self.seeds.values() for s in seeds]
        headers = [bytes([MAGIC | (v << 2) | m, codec.tag]) for v in (2, 3) for m in Mode]
        weights = {"exact-v3": 0.10, "exact-v2": 0.03, "semantic-v3": 0.04, "semantic-v2": 0.02,
                   "zstd-v3": 0.08, "zstd-v2": 0.03, "raw-v3": 0.08, "raw-v2": 0.03}
        self.targets = [
            *(Target(f"blob/{form}", weights[form], form.startswith(("exact", "semantic")),
                     st.tuples(st.integers(0, len(self.seeds[form]) - 1), PROGRAM),
                     lambda x, form=form: self._mutant(form, x)) for form in BLOB_FORMS),
            Target("blob/random", 0.03, False, st.binary(max_size=RANDOM_BYTES), self._random),
            Target("blob/random-payload", 0.05, True,
                   st.tuples(st.sampled_from(headers), st.binary(max_size=RANDOM_BYTES)),
                   self._random_payload),
        ]
        self._tallies = {t.name: t.tally for t in self.targets}

    def _decompress(self, name: str, data: bytes) -> tuple[str, object] | None:
        """-> (outcome, text or error) of a new input, None for a repeat."""
        tally = self._tallies[name]
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

    def _mutant(self, form: str, x) -> None:
        i, program = x
        seed = self.seeds[form][i]
        data = mutate(seed.blob, program, self.donors)
        done = self._decompress(f"blob/{form}", data)
        read_as = self._form(data)
        if done is None or read_as is None or splices(program):
            return      # rejected at the header, or maybe another valid blob
        row = wrong_row(self.rows, f"blob/{form}" if read_as == form else f"blob/{form} read as {read_as}",
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

    def _random(self, data: bytes) -> None:
        self._decompress("blob/random", data)

    def _random_payload(self, x) -> None:
        head, payload = x
        if Mode(head[0] & 0x03) in (Mode.EXACT, Mode.SEMANTIC):
            payload = payload[:MODEL_PAYLOAD_BYTES]
        self._decompress("blob/random-payload", head + payload)
