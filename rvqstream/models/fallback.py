"""Fallback coding of text that needs no model step: zstd with the bundle's trained dictionary,
without the zstd magic, checksum, content size or dictionary id (the container says all that).
zstd contexts are not thread-safe: each thread gets its own."""

from __future__ import annotations

import threading

import zstandard

from rvqstream.models.errors import MalformedError, TooLargeError, TruncatedError

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_FALLBACK_BYTES = 64 << 20     # the most any fallback payload decodes to, whatever the caller's limit
# compressed bytes fed to the decoder per step: a zstd block decodes to at most 128 KiB and takes
# at least 4 bytes (an RLE block), so one piece makes at most 17 blocks (2.1 MiB) of output
_PIECE_BYTES = 64


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

    def decompress(self, payload: bytes, max_bytes: int | None = None) -> bytes:
        """The bytes of a zstd fallback payload, at most ``max_bytes`` of them (default and ceiling:
        ``MAX_FALLBACK_BYTES``). The output is bounded before it is produced: the payload goes to
        the decoder ``_PIECE_BYTES`` at a time, so decoding stops within 2.1 MiB past the limit.
        ``TooLargeError`` past the limit, ``MalformedError`` on corrupt data,
        ``TruncatedError`` when the frame ends early."""
        limit = MAX_FALLBACK_BYTES if max_bytes is None else min(max_bytes, MAX_FALLBACK_BYTES)
        dobj = zstandard.ZstdDecompressor(dict_data=self._dict).decompressobj()
        data = memoryview(_ZSTD_MAGIC + payload)
        out = bytearray()
        try:
            for i in range(0, len(data), _PIECE_BYTES):
                out += dobj.decompress(data[i:i + _PIECE_BYTES])
                if len(out) > limit:
                    raise TooLargeError(f"zstd fallback data expands past {limit} bytes")
                if dobj.eof:      # bytes after the frame are not part of it
                    break
        except zstandard.ZstdError as e:
            raise MalformedError(f"corrupt zstd fallback data: {e}") from None
        if not dobj.eof:
            raise TruncatedError("zstd fallback data is truncated")
        return bytes(out)
