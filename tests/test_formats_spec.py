"""The byte formats of docs/formats.md, checked from the specification's side.

Tables, constants and layouts are written out here literally as the document gives them. Frame
batches and blobs are built by hand with ``ArithmeticEncoder`` and must decode with the codec;
batches and blobs the codec writes must read with the small readers below, which follow the
document and use only ``ArithmeticDecoder`` (plus the bundle's decoder step for model-coded
frames, which no reader can do without: the float runtime's step, or, for the integer model, the
bundle's own ``step.onnx`` called as §3.1 says, its gaps made into tables as §1.6 says).

Both kinds of bundle (§0) are read: the integer model (the default: exact tier only, no RVQ stages)
and the float model (``artifacts/semantic/``: exact-tier RVQ stages, and the retired semantic tier,
whose committed old blobs and batches, tests/data/semantic_v3.json, the spec readers read).
"""

from __future__ import annotations

import hashlib
import json
import random
import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import zstandard
from conftest import legacy_semantic_blobs, legacy_semantic_streams

from rvqstream.models import Codec, IntegrityError, MalformedError, TruncatedError, coding, entropy
from rvqstream.models import batch as batch_mod
from rvqstream.models import blob as blob_mod
from rvqstream.models.coding import exact_stage_table
from rvqstream.models.entropy import ArithmeticDecoder, ArithmeticEncoder
from rvqstream.models.frames import Tier
from rvqstream.models.intlm import IntLM, reference_step

ARTIFACTS = Path(coding.__file__).parent / "artifacts"

# -- the specification's values (docs/formats.md §0) ---------------------------------------------
F, V = 16, 4096
K, D = 1024, 128              # float bundles only
FLOAT_TAG = 0x49              # the shipped float bundle (model 49ca0b58…)
BUNDLES = {                   # by the manifest's config.kind: where it ships, N, its files (model id)
    "intlm": (ARTIFACTS, 0, ("tokenizer.json", "lm.npz", "step.onnx", "step_cuda.onnx", "fallback.zdict")),
    "float": (ARTIFACTS / "semantic", 8,
              ("tokenizer.json", "encoder.onnx", "step.onnx", "codebooks.npy", "fallback.zdict")),
}
KEYFRAME = 240
CHECK_SEED = 0x5EED
EOS_ID = 0
TOP_FREQ = 1 << 24            # §1.5 and §1.6: the most likely token's frequency
MASKED = -(1 << 24)           # §3.1: the bias of a position a query must not attend (integer bundles)

# §1
FULL, HALF, QUARTER = 1 << 62, 1 << 61, 1 << 60

# §5.1: items and their frequencies
MODEL, ZSTD, RAW, RESET, END_BATCH, END_MESSAGE = range(6)
ITEM_FREQS = [4096, 32, 32, 16, 256, 64]
TERMINATOR_FREQS = [7, 1]     # §5.1: after a MODEL frame of fewer than F tokens: END_BATCH, END_MESSAGE
# §5.2 / §4.2
COUNT_FREQS = [1] * (F - 1) + [F - 1]
LENGTH_CLASSES = 28

# §4.1
BLOB_MAGIC, BLOB_VERSION = 0b101, 4
LAST_SEMANTIC_VERSION = 3      # §4.3: the semantic tier is retired from version 4 on
MODE_EXACT, MODE_SEMANTIC, MODE_ZSTD, MODE_RAW = range(4)

ZSTD_MAGIC = bytes.fromhex("28b52ffd")

TEXT = ("The keeper of the lighthouse wrote in his log every evening: the wind, the sea, the ships "
        "that passed and the ones that did not. Years later his daughter read the log from the first "
        "page to the last, and found that he had never once written about himself. Ünïcödé, 🎉 and "
        "日本語 travel too. She wrote her own log after that, and in it she wrote about him: how he "
        "climbed the stairs at dusk, how he trimmed the wick, how he listened to the weather on the "
        "radio and nodded as if the voice could see him. When the light was automated, she kept "
        "writing anyway, because somebody ought to say what the sea did on a Tuesday in March.\n")
# plain English over more than KEYFRAME tokens: model frames only, so one context meets a keyframe
LONG = TEXT.replace(" Ünïcödé, 🎉 and 日本語 travel too.", "") + (
    "In the morning the fishing boats went out past the point, and in the evening they came back, "
    "low in the water or high, and the harbour master wrote down which. Nobody asked him to. The "
    "gulls followed the boats that came back low, and the cats of the town followed the gulls. "
    "On the hill above the harbour there was a church, and in the church a clock that ran five "
    "minutes slow, so that the whole town was late for everything and nobody minded at all.\n")


# -- helpers written from the document ------------------------------------------------------------
def stage_freqs(n: int) -> list[int]:
    """§4.2 / §5.2: the stage table of a bundle with ``n`` RVQ stages (one symbol when n = 0)."""
    return [960] + [8] * n


def manifest_of(kind: str) -> dict:
    return json.loads((BUNDLES[kind][0] / "manifest.json").read_text())


def kind_of(manifest: dict) -> str:
    """§0: the bundle's kind (no kind: float)."""
    return manifest["config"].get("kind", "float")


def tag_of(kind: str) -> int:
    """§4.1: the first byte of the model id."""
    return FLOAT_TAG if kind == "float" else int(manifest_of(kind)["model_id"][:2], 16)


def cum_of(freqs) -> list[int]:
    out = [0]
    for f in freqs:
        out.append(out[-1] + int(f))
    return out


def put(enc: ArithmeticEncoder, freqs, symbol: int) -> None:
    cum = cum_of(freqs)
    enc.encode(cum[symbol], cum[symbol + 1], cum[-1])


