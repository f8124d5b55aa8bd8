"""Export a trained checkpoint to the runtime bundle: ONNX graphs (int8 weights), RVQ codebooks,
the tokenizer, a zstd fallback dictionary and a manifest whose model id is the bundle's sha256.

Run: ``python -m models.export --ckpt runs/main/ckpt.pt --out rvqstream/models/artifacts``

Graphs (batch 1 for the step graph; its state is explicit):
  encoder.onnx  frames [M,F] int64, lengths [M] int64 -> latent [M,D] float32
  step.onnx     token [1,1] int64, pos [1,1] int64, z [1,D] float32, j [1,1] int64, has_z [1,1] float32,
                past_k{i}, past_v{i} [1,H,T,dh] float32 (i < layers)
                -> logits [1,V] float32, cum [1,V+1] int64 (the coder's cumulative frequencies),
                   present_k{i}, present_v{i} [1,H,T+1,dh]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.model import CodecModel, ModelConfig
from rvqstream.models.bundle import write_manifest
from rvqstream.models.entropy import FREQ_OFFSET, FREQ_TABLE, LOG2E_SCALED

OPSET = 20


class StepGraph(nn.Module):
    """One decoder step with the KV cache as explicit inputs and outputs; it also turns the
    logits into the cumulative integer frequency table of the arithmetic coder (entropy.py)."""

    def __init__(self, model: CodecModel):
        super().__init__()
        self.m = model
        self.register_buffer("freq_table", torch.from_numpy(FREQ_TABLE))

    def table(self, logits):
        """logits [1,V] float32 -> cumulative frequencies [1,V+1] int64 (as entropy.py computes)."""
        x = (logits - logits.max(-1, keepdim=True).values) * float(LOG2E_SCALED) + float(FREQ_OFFSET)
        freqs = self.freq_table[torch.clamp(x, min=0.0).to(torch.int64)]
        return torch.cat([torch.zeros_like(freqs[:, :1]), torch.cumsum(freqs, -1)], -1)

    def forward(self, token, pos, z, j, has_z, *past):
        m = self.m
        x = m.tok_emb(token) + m.pos_emb(pos) + m.cond(z[:, None, :], j, has_z)
        present = []
        d = x.shape[-1]
        for i, b in enumerate(m.blocks):
            q, k, v = b.qkv(b.ln1(x)).split(d, dim=-1)                 # [1,1,d] each
            q, k, v = (t.view(1, 1, b.h, d // b.h).transpose(1, 2) for t in (q, k, v))
            k = torch.cat([past[2 * i], k], dim=2)                       # [1,H,T+1,dh]
            v = torch.cat([past[2 * i + 1], v], dim=2)
            w = torch.softmax((q * (d // b.h) ** -0.5) @ k.transpose(2, 3), dim=-1)
            x = x + b.proj((w @ v).transpose(1, 2).reshape(1, 1, d))
            x = x + b.ff2(torch.nn.functional.gelu(b.ff1(b.ln2(x)), approximate="tanh"))
            present += [k, v]
        logits = m.head(x)[:, 0, :]
        return (logits, self.table(logits), *present)


class EncoderGraph(nn.Module):
    def __init__(self, model: CodecModel):
        super().__init__()
        self.m = model

    def forward(self, frames, lengths):
        return self.m.encoder(frames, lengths)


def export_graphs(model: CodecModel, out: Path) -> None:
    cfg = model.cfg
    model.eval()
    H, dh = cfg.n_heads, cfg.d_model // cfg.n_heads
    names_past = [f"past_{kv}{i}" for i in range(cfg.n_layers) for kv in "kv"]
    names_present = [f"present_{kv}{i}" for i in range(cfg.n_layers) for kv in "kv"]
    past = [torch.zeros(1, H, 3, dh) for _ in names_past]
    args = (torch.zeros(1, 1, dtype=torch.int64), torch.zeros(1, 1, dtype=torch.int64),
            torch.zeros(1, cfg.latent_dim), torch.zeros(1, 1, dtype=torch.int64), torch.zeros(1, 1), *past)
    with torch.no_grad():
        torch.onnx.export(
            StepGraph(model), args, str(out / "step_fp32.onnx"), opset_version=OPSET, dynamo=False,
            input_names=["token", "pos", "z", "j", "has_z", *names_past],
            output_names=["logits", "cum", *names_present],
            dynamic_axes={n: {2: "T"} for n in names_past} | {n: {2: "T1"} for n in names_present})
        frames = torch.zeros(2, cfg.frame, dtype=torch.int64)
        torch.onnx.export(
            EncoderGraph(model), (frames, torch.tensor([3, 16])), str(out / "encoder_fp32.onnx"),
            opset_version=OPSET, dynamo=False, input_names=["frames", "lengths"], output_names=["latent"],
            dynamic_axes={"frames": {0: "M"}, "lengths": {0: "M"}, "latent": {0: "M"}})


def quantize(src: Path, dst: Path) -> None:
    """int8 weights for every MatMul/Gemm (dynamic activation quantization)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=False,
                     op_types_to_quantize=["MatMul", "Gemm"])


