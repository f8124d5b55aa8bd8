"""Train the integer language model with quantization-aware training; write its ``lm.npz``.

Starts from the float decoder of a shipped bundle's ``step.onnx`` (its weights, dequantized) or
from scratch (``--scratch``, for tests), calibrates activation units on the float model, then
trains ``QatLM`` under a time budget with a cosine schedule, checkpointing as it goes
(``--resume`` continues a run). Run: ``python -m models.train_intlm --minutes 60``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.data import Mixture, load_split
from models.intlm_qat import QatLM, export, float_stats
from rvqstream.models.tokenizer import Tokenizer

KEYFRAME = 240


def load_checkpoint(ck: dict) -> QatLM:
    """The model of a checkpoint dict (``ckpt.pt``)."""
    model = QatLM(**ck["sizes"])
    model.load_state_dict(ck["model"])
    model.units = ck["units"]
    return model


def float_weights_from_step(path: Path) -> dict:
    """The float decoder's state dict (``models.model.CodecModel`` names) from a step graph made by
    ``models.export``: dynamically quantized matmul weights are dequantized."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    sd = {k[2:]: torch.from_numpy(v.copy()) for k, v in init.items() if k.startswith("m.")}
    mats = []
    for n in m.graph.node:
        if n.op_type == "DynamicQuantizeMatMul":
            w = init[n.input[1]].astype(np.float32) * init[n.input[2]]
            mats.append(torch.from_numpy(w))
    # graph order: the conditioner's two matmuls, then per block qkv, proj, ff1, ff2, then the head
    blocks = (len(mats) - 3) // 4
    for i in range(blocks):
        for j, name in enumerate(("qkv", "proj", "ff1", "ff2")):
            sd[f"blocks.{i}.{name}.weight"] = mats[2 + 4 * i + j].T.contiguous()
    return sd


def float_state(model: QatLM) -> dict:
    """``model``'s weights under the float decoder's names (for ``float_stats``)."""
    sd = {"tok_emb.weight": model.tok_emb.detach(), "pos_emb.weight": model.pos_emb.detach()}
    for i, b in enumerate(model.blocks):
        for lin, name, ln in ((b.qkv, "qkv", "ln1"), (b.proj, "proj", None), (b.ff1, "ff1", "ln2"),
                              (b.ff2, "ff2", None)):
            sd[f"blocks.{i}.{name}.weight"] = lin.weight.detach().T
            sd[f"blocks.{i}.{name}.bias"] = lin.bias.detach()
            if ln:
                sd[f"blocks.{i}.{ln}.weight"] = lin.gain.detach()
                sd[f"blocks.{i}.{ln}.bias"] = lin.offset.detach()
    return sd


def lm_batch(seqs: list[np.ndarray], rng: random.Random) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Messages -> (inputs [B,T], targets [B,T], mask [B,T]) of a random keyframe chunk of each."""
    chunks = []
    for s in seqs:
        start = rng.randrange(0, len(s) - KEYFRAME + 1, KEYFRAME) if len(s) > KEYFRAME else 0
        chunks.append((s[start:start + KEYFRAME], start + KEYFRAME >= len(s)))
    return chunk_batch(chunks)


def chunk_batch(chunks: list[tuple[np.ndarray, bool]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens, ends the message) chunks -> (inputs [B,T], targets [B,T], mask [B,T]): the start
    symbol first, the end symbol last when the chunk ends its message."""
    T = max(len(b) for b, _ in chunks) + 1
    inputs = np.zeros((len(chunks), T), np.int64)
    targets = np.zeros_like(inputs)
    mask = np.zeros(inputs.shape, bool)
    for i, (body, last) in enumerate(chunks):
        n = len(body)
        inputs[i, 1:n + 1] = body
        targets[i, :n] = body
        mask[i, :n + (1 if last else 0)] = True
    return torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(mask)


def batches(by_source: dict, tokens: int, seed: int, alpha: float, boost: dict | None = None):
    """Endless lists of length-sorted sub-batches of about ``tokens`` tokens in all; sources are
    drawn with weight (token count ** ``alpha``) times ``boost.get(source, 1)``."""
    mix = Mixture(by_source, tokens, 16, KEYFRAME, seed=seed, alpha=alpha)
    mix.weights = [w * (boost or {}).get(src, 1.0) for src, w in zip(mix.sources, mix.weights)]
    rng = random.Random(seed)
    while True:
        seqs, n = [], 0
        while n < tokens:
            src = rng.choices(mix.sources, mix.weights)[0]
            s = rng.choice(mix.by_source[src])
            if len(s):
                seqs.append(s)
                n += min(len(s), KEYFRAME) + 1
        seqs.sort(key=len)
        half = len(seqs) // 2
        yield [lm_batch(g, rng) for g in (seqs[:half], seqs[half:]) if g]


def loss_of(model: QatLM, inputs, targets, mask) -> tuple[torch.Tensor, int]:
    logits = model(inputs)
    ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    m = mask.flatten().float()
    return (ce * m).sum(), int(m.sum())