def get(dec: ArithmeticDecoder, freqs_or_cum, is_cum: bool = False) -> int:
    cum = list(freqs_or_cum) if is_cum else cum_of(freqs_or_cum)
    total = int(cum[-1])
    t = dec.target(total)
    s = int(np.searchsorted(np.asarray(cum), t, side="right")) - 1
    dec.consume(int(cum[s]), int(cum[s + 1]), total)
    return s


def spec_crc(data: bytes, crc: int = CHECK_SEED) -> int:
    """§2, bit by bit."""
    reg = crc ^ 0xFFFFFFFF
    for b in data:
        reg ^= b
        for _ in range(8):
            reg = (reg >> 1) ^ (0xEDB88320 if reg & 1 else 0)
    return reg ^ 0xFFFFFFFF


def zdict(kind: str = "intlm") -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict((BUNDLES[kind][0] / "fallback.zdict").read_bytes())


def zstd_payload(data: bytes, kind: str = "intlm") -> bytes:
    """§4.5: level 19, the bundle's dictionary, no content size/checksum/dict id, magic dropped."""
    z = zstandard.ZstdCompressor(level=19, dict_data=zdict(kind), write_checksum=False,
                                 write_content_size=False, write_dict_id=False).compress(data)
    assert z[:4] == ZSTD_MAGIC
    return z[4:]


def unzstd(payload: bytes, kind: str = "intlm") -> bytes:
    return zstandard.ZstdDecompressor(dict_data=zdict(kind)).decompressobj().decompress(ZSTD_MAGIC + payload)


class SpecEncoder:
    """§1.1-1.3 in plain integers."""

    def __init__(self):
        self.low, self.high, self.pending, self.bits = 0, FULL - 1, 0, []

    def put(self, c_lo: int, c_hi: int, total: int) -> None:
        r = self.high - self.low + 1
        self.high = self.low + c_hi * r // total - 1
        self.low = self.low + c_lo * r // total
        while self.low >> 61 == self.high >> 61:
            b = self.low >> 61
            self.bits += [b] + [1 - b] * self.pending
            self.pending = 0
            self.low, self.high = (2 * self.low) % FULL, (2 * self.high) % FULL + 1
        while self.low >= QUARTER and self.high < 3 * QUARTER:
            self.pending += 1
            self.low, self.high = 2 * (self.low - QUARTER), 2 * (self.high - QUARTER) + 1

    def finish(self) -> bytes:
        bits = self.bits + [1] + [0] * self.pending
        bits += [0] * (-len(bits) % 8)
        out = bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))
        return out.rstrip(b"\0")


class SpecDecoder:
    """§1.4 in plain integers: zero bits past the end."""

    def __init__(self, data: bytes):
        self.bits = [(byte >> (7 - i)) & 1 for byte in data for i in range(8)]
        self.pos, self.low, self.high, self.code = 0, 0, FULL - 1, 0
        for _ in range(62):
            self.code = 2 * self.code + self._bit()

    def _bit(self) -> int:
        self.pos += 1
        return self.bits[self.pos - 1] if self.pos <= len(self.bits) else 0

    def get(self, cum: list[int]) -> int:
        total = cum[-1]
        r = self.high - self.low + 1
        t = ((self.code - self.low + 1) * total - 1) // r
        s = max(i for i in range(len(cum) - 1) if cum[i] <= t)
        self.high = self.low + cum[s + 1] * r // total - 1
        self.low = self.low + cum[s] * r // total
        while self.low >> 61 == self.high >> 61:
            self.low, self.high = (2 * self.low) % FULL, (2 * self.high) % FULL + 1
            self.code = (2 * self.code) % FULL + self._bit()
        while self.low >= QUARTER and self.high < 3 * QUARTER:
            self.low, self.high = 2 * (self.low - QUARTER), 2 * (self.high - QUARTER) + 1
            self.code = 2 * (self.code - QUARTER) + self._bit()
        return s


def put_fallback(enc: ArithmeticEncoder, item: int, payload: bytes) -> None:
    """§5.4: item, length class, low bits, bytes."""
    put(enc, ITEM_FREQS, item)
    c = len(payload).bit_length()
    assert c < LENGTH_CLASSES
    enc.encode_uniform(c, LENGTH_CLASSES)
    if c >= 2:
        enc.encode_uniform(len(payload) - (1 << (c - 1)), 1 << (c - 1))
    for b in payload:
        enc.encode_uniform(b, 256)


def put_end(enc: ArithmeticEncoder, message_end: bool, crc: int | None) -> bytes:
    """§5.6: terminator and (exact tier) its check, then termination."""
    put(enc, ITEM_FREQS, END_MESSAGE if message_end else END_BATCH)
    if crc is not None:
        bits = 16 if message_end else 8
        enc.encode_uniform(crc & ((1 << bits) - 1), 1 << bits)
    return enc.finish()


