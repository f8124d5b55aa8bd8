"""The blob targets of the parser fuzzer (bench/fuzz.py): ``Codec.decompress`` on valid blobs of
every form and readable format version, mutated (``blob/<form>-v<version>``), each decoded by the
codec that made it: the exact tier (``exact``) and the fallback modes (``zstd``, ``raw``) from the
integer model (the default bundle, no RVQ stages), the forms that need RVQ codes from the float
model (``bundle.SEMANTIC_DIR``): exact with stages (``exact-rvq``) and the retired semantic tier
(``semantic``, read from versions 2 and 3 only; its seeds are made as its encoder made them,
bench/legacy_semantic.py). Every blob written is version 4; the older versions of a form are its
blobs with the version rewritten (version-2 fallback blobs also without their check). Also random
bytes (``blob/random``), a valid header of any mode, readable version and either model before
random bytes (``blob/random-payload``), and each model's valid blobs given to the other
(``blob/cross``): as made, they name the other model's tag and must fail with a ``CodecError``,
never decode; with the tag rewritten to the other model's (two models sharing a tag), the text's
check must reject them (wrong-result rows of their own). No SEMANTIC blob of a version after the
tier's retirement may decode, whatever the target (``RETIRED``). Also the seeds the targets start
from, and the wrong-result rows of the mutants, per form their header reads as (header mutations
that read as another form are rows of their own).
"""

from __future__ import annotations

from dataclasses import dataclass

from fuzz_inputs import MODEL_PAYLOAD_BYTES, PROGRAM, RANDOM_BYTES, mutate, splices
from fuzz_tally import Target
from fuzz_wrong_results import CheckProbe, WrongRow, wrong_row
from hypothesis import strategies as st
from legacy_semantic import semantic_blob

from rvqstream.models import Codec
from rvqstream.models import blob as blob_format
from rvqstream.models.blob import LAST_SEMANTIC_VERSION, MAGIC, READABLE_VERSIONS, VERSION, Mode

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
RETIRED = f"a SEMANTIC blob of format version {LAST_SEMANTIC_VERSION + 1} or later decoded"


@dataclass(frozen=True)
class BlobSeed:
    blob: bytes
    text: str          # what it decodes to


# form -> (the codec that makes and decodes it: "exact" the integer default, "rvq" the float model)
FORM_BASES = {"exact": "exact", "zstd": "exact", "raw": "exact", "exact-rvq": "rvq", "semantic": "rvq"}


def form_versions(base: str) -> tuple[int, ...]:
    """The format versions a form is read in, newest first: every readable one up to the version its
    blobs are made in (the semantic tier's last, ``LAST_SEMANTIC_VERSION``; the others', ``VERSION``)."""
    newest = LAST_SEMANTIC_VERSION if base == "semantic" else VERSION
    return tuple(sorted((v for v in READABLE_VERSIONS if v <= newest), reverse=True))


BLOB_FORMS = tuple(f"{base}-v{version}" for base in FORM_BASES for version in form_versions(base))
# form -> its check's bits (a form without one, semantic and version-2 fallback blobs, is absent)
CHECK_BITS = {**{f"{base}-v{v}": blob_format.CHECK_BITS for base in ("exact", "exact-rvq")
                 for v in form_versions(base)},
              **{f"{base}-v{v}": blob_format.FALLBACK_CHECK_BITS for base in ("zstd", "raw")
                 for v in form_versions(base) if v >= 3}}


def form_of(data: bytes, codec: Codec) -> str | None:
    """The form a blob's header names for ``codec`` ("raw-v4"; the exact mode of a codec with RVQ
    stages is "exact-rvq"), None when it names none of ``codec``'s (a SEMANTIC header of a version
    after the tier's retirement names none)."""
    version = (data[0] >> 2) & 0x07 if data else 0
    if len(data) < 2 or data[0] & 0xE0 != MAGIC or data[1] != codec.tag:
        return None
    mode = Mode(data[0] & 0x03)
    base = "exact-rvq" if mode is Mode.EXACT and codec.parts.stages else mode.name.lower()
    return f"{base}-v{version}" if version in form_versions(base) else None


