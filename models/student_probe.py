"""How much of the teacher a few-MB student keeps: the measurement behind shipping the teacher.

The student is the smallest encoder worth comparing: the codec's own byte-level BPE tokenizer
(4096 tokens) and a bag of token embeddings (mean over the text's tokens, 384-d, unit length),
1.6 M parameters (1.6 MB at int8), distilled on the cached teacher-encoder embeddings of the
quantizer's training messages (models/train_codes.py) by cosine loss. It is measured like the
shipped codes (bench/semantic_codes.py): recall@10 against the float teacher's neighbours on 800
held-out dictionary entries, queries = their first dozen words, the student's embeddings through
the shipped quantizer at 16..128 bits, and with no quantizer at all.

Run: ``python -m models.student_probe --data data --cache runs/codes2 [--minutes 6]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from models import teacher
from models.train_codes import sample_messages, sample_uniform
from rvqstream.models.bundle import DEFAULT_DIR
from rvqstream.models.code_model import CodeModel


class BagStudent(torch.nn.Module):
    def __init__(self, vocab: int, dim: int):
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(vocab, dim, mode="mean")
        torch.nn.init.normal_(self.bag.weight, std=0.1)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.bag(ids, offsets), dim=-1)


def batches(token_lists: list[list[int]], idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [token_lists[i] or [0] for i in idx]
    offsets = np.cumsum([0] + [len(t) for t in ids[:-1]])
    return torch.tensor(np.concatenate(ids), dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--cache", type=Path, required=True, help="train_codes output folder (its .npy caches)")
    ap.add_argument("--uniform", type=int, default=100_000)
    ap.add_argument("--minutes", type=float, default=6.0)
    args = ap.parse_args()
    torch.manual_seed(0)
    split = args.data / "train.jsonl"
    texts = sample_messages(split, 4000) + sample_uniform(split, args.uniform)
    target = np.concatenate([np.load(args.cache / "train_emb.npy"),
                             np.load(args.cache / f"train_emb_uniform{args.uniform}.npy")])
    assert len(texts) == len(target)
    tok = Tokenizer.from_file(str(DEFAULT_DIR / "tokenizer.json"))
    token_lists = [e.ids for e in tok.encode_batch(texts)]
    model = BagStudent(tok.get_vocab_size(), target.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    y = torch.tensor(target)
    rng = np.random.default_rng(0)
    t0, steps = time.time(), 0
    while time.time() - t0 < 60 * args.minutes:
        idx = rng.integers(len(texts), size=512)
        ids, offsets = batches(token_lists, idx)
        loss = 1 - (model(ids, offsets) * y[idx]).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    model.eval()

    codes = CodeModel.load(threads=2)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from semantic_codes import first_words, held_out, recall, topk
    db = held_out(args.data / "test.jsonl", 800, {"gcide"}, 0)
    queries = [first_words(t) for t in db]
    tmodel = teacher.load()
    ref = topk(teacher.embed(tmodel, queries) @ teacher.embed(tmodel, db).T)

    def student(batch: list[str]) -> np.ndarray:
        with torch.no_grad():
            ids, offsets = batches([e.ids for e in tok.encode_batch(batch)], np.arange(len(batch)))
            return model(ids, offsets).numpy()

    out = {"parameters": sum(p.numel() for p in model.parameters()), "steps": steps,
           "seconds": time.time() - t0, "final_cosine_loss": loss.item()}
    for name, embed in (("student", student), ("shipped int8 teacher", codes.embed)):
        d, q = embed(db), embed(queries)
        full = codes.quantizer.encode(d)
        row = {"no quantizer": recall(ref, topk(q @ d.T))}
        for bits in (16, 32, 64, 128):
            row[f"{bits} bits"] = recall(ref, topk(q @ codes.quantizer.decode(full[:, :bits // 8]).T))
        out[name] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
