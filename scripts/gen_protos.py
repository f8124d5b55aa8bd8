"""Generates rvqstream/_proto/ from protos/rvqstream/v1/*.proto with the pinned grpcio-tools.

Usage: python scripts/gen_protos.py [--out DIR]   (default: rvqstream/_proto)

Generated modules sit flat in one private package; their cross-file imports are rewritten from
``rvqstream.v1`` to ``rvqstream._proto``. The output is deterministic for a given grpcio-tools.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
import tempfile
from pathlib import Path

GRPCIO_TOOLS_VERSION = "1.85.1"
ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_PACKAGE = "rvqstream/v1"
INIT_TEXT = '"""Generated protobuf and gRPC code for rvqstream.v1 (private: see scripts/gen_protos.py)."""\n'


def generate(out: Path) -> list[Path]:
    """Writes the generated modules into ``out`` (replacing its *_pb2* files); returns them."""
    installed = importlib.metadata.version("grpcio-tools")
    if installed != GRPCIO_TOOLS_VERSION:
        sys.exit(f"grpcio-tools {GRPCIO_TOOLS_VERSION} required, {installed} installed")
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PROTO_PACKAGE).glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{PROTO_ROOT}", f"--python_out={tmp}", f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}", *protos]
        if protoc.main(args) != 0:
            sys.exit("protoc failed")
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*_pb2*"):
            old.unlink()
        written = []
        for src in sorted((Path(tmp) / PROTO_PACKAGE).iterdir()):
            text = src.read_text()
            text = re.sub(r"^from rvqstream\.v1 import", "from rvqstream._proto import", text, flags=re.MULTILINE)
            dst = out / src.name
            dst.write_text(text)
            written.append(dst)
    (out / "__init__.py").write_text(INIT_TEXT)
    return [out / "__init__.py", *written]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "rvqstream" / "_proto")
    args = parser.parse_args()
    for path in generate(args.out):
        print(path)


if __name__ == "__main__":
    main()