class IntStep:
    """§3.1 and §1.6, integer bundles: the bundle's ``step.onnx`` on ONNX Runtime's CPU provider,
    one token per call, its cache one masked slot of zeros and then the context's own keys and
    values (T = L + 1); the output's logit gaps index ``freq_by_step`` of ``lm.npz``. A context is
    (last token, L, cache)."""

    def __init__(self, path: Path):
        self.sess = ort.InferenceSession(str(path / "step.onnx"), providers=["CPUExecutionProvider"])
        self.freq_by_step = np.load(path / "lm.npz", allow_pickle=False)["freq_by_step"]
        self.outputs = [o.name for o in self.sess.get_outputs()]
        self.past = {i.name: i.shape for i in self.sess.get_inputs() if i.name.startswith("past_")}

    def new_state(self) -> dict:
        """A fresh context: the start symbol at position 0; the cache holds the masked slot alone
        (ONNX Runtime gets an empty cache, T = 0, wrong)."""
        slot = {name: np.zeros([1, *(1 if d == "T" else d for d in shape[1:])], np.int8)
                for name, shape in self.past.items()}
        return {"token": EOS_ID, "L": 0, "cache": slot}

    @staticmethod
    def bias(L: int, S: int = 1) -> np.ndarray:
        """[1,1,S,1+L+S]: the masked slot, then the L cached positions and the S new tokens, each
        new token attending the cached ones, the new ones before it and itself."""
        new = np.where(np.arange(S)[None, :] <= np.arange(S)[:, None], 0, MASKED)
        rows = np.concatenate([np.full((S, 1), MASKED), np.zeros((S, L), np.int64), new], axis=1)
        return rows.astype(np.int32).reshape(1, 1, S, 1 + L + S)

    def gaps(self, tokens: list[int], positions: list[int], cache: dict, bias: np.ndarray) -> dict:
        feeds = {"tokens": np.array([tokens], np.int64), "positions": np.array([positions], np.int64),
                 "bias": bias, **cache}
        return dict(zip(self.outputs, self.sess.run(None, feeds)))

    def table(self, gaps: np.ndarray) -> np.ndarray:
        """§1.6: cum[i + 1] = cum[i] + freq_by_step[gaps[i]]."""
        return np.concatenate([[0], np.cumsum(self.freq_by_step[gaps])])

    def step(self, state: dict, z, j: int) -> tuple[np.ndarray, dict]:
        assert z is None, "integer bundles carry no stages"
        out = self.gaps([state["token"]], [state["L"]], state["cache"], self.bias(state["L"]))
        return self.table(out["gaps"][0, 0]), out

    @staticmethod
    def advance(state: dict, token: int, out: dict) -> None:
        """The step's input token joins the cache (its key and value), ``token`` is the next input."""
        for name, c in state["cache"].items():
            new = out["new_" + name[len("past_"):]]
            state["cache"][name] = np.concatenate([c, new], axis=3 if name.startswith("past_k") else 2)
        state["token"], state["L"] = token, state["L"] + 1


class Model:
    """The decoder step of §3.1 driven by the rules of §3.2-3.4."""

    def __init__(self, codec: Codec):
        self.kind = kind_of(codec.manifest)
        path, self.n_stages, _ = BUNDLES[self.kind]
        self.tag = tag_of(self.kind)
        if self.kind == "intlm":
            self.step = IntStep(path)
            self.codebooks = None
        else:
            self.step = codec.parts.step
            self.codebooks = np.load(path / "codebooks.npy")
        self.token_bytes = codec.parts.tokenizer.token_bytes
        self.ctx = None         # (state, L) or None
        self.fresh = 0          # contexts opened
        self.keyframes = 0      # of which by L + F > KEYFRAME

    def open(self) -> None:
        if self.ctx is not None and self.ctx[1] + F > KEYFRAME:
            self.keyframes += 1
            self.ctx = None
        if self.ctx is None:
            self.fresh += 1
            self.ctx = (self.step.new_state(), 0)

    def latent(self, codes: list[int]) -> np.ndarray | None:
        if not codes:
            return None
        z = np.zeros((1, D), np.float32)
        for s, c in enumerate(codes):
            z += self.codebooks[s, c]
        return z

    def tokens(self, dec: ArithmeticDecoder | None, codes: list[int], count: int,
               stop_at_eos: bool = False) -> tuple[list[int], bool]:
        """Exact tier (``dec``): tokens read under the step; semantic (``dec`` None): greedy."""
        state, length = self.ctx
        z = self.latent(codes)
        out = []
        for j in range(count):
            cum, kv = self.step.step(state, z, j)
            if dec is not None:
                t = get(dec, cum, is_cum=True)
                if t == EOS_ID:
                    assert stop_at_eos, "EOS_ID inside a frame of known length"
                    self.ctx = (state, length)
                    return out, True
            else:
                freqs = np.diff(cum)
                freqs[EOS_ID] = 0
                t = int(np.argmax(freqs))
            self.step.advance(state, t, kv)
            length += 1
            out.append(t)
        self.ctx = (state, length)
        return out, False


class SpecStreamReader:
    """§5: one stream's batches -> (bytes, message_end, item kinds)."""

    def __init__(self, exact: bool, model: Model | None = None, kind: str = "intlm"):
        self.exact, self.model = exact, model
        self.kind = model.kind if model else kind
        self.crc = CHECK_SEED

    def push(self, data: bytes) -> tuple[bytes, bool, list[int]]:
        assert data, "a frame batch is never empty"
        dec = ArithmeticDecoder(data)
        out, kinds = bytearray(), []
        short = False            # the last item was a MODEL frame of fewer than F tokens
        while True:
            item = (END_BATCH, END_MESSAGE)[get(dec, TERMINATOR_FREQS)] if short else get(dec, ITEM_FREQS)
            short = False
            kinds.append(item)
            if item == RESET:
                if self.model:
                    self.model.ctx = None
                continue
            if item in (END_BATCH, END_MESSAGE):
                end = item == END_MESSAGE
                if self.exact:
                    bits = 16 if end else 8
                    assert dec.decode_uniform(1 << bits) == self.crc & ((1 << bits) - 1)
                if end:
                    self.crc = CHECK_SEED
                    if self.model:
                        self.model.ctx = None
                return bytes(out), end, kinds
            if item == MODEL:
                n = get(dec, COUNT_FREQS) + 1
                short = n < F
                N = self.model.n_stages
                s = get(dec, stage_freqs(N)) if self.exact else dec.decode_uniform(N) + 1
                codes = [dec.decode_uniform(K) for _ in range(s)]
                self.model.open()
                toks, _ = self.model.tokens(dec if self.exact else None, codes, n)
                frame = self.model.token_bytes(toks)
            else:
                c = dec.decode_uniform(LENGTH_CLASSES)
                length = c if c < 2 else (1 << (c - 1)) + dec.decode_uniform(1 << (c - 1))
                payload = bytes(dec.decode_uniform(256) for _ in range(length))
                frame = payload if item == RAW else unzstd(payload, self.kind)
                if self.model:
                    self.model.ctx = None
            self.crc = zlib.crc32(frame, self.crc)
            out += frame


