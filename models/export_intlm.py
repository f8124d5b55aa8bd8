"""Export the integer language model as a bundle: ``lm.npz``, its CPU and CUDA step graphs, the
tokenizer and the fallback dictionary, and a manifest.

Run: ``python -m models.export_intlm --lm runs/intlm/lm.npz --out rvqstream/models/artifacts``.
The tokenizer and zstd dictionary are copied from ``--from-bundle`` (default: the float bundle).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from models.intlm_graph import build
from rvqstream.models.bundle import SEMANTIC_DIR, write_manifest
from rvqstream.models.intlm import IntLM
from rvqstream.models.selfcheck import digest, golden_contexts, reference_gaps
from rvqstream.models.tokenizer import Tokenizer

FRAME = 16


def export_bundle(lm: IntLM, out: Path, source: Path, info: dict) -> str:
    """Write the bundle of ``lm`` into ``out``; -> the model id."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "lm.npz").write_bytes(lm.to_bytes())
    (out / "step.onnx").write_bytes(build(lm, "cpu"))
    (out / "step_cuda.onnx").write_bytes(build(lm, "cuda"))
    for name in ("tokenizer.json", "fallback.zdict"):
        if (source / name).resolve() != (out / name).resolve():
            shutil.copyfile(source / name, out / name)
    tokenizer = Tokenizer.from_json((out / "tokenizer.json").read_text())
    golden = digest(reference_gaps(lm, golden_contexts(tokenizer, lm.context)))
    config = {"kind": "intlm", "vocab_size": lm.vocab, "d_model": lm.width, "n_layers": len(lm.layers),
              "n_heads": lm.heads, "d_ff": lm.layers[0].ff1.weight.shape[1], "context": lm.context,
              "frame": FRAME, "freq_table_size": len(lm.freq_by_step)}
    return write_manifest(out, {"config": config, "golden_tables_sha256": golden, **info})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lm", type=Path, default=Path("runs/intlm/lm.npz"))
    ap.add_argument("--ckpt", type=Path, default=None, help="export this training checkpoint instead of --lm")
    ap.add_argument("--out", type=Path, default=Path("rvqstream/models/artifacts"))
    ap.add_argument("--from-bundle", type=Path, default=SEMANTIC_DIR)
    ap.add_argument("--info", type=Path, default=None, help="JSON of training facts for the manifest")
    args = ap.parse_args()
    info = {"training": json.loads(args.info.read_text())} if args.info else {}
    if args.ckpt:
        import torch

        from models.intlm_qat import export
        from models.train_intlm import load_checkpoint
        lm = export(load_checkpoint(torch.load(args.ckpt, weights_only=False)).eval())
    else:
        lm = IntLM.from_bytes(args.lm.read_bytes())
    print(export_bundle(lm, args.out, args.from_bundle, info))


if __name__ == "__main__":
    main()
