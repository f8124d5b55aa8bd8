"""Fallback coding of text that needs no model step: zstd with the bundle's trained dictionary,
without the zstd magic, checksum, content size or dictionary id (the container says all that).
zstd contexts are not thread-safe: each thread gets its own."""

from __future__ import annotations

import threading

import zstandard

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_FALLBACK_BYTES = 64 << 20


class Fallback:
    def __init__(self, zdict: bytes):
        self._dict = zstandard.ZstdCompressionDict(zdict)
        self._local = threading.local()

    def _compressor(self) -> zstandard.ZstdCompressor:
        cctx = getattr(self._local, "cctx", None)
        if cctx is None:
            cctx = self._local.cctx = zstandard.ZstdCompressor(
                level=19, dict_data=self._dict, write_checksum=False, write_content_size=False,
                write_dict_id=False)
        return cctx

    def compress(self, data: bytes) -> bytes:
        out = self._compressor().compress(data)
        assert out[:4] == _ZSTD_MAGIC
        return out[4:]

    def decompress(self, payload: bytes) -> bytes:
        """``ValueError`` on corrupt data or output over ``MAX_FALLBACK_BYTES``."""
        try:
            dobj = zstandard.ZstdDecompressor(dict_data=self._dict).decompressobj()
            out = dobj.decompress(_ZSTD_MAGIC + payload)
        except zstandard.ZstdError as e:
            raise ValueError(f"corrupt zstd fallback data: {e}") from None
        if len(out) > MAX_FALLBACK_BYTES:
            raise ValueError("fallback data expands past the size limit")
        if not dobj.eof:
            raise EOFError("zstd fallback data is truncated")
        return out