def read_exact_blob(model: Model, blob: bytes) -> str:
    """§4.1-4.2."""
    assert blob[0] >> 5 == BLOB_MAGIC and blob[0] & 3 == MODE_EXACT and blob[1] == model.tag
    dec = ArithmeticDecoder(blob[2:])
    tokens: list[int] = []
    model.ctx = None
    while True:
        model.open()
        n = get(dec, stage_freqs(model.n_stages))
        if n:
            codes = [dec.decode_uniform(K) for _ in range(n)]
            v = dec.decode_uniform(2 * F)
            toks, _ = model.tokens(dec, codes, v % F + 1)
            tokens += toks
            if v >= F:
                break
        else:
            toks, eos = model.tokens(dec, [], F, stop_at_eos=True)
            tokens += toks
            if eos:
                break
    data = model.token_bytes(tokens)
    assert dec.decode_uniform(4096) == zlib.crc32(data, CHECK_SEED) & 0xFFF
    return data.decode("utf-8")


def read_semantic_blob(model: Model, blob: bytes) -> str:
    """§4.3."""
    assert blob[0] & 3 == MODE_SEMANTIC and model.n_stages > 0
    dec = ArithmeticDecoder(blob[2:])
    n = dec.decode_uniform(model.n_stages) + 1
    tokens: list[int] = []
    model.ctx = None
    while (k := dec.decode_uniform(F + 1)) != 0:
        codes = [dec.decode_uniform(K) for _ in range(n)]
        model.open()
        tokens += model.tokens(None, codes, k)[0]
    return model.token_bytes(tokens).decode("utf-8", errors="replace")


@pytest.fixture(scope="module")
def codec(each_codec) -> Codec:
    """Each shipped bundle in turn (§0): what both kinds share is checked with both."""
    return each_codec


@pytest.fixture(scope="module")
def kind(codec) -> str:
    return kind_of(codec.manifest)


# -- §0: the shipped bundles and the constants ----------------------------------------------------
def test_parameters_match_bundle_and_code(codec, kind):
    manifest = manifest_of(kind)
    cfg = manifest["config"]
    path, N, _ = BUNDLES[kind]
    assert codec.kind == kind and codec.model_id == manifest["model_id"]
    assert (cfg["frame"], cfg["vocab_size"]) == (F, V)
    assert (codec.parts.frame, codec.parts.stages) == (F, N)
    if kind == "float":
        assert "kind" not in cfg or cfg["kind"] == "float"
        assert (cfg["stages"], cfg["codes"], cfg["latent_dim"]) == (N, K, D)
        assert codec.parts.codes == K and codec.read_tiers == (Tier.EXACT, Tier.SEMANTIC)
    else:
        assert path == ARTIFACTS and cfg["kind"] == "intlm"    # the default bundle
        assert "stages" not in cfg and codec.read_tiers == (Tier.EXACT,)
        assert cfg["freq_table_size"] == len(np.load(path / "lm.npz")["freq_by_step"])
    assert codec.tag == tag_of(kind) == int(codec.model_id[:2], 16)
    assert entropy.STATE_BITS == 62
    assert coding.KEYFRAME == KEYFRAME and coding.CHECK_SEED == CHECK_SEED
    assert (batch_mod.BATCH_CHECK_BITS, batch_mod.MESSAGE_CHECK_BITS, batch_mod.LENGTH_CLASSES) == (8, 16, 28)
    assert (blob_mod.CHECK_BITS, blob_mod.FALLBACK_CHECK_BITS) == (12, 16)
    assert codec.tiers == (Tier.EXACT,)                        # §4.3, §5.2: nothing writes the semantic tier
    assert blob_mod.VERSION == BLOB_VERSION and set(blob_mod.READABLE_VERSIONS) == {2, 3, 4}
    assert blob_mod.LAST_SEMANTIC_VERSION == LAST_SEMANTIC_VERSION
    assert [int(i) for i in batch_mod.Item] == [MODEL, ZSTD, RAW, RESET, END_BATCH, END_MESSAGE]
    assert [int(m) for m in blob_mod.Mode] == [MODE_EXACT, MODE_SEMANTIC, MODE_ZSTD, MODE_RAW]


def test_model_id_covers_the_bundle_files(codec, kind):
    """§0: sha256 over ``name NUL sha256(content) NL`` of the kind's files in name order."""
    path, _, files = BUNDLES[kind]
    lines = b"".join(name.encode() + b"\0" + hashlib.sha256((path / name).read_bytes()).hexdigest().encode()
                     + b"\n" for name in sorted(files))
    assert hashlib.sha256(lines).hexdigest() == codec.model_id == manifest_of(kind)["model_id"]
    assert set(manifest_of(kind)["files"]) == set(files)
    assert set(codec.bundle_files()) == {*files, "manifest.json"}


