"""Assemble the code-model bundle (kind ``codes``): encoder graph and tokenizer
(models/export_encoder.py), quantizer (models/train_codes.py), and a manifest whose
``config.near_duplicate_score`` is calibrated here on the valid split.

Calibration: generated near-duplicates (models/near_dups.py) of ``--calib`` valid messages against
the originals' embeddings as the server's recent window holds them (int8), as many other valid
messages as negatives; the threshold is the lowest
score at which flagging "near-duplicate of its best match" is right at least ``--precision`` of
the time. Run: ``python -m models.export_codes --encoder runs/codes --rvq runs/codes/rvq.npz
--data data --out rvqstream/models/artifacts/codes``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from models import near_dups
from rvqstream.models.bundle import write_manifest
from rvqstream.models.code_model import CodeModel
from rvqstream.server.channel_codes import window_vectors


def held_out(split: Path, n: int, seed: int) -> list[str]:
    with open(split) as f:
        texts = [json.loads(line)["text"] for line in f]
    texts = [t for t in texts if len(t.split()) >= 6]
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


def calibrate(model: CodeModel, split: Path, n: int, precision: float, seed: int = 0) -> dict:
    texts = held_out(split, 2 * n, seed)
    ev = near_dups.dedup_eval(texts[:n], texts[n:], model.embed, lambda t: window_vectors(model.embed(t)),
                              np.random.default_rng(seed))
    t = near_dups.threshold_for(ev, precision)
    p, r = near_dups.precision_recall(ev, t)
    return {"near_duplicate_score": round(t, 4), "precision": float(p), "recall": float(r), "messages": n}


def assemble(encoder_dir: Path, rvq: Path, out: Path, info: dict, data: Path, calib: int, precision: float) -> str:
    """Writes the bundle into ``out``; returns its model id."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(encoder_dir / "encoder.onnx", out / "encoder.onnx")
    shutil.copy(encoder_dir / "encoder_tokenizer.json", out / "encoder_tokenizer.json")
    shutil.copy(rvq, out / "rvq.npz")
    model_files = {n: (out / n).read_bytes() for n in ("encoder.onnx", "encoder_tokenizer.json", "rvq.npz")}
    with tempfile.TemporaryDirectory() as tmp:     # calibrate with the bundle as it will load
        for name, data_ in model_files.items():
            (Path(tmp) / name).write_bytes(data_)
        config = {"kind": "codes", "near_duplicate_score": 1.0}
        write_manifest(Path(tmp), {"config": config})
        model = CodeModel.load(tmp, threads=2)
        cal = calibrate(model, data / "valid.jsonl", calib, precision)
    config = {"kind": "codes", "dim": model.quantizer.dim, "stages": model.stages, "codewords": 256,
              "near_duplicate_score": cal["near_duplicate_score"]}
    return write_manifest(out, {"config": config, "calibration": {**cal, "target_precision": precision}, **info})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--encoder", type=Path, required=True)
    ap.add_argument("--rvq", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--calib", type=int, default=1000)
    ap.add_argument("--precision", type=float, default=0.995)
    ap.add_argument("--info", type=Path, help="JSON of training facts for the manifest")
    args = ap.parse_args()
    info = json.loads(args.info.read_text()) if args.info else {}
    print(assemble(args.encoder, args.rvq, args.out, info, args.data, args.calib, args.precision))


if __name__ == "__main__":
    main()