def preoptimize(src: Path, dst: Path) -> None:
    """Save the graph as ONNX Runtime optimizes it (fusions included), so that a runtime with any
    graph-optimization level runs the same kernels and gets bit-identical logits."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])


def train_fallback_dictionary(data_dir: Path, size: int = 110_000) -> bytes:
    import zstandard
    samples = []
    with open(data_dir / "train.jsonl") as f:
        for i, line in enumerate(f):
            if i % 7 == 0:
                samples.append(json.loads(line)["text"].encode())
    return zstandard.train_dictionary(size, samples, level=19).as_bytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, default=Path("runs/main/ckpt.pt"))
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--tokenizer", type=Path, default=Path("rvqstream/models/artifacts/tokenizer.json"))
    ap.add_argument("--out", type=Path, default=Path("rvqstream/models/artifacts"))
    ap.add_argument("--card-info", type=Path, default=None, help="JSON merged into the manifest")
    ap.add_argument("--fp32", action="store_true", help="ship float32 graphs (no int8 quantization)")
    args = ap.parse_args()

    st = torch.load(args.ckpt, map_location="cpu")
    cfg = ModelConfig.from_dict(st["config"])
    model = CodecModel(cfg)
    model.load_state_dict(st["model"])
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_graphs(model, tmp)
        for name in ("step", "encoder"):
            if args.fp32:
                shutil.copy(tmp / f"{name}_fp32.onnx", tmp / f"{name}_q.onnx")
            else:
                quantize(tmp / f"{name}_fp32.onnx", tmp / f"{name}_q.onnx")
            preoptimize(tmp / f"{name}_q.onnx", args.out / f"{name}.onnx")
    np.save(args.out / "codebooks.npy", model.rvq.codebooks.numpy().astype(np.float32))
    if args.tokenizer.resolve() != (args.out / "tokenizer.json").resolve():
        shutil.copy(args.tokenizer, args.out / "tokenizer.json")
    (args.out / "fallback.zdict").write_bytes(train_fallback_dictionary(args.data))
    info = {"config": cfg.to_dict(), "training": {"steps": st["step"], "tokens": st["tokens"],
                                                   "seconds": round(st["elapsed"])}}
    if st.get("prior"):   # the run whose weights this one started from (train.py --init-from)
        info["training"]["prior"] = st["prior"]
    metrics_path = args.ckpt.parent / "metrics.json"
    if metrics_path.exists():
        info["valid_bpb"] = json.loads(metrics_path.read_text())
    if args.card_info:
        info.update(json.loads(args.card_info.read_text()))
    print(write_manifest(args.out, info))


if __name__ == "__main__":
    main()