def test_tables_match_spec():
    assert batch_mod._ITEM_TABLE.tolist() == cum_of(ITEM_FREQS) == [0, 4096, 4128, 4160, 4176, 4432, 4496]
    assert batch_mod._count_table(F).tolist() == cum_of(COUNT_FREQS)
    assert cum_of(COUNT_FREQS)[-1] == 2 * (F - 1) == 30
    for _, N, _ in BUNDLES.values():
        assert exact_stage_table(N).tolist() == cum_of(stage_freqs(N))     # blobs and batches share it
    assert cum_of(stage_freqs(8))[-1] == 1024
    assert cum_of(stage_freqs(0)) == [0, 960]         # one symbol: no stages, no bits


# -- §1: the coder ---------------------------------------------------------------------------------
def test_coder_matches_spec():
    rng = random.Random(7)
    for trial in range(40):
        enc, spec, syms = ArithmeticEncoder(), SpecEncoder(), []
        for _ in range(rng.randrange(0, 60)):
            if rng.random() < 0.3:
                n = rng.choice([2, 3, 28, 256, 1 << 16, K])
                cum = list(range(n + 1))
            else:
                cum = cum_of(rng.choice([1, 2, 1000, 1 << 24, 1 << 30]) for _ in range(rng.randrange(2, 9)))
            s = rng.randrange(len(cum) - 1)
            enc.encode(cum[s], cum[s + 1], cum[-1])
            spec.put(cum[s], cum[s + 1], cum[-1])
            syms.append((cum, s))
        data = enc.finish()
        assert data == spec.finish()
        assert data and data[-1] != 0                   # never empty, no trailing zero byte
        sdec, adec = SpecDecoder(data), ArithmeticDecoder(data)
        for cum, s in syms:
            assert sdec.get(cum) == s
            assert get(adec, cum, is_cum=True) == s


def skewed_symbols(rng: random.Random, n: int) -> list[tuple[list[int], int]]:
    """``n`` (cumulative table, symbol) pairs: mostly near-certain symbols (long runs of settled
    and straddling bits, thousands of pending bits), some improbable ones, some uniform."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.6:
            cum = [0, 1 << 24, (1 << 24) + 1]
            s = 0 if rng.random() < 0.999 else 1
        elif r < 0.7:
            cum = [0, 1, 1 << 40]
            s = rng.randrange(2)
        else:
            cum = cum_of(rng.choice([1, 3, 1 << 20]) for _ in range(rng.randrange(2, 6)))
            s = rng.randrange(len(cum) - 1)
        out.append((cum, s))
    return out


def test_coder_matches_spec_on_long_skewed_streams():
    rng = random.Random(11)
    for trial in range(12):
        enc, spec = ArithmeticEncoder(), SpecEncoder()
        syms = skewed_symbols(rng, rng.randrange(1, 4000))
        if trial == 0:      # a straddle that lasts: pending bits pile up across many symbols
            syms = [([0, (1 << 40) - 1, 1 << 40], 0)] * 3000 + syms
        for cum, s in syms:
            enc.encode(cum[s], cum[s + 1], cum[-1])
            spec.put(cum[s], cum[s + 1], cum[-1])
        data = enc.finish()
        assert data == spec.finish()
        adec = ArithmeticDecoder(data)
        assert [get(adec, cum, is_cum=True) for cum, _ in syms] == [s for _, s in syms]


@pytest.mark.parametrize("limit_bits", [0, 5, 62, 126])
def test_decoder_stops_where_its_reads_pass_the_limit(limit_bits):
    """A cut payload raises ``TruncatedError`` at the first symbol whose reads pass the data's end
    by more than ``limit_bits`` (bits read counted by the spec decoder, one at a time)."""
    rng = random.Random(limit_bits)
    syms = skewed_symbols(rng, 400)
    enc = ArithmeticEncoder()
    for cum, s in syms:
        enc.encode(cum[s], cum[s + 1], cum[-1])
    data = enc.finish()
    for cut in (0, 1, len(data) // 3, len(data) - 1):
        part = data[:cut]
        spec = SpecDecoder(part)
        expect_fail = None if spec.pos <= 8 * cut + limit_bits else -1
        for i, (cum, _) in enumerate(syms):
            if expect_fail is not None:
                break
            spec.get(cum)
            if spec.pos > 8 * cut + limit_bits:
                expect_fail = i
        if expect_fail == -1:
            with pytest.raises(TruncatedError):
                ArithmeticDecoder(part, limit_bits)
            continue
        dec = ArithmeticDecoder(part, limit_bits)
        for i, (cum, _) in enumerate(syms):
            if i == expect_fail:
                with pytest.raises(TruncatedError):
                    get(dec, cum, is_cum=True)
                break
            get(dec, cum, is_cum=True)


def test_termination_zero_bytes_are_dropped():
    enc = ArithmeticEncoder()
    for _ in range(5):
        enc.encode_uniform(0, 256)       # eight 0 bits each
    assert enc.finish() == b"\x00" * 5 + b"\x80"
    enc = ArithmeticEncoder()
    enc.encode_uniform(1, 2)             # a 1 bit, then the terminating 1 bit
    assert enc.finish() == b"\xc0"


def test_float_freq_tables_follow_spec(float_codec):
    exp2 = []
    for r in range(64):
        e = entropy._EXP2[r]
        assert int(e) ** 64 <= 1 << (1536 + r) < (int(e) + 1) ** 64      # floor(2^(24 + r/64))
        exp2.append(int(e))
    table = [exp2[(i - 1536) % 64] >> -((i - 1536) // 64) for i in range(1537)]
    assert entropy.FREQ_TABLE.tolist() == table and table[0] == 1 and table[-1] == TOP_FREQ
    step = float_codec.parts.step
    state = step.new_state()
    for j, tok in enumerate([464, 81, 1500]):
        logits, cum, kv = step.run(state, None, j)
        y = (logits - logits.max()) * np.float32(64 / np.log(2)) + np.float32(1536)
        assert y.dtype == np.float32
        assert cum.tolist() == cum_of(table[int(v)] for v in np.maximum(y, 0).astype(np.int32))
        step.advance(state, tok, kv)


def test_integer_freq_tables_follow_spec(int_codec):
    """§1.6: the table is ``freq_by_step`` of ``lm.npz`` at each token's logit gap; the gaps are the
    integer model's (``intlm.reference_step``), whether a frame runs token by token or in one call."""
    path = BUNDLES["intlm"][0]
    lm_bytes = (path / "lm.npz").read_bytes()
    freq = np.load(path / "lm.npz", allow_pickle=False)["freq_by_step"]
    G = manifest_of("intlm")["config"]["freq_table_size"]
    assert freq.dtype == np.int64 and freq.shape == (G,)
    assert freq[0] == TOP_FREQ and freq[-1] >= 1 and (freq[:-1] >= freq[1:]).all()
    assert V * TOP_FREQ <= 1 << 40                       # every table's total fits the coder
    lm = IntLM.from_bytes(lm_bytes)
    spec, ours = IntStep(path), int_codec.parts.step
    assert (ours.freq_by_step == freq).all()
    tokens = [464, 81, 1500, 7, 2900]
    state, theirs = spec.new_state(), ours.new_state()
    rows = []
    for j, tok in enumerate(tokens):
        cum, out = spec.step(state, None, j)
        gaps = out["gaps"][0, 0]
        assert gaps.dtype == np.int32 and gaps.min() == 0 and gaps.max() <= G - 1
        assert cum.tolist() == cum_of(freq[g] for g in gaps)
        ref, _, _ = reference_step(lm, np.array([[state["token"]]]), np.array([[state["L"]]]),
                                   [state["cache"][f"past_k{i}"] for i in range(len(lm.layers))],
                                   [state["cache"][f"past_v{i}"] for i in range(len(lm.layers))],
                                   spec.bias(state["L"]))
        assert (ref[0, 0] == gaps).all()
        table, kv = ours.step(theirs, None, j)          # the runtime's slots and mask: the same table
        assert table.tolist() == cum.tolist()
        spec.advance(state, tok, out)
        ours.advance(theirs, tok, kv)
        rows.append(gaps)
    # one call for a frame: S tokens, each attending the ones before it (MASKED the later ones)
    S = len(tokens)
    out = spec.gaps([EOS_ID, *tokens[:-1]], list(range(S)), spec.new_state()["cache"], spec.bias(0, S))
    assert (out["gaps"][0] == np.array(rows)).all()


