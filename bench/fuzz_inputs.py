"""How the parser fuzzer (bench/fuzz.py) makes its inputs: ``mutate`` runs a mutation program
(``PROGRAM``: bit flips, byte sets, inserts, deletes, cuts, splices with another valid input) over
a valid input; random inputs are kept to ``RANDOM_BYTES``, and random payloads of the model-coded
modes to ``MODEL_PAYLOAD_BYTES``. The gRPC fuzzer mutates with the same ``mutate``.
"""

from __future__ import annotations

from hypothesis import strategies as st

MODEL_PAYLOAD_BYTES = 24  # random payloads of the model-coded modes are cut to this
RANDOM_BYTES = 64


def _flip(out: bytearray, a: int, b: int, donors) -> None:
    if out:
        out[a % len(out)] ^= 1 << (b & 7)


def _set(out: bytearray, a: int, b: int, donors) -> None:
    if out:
        out[a % len(out)] = b


def _add(out: bytearray, a: int, b: int, donors) -> None:
    if out:
        i = a % len(out)
        out[i] = (out[i] + (b % 33) - 16) & 0xFF


def _insert(out: bytearray, a: int, b: int, donors) -> None:
    out.insert(a % (len(out) + 1), b)


def _delete(out: bytearray, a: int, b: int, donors) -> None:
    if out:
        del out[a % len(out):a % len(out) + 1 + (b & 3)]


def _cut(out: bytearray, a: int, b: int, donors) -> None:
    del out[a % (len(out) + 1):]


def _repeat(out: bytearray, a: int, b: int, donors) -> None:
    if out:
        i = a % len(out)
        out[i:i] = out[i:i + 1 + (b & 7)]


def _zeros(out: bytearray, a: int, b: int, donors) -> None:
    if out:
        i = a % len(out)
        out[i:i + 1 + (b & 7)] = bytes(len(out[i:i + 1 + (b & 7)]))


def _splice(out: bytearray, a: int, b: int, donors) -> None:
    donor = donors[b % len(donors)]
    i = a % (len(out) + 1)
    out[i:] = donor[i % (len(donor) + 1):]


_OPS = (_flip, _set, _add, _insert, _delete, _cut, _repeat, _zeros, _splice)


def splices(program: bytes) -> bool:
    """Whether ``program`` splices in another input (its mutants can be other valid inputs)."""
    return any(program[i] % len(_OPS) == _OPS.index(_splice) for i in range(0, len(program) - 2, 3))


def mutate(data: bytes, program: bytes, donors: list[bytes]) -> bytes:
    """``data`` changed by ``program``: each 3 bytes are an operation, a position and a value."""
    out = bytearray(data)
    for i in range(0, len(program) - 2, 3):
        _OPS[program[i] % len(_OPS)](out, program[i + 1], program[i + 2], donors)
    return bytes(out)


PROGRAM = st.binary(min_size=3, max_size=12)
