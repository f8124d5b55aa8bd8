"""The message encoder: text -> a unit-length sentence embedding, on ONNX Runtime's CPU provider.

The graph (``encoder.onnx``, int8 weights; built by ``models/export_encoder.py``) is
all-MiniLM-L6-v2: word pieces of its own tokenizer (``encoder_tokenizer.json``, at most
``MAX_TOKENS``), six transformer layers, mean pooling, L2 normalization. The embedding is what the
message codes quantize and what a search query is compared with; it is not bit-exact across
machines and need not be (codes are made once, by the server, and stored).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MAX_TOKENS = 256        # word pieces per text, [CLS] and [SEP] included


class MessageEncoder:
    """Embeds texts: ``embed(texts)`` -> float32 [len(texts), dim], unit length."""

    def __init__(self, graph: bytes, tokenizer_json: bytes, threads: int = 1):
        """``graph``: the ONNX file's bytes; ``tokenizer_json``: the tokenizer file's bytes;
        ``threads``: ONNX Runtime's intra-op threads."""
        self.tokenizer = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 [len(texts), dim], each row unit length. One text a model call: the graph
        quantizes its activations per call, so a text's embedding depends on its text alone (and
        no padding is computed)."""
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, encoding in enumerate(self.tokenizer.encode_batch(list(texts))):
            ids = np.array([encoding.ids], np.int64)
            (out[i],) = self.session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        return out
