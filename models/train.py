"""Train the codec model from scratch (or resume), on CPU or GPU, with a time budget.

Run: ``python -m models.train --data data --out runs/main --minutes 60``
The learning-rate schedule follows the fraction of the time budget spent, so a run ends on time;
checkpoints (``ckpt.pt``) are written every ``--ckpt-minutes`` and at the end; ``--resume``
continues from the last one. ``--init-from`` starts a new run (fresh optimizer and schedule) from
another run's weights, possibly with more encoder layers (they start as the identity); the earlier
run's steps, tokens and seconds are kept in the checkpoint as ``prior``. On a GPU, ``--workers``
processes build the batches.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from models.data import Mixture, batch_loader, load_split, make_batch
from models.model import CodecModel, ModelConfig, param_count
from rvqstream.models.tokenizer import Tokenizer

KEYFRAME = 240   # tokens per context before a keyframe reset (start symbol + 240 < context 256)


def lr_at(frac: float, peak: float, warmup_frac: float = 0.03) -> float:
    if frac < warmup_frac:
        return peak * max(frac, 1e-3) / warmup_frac
    t = min(1.0, (frac - warmup_frac) / (1 - warmup_frac))
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def evaluate(model, valid, device, frame, stage_counts=(0,), max_msgs=200) -> dict:
    """Cross-entropy in bits per byte per source and stage count on (a prefix of) the valid split."""
    import random
    tok_bytes = valid["_bytes"]
    model.eval()
    out = {}
    for src, seqs in valid.items():
        if src.startswith("_"):
            continue
        seqs = seqs[:max_msgs]
        nbytes = sum(tok_bytes[src][:max_msgs])
        for n in stage_counts:
            nats = 0.0
            for i in range(0, len(seqs), 32):
                b = make_batch(seqs[i:i + 32], frame, KEYFRAME, random.Random(0), ragged_prob=0.0)
                b = {k: v.to(device) for k, v in b.items()}
                M = b["frames"].shape[0]
                r = model(b, stage_counts=torch.full((M,), n, device=device))
                nats += float(r["ce"]) * float(b["target_mask"].sum())
            out[f"{src}/{n}"] = nats / math.log(2) / nbytes
    model.train()
    return out


def init_from_weights(model: CodecModel, state: dict) -> None:
    """Load another run's weights into ``model``: encoder blocks it lacks start as the identity
    (zero output projections), tensors of training-only heads it no longer has are skipped, and
    the codebooks' EMA statistics restart from the codebooks (the new run's batches differ)."""
    own = model.state_dict()
    restart_ema = ("rvq.ema_sum", "rvq.ema_count")
    missing = [k for k in own if k not in state and k not in restart_ema]
    if any(not k.startswith("encoder.blocks.") for k in missing):
        raise ValueError(f"checkpoint lacks weights that are not new encoder blocks: {missing}")
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in restart_ema}, strict=False)
    with torch.no_grad():
        for k in missing:
            if k.endswith(("proj.weight", "proj.bias", "ff2.weight", "ff2.bias")):
                own[k].zero_()
        rvq = model.rvq
        rvq.ema_count.fill_(rvq.fresh_count)
        rvq.ema_sum.copy_(rvq.codebooks * rvq.fresh_count)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--tokenizer", type=Path, default=Path("rvqstream/models/artifacts/tokenizer.json"))
    ap.add_argument("--out", type=Path, default=Path("runs/main"))
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--config", type=str, default="{}", help="JSON overrides of ModelConfig fields")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init-from", type=Path, default=None, help="checkpoint whose weights start this run")
    ap.add_argument("--workers", type=int, default=0, help="batch-building processes (0: in the loop)")
    ap.add_argument("--buckets", type=int, default=1, help="length buckets per batch (less padding)")
    ap.add_argument("--source-alpha", type=float, default=0.0,
                    help="source shares follow token counts to this power (0: equal shares)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (tests)")
    ap.add_argument("--limit-per-source", type=int, default=None)
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out / "ckpt.pt"
    tok = Tokenizer(args.tokenizer)
    step, elapsed, seen_tokens, prior = 0, 0.0, 0, None
    if args.init_from:
        src = torch.load(args.init_from, map_location=device)
        cfg = ModelConfig.from_dict({**src["config"], **json.loads(args.config)})
        model = CodecModel(cfg).to(device)
        init_from_weights(model, src["model"])
        earlier = src.get("prior") or {"steps": 0, "tokens": 0, "seconds": 0}
        prior = {"steps": earlier["steps"] + src["step"], "tokens": earlier["tokens"] + src["tokens"],
                 "seconds": earlier["seconds"] + round(src["elapsed"])}
    else:
        cfg = ModelConfig(vocab_size=tok.vocab_size, **json.loads(args.config))
        model = CodecModel(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.05)
    if args.resume and ckpt_path.exists():
        st = torch.load(ckpt_path, map_location=device)
        cfg = ModelConfig.from_dict(st["config"])
        model = CodecModel(cfg).to(device)
        model.load_state_dict(st["model"])
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.05)
        opt.load_state_dict(st["opt"])
        step, elapsed, seen_tokens, prior = st["step"], st["elapsed"], st["tokens"], st.get("prior")
    print(f"params {param_count(model):,} device {device} config {cfg.to_dict()}", flush=True)

    train = load_split(args.data, "train", tok, args.limit_per_source)
    valid = load_split(args.data, "valid", tok, 200)
    valid["_bytes"] = {s: [len(tok.token_bytes(x.tolist())) for x in v] for s, v in valid.items()}
    mixture = Mixture(train, args.batch_tokens, cfg.frame, KEYFRAME, seed=step,
                      buckets=args.buckets, alpha=args.source_alpha)
    batches = iter(batch_loader(mixture, args.workers) if args.workers else mixture)
    budget = args.minutes * 60
    bar = tqdm(total=int(budget), initial=int(elapsed), unit="s", mininterval=5)
    t0, last_ckpt, log = time.time() - elapsed, time.time(), open(args.out / "log.jsonl", "a")  # noqa: SIM115

    def save():
        torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "opt": opt.state_dict(),
                    "step": step, "elapsed": time.time() - t0, "tokens": seen_tokens, "prior": prior}, ckpt_path)

    while True:
        elapsed = time.time() - t0
        if elapsed >= budget or (args.max_steps and step >= args.max_steps):
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(elapsed / budget, args.lr)
        cpu_parts = next(batches)
        counts = [int(b["target_mask"].sum()) for b in cpu_parts]
        total = sum(counts)
        parts = [{k: v.to(device, non_blocking=True) for k, v in b.items()} for b in cpu_parts]
        opt.zero_grad(set_to_none=True)
        logged = {}
        for b, c in zip(parts, counts):   # length buckets of one batch: gradients accumulate
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=True):
                r = model(b)
            (r["loss"] * (c / total)).backward()
            for k in ("ce", "commit", "frame_tokens"):
                logged[k] = logged.get(k, 0.0) + r[k].detach() * (c / total)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen_tokens += total
        if step % 20 == 0:
            bar.n = int(time.time() - t0)
            util = [round(float(p)) for p in r["perplexity"]]
            bar.set_postfix(step=step, ce=f"{float(logged['ce']):.3f}", tok_s=f"{seen_tokens / (time.time() - t0):.0f}")
            log.write(json.dumps({"step": step, "t": round(time.time() - t0, 1),
                                  **{k: float(v) for k, v in logged.items()}, "code_perplexity": util,
                                  "tokens": seen_tokens}) + "\n")
            log.flush()
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save()
            last_ckpt = time.time()
    bar.close()
    save()
    metrics = evaluate(model, valid, device, cfg.frame, stage_counts=(0, 1, cfg.stages))
    metrics.update(step=step, tokens=seen_tokens, seconds=round(time.time() - t0), params=param_count(model))
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(json.dumps(metrics, indent=1), flush=True)


if __name__ == "__main__":
    main()
