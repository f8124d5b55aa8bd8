"""Byte-level BPE tokenizer: exact round trip of any Unicode string, and streaming tokenization.

Token ids are ``int`` in ``[0, vocab_size)``; id 0 is ``<eos>`` (message end, and the start symbol
of every context). Decoding works on bytes, so a token may end inside a UTF-8 sequence.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer as _HFTokenizer

EOS_TOKEN = "<eos>"
EOS_ID = 0


class Tokenizer:
    """Wraps a ``tokenizers`` byte-level BPE model with byte-exact ``encode``/``decode``."""

    def __init__(self, path: Path | str):
        self._init(_HFTokenizer.from_file(str(path)))

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        self = cls.__new__(cls)
        self._init(_HFTokenizer.from_str(text))
        return self

    def _init(self, tok: _HFTokenizer) -> None:
        self._tok = tok
        self._tok.encode_special_tokens = True   # the text "<eos>" is text, never the symbol
        if self._tok.token_to_id(EOS_TOKEN) != EOS_ID:
            raise ValueError(f"tokenizer: {EOS_TOKEN!r} must have id {EOS_ID}")
        self.vocab_size = self._tok.get_vocab_size()
        # byte string of every token id, for byte-exact decoding without the HF decoder
        byte_decoder = {c: b for b, c in _bytes_to_unicode().items()}
        vocab = self._tok.get_vocab()
        self._bytes: list[bytes] = [b""] * self.vocab_size
        for piece, idx in vocab.items():
            if idx != EOS_ID:
                self._bytes[idx] = bytes(byte_decoder[c] for c in piece)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (never contains ``EOS_ID``)."""
        if not text:
            return []
        return self._tok.encode(text, add_special_tokens=False).ids

    def token_bytes(self, ids) -> bytes:
        """The UTF-8 bytes the ids stand for (may be an incomplete UTF-8 sequence)."""
        return b"".join(self._bytes[i] for i in ids)

    def decode(self, ids) -> str:
        """Text of a complete id sequence; ``UnicodeDecodeError`` if it is not valid UTF-8."""
        return self.token_bytes(ids).decode("utf-8")

    def split_final(self, text: str, max_tail: int | None = None) -> tuple[str, str]:
        """Split buffered ``text`` into (final, tail): the tail is the last pre-token, which more
        text could still change; the final part is text no later text joins (its tokens may
        differ from those of the whole text at some whitespace runs: the bytes never do). A tail
        longer than ``max_tail`` characters is cut before its last character (a forced token
        boundary: the bytes stay the same), so a caller that buffers the tail and calls again
        with more text pre-tokenizes each character a bounded number of times."""
        pieces = self._tok.pre_tokenizer.pre_tokenize_str(text)
        cut = pieces[-1][1][0] if len(pieces) > 1 else 0     # offsets are in characters of ``text``
        if max_tail is not None and len(text) - cut > max_tail:
            cut = len(text) - 1
        return text[:cut], text[cut:]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by the ByteLevel pre-tokenizer."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}