# -- §2: checks ------------------------------------------------------------------------------------
def test_crc_spec():
    data = TEXT.encode()
    assert spec_crc(b"") == CHECK_SEED == zlib.crc32(b"", CHECK_SEED)
    assert CHECK_SEED ^ 0xFFFFFFFF == 0xFFFFA112
    assert spec_crc(data) == zlib.crc32(data, CHECK_SEED) == coding.text_check(data, 32)
    assert spec_crc(data[100:], spec_crc(data[:100])) == spec_crc(data)
    assert spec_crc(b"\0" * 8) != 0


# -- §5: hand-built batches decode with the codec -------------------------------------------------
def test_hand_built_raw_batch_decodes(codec):
    text = "héllo, wörld — a RAW frame 🎉"
    data = text.encode()
    enc = ArithmeticEncoder()
    put_fallback(enc, RAW, data)
    batch = put_end(enc, True, zlib.crc32(data, CHECK_SEED))
    out = codec.decoder().push(batch)
    assert (out.text, out.message_end, out.frames, out.fallback_frames) == (text, True, 1, 1)
    assert SpecStreamReader(exact=True).push(batch) == (data, True, [RAW, END_MESSAGE])


def test_hand_built_zstd_batches_with_reset_decode(codec, kind):
    data = TEXT.encode()
    cut = data.index("🎉".encode()) + 2                    # inside a 4-byte character
    first, second = data[:cut], data[cut:]
    z = zstd_payload(first, kind)
    assert len(z) < len(first)
    enc = ArithmeticEncoder()
    put_fallback(enc, ZSTD, z)
    crc = zlib.crc32(first, CHECK_SEED)
    b1 = put_end(enc, False, crc)
    enc = ArithmeticEncoder()
    put(enc, ITEM_FREQS, RESET)                            # RESET does not restart the check
    put_fallback(enc, RAW, second[:40])
    put_fallback(enc, RAW, second[40:])
    b2 = put_end(enc, True, zlib.crc32(second, crc))
    dec = codec.decoder()
    d1, d2 = dec.push(b1), dec.push(b2)
    assert d1.text == TEXT[:TEXT.index("🎉")] and not d1.message_end   # the partial character waits
    assert d1.text + d2.text == TEXT and d2.message_end and d2.frames == 2
    reader = SpecStreamReader(exact=True, kind=kind)
    assert reader.push(b1) == (first, False, [ZSTD, END_BATCH])
    assert reader.push(b2) == (second, True, [RESET, RAW, RAW, END_MESSAGE])


