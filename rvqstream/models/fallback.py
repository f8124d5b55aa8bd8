"""Fallback coding of text that needs no model step: zstd with the bundle's trained dictionary,
without the zstd magic, checksum, content size or dictionary id (the container says all that)."""

from __future__ import annotations

import zstandard

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_FALLBACK_BYTES = 64 << 20


class Fallback:
    def __init__(self, zdict: bytes):
        d = zstandard.ZstdCompressionDict(zdict)
        self._cctx = zstandard.ZstdCompressor(level=19, dict_data=d, write_checksum=False,
                                              write_content_size=False, write_dict_id=False)
        self._dict = d

    def compress(self, data: bytes) -> bytes:
        out = self._cctx.compress(data)
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