def retired(data: bytes) -> bool:
    """Whether a blob's header names the SEMANTIC mode in a format version after its retirement."""
    return (len(data) >= 2 and data[0] & 0xE0 == MAGIC and Mode(data[0] & 0x03) is Mode.SEMANTIC
            and (data[0] >> 2) & 0x07 > LAST_SEMANTIC_VERSION)


def with_version(blob: bytes, version: int) -> bytes:
    """``blob`` with its header's format version rewritten (and, for version 2 of a fallback blob,
    without the check that version did not have)."""
    data = bytes([(blob[0] & ~0x1C) | (version << 2)]) + blob[1:]
    return data[:-2] if version == 2 and Mode(blob[0] & 0x03) in (Mode.ZSTD, Mode.RAW) else data


def form_role(form: str) -> str:
    """Which codec ("exact" or "rvq") makes and decodes a form ("zstd-v3" -> "exact")."""
    return FORM_BASES[form.rsplit("-v", 1)[0]]


def blob_seeds(codec: Codec, role: str, make) -> dict[str, list[BlobSeed]]:
    """Valid blobs of ``codec`` of the forms of ``role`` (``FORM_BASES``): ``make(text)`` -> its
    blobs of each text (a compressed one in fallback form is left out of the "rvq" role's forms);
    the older versions of each by rewriting the header (``with_version``; version-2 fallback blobs
    decode only as legacy data, so the fuzzer's calls, which do not ask for that, must refuse them)."""
    forms: dict[str, dict[bytes, BlobSeed]] = {}

    def add(blob: bytes) -> None:
        mode = Mode(blob[0] & 0x03)
        if mode in (Mode.EXACT, Mode.SEMANTIC) and len(blob) - 2 > MAX_MODEL_PAYLOAD:
            return
        form = form_of(blob, codec)
        if form_role(form) != role:
            return
        text = codec.decompress(blob)
        for version in form_versions(form.rsplit("-v", 1)[0]):
            data = with_version(blob, version)
            if codec.decompress(data, legacy=True) != text:
                raise AssertionError(f"a version-{version} {mode.name} blob does not decode as the one made")
            forms.setdefault(form_of(data, codec), {})[data] = BlobSeed(data, text)

    for text in TEXTS:
        for blob in make(text):
            add(blob)
    return {f: list(seeds.values()) for f, seeds in forms.items()}


def all_seeds(codecs: dict[str, Codec]) -> dict[str, list[BlobSeed]]:
    """Valid blobs of every form, each from its codec: each text compressed by the integer model
    (exact) and in fallback form; by the float model, exact with stages, and semantic (version 3,
    as the retired encoder made it) with 1 and 8 stages."""
    exact, rvq = codecs["exact"], codecs["rvq"]
    seeds = {**blob_seeds(exact, "exact", lambda t: (exact.compress(t), exact.fallback(t))),
             **blob_seeds(rvq, "rvq", lambda t: (rvq.compress(t, stages=2), semantic_blob(rvq, t, 1),
                                                 semantic_blob(rvq, t, 8)))}
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
                   for v in READABLE_VERSIONS for m in Mode]
        # (form, seed) of every seed, for the cross target: decoded by the other codec
        self.cross = [(form, s) for form, seeds in self.seeds.items() for s in seeds]
        weights = {"exact-v4": 0.06, "exact-v3": 0.04, "exact-v2": 0.03, "zstd-v4": 0.05, "zstd-v3": 0.03,
                   "zstd-v2": 0.03, "raw-v4": 0.05, "raw-v3": 0.03, "raw-v2": 0.03, "exact-rvq-v4": 0.025,
                   "exact-rvq-v3": 0.015, "exact-rvq-v2": 0.015, "semantic-v3": 0.04, "semantic-v2": 0.015}
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
        """-> (outcome, text or error) of a new input, None for a repeat; a retired form that
        decodes breaks a contract (``RETIRED``)."""
        tally = self._tallies[name]
        if not tally.fresh(codec.tag.to_bytes(1, "big") + data):
            return None
        self.probe.clear()

        def describe() -> dict:
            return {"model": codec.model_id[:12], "blob": data.hex()}

        outcome, value = tally.run(lambda: codec.decompress(data), describe)
        if outcome == "ok" and retired(data):
            tally.note(tally.violations, RETIRED, describe)
        return outcome, value

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