def test_hand_built_batch_checks(codec):
    empty = put_end(ArithmeticEncoder(), True, CHECK_SEED)     # a message end with no frames
    out = codec.decoder().push(empty)
    assert (out.text, out.message_end, out.frames) == ("", True, 0)
    data = b"checked text"
    enc = ArithmeticEncoder()
    put_fallback(enc, RAW, data)
    bad = put_end(enc, False, zlib.crc32(data, CHECK_SEED) ^ 1)
    dec = codec.decoder()
    with pytest.raises(IntegrityError):
        dec.push(bad)
    with pytest.raises(IntegrityError):                         # the message stays broken
        dec.push(empty)
    with pytest.raises(TruncatedError):
        codec.decoder().push(b"")                               # empty payloads are invalid
    # the (retired) semantic tier has no checks: the terminator is the last symbol (float bundles
    # read it: the integer model never had the tier)
    enc = ArithmeticEncoder()
    put_fallback(enc, RAW, data)
    if Tier.SEMANTIC in codec.read_tiers:
        out = codec.decoder("semantic").push(put_end(enc, True, None))
        assert (out.text, out.message_end) == ("checked text", True)
    else:
        with pytest.raises(ValueError, match="exact tier only"):
            codec.decoder("semantic")


# -- §5: batches the codec writes read with the spec reader ---------------------------------------
def test_fallback_only_batches_read_by_spec_reader(codec, kind):
    enc = codec.encoder()
    enc.fallback_only = True
    reader = SpecStreamReader(exact=True, kind=kind)
    batches, kinds = [], []
    for piece in (TEXT[:300], TEXT[300:310], TEXT[310:]):
        enc.push(piece)
        batches.append(enc.flush())
    batches.append(enc.end_message())
    got = bytearray()
    for i, b in enumerate(batches):
        data, end, k = reader.push(b.data)
        got += data
        kinds += k
        assert end == (i == len(batches) - 1) == b.message_end
        assert b.crc == zlib.crc32(bytes(got), CHECK_SEED)
    assert got.decode() == TEXT
    assert MODEL not in kinds and ZSTD in kinds and RAW in kinds
    assert kinds.count(END_BATCH) == 3 and kinds[-1] == END_MESSAGE


@pytest.mark.parametrize("kind, stages", [("intlm", None), ("float", None), ("float", 2)])
def test_model_batches_read_by_spec_reader(codecs, kind, stages):
    codec = codecs[kind]                                  # RVQ stages: the float bundle
    text = LONG
    model = Model(codec)
    reader = SpecStreamReader(exact=True, model=model)
    enc = codec.encoder(stages=stages)
    out, kinds = bytearray(), []
    for i in range(0, len(text), 150):
        enc.push(text[i:i + 150])
        if i % 450 == 0 and (b := enc.flush()) is not None:
            data, end, k = reader.push(b.data)
            out, kinds = out + data, kinds + k
    data, end, k = reader.push(enc.end_message().data)
    out, kinds = out + data, kinds + k
    assert end and out.decode() == text
    assert kinds.count(MODEL) > KEYFRAME // F and model.keyframes >= 1
    assert END_BATCH in kinds


def test_resumed_message_starts_with_reset(codec):
    model = Model(codec)
    reader = SpecStreamReader(exact=True, model=model)
    a = codec.encoder()
    a.push(TEXT[:200])
    b1 = a.flush()
    b = codec.encoder()
    b.resume_message(b1.crc)
    b.push(TEXT[200:])
    b2 = b.end_message()
    d1, end1, k1 = reader.push(b1.data)
    d2, end2, k2 = reader.push(b2.data)
    assert not end1 and end2 and (d1 + d2).decode() == TEXT
    assert k2[0] == RESET and RESET not in k1
    assert model.fresh >= 2
    dec = codec.decoder()
    assert dec.push(b1.data).text + dec.push(b2.data).text == TEXT


@pytest.mark.parametrize("stream", legacy_semantic_streams(), ids=lambda s: f"{s[1]}-stages")
def test_semantic_batches_read_by_spec_reader(float_codec, stream):
    """§5.3: semantic-tier batches written before the tier was retired."""
    batches, _, decoded = stream
    reader = SpecStreamReader(exact=False, model=Model(float_codec))
    got, kinds = bytearray(), []
    for i, b in enumerate(batches):
        data, end, k = reader.push(b)
        got, kinds = got + data, kinds + k
        assert end == (i == len(batches) - 1) and k[-1] == (END_MESSAGE if end else END_BATCH)
    assert got.decode("utf-8", errors="replace") == decoded and MODEL in kinds


# -- §4: blobs -------------------------------------------------------------------------------------
def test_blob_header_bits(codec, kind):
    blobs = {
        MODE_EXACT: codec.compress(TEXT),
        MODE_ZSTD: codec.fallback(TEXT),
        MODE_RAW: codec.fallback("hi"),
    }
    with pytest.raises(ValueError, match="retired"):      # §4.3: no semantic blob is written
        codec.compress(TEXT, tier="semantic")
    for mode, blob in blobs.items():
        assert blob[0] >> 5 == BLOB_MAGIC
        assert (blob[0] >> 2) & 0b111 == BLOB_VERSION
        assert blob[0] & 0b11 == mode
        assert blob[0] == 0xB0 + mode
        assert blob[1] == tag_of(kind)
    for blob, _ in legacy_semantic_blobs():                # written under version 3
        assert blob[0] == 0xAD and blob[1] == FLOAT_TAG


