"""The blob targets of the parser fuzzer (bench/fuzz.py): ``Codec.decompress`` on valid blobs of
every form, mutated (``blob/<form>``), each decoded by the codec that made it: the exact tier
(``exact-v3``, ``exact-v2``) and the fallback modes (``zstd``, ``raw``) from the integer model (the
default bundle, no RVQ stages), the forms that need RVQ codes from the float model
(``bundle.SEMANTIC_DIR``): exact with stages (``exact-rvq``) and semantic. Also random bytes
(``blob/random``), a valid header of any mode, version and either model before random bytes
(``blob/random-payload``), and each model's valid blobs given to the other (``blob/cross``): as
made, they name the other model's tag and must fail with a ``CodecError``, never decode; with the
tag rewritten to the other model's (two models sharing a tag), the text's check must reject them
(wrong-result rows of their own). Also the seeds the targets start from, and the wrong-result rows
of the mutants, per form their header reads as (header mutations that read as another form are
rows of their own).
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
CROSS = "a blob of the other model decoded"


@dataclass(frozen=True)
class BlobSeed:
    blob: bytes
    text: str          # what it decodes to


# form -> (the codec that makes and decodes it: "exact" the integer default, "rvq" the float model)
FORM_BASES = {"exact": "exact", "zstd": "exact", "raw": "exact", "exact-rvq": "rvq", "semantic": "rvq"}
BLOB_FORMS = tuple(f"{base}-v{version}" for base in FORM_BASES for version in (3, 2))
CHECK_BITS = {**{f"{base}-v{v}": blob_format.CHECK_BITS for base in ("exact", "exact-rvq") for v in (3, 2)},
              "zstd-v3": blob_format.FALLBACK_CHECK_BITS, "raw-v3": blob_format.FALLBACK_CHECK_BITS}


def form_of(data: bytes, codec: Codec) -> str | None:
    """The form a blob's header names for ``codec`` ("raw-v3"; the exact mode of a codec with RVQ
    stages is "exact-rvq"), None when it names none of ``codec``'s."""
    version = (data[0] >> 2) & 0x07 if data else 0
    if len(data) < 2 or data[0] & 0xE0 != MAGIC or version not in (2, 3) or data[1] != codec.tag:
        return None
    mode = Mode(data[0] & 0x03)
    base = "exact-rvq" if mode is Mode.EXACT and codec.parts.stages else mode.name.lower()
    return f"{base}-v{version}"


def form_role(form: str) -> str:
    """Which codec ("exact" or "rvq") makes and decodes a form ("zstd-v3" -> "exact")."""
    return FORM_BASES[form.rsplit("-v", 1)[0]]


def blob_seeds(codec: Codec, role: str, make) -> dict[str, list[BlobSeed]]:
    """Valid blobs of ``codec`` of the forms of ``role`` (``FORM_BASES``): ``make(text)`` -> its
    blobs of each text (a compressed one in fallback form is left out of the "rvq" role's forms);
    version 2 by rewriting the header (and dropping the fallback check, which version 2 did not
    have; such blobs decode only as legacy data, so the fuzzer's calls, which do not ask for that,
    must refuse them)."""
    forms: dict[str, dict[bytes, BlobSeed]] = {}

    def add(blob: bytes) -> None:
        mode = Mode(blob[0] & 0x03)
        if mode in (Mode.EXACT, Mode.SEMANTIC) and len(blob) - 2 > MAX_MODEL_PAYLOAD:
            return
        if form_role(form_of(blob, codec)) != role:
            return
        text = codec.decompress(blob)
        v2 = bytes([(blob[0] & ~0x1C) | (2 << 2)]) + blob[1:]
        if mode in (Mode.ZSTD, Mode.RAW):
            v2 = v2[:-2]
        if codec.decompress(v2, legacy=True) != text:
            raise AssertionError(f"a version-2 {mode.name} blob does not decode as its version-3 one")
        for data in (blob, v2):
            forms.setdefault(form_of(data, codec), {})[data] = BlobSeed(data, text)

    for text in TEXTS:
        for blob in make(text):
            add(blob)
    return {f: list(seeds.values()) for f, seeds in forms.items()}


def all_seeds(codecs: dict[str, Codec]) -> dict[str, list[BlobSeed]]:
    """Valid blobs of every form, each from its codec: each text compressed by the integer model
    (exact) and in fallback form; by the float model, exact with stages, and semantic with 1 and 8
    stages."""
    exact, rvq = codecs["exact"], codecs["rvq"]
    seeds = {**blob_seeds(exact, "exact", lambda t: (exact.compress(t), exact.fallback(t))),
             **blob_seeds(rvq, "rvq", lambda t: (rvq.compress(t, stages=2), rvq.compress(t, "semantic", stages=1),
                                                 rvq.compress(t, "semantic", stages=8)))}
    missing = set(BLOB_FORMS) - set(seeds)
    if missing or set(seeds) - set(BLOB_FORMS):
        raise AssertionError(f"blob seeds of forms {sorted(seeds)}, expected {BLOB_FORMS}")
    return {f: seeds[f] for f in BLOB_FORMS}


