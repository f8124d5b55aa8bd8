"""The generated code is what the pinned script makes from the protos, and the protos lint clean."""

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "rvqstream" / "_proto"


def test_regenerating_changes_nothing(tmp_path):
    out = tmp_path / "_proto"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(out)], check=True,
                   capture_output=True)
    fresh = sorted(p.name for p in out.iterdir() if p.is_file())
    committed = sorted(p.name for p in GENERATED.iterdir() if p.is_file())
    assert fresh == committed
    _, mismatch, errors = filecmp.cmpfiles(out, GENERATED, fresh, shallow=False)
    assert mismatch == [] and errors == [], f"stale generated files: {mismatch + errors}; run make protos"


def test_buf_lint_is_clean():
    buf = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
    if not Path(buf).exists():
        pytest.fail("buf is not installed (it comes with the dev extra: buf-bin)")
    result = subprocess.run([buf, "lint"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_imports_stay_private():
    for path in GENERATED.glob("*.py*"):
        text = path.read_text()
        assert "from rvqstream.v1 import" not in text, path