def test_fallback_blob_check_bytes(codec, kind):
    short, data, MODEL_TAG = "hi", TEXT.encode(), tag_of(kind)
    raw = bytes([0xA0 | 4 << 2 | MODE_RAW, MODEL_TAG]) + b"hi" + (spec_crc(b"hi") & 0xFFFF).to_bytes(2, "big")
    assert codec.fallback(short) == raw
    zblob = bytes([0xB2, MODEL_TAG]) + zstd_payload(data, kind) + (spec_crc(data) & 0xFFFF).to_bytes(2, "big")
    assert codec.decompress(zblob) == TEXT
    got = codec.fallback(TEXT)
    assert got[:2] == zblob[:2] and got[-2:] == zblob[-2:]
    assert unzstd(got[2:-2], kind) == data
    v3_raw, v3_zstd = bytes([0xAF]) + raw[1:], bytes([0xAE]) + zblob[1:]   # version 3: the same layout
    assert codec.decompress(v3_raw) == short and codec.decompress(v3_zstd) == TEXT
    for blob in (raw, zblob, v3_raw, v3_zstd):
        bad = blob[:-1] + bytes([blob[-1] ^ 0x01])
        with pytest.raises(IntegrityError):
            codec.decompress(bad)
    # version 2: the same bodies without the check, read only as legacy data
    v2_raw = bytes([0xA0 | 2 << 2 | MODE_RAW, MODEL_TAG]) + b"hi"
    v2_zstd = bytes([0xA0 | 2 << 2 | MODE_ZSTD, MODEL_TAG]) + zstd_payload(data, kind)
    assert codec.decompress(v2_raw, legacy=True) == short
    assert codec.decompress(v2_zstd, legacy=True) == TEXT
    for blob in (v2_raw, v2_zstd, bytes([v3_raw[0] & ~0x04]) + raw[1:]):   # the last: v3 with a bit flipped
        with pytest.raises(MalformedError, match="no check"):
            codec.decompress(blob)
    with pytest.raises(MalformedError):
        codec.decompress(bytes([0xA0 | 5 << 2 | MODE_RAW, MODEL_TAG]) + b"hi")   # unknown version


def test_exact_blobs_read_by_spec_reader(codec):
    model = Model(codec)
    assert len(codec.parts.tokenizer.encode(LONG[:40])) == F      # a full last frame
    cases = [(LONG, None), (LONG[:40], None)] + ([(LONG, 1)] if model.n_stages else [])   # stages: float
    for text, stages in cases:
        blob = codec.compress(text, stages=stages)
        assert blob[0] & 3 == MODE_EXACT
        keyframes = model.keyframes
        assert read_exact_blob(model, blob) == text
        assert model.keyframes > keyframes or text != LONG


def test_hand_built_exact_blob_of_empty_message(codec):
    model = Model(codec)
    step = model.step
    cum, _ = step.step(step.new_state(), None, 0)      # fresh context, no stages, j = 0
    enc = ArithmeticEncoder()
    put(enc, stage_freqs(model.n_stages), 0)
    enc.encode(int(cum[EOS_ID]), int(cum[EOS_ID + 1]), int(cum[-1]))
    enc.encode_uniform(CHECK_SEED & 0xFFF, 4096)
    payload = enc.finish()
    for first in (0xB0, 0xAC):                         # version 4, and version 3 (the same layout)
        blob = bytes([first, model.tag]) + payload
        assert codec.decompress(blob) == ""
        assert read_exact_blob(Model(codec), blob) == ""


def test_semantic_blob_read_by_spec_reader(float_codec):
    """§4.3: semantic blobs written (version 3) before the tier was retired."""
    for blob, decoded in legacy_semantic_blobs():
        assert read_semantic_blob(Model(float_codec), blob) == float_codec.decompress(blob) == decoded


def test_no_semantic_blobs_in_version_4_or_without_stages(int_codec, float_codec):
    """§4.3: a version-4 SEMANTIC blob is malformed, and so is one for a model without stages."""
    old, _ = legacy_semantic_blobs()[0]
    with pytest.raises(MalformedError, match="version 4"):
        float_codec.decompress(bytes([0xA0 | BLOB_VERSION << 2 | MODE_SEMANTIC, FLOAT_TAG]) + old[2:])
    enc = ArithmeticEncoder()
    enc.encode_uniform(1, F + 1)
    for first in (0xAD, 0xB1):
        with pytest.raises(MalformedError):
            int_codec.decompress(bytes([first, tag_of("intlm")]) + enc.finish())


def test_message_codes_follow_section_7():
    """§7.1: byte s is the nearest codeword of stage s to the residual; §7.2: a score is q · x̂."""
    from rvqstream.models.code_model import CodeModel

    model = CodeModel.load()
    with np.load(Path(model.manifest_dir) / "rvq.npz") as z:
        books = z["codebooks"]
    assert books.dtype == np.float32 and books.shape[1:] == (256, 384) and books.shape[0] == model.stages
    texts = ["The striker scored twice.", "Preheat the oven to 200 degrees.", "git rebase main"]
    emb = model.embed(texts)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    codes = model.codes(texts)
    for e, code in zip(emb, codes):
        r = e.astype(np.float64)
        for s in range(books.shape[0]):
            dist = np.linalg.norm(books[s].astype(np.float64) - r, axis=1)
            assert dist[code[s]] <= dist.min() + 1e-5
            r = r - books[s][code[s]]
    index = model.index()
    index.add(np.arange(3), codes)
    x_hat = books[np.arange(books.shape[0])[None, :], codes].sum(1)
    assert np.allclose(index.scores(emb[0]), x_hat @ emb[0], atol=1e-5)
