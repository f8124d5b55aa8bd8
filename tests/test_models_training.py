"""Training code on a tiny model that trains in seconds: train, resume, export, torch/ONNX parity,
and a working codec from the exported bundle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rvqstream.models import Codec
from rvqstream.models.bundle import DEFAULT_DIR
from rvqstream.models.entropy import cumulative, freqs_from_logits
from rvqstream.models.runtime import dequantize

ROOT = Path(__file__).resolve().parents[1]   # `python -m models.X` finds the top-level package from here

TINY = {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64, "enc_layers": 1, "latent_dim": 16,
        "codes": 64, "stages": 4, "cond_hidden": 32}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, builtin_messages) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    data = root / "data"
    data.mkdir()
    msgs = builtin_messages
    for split, rows in (("train", msgs), ("valid", msgs[::5])):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [sys.executable, "-m", "models.train", "--data", str(data), "--out", str(root / "run"),
           "--tokenizer", str(DEFAULT_DIR / "tokenizer.json"), "--minutes", "2", "--batch-tokens", "512",
           "--threads", "1", "--config", json.dumps(TINY)]
    subprocess.run(cmd + ["--max-steps", "4"], check=True, capture_output=True, cwd=ROOT)
    subprocess.run(cmd + ["--max-steps", "8", "--resume"], check=True, capture_output=True, cwd=ROOT)
    return root


def test_train_resume_and_metrics(trained):
    ck = torch.load(trained / "run" / "ckpt.pt", map_location="cpu")
    assert ck["step"] == 8
    metrics = json.loads((trained / "run" / "metrics.json").read_text())
    assert metrics["step"] == 8 and all(np.isfinite(v) for k, v in metrics.items() if "/" in k)
    log = [json.loads(line) for line in (trained / "run" / "log.jsonl").read_text().splitlines()]
    assert log == [] or all(len(r["code_perplexity"]) == TINY["stages"] for r in log)


def test_export_parity_and_codec(trained):
    from models.model import CodecModel, ModelConfig

    out = trained / "bundle"
    subprocess.run([sys.executable, "-m", "models.export", "--ckpt",
                    str(trained / "run" / "ckpt.pt"), "--data", str(trained / "data"), "--out", str(out),
                    "--tokenizer", str(DEFAULT_DIR / "tokenizer.json"), "--fp32"],
                   check=True, capture_output=True, cwd=ROOT)
    codec = Codec.load(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_id"] == codec.model_id

    st = torch.load(trained / "run" / "ckpt.pt", map_location="cpu")
    model = CodecModel(ModelConfig.from_dict(st["config"]))
    model.load_state_dict(st["model"])
    model.eval()
    text = "Return the absolute value of the argument."
    ids = codec.parts.tokenizer.encode(text)
    codes = codec.parts.frame_encoder.codes([ids[:16]], 2)[0].tolist()
    with torch.no_grad():   # whole-sequence torch decode, conditioned on frame 0's codes
        z = torch.from_numpy(codec.parts.codebooks[0, codes[0]] + codec.parts.codebooks[1, codes[1]])
        n = min(len(ids), 16)
        inputs = torch.tensor([[0] + ids[:n - 1]])
        cond = model.cond(z.expand(1, n, -1), torch.arange(n)[None], torch.ones(1, n))
        ref = model.decode(inputs, cond)[0].numpy()
    step, state = codec.parts.step, codec.parts.step.new_state()
    zq = dequantize(codec.parts.codebooks, codes)
    for j in range(n):
        logits, cum, kv = step.run(state, zq, j)
        np.testing.assert_allclose(logits, ref[j], atol=2e-4, rtol=1e-4)
        # the graph's coder table is the numpy reference's, on the same logits
        np.testing.assert_array_equal(cum, cumulative(freqs_from_logits(logits)))
        step.advance(state, ids[j], kv)
    for t in [text, "", "🎉 unseen ünïcode", "x" * 50]:
        assert codec.decompress(codec.compress(t)) == t


def test_init_from_grows_the_encoder_as_identity(trained):
    """A run started from another's weights with one more encoder layer computes the same latents
    at its start, keeps the earlier run's totals as ``prior``, and trains with length buckets,
    worker processes and token-count source shares."""
    from models.model import CodecModel, ModelConfig
    from models.train import init_from_weights

    st = torch.load(trained / "run" / "ckpt.pt", map_location="cpu")
    small = CodecModel(ModelConfig.from_dict(st["config"]))
    small.load_state_dict(st["model"])
    grown = CodecModel(ModelConfig.from_dict({**st["config"], "enc_layers": 2}))
    init_from_weights(grown, st["model"])
    frames, lengths = torch.randint(1, 4096, (6, 16)), torch.tensor([16, 1, 5, 9, 16, 2])
    small.eval()
    grown.eval()
    assert torch.equal(small.encoder(frames, lengths), grown.encoder(frames, lengths))

    out = trained / "grown"
    subprocess.run([sys.executable, "-m", "models.train", "--data", str(trained / "data"),
                    "--out", str(out), "--tokenizer", str(DEFAULT_DIR / "tokenizer.json"), "--minutes", "2",
                    "--batch-tokens", "1024", "--buckets", "2", "--workers", "1", "--source-alpha", "1",
                    "--threads", "1", "--max-steps", "3", "--init-from", str(trained / "run" / "ckpt.pt"),
                    "--config", json.dumps({"enc_layers": 2})],
                   check=True, capture_output=True, cwd=ROOT)
    ck = torch.load(out / "ckpt.pt", map_location="cpu")
    assert ck["step"] == 3 and ck["prior"]["steps"] == 8 and ck["prior"]["tokens"] == st["tokens"]
    assert ck["config"]["enc_layers"] == 2 and "encoder.blocks.1.ff2.weight" in ck["model"]


def test_length_buckets_partition_each_batch():
    from models.data import Mixture

    rng = np.random.default_rng(0)
    by_source = {"a": [rng.integers(1, 4096, n).astype(np.int32) for n in rng.integers(1, 300, 200)],
                 "b": [rng.integers(1, 4096, n).astype(np.int32) for n in rng.integers(1, 40, 200)]}
    batch = next(iter(Mixture(by_source, 8192, 16, 240, buckets=4, alpha=1.0)))
    assert 2 <= len(batch) <= 4
    widths = [b["inputs"].shape[1] for b in batch]
    assert widths == sorted(widths)          # shortest messages first, padded to their own length
    tokens = sum(int(b["target_mask"].sum()) for b in batch)
    assert 8192 <= tokens <= 8192 + 241