@torch.no_grad()
def evaluate(model: QatLM, valid: dict, valid_bytes: dict) -> dict:
    """Teacher-forced bits per byte per source (QAT forward, no coding overhead)."""
    out = {}
    for src, seqs in sorted(valid.items()):
        chunks = [(s[i:i + KEYFRAME], i + KEYFRAME >= len(s)) for s in seqs
                  for i in range(0, max(1, len(s)), KEYFRAME)]
        chunks.sort(key=lambda c: len(c[0]))
        nats = 0.0
        for i in range(0, len(chunks), 32):
            loss, _ = loss_of(model, *chunk_batch(chunks[i:i + 32]))
            nats += float(loss)
        out[src] = round(nats / math.log(2) / valid_bytes[src], 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--tokenizer", type=Path, default=Path("rvqstream/models/artifacts/semantic/tokenizer.json"))
    ap.add_argument("--init-step", type=Path, default=Path("rvqstream/models/artifacts/semantic/step.onnx"),
                    help="float step graph whose decoder weights start the run")
    ap.add_argument("--scratch", type=str, default=None,
                    help='JSON sizes {"d": 32, "layers": 1, "heads": 2, "ff": 64} of a model trained from random weights')
    ap.add_argument("--out", type=Path, default=Path("runs/intlm"))
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--source-alpha", type=float, default=0.5)
    ap.add_argument("--boost", type=str, default="{}", help='JSON {source: weight factor}')
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--limit-per-source", type=int, default=None)
    ap.add_argument("--eval-msgs", type=int, default=100)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_json(args.tokenizer.read_text())
    train = load_split(args.data, "train", tok, args.limit_per_source)
    valid = load_split(args.data, "valid", tok, args.eval_msgs)
    valid_bytes = _split_bytes(args.data / "valid.jsonl", args.eval_msgs)
    ckpt_path = args.out / "ckpt.pt"
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        model, sizes = load_checkpoint(ck), ck["sizes"]
        step, elapsed = ck["step"], ck["elapsed"]
    else:
        if args.scratch:
            s = json.loads(args.scratch)
            sizes = {"vocab": tok.vocab_size, "d": s["d"], "layers": s["layers"], "heads": s["heads"],
                     "ff": s["ff"], "context": 256}
            model = QatLM(**sizes)
            with torch.no_grad():
                for p in model.parameters():
                    if p.dim() == 2:
                        p.normal_(0, 0.02)
            sd = float_state(model)
        else:
            sd = float_weights_from_step(args.init_step)
            sizes = {"vocab": sd["tok_emb.weight"].shape[0], "d": sd["tok_emb.weight"].shape[1],
                     "layers": sum(1 for k in sd if k.endswith(".qkv.weight")), "heads": 4,
                     "ff": sd["blocks.0.ff1.weight"].shape[0], "context": sd["pos_emb.weight"].shape[0]}
            model = QatLM(**sizes)
            model.load_float(sd)
        calib = next(batches(train, 8192, seed=1, alpha=args.source_alpha))
        model.calibrate(float_stats(sd, calib[-1][0], heads=sizes["heads"]))
        step, elapsed = 0, 0.0
    print("units", json.dumps(model.units), flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    if args.resume and ckpt_path.exists():
        opt.load_state_dict(ck["opt"])
    budget = args.minutes * 60
    t0, last_ckpt = time.time() - elapsed, time.time()

    def save():
        torch.save({"model": model.state_dict(), "units": model.units, "opt": opt.state_dict(), "step": step,
                    "elapsed": time.time() - t0, "sizes": sizes}, ckpt_path)

    model.train()
    boost = json.loads(args.boost)
    for group in batches(train, args.batch_tokens, seed=step + 7, alpha=args.source_alpha, boost=boost):
        frac = (time.time() - t0) / budget
        if frac >= 1 or (args.max_steps and step >= args.max_steps):
            break
        lr = args.lr * (min(1.0, frac / 0.03) if step > 0 else 0.1) * 0.5 * (1 + math.cos(math.pi * min(frac, 1)))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        total, count = 0.0, 0
        for inputs, targets, mask in group:
            loss, n = loss_of(model, inputs, targets, mask)
            count += n
            total += float(loss.detach())
            loss.backward()
        for p in model.parameters():
            if p.grad is not None:
                p.grad /= max(1, count)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 20 == 0:
            print(f"step {step} t {time.time() - t0:.0f}s lr {lr:.2e} ce {total / count / math.log(2):.3f} bits/token",
                  flush=True)
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save()
            last_ckpt = time.time()
    save()
    model.eval()
    (args.out / "lm.npz").write_bytes(export(model).to_bytes())
    bpb = evaluate(model, valid, valid_bytes)
    info = {"steps": step, "seconds": round(time.time() - t0), "valid_bpb_qat": bpb, "units": model.units,
            "sizes": sizes}
    (args.out / "train_info.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info), flush=True)


def _split_bytes(path: Path, limit: int) -> dict:
    """UTF-8 bytes per source of the first ``limit`` messages of each source."""
    out: dict[str, int] = {}
    seen: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            src = row["source"]
            if seen.get(src, 0) < limit:
                seen[src] = seen.get(src, 0) + 1
                out[src] = out.get(src, 0) + len(row["text"].encode())
    return out


if __name__ == "__main__":
    main()
