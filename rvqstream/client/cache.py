"""On-disk cache of model bundles, one verified directory per model id.

A bundle is written to a temporary directory, loaded (which recomputes the model id from the
file contents) and renamed into place only when the id matches; a cached bundle whose files no
longer hash to its id is removed and fetched again. Model ids come from servers: anything but 64
lowercase hex digits is refused (``UnknownModelError``) before it names a path, and a path that
resolves outside the root (a symlink) is never read, written or removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rvqstream.models import Codec, UnknownModelError
from rvqstream.models.bundle import check_model_id


def default_cache_dir() -> Path:
    """``$RVQSTREAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/rvqstream/models``, else ~/.cache/..."""
    if os.environ.get("RVQSTREAM_CACHE_DIR"):
        return Path(os.environ["RVQSTREAM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rvqstream" / "models"


class ModelCache:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, model_id: str) -> Path:
        """The directory of ``model_id``: ``UnknownModelError`` when it is not a model id or the
        directory resolves to anywhere but itself, right under the root."""
        root = self.root.resolve()
        path = root / check_model_id(model_id)
        if path.resolve() != path:
            raise UnknownModelError(f"cache entry {path} leads outside the cache root {root}")
        return path

    def load(self, model_id: str, loader: Callable[[Path], Any] = Codec.load):
        """The cached model of ``model_id`` as ``loader`` (``Codec.load``, ``CodeModel.load``)
        makes it from its directory, or None (absent, or failed verification and removed);
        ``UnknownModelError`` as ``path``."""
        path = self.path(model_id)
        if not path.is_dir():
            return None
        try:
            codec = loader(path)
        except (OSError, ValueError, KeyError):
            codec = None
        if codec is None or codec.model_id != model_id:
            shutil.rmtree(path, ignore_errors=True)
            return None
        return codec

    def store(self, model_id: str, files: dict[str, bytes], loader: Callable[[Path], Any] = Codec.load):
        """Writes and verifies a bundle -> the model ``loader`` makes of it; ``ValueError`` when its
        files do not hash to ``model_id``, ``UnknownModelError`` as ``path``."""
        dest = self.path(model_id)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{model_id[:12]}-", dir=dest.parent))
        try:
            for name, data in files.items():
                if "/" in name or name.startswith("."):
                    raise ValueError(f"bundle file name {name!r} is not a plain file name")
                (tmp / name).write_bytes(data)
            codec = loader(tmp)
            if codec.model_id != model_id:
                raise ValueError(f"bundle files hash to model id {codec.model_id}, not {model_id}")
            try:       # the codec holds its files in memory: the move does not affect it
                tmp.rename(dest)
            except OSError:   # another client cached it meanwhile: keep that copy if it verifies
                if self.load(model_id, loader) is None:
                    shutil.rmtree(dest, ignore_errors=True)
                    tmp.rename(dest)
            return codec
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