class BlobTargets:
    """The blob targets over the two codecs (``codecs``: "exact", the integer default, and "rvq", the
    float model): ``targets`` for the parser fuzzer, the valid blobs they start from (``seeds``, per
    form; ``donors``, all of them), and the rows they add to ``rows``."""

    def __init__(self, codecs: dict[str, Codec], probe: CheckProbe, rows: dict[str, WrongRow]):
        self.codecs, self.probe, self.rows = codecs, probe, rows
        self.seeds = all_seeds(codecs)
        self.donors = [s.blob for seeds in self.seeds.values() for s in seeds]
        headers = [(role, bytes([MAGIC | (v << 2) | m, c.tag])) for role, c in codecs.items()
                   for v in (2, 3) for m in Mode]
        # (form, seed) of every seed, for the cross target: decoded by the other codec
        self.cross = [(form, s) for form, seeds in self.seeds.items() for s in seeds]
        weights = {"exact-v3": 0.10, "exact-v2": 0.03, "zstd-v3": 0.08, "zstd-v2": 0.03, "raw-v3": 0.08,
                   "raw-v2": 0.03, "exact-rvq-v3": 0.04, "exact-rvq-v2": 0.015, "semantic-v3": 0.04,
                   "semantic-v2": 0.015}
        self.targets = [
            *(Target(f"blob/{form}", weights[form], form.startswith(("exact", "semantic")),
                     st.tuples(st.integers(0, len(self.seeds[form]) - 1), PROGRAM),
                     lambda x, form=form: self._mutant(form, x)) for form in BLOB_FORMS),
            Target("blob/random", 0.03, False,
                   st.tuples(st.sampled_from(sorted(codecs)), st.binary(max_size=RANDOM_BYTES)), self._random),
            Target("blob/random-payload", 0.05, True,
                   st.tuples(st.sampled_from(headers), st.binary(max_size=RANDOM_BYTES)),
                   self._random_payload),
            Target("blob/cross", 0.01, False, st.tuples(st.integers(0, len(self.cross) - 1), st.booleans()),
                   self._cross),
        ]
        self._tallies = {t.name: t.tally for t in self.targets}

    def _decompress(self, name: str, codec: Codec, data: bytes) -> tuple[str, object] | None:
        """-> (outcome, text or error) of a new input, None for a repeat."""
        tally = self._tallies[name]
        if not tally.fresh(codec.tag.to_bytes(1, "big") + data):
            return None
        self.probe.clear()
        return tally.run(lambda: codec.decompress(data),
                         lambda: {"model": codec.model_id[:12], "blob": data.hex()})

    def _count(self, row: WrongRow, seed: BlobSeed, data: bytes, outcome: str, value) -> None:
        """One mutant read as ``row``'s form: its check's evaluations, its decoding, a wrong result."""
        row.mutants += 1
        if row.check_bits and self.probe.blob_data and self.probe.blob_data[-1] != seed.text.encode("utf-8"):
            row.checked_differing += 1
        if outcome == "ok":
            row.decoded += 1
            if value != seed.text:
                row.add_wrong({"blob": data.hex(), "seed": seed.blob.hex(), "original": seed.text[:200],
                               "decoded": value[:200]})

    def _mutant(self, form: str, x) -> None:
        i, program = x
        seed, codec = self.seeds[form][i], self.codecs[form_role(form)]
        data = mutate(seed.blob, program, self.donors)
        done = self._decompress(f"blob/{form}", codec, data)
        read_as = form_of(data, codec)
        if done is None or read_as is None or splices(program):
            return      # rejected at the header, or maybe another valid blob
        row = wrong_row(self.rows, f"blob/{form}" if read_as == form else f"blob/{form} read as {read_as}",
                        CHECK_BITS.get(read_as))
        self._count(row, seed, data, *done)

    def _cross(self, x) -> None:
        """A valid blob of one model given to the other: as made (the other model's tag), it must
        fail; with its tag rewritten, it reads as the other model's own and its check must reject it."""
        i, retag = x
        form, seed = self.cross[i]
        role = form_role(form)
        codec = self.codecs["rvq" if role == "exact" else "exact"]
        retag = retag or codec.tag == self.codecs[role].tag
        data = seed.blob[:1] + bytes([codec.tag]) + seed.blob[2:] if retag else seed.blob
        done = self._decompress("blob/cross", codec, data)
        if done is None:
            return
        outcome, value = done
        if not retag:
            if outcome == "ok":
                self._tallies["blob/cross"].note(self._tallies["blob/cross"].violations, CROSS,
                                                 lambda: {"form": form, "blob": data.hex(), "decoded": value[:200]})
            return
        read_as = form_of(data, codec)
        other = "float" if role == "exact" else "integer"
        row = wrong_row(self.rows, f"blob/cross: {form} retagged for the {other} model", CHECK_BITS.get(read_as))
        self._count(row, seed, data, outcome, value)

    def _random(self, x) -> None:
        role, data = x
        self._decompress("blob/random", self.codecs[role], data)

    def _random_payload(self, x) -> None:
        (role, head), payload = x
        if Mode(head[0] & 0x03) in (Mode.EXACT, Mode.SEMANTIC):
            payload = payload[:MODEL_PAYLOAD_BYTES]
        self._decompress("blob/random-payload", self.codecs[role], head + payload)
